// Small charts as plain SVG, and the per-minute series behind them, built
// from the events the page sees (the server replays its recent ones, up to
// 10,000 by default, so a fresh page starts with the last hour it holds).

import { h } from "./dom.js";

const MINUTE = 60_000;
const MINUTES = 60;

/** Per-queue, per-minute counts of finished jobs and sums of queue latency. */
export class Series {
  constructor() {
    this.queues = new Map(); // queue -> {done: Map(min->n), wait: Map(min->{sum,n})}
    this.readyAt = new Map(); // job id -> ms it entered the line
  }

  /** Takes one event (an EventView) into the series. */
  add(ev) {
    if (!ev || !ev.job) return;
    const t = Date.parse(ev.at);
    const q = this.queue(ev.queue);
    const min = Math.floor(t / MINUTE);
    switch (ev.kind) {
      case "enqueued":
      case "ready":
      case "requeued":
      case "retried":
        if (ev.job.state === "queued") this.readyAt.set(ev.job.id, t);
        break;
      case "started": {
        const since = this.readyAt.get(ev.job.id);
        if (since !== undefined) {
          const w = q.wait.get(min) || { sum: 0, n: 0 };
          w.sum += Math.max(0, t - since);
          w.n += 1;
          q.wait.set(min, w);
          this.readyAt.delete(ev.job.id);
        }
        break;
      }
      case "succeeded":
      case "failed":
      case "cancelled":
        this.readyAt.delete(ev.job.id);
        if (ev.kind !== "cancelled") q.done.set(min, (q.done.get(min) || 0) + 1);
        break;
      default:
    }
    if (this.readyAt.size > 100_000) this.readyAt.clear();
  }

  queue(name) {
    let q = this.queues.get(name);
    if (!q) {
      q = { done: new Map(), wait: new Map() };
      this.queues.set(name, q);
    }
    return q;
  }

  /** The last hour of finished jobs per minute, oldest first. */
  throughput(name, now = Date.now()) {
    const q = this.queue(name);
    return lastHour(now).map((m) => q.done.get(m) || 0);
  }

  /** The last hour's mean queue latency (ms) per minute; null where none started. */
  latency(name, now = Date.now()) {
    const q = this.queue(name);
    return lastHour(now).map((m) => {
      const w = q.wait.get(m);
      return w ? w.sum / w.n : null;
    });
  }
}

function lastHour(now) {
  const end = Math.floor(now / MINUTE);
  return Array.from({ length: MINUTES }, (_, i) => end - MINUTES + 1 + i);
}

/**
 * Bars of `values` (null: no bar) in a small SVG, with `label(max)` as its
 * title; the x axis is the last hour, now on the right.
 */
export function bars(values, { label, cls = "" } = {}) {
  const w = 180;
  const hgt = 36;
  const max = Math.max(0, ...values.filter((v) => v !== null));
  const bw = w / values.length;
  const svg = h(
    "svg",
    {
      class: `chart ${cls}`,
      viewBox: `0 0 ${w} ${hgt}`,
      width: w,
      height: hgt,
      role: "img",
      "aria-label": label ? label(max) : "",
    },
    h("title", {}, label ? label(max) : ""),
    h("line", { x1: 0, y1: hgt - 0.5, x2: w, y2: hgt - 0.5, class: "axis" }),
  );
  values.forEach((v, i) => {
    if (v === null || v <= 0 || max <= 0) return;
    const bh = Math.max(1, (v / max) * (hgt - 2));
    svg.append(h("rect", { x: i * bw + 0.5, y: hgt - bh, width: Math.max(1, bw - 1), height: bh }));
  });
  return svg;
}
