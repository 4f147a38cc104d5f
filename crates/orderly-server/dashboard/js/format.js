// Words for numbers and times: ages, durations, why a job waits, when it
// likely starts. Pure functions of their arguments (and the clock).

/** "3 s", "4 min", "2 h 5 min", "3 d" for a duration in ms. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60 ? (s % 60) + " s" : ""}`.trim();
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${m % 60 ? (m % 60) + " min" : ""}`.trim();
  return `${Math.floor(hr / 24)} d`;
}

/** How long ago an RFC 3339 time was ("5 s ago"), or "in 5 s" for a future one. */
export function ago(iso, now = Date.now()) {
  if (!iso) return "–";
  const d = now - Date.parse(iso);
  return d >= 0 ? `${duration(d)} ago` : `in ${duration(-d)}`;
}

/** The age of a job: since it was enqueued. */
export function age(iso, now = Date.now()) {
  if (!iso) return "–";
  return duration(Math.max(0, now - Date.parse(iso)));
}

/** A local, readable time with the RFC 3339 one in its title. */
export function time(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

/** Why a waiting job has not started, in words (contract section 4.1). */
export function waitingOn(w) {
  if (!w) return "";
  switch (w.reason) {
    case "scheduled":
      return `scheduled: waits until ${time(w.until)} (${ago(w.until)})`;
    case "retry_backoff":
      return `retry backoff: runs again ${ago(w.until)}`;
    case "key":
      return "an earlier job of its key must finish first";
    case "concurrency":
      return `the queue already runs ${w.limit} job${w.limit === 1 ? "" : "s"} (its concurrency)`;
    case "line":
      return "earlier jobs are being handed out first";
    case "paused":
      return "the queue is paused";
    case "no_worker":
      return "no worker has asked for work recently";
    default:
      return w.reason;
  }
}

/** When a waiting job likely starts, in words, labelled an estimate. */
export function eta(e, now = Date.now()) {
  if (!e) return "no estimate yet (nothing measured to estimate from)";
  const a = Date.parse(e.earliest) - now;
  const b = Date.parse(e.latest) - now;
  const w = (ms) => (ms <= 0 ? "now" : `in ${duration(ms)}`);
  return a === b ? `estimate: ${w(a)}` : `estimate: between ${w(a)} and ${w(b)}`;
}

/** A number with thousands separators. */
export function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

/** A progress value as a fraction in [0, 1], or null when it is not one. */
export function fraction(progress) {
  if (progress === null || progress === undefined) return null;
  let v = progress;
  if (typeof v === "object") v = v.fraction ?? v.progress ?? (typeof v.percent === "number" ? v.percent / 100 : null);
  if (typeof v !== "number" || Number.isNaN(v)) return null;
  if (v > 1 && v <= 100) v /= 100;
  return Math.min(1, Math.max(0, v));
}

/** States in the order the dashboard lists them. */
export const STATES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled"];
