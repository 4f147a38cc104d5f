// One queue: its settings and counts with the actions (pause/resume,
// concurrency), a "line" picture of what runs now and what comes next, its
// jobs in seq order (state filter, cursor paging: `?state=&after=`), and
// its start log (`?starts_after=`). Every read is one bounded page, so the
// view costs the same with a million jobs waiting as with ten. Live: events
// of this queue refresh what is shown, debounced.

import { get, put, seg } from "../api.js";
import { actionButton } from "../confirm.js";
import { h, replace } from "../dom.js";
import { age, num, STATES, time, waitingOn } from "../format.js";
import { debounced, live } from "../live.js";

const PAGE = 50;
const NEXT = 12;

export function render(main, { queue }, ctx) {
  ctx.crumbs([["queues", ""], queue]);
  const params = new URLSearchParams(location.search);
  const state = params.get("state") || "";
  const after = params.get("after") || "";
  const startsAfter = params.get("starts_after") || "";
  const q = seg(queue);
  const base = `queues/${q}`;
  const href = (over) => {
    const p = new URLSearchParams({ state, after, starts_after: startsAfter, ...over });
    for (const [k, v] of [...p]) if (!v) p.delete(k);
    const s = p.toString();
    return ctx.link(base) + (s ? `?${s}` : "");
  };

  const head = h("section", { class: "queue-head" });
  const line = h("section", { class: "line", id: "line" });
  const table = h("section", { id: "jobs" });
  const starts = h("section", { id: "starts" });
  replace(main, h("h1", {}, "Queue ", h("code", {}, queue)), head, line, table, starts);

  async function header() {
    const info = await get(`/v1/queues/${q}`);
    const conc = h("input", { type: "number", min: 1, value: info.concurrency, id: "concurrency", class: "small-input" });
    replace(
      head,
      h(
        "div",
        { class: "facts" },
        info.paused ? h("span", { class: "badge paused", id: "paused" }, "paused") : h("span", { class: "badge ok" }, "running"),
        h("span", {}, `running ${num(info.counts.running)} of concurrency ${num(info.concurrency)}`),
        h("span", {}, `max attempts ${info.max_attempts}`),
        info.executor ? h("span", {}, `executor: ${info.executor.type}`) : h("span", { class: "muted" }, "pull workers"),
      ),
      h(
        "div",
        { class: "counts" },
        STATES.map((s) =>
          h("a", { class: `count state-${s}`, href: href({ state: s === state ? "" : s, after: "" }), dataset: { state: s } }, h("b", {}, num(info.counts[s])), " ", s),
        ),
      ),
      h(
        "div",
        { class: "actions" },
        info.paused
          ? actionButton("Resume", `Resume queue ${queue}? Workers start claiming its jobs again.`, () => put(`/v1/queues/${q}`, { paused: false }))
          : actionButton("Pause", `Pause queue ${queue}? Running jobs finish; no new ones start.`, () => put(`/v1/queues/${q}`, { paused: true }), { cls: "warn" }),
        h("label", { for: "concurrency" }, "concurrency"),
        conc,
        actionButton("Set concurrency", `Set the concurrency of ${queue}?`, () => put(`/v1/queues/${q}`, { concurrency: Number(conc.value) }), { confirmLabel: "Set" }),
      ),
    );
  }

  async function picture() {
    const [running, next] = await Promise.all([
      get(`/v1/queues/${q}/jobs`, { state: "running", limit: 20 }),
      get(`/v1/queues/${q}/jobs`, { state: "queued", limit: NEXT }),
    ]);
    const box = (j, cls) =>
      h(
        "a",
        { class: `slot ${cls}`, href: ctx.link(`jobs/${seg(j.id)}`), title: j.id },
        h("span", { class: "seq" }, `#${j.seq}`),
        j.key !== null ? h("span", { class: "key" }, j.key) : null,
        cls === "running" && j.worker ? h("span", { class: "worker" }, j.worker) : null,
      );
    replace(
      line,
      h("h2", {}, "The line"),
      h(
        "div",
        { class: "slots" },
        h("span", { class: "lane-label" }, "running"),
        running.jobs.length ? running.jobs.map((j) => box(j, "running")) : h("span", { class: "muted" }, "nothing"),
        h("span", { class: "arrow" }, "⟵"),
        h("span", { class: "lane-label" }, "next"),
        next.jobs.length
          ? next.jobs.map((j) => box(j, j.waiting_on && j.waiting_on.reason === "key" ? "queued held" : "queued"))
          : h("span", { class: "muted" }, "nothing waiting"),
        next.next_after ? h("span", { class: "muted" }, "…") : null,
      ),
      h("p", { class: "muted small" }, "Waiting jobs in seq order; pale ones wait for an earlier job of their key, so later ones may start first."),
    );
  }

  async function jobs() {
    const page = await get(`/v1/queues/${q}/jobs`, { state, after, limit: PAGE });
    const filter = h(
      "select",
      { id: "state-filter", "aria-label": "state filter" },
      h("option", { value: "" }, "all states"),
      STATES.map((s) => h("option", { value: s, selected: s === state }, s)),
    );
    filter.addEventListener("change", () => ctx.go(href({ state: filter.value, after: "" })));
    const now = Date.now();
    replace(
      table,
      h("h2", {}, "Jobs in seq order ", filter),
      h(
        "table",
        { class: "jobs" },
        h(
          "thead",
          {},
          h("tr", {}, ["seq", "job", "state", "position", "key", "attempt", "age", "waiting on"].map((c) => h("th", {}, c))),
        ),
        h(
          "tbody",
          {},
          page.jobs.length === 0 ? h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no jobs")) : null,
          page.jobs.map((j) =>
            h(
              "tr",
              { dataset: { job: j.id, state: j.state } },
              h("td", { class: "num" }, j.seq),
              h("td", {}, h("a", { href: ctx.link(`jobs/${seg(j.id)}`), class: "mono" }, j.id)),
              h("td", {}, h("span", { class: `badge state-${j.state}` }, j.state)),
              h("td", { class: "num" }, j.position ?? "–"),
              h("td", {}, j.key !== null ? h("a", { href: ctx.link(`${base}/keys/${seg(j.key)}`), class: "key" }, j.key) : "–"),
              h("td", { class: "num" }, `${j.attempt}/${j.max_attempts}`),
              h("td", {}, age(j.enqueued_at, now)),
              h("td", { class: "waiting" }, waitingOn(j.waiting_on)),
            ),
          ),
        ),
      ),
      h(
        "nav",
        { class: "pager" },
        after ? h("a", { href: href({ after: "" }) }, "⇤ first page") : null,
        page.next_after !== null ? h("a", { href: href({ after: page.next_after }), id: "next-page" }, "next page ⟶") : h("span", { class: "muted" }, "last page"),
      ),
    );
  }

  async function startLog() {
    const page = await get(`/v1/queues/${q}/starts`, { after: startsAfter, limit: 20 });
    replace(
      starts,
      h("h2", {}, "Start log"),
      h("p", { class: "muted small" }, "Every start the server made in this queue, in the order it made them: the order actually used."),
      h(
        "table",
        { class: "starts" },
        h("thead", {}, h("tr", {}, ["start", "seq", "job", "key", "attempt", "worker", "started"].map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          page.starts.length === 0 ? h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no starts yet")) : null,
          page.starts.map((s) =>
            h(
              "tr",
              {},
              h("td", { class: "num" }, s.start_no),
              h("td", { class: "num" }, s.seq),
              h("td", {}, h("a", { href: ctx.link(`jobs/${seg(s.job_id)}`), class: "mono" }, s.job_id)),
              h("td", {}, s.key ?? "–"),
              h("td", { class: "num" }, s.attempt),
              h("td", { class: "worker" }, s.worker),
              h("td", { title: s.started_at }, time(s.started_at)),
            ),
          ),
        ),
      ),
      h(
        "nav",
        { class: "pager" },
        startsAfter ? h("a", { href: href({ starts_after: "" }) }, "⇤ first starts") : null,
        page.next_after !== null ? h("a", { href: href({ starts_after: page.next_after }) }, "later starts ⟶") : null,
      ),
    );
  }

  const refresh = debounced(() => Promise.all([header(), picture(), jobs(), startLog()]), 300);
  Promise.all([header(), picture(), jobs(), startLog()]).catch((e) => ctx.fail(e));
  const stopLive = live({ queue }, () => refresh());
  const tick = setInterval(refresh, 30_000);
  return () => {
    stopLive();
    clearInterval(tick);
  };
}
