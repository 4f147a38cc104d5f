// One job: its state, place in line, why it waits and when it likely starts
// (an estimate), progress, payload, result, error, and the timeline of its
// attempts with each retry's error; cancel and retry. Live: events of its
// queue refresh it (a job ahead finishing changes its position and why it
// waits), debounced.

import { get, post, seg } from "../api.js";
import { actionButton } from "../confirm.js";
import { h, json, replace } from "../dom.js";
import { ago, duration, eta, fraction, time, waitingOn } from "../format.js";
import { debounced, live } from "../live.js";

export function render(main, { id }, ctx) {
  const path = `/v1/jobs/${seg(id)}`;
  let stopLive = () => {};

  async function load() {
    const [j, { attempts }] = await Promise.all([get(path), get(`${path}/attempts`)]);
    const q = seg(j.queue);
    ctx.crumbs([["queues", ""], [j.queue, `queues/${q}`], `job ${j.id}`]);
    const waiting = j.state === "queued" || j.state === "scheduled";
    const frac = fraction(j.progress);
    replace(
      main,
      h("h1", {}, "Job ", h("code", { class: "mono" }, j.id), " ", h("span", { class: `badge state-${j.state}`, id: "job-state" }, j.state)),
      h(
        "dl",
        { class: "facts-grid" },
        fact("queue", h("a", { href: ctx.link(`queues/${q}`) }, j.queue)),
        fact("key", j.key !== null ? h("a", { class: "key", href: ctx.link(`queues/${q}/keys/${seg(j.key)}`) }, j.key) : "–"),
        fact("seq", j.seq),
        fact("attempt", `${j.attempt} of ${j.max_attempts}`),
        fact("enqueued", h("span", { title: j.enqueued_at }, `${time(j.enqueued_at)} (${ago(j.enqueued_at)})`)),
        j.started_at ? fact("started", h("span", { title: j.started_at }, `${time(j.started_at)} (${ago(j.started_at)})`)) : null,
        j.finished_at ? fact("finished", h("span", { title: j.finished_at }, `${time(j.finished_at)} (${ago(j.finished_at)})`)) : null,
        j.worker ? fact("worker", h("span", { class: "worker" }, j.worker)) : null,
        waiting ? fact("position", h("span", { id: "position" }, j.position === null ? "–" : `${j.position} waiting ahead of it in the queue`)) : null,
        waiting && j.key !== null ? fact("in its key", `${j.key_position ?? 0} of its key ahead of it`) : null,
        waiting
          ? fact(
              "waiting on",
              h(
                "span",
                { id: "waiting-on" },
                waitingOn(j.waiting_on) || "nothing: it starts as soon as a worker asks",
                j.waiting_on && j.waiting_on.job
                  ? [" (", h("a", { href: ctx.link(`jobs/${seg(j.waiting_on.job)}`), id: "waits-for" }, j.waiting_on.job), ")"]
                  : null,
              ),
            )
          : null,
        waiting ? fact("likely starts", h("span", { id: "eta" }, eta(j.eta))) : null,
        j.cancel_requested ? fact("cancel", "requested: the worker sees it at its next heartbeat") : null,
      ),
      j.state === "running" || frac !== null
        ? h(
            "div",
            { class: "progress-wrap" },
            h("progress", { max: 1, value: frac ?? undefined, id: "progress" }),
            h("span", { class: "muted" }, frac !== null ? ` ${Math.round(frac * 100)} %` : " no progress reported"),
            j.progress !== null && typeof j.progress === "object" ? h("pre", { class: "small" }, json(j.progress)) : null,
          )
        : null,
      h(
        "div",
        { class: "actions" },
        ["scheduled", "queued", "running"].includes(j.state)
          ? actionButton("Cancel", `Cancel job ${j.id}?${j.state === "running" ? " It is running: its worker is asked to stop at its next heartbeat." : ""}`, () => post(`${path}/cancel`), { cls: "warn", confirmLabel: "Cancel the job" })
          : null,
        ["failed", "cancelled"].includes(j.state)
          ? actionButton("Retry", `Put job ${j.id} back in line? It gets a new seq, at the end of the line.`, () => post(`${path}/retry`))
          : null,
      ),
      block("Payload", j.payload, "payload"),
      j.result !== null ? block("Result", j.result, "result") : null,
      j.error !== null ? block(j.state === "failed" ? "Error" : "Error of an earlier attempt", j.error, "error") : null,
      h("h2", {}, "Attempts"),
      timeline(attempts),
    );
  }

  const refresh = debounced(load, 250);
  load()
    .then(async () => {
      const j = await get(path);
      stopLive = live({ queue: j.queue }, () => refresh());
    })
    .catch((e) => ctx.fail(e));
  return () => stopLive();
}

/** A bar at `left` of the track, `width` wide (fractions). Its geometry is
 * set through the CSSOM, which the page's CSP allows (inline style
 * attributes it does not). */
function bar(outcome, left, width) {
  const el = h("div", { class: `bar outcome-${outcome}` });
  el.style.marginLeft = `${(left * 100).toFixed(2)}%`;
  el.style.width = `${Math.max(0.5, width * 100).toFixed(2)}%`;
  return el;
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

function block(title, value, id) {
  return h("section", {}, h("h2", {}, title), h("pre", { class: "data", id }, json(value)));
}

/** Each attempt as a bar on a shared time axis, with its worker, outcome and error. */
function timeline(attempts) {
  if (!attempts.length) return h("p", { class: "muted", id: "attempts" }, "Not started yet.");
  const now = Date.now();
  const t0 = Date.parse(attempts[0].started_at);
  const t1 = Math.max(now, ...attempts.map((a) => Date.parse(a.ended_at || a.started_at)));
  const span = Math.max(1, t1 - t0);
  return h(
    "ol",
    { class: "attempts", id: "attempts" },
    attempts.map((a) => {
      const s = Date.parse(a.started_at);
      const e = a.ended_at ? Date.parse(a.ended_at) : now;
      const outcome = a.outcome ?? (a.ended_at ? "ended" : "running");
      return h(
        "li",
        { dataset: { outcome } },
        h(
          "div",
          { class: "attempt-head" },
          h("b", {}, `#${a.attempt}`),
          h("span", { class: `badge outcome-${outcome}` }, outcome.replaceAll("_", " ")),
          h("span", { class: "worker" }, a.worker),
          h("span", { class: "muted", title: a.started_at }, `${time(a.started_at)}, ${duration(e - s)}`),
        ),
        h("div", { class: "track" }, bar(outcome, (s - t0) / span, (e - s) / span)),
        a.error !== null && a.error !== undefined ? h("pre", { class: "data small error" }, json(a.error)) : null,
      );
    }),
  );
}
