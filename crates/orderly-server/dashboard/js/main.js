// The dashboard's entry point: routes the page's URL to a view, keeps links
// inside the page (history.pushState, no reload), and shows the login prompt
// when the server asks for a token (401).
//
// URLs (relative to the dashboard's root, which may be a mount prefix):
//   ""                     overview of every queue
//   queues/{q}             one queue: its jobs in seq order, its start log
//   queues/{q}/keys/{k}    one key's line in a queue
//   jobs/{id}              one job
// A view is `render(main, params, ctx)` returning a function that stops it.

import { ApiError, onAccess, ROOT, setOnUnauthorized, setToken, token } from "./api.js";
import { h, replace } from "./dom.js";
import { showState } from "./live.js";
import * as overview from "./views/overview.js";
import * as queue from "./views/queue.js";
import * as key from "./views/key.js";
import * as job from "./views/job.js";

const main = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
let stop = () => {};
let prompting = false;

/** The overview's URL: the root, without its slash inside a mount
 * (`nest("/orderly", …)` answers `/orderly`, not `/orderly/`). */
const HOME = ROOT.pathname === "/" ? "/" : ROOT.pathname.slice(0, -1);

/** The href of a dashboard path ("queues/q"), under the root. */
export function link(path) {
  return path === "" ? HOME : new URL(path, ROOT).pathname;
}

/** True when `pathname` is one of the dashboard's. */
function ours(pathname) {
  return pathname === HOME || pathname.startsWith(ROOT.pathname);
}

/** The view and its parameters for the current location. */
function route() {
  const rest = location.pathname.startsWith(ROOT.pathname)
    ? location.pathname.slice(ROOT.pathname.length)
    : "";
  const parts = rest.split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts.length === 0) return [overview, {}];
  if (parts[0] === "queues" && parts.length === 2) return [queue, { queue: parts[1] }];
  if (parts[0] === "queues" && parts.length === 4 && parts[2] === "keys")
    return [key, { queue: parts[1], key: parts[3] }];
  if (parts[0] === "jobs" && parts.length === 2) return [job, { id: parts[1] }];
  return [null, {}];
}

const ctx = {
  link,
  /** Shows the view at `href` (a path from `link`, with its query). */
  go(href) {
    history.pushState(null, "", href);
    render();
  },
  /** Sets the breadcrumbs: [[label, path], …, label]. */
  crumbs(items) {
    replace(
      crumbs,
      items.map((it, i) => [
        i ? h("span", { class: "sep" }, "›") : null,
        Array.isArray(it) ? h("a", { href: link(it[1]) }, it[0]) : h("span", {}, it),
      ]),
    );
  },
  /** Shows an error in place of the view (the login prompt for 401). */
  fail(e) {
    if (e instanceof ApiError && e.status === 401) return login(e.message);
    replace(main, h("div", { class: "error-box" }, h("h2", {}, "Cannot show this"), h("p", {}, String(e.message || e))));
  },
};

function render() {
  stop();
  stop = () => {};
  prompting = false;
  const [view, params] = route();
  main.replaceChildren();
  if (!view) {
    ctx.crumbs(["not found"]);
    replace(main, h("p", {}, "No such page. "), h("a", { href: link("") }, "Back to the overview"));
    return;
  }
  try {
    stop = view.render(main, params, ctx) || (() => {});
  } catch (e) {
    ctx.fail(e);
  }
}

/** The login prompt: the token is kept for this tab only (sessionStorage). */
function login(message) {
  if (prompting) return;
  prompting = true;
  stop();
  stop = () => {};
  showState("stopped");
  ctx.crumbs(["sign in"]);
  const input = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "current-password",
    placeholder: "token",
    required: true,
  });
  const form = h(
    "form",
    { class: "login", id: "login" },
    h("h2", {}, "This server needs a token"),
    h("p", { class: "muted" }, token() ? `The token was refused: ${message}` : "Give the server's --token (or its --read-token, to look without changing anything). It is kept in this tab only and sent as an Authorization header."),
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    prompting = false;
    render();
  });
  replace(main, form);
  input.focus();
}

setOnUnauthorized(() => login("the server answered 401"));

// Links inside the dashboard navigate without a reload.
document.addEventListener("click", (ev) => {
  const a = ev.target.closest && ev.target.closest("a[href]");
  if (!a || a.target || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || !ours(u.pathname)) return;
  ev.preventDefault();
  if (u.pathname + u.search !== location.pathname + location.search) {
    history.pushState(null, "", u.pathname + u.search);
  }
  render();
});
window.addEventListener("popstate", render);

document.querySelector("a.brand").href = HOME;
const accessEl = document.getElementById("access");
const logout = document.getElementById("logout");
onAccess((a) => {
  accessEl.textContent = a === "read-only" ? "read-only token" : "";
  accessEl.hidden = a !== "read-only";
  document.body.classList.toggle("read-only", a === "read-only");
});
logout.hidden = !token();
logout.addEventListener("click", () => {
  setToken(null);
  location.reload();
});
render();
