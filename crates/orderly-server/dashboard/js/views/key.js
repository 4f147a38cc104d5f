// One key's line in a queue: its unfinished jobs in seq order (the first
// one runs or is next; each later one waits on it), from
// `GET /v1/queues/{q}/jobs?key=`, one bounded page. Live: events of this
// queue refresh it (another key's job finishing can change why these wait).

import { get, seg } from "../api.js";
import { h, replace } from "../dom.js";
import { age, eta, waitingOn } from "../format.js";
import { debounced, live } from "../live.js";

export function render(main, { queue, key }, ctx) {
  const q = seg(queue);
  ctx.crumbs([["queues", ""], [queue, `queues/${q}`], `key ${key}`]);
  const list = h("section", { id: "key-line" });
  replace(main, h("h1", {}, "Key ", h("code", { class: "key" }, key), " in ", h("code", {}, queue)), list);

  async function load() {
    const page = await get(`/v1/queues/${q}/jobs`, { key, limit: 100 });
    replace(
      list,
      h("p", { class: "muted small" }, "The jobs of this key that have not finished, in the order they run: one at a time."),
      page.jobs.length === 0
        ? h("p", { class: "muted" }, "Nothing of this key is waiting or running.")
        : h(
            "ol",
            { class: "key-line" },
            page.jobs.map((j) =>
              h(
                "li",
                { dataset: { job: j.id, state: j.state } },
                h("span", { class: `badge state-${j.state}` }, j.state),
                " ",
                h("a", { href: ctx.link(`jobs/${seg(j.id)}`), class: "mono" }, j.id),
                h("span", { class: "muted" }, ` seq ${j.seq}, enqueued ${age(j.enqueued_at)} ago`),
                j.waiting_on ? h("div", { class: "waiting" }, waitingOn(j.waiting_on), " · ", eta(j.eta)) : null,
              ),
            ),
          ),
      page.next_after !== null ? h("p", { class: "muted" }, "… and more after these 100.") : null,
    );
  }

  const refresh = debounced(load, 300);
  load().catch((e) => ctx.fail(e));
  return live({ queue }, () => refresh());
}
