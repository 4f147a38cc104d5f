// Live updates for the views: one `/v1/events` subscription per view
// (filtered by queue when the view is about one), and a debounce so a burst
// of events (a batch of 10,000 enqueues) costs one refresh of what the view
// shows, never a re-read of everything.

import { subscribe } from "./sse.js";

const liveEl = () => document.getElementById("live");

/** Shows the stream's state in the header. */
export function showState(s) {
  const el = liveEl();
  if (!el) return;
  el.textContent = s === "live" ? "live" : s === "reconnecting" ? "reconnecting…" : "not live";
  el.dataset.state = s;
}

/**
 * Subscribes with `query`; `onEvent(kind, data)` for each event. Returns
 * the stop function; the router calls it when the view changes.
 */
export function live(query, onEvent) {
  return subscribe(query, onEvent, showState);
}

/**
 * A function that runs `fn` at most once per `ms`, and once more after the
 * last call of a burst (trailing), never two at once.
 */
export function debounced(fn, ms = 250) {
  let timer = null;
  let running = false;
  let again = false;
  const fire = async () => {
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } catch (e) {
      console.warn("refresh failed", e);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === null) timer = setTimeout(fire, ms);
  };
  return schedule;
}
