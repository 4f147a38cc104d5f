// The API client: every call carries the token (kept in sessionStorage, for
// this tab only) as `Authorization: Bearer`, never as a cookie, so another
// site's page cannot make the browser act with it. Paths are relative to the
// dashboard's root, which is computed from this module's own URL: the
// dashboard works mounted under any prefix.

/** The dashboard's root URL (ends with "/"): where `/v1/…` lives too. */
export const ROOT = new URL("../../", import.meta.url);

const TOKEN_KEY = "orderly.token";

/** The token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `t` as this tab's token (null forgets it). */
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx, with the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What the last answer said the token may do: "full", "read-only" or null. */
export let access = null;
const accessListeners = new Set();

/** Calls `fn(access)` whenever it changes. */
export function onAccess(fn) {
  accessListeners.add(fn);
}

/** Calls `fn()` on every 401 (the login prompt). */
export let onUnauthorized = () => {};
export function setOnUnauthorized(fn) {
  onUnauthorized = fn;
}

/** The headers of every call. */
export function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** A URL under the root, with `query` (entries with null values left out). */
export function url(path, query = {}) {
  const u = new URL(path.replace(/^\//, ""), ROOT);
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, String(v));
  }
  return u;
}

/** Records the access level an answer reports. */
export function noteAccess(res) {
  const a = res.headers.get("orderly-access");
  if (a && a !== access) {
    access = a;
    for (const fn of accessListeners) fn(a);
  }
}

/** One call; resolves to the JSON body, rejects with ApiError. */
export async function call(method, path, { query, body, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url(path, query), init);
  noteAccess(res);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = data && data.error;
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, e ? e.code : "http_" + res.status, e ? e.message : text || res.statusText);
  }
  return data;
}

/** `encodeURIComponent` for a path segment. */
export const seg = encodeURIComponent;

export const get = (path, query, signal) => call("GET", path, { query, signal });
export const post = (path, body) => call("POST", path, { body: body ?? {} });
export const put = (path, body) => call("PUT", path, { body });
