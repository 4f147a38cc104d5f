// The overview: every queue with its counts per state, running against its
// concurrency, paused, the age of the oldest waiting job, and the last
// hour's throughput and queue latency as small charts. Live: each event
// refreshes only its own queue's row (one `GET /v1/queues/{q}` and one
// one-job page), debounced, and feeds the charts.

import { get, seg } from "../api.js";
import { bars, Series } from "../charts.js";
import { h, replace } from "../dom.js";
import { age, duration, num, STATES } from "../format.js";
import { debounced, live } from "../live.js";

/** A chart of the last hour and, beside it, the last minute's value in words. */
function chartCell(values, label, cls, words) {
  const last = values[values.length - 1];
  return h(
    "td",
    { class: "chart-cell" },
    h("div", { class: "chart-row" }, bars(values, { label, cls }), h("span", { class: "chart-now", title: "this minute" }, words(last))),
  );
}

export function render(main, _params, ctx) {
  ctx.crumbs(["queues"]);
  const series = new Series();
  const rows = new Map(); // queue name -> {tr, refresh}
  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true }, "No queues yet: enqueue a job (POST /v1/queues/{queue}/jobs) and it shows here.");
  replace(
    main,
    h("h1", {}, "Queues"),
    h(
      "table",
      { class: "queues", id: "queues" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "queue"),
          STATES.map((s) => h("th", { class: "num" }, s)),
          h("th", { class: "num" }, "running / concurrency"),
          h("th", {}, "oldest waiting"),
          h("th", {}, "finished per minute, last hour"),
          h("th", {}, "queue latency, last hour"),
        ),
      ),
      tbody,
    ),
    empty,
    h("p", { class: "muted small" }, "Charts are built from the events this page has seen, starting with the recent ones the server keeps."),
  );

  async function row(name) {
    const [q, front] = await Promise.all([
      get(`/v1/queues/${seg(name)}`),
      get(`/v1/queues/${seg(name)}/jobs`, { state: "queued", limit: 1 }),
    ]);
    let r = rows.get(name);
    if (!r) {
      r = { tr: h("tr", { dataset: { queue: name } }), refresh: debounced(() => row(name), 300) };
      rows.set(name, r);
      const after = [...rows.keys()].sort().find((n) => n > name);
      tbody.insertBefore(r.tr, after ? rows.get(after).tr : null);
    }
    empty.hidden = true;
    const oldest = front.jobs[0];
    replace(
      r.tr,
      h(
        "td",
        {},
        h("a", { href: ctx.link(`queues/${seg(name)}`) }, name),
        q.paused ? h("span", { class: "badge paused" }, "paused") : null,
      ),
      STATES.map((s) =>
        h("td", { class: `num state-${s}${q.counts[s] ? "" : " zero"}`, dataset: { state: s } }, num(q.counts[s])),
      ),
      h("td", { class: "num" }, `${num(q.counts.running)} / ${num(q.concurrency)}`),
      h("td", { class: "oldest" }, oldest ? age(oldest.enqueued_at) : "–"),
      chartCell(series.throughput(name), (m) => `finished per minute (max ${m})`, "", (v) => `${v ?? 0}/min`),
      chartCell(series.latency(name), (m) => `mean wait from ready to start (max ${duration(m)})`, "latency", (v) =>
        v === null ? "–" : duration(v),
      ),
    );
  }

  const all = debounced(async () => {
    const { queues } = await get("/v1/queues");
    empty.hidden = queues.length > 0;
    await Promise.all(queues.map((q) => row(q.name)));
  }, 300);

  get("/v1/queues")
    .then(({ queues }) => {
      empty.hidden = queues.length > 0;
      return Promise.all(queues.map((q) => row(q.name)));
    })
    .catch((e) => ctx.fail(e));

  const stopLive = live({ last_event_id: 0 }, (kind, ev) => {
    if (kind === "gap" || kind === "dropped") return all();
    if (!ev || !ev.queue) return;
    series.add(ev);
    const r = rows.get(ev.queue);
    if (r) r.refresh();
    else all();
  });
  // Ages and chart windows move with the clock.
  const tick = setInterval(() => rows.forEach((r) => r.refresh()), 30_000);
  return () => {
    stopLive();
    clearInterval(tick);
  };
}
