// Server-sent events over fetch: EventSource cannot send an Authorization
// header, so this reads `GET /v1/events` as a stream and parses the
// text/event-stream format itself (id:, event:, data: lines, a blank line
// ends a message). It reconnects after an end or error with the last id it
// saw as `Last-Event-ID`, so no event is missed while the server holds it.

import { headers, noteAccess, onUnauthorized, url } from "./api.js";

/**
 * Subscribes to `/v1/events` with `query` (queue, job, last_event_id).
 * `onEvent(kind, data, id)` gets every message; `onState(s)` gets
 * "live", "reconnecting" or "stopped". Returns a function that stops it.
 */
export function subscribe(query, onEvent, onState = () => {}) {
  const ctl = new AbortController();
  let lastId = query.last_event_id ?? null;
  let stopped = false;
  let delay = 500;

  async function run() {
    while (!stopped) {
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId !== null) h["Last-Event-ID"] = String(lastId);
        const q = { ...query };
        delete q.last_event_id;
        const res = await fetch(url("/v1/events", q), { headers: h, signal: ctl.signal });
        noteAccess(res);
        if (res.status === 401) {
          onUnauthorized();
          stopped = true;
          break;
        }
        if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
        onState("live");
        delay = 500;
        await read(res.body, (msg) => {
          if (msg.id !== null) lastId = msg.id;
          onEvent(msg.event, msg.data, msg.id);
        });
      } catch (e) {
        if (stopped || e.name === "AbortError") break;
      }
      if (stopped) break;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
    onState("stopped");
  }
  run();
  return () => {
    stopped = true;
    ctl.abort();
  };
}

/** Reads messages from a byte stream until it ends. */
async function read(body, onMessage) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let msg = fresh();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (msg.data.length) {
          let data = null;
          try {
            data = JSON.parse(msg.data.join("\n"));
          } catch {
            data = msg.data.join("\n");
          }
          onMessage({ id: msg.id, event: msg.event || "message", data });
        }
        msg = fresh();
        continue;
      }
      if (line.startsWith(":")) continue; // keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") msg.data.push(val);
      else if (field === "event") msg.event = val;
      else if (field === "id") msg.id = val;
    }
  }
}

function fresh() {
  return { id: null, event: "", data: [] };
}
