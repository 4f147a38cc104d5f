// Shared fixture of the browser tests: a real `orderly serve` on a free
// loopback port over a fresh data directory, a small API client (the
// worker side of the tests: enqueue, claim, complete, fail), and headless
// Debian chromium through playwright-core, kept off the network.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

/** The server binary: $ORDERLY_BIN, or the workspace's debug build. */
export const BIN = process.env.ORDERLY_BIN || resolve(here, "../../../../target/debug/orderly");

/** The browser: $CHROMIUM, or Debian's package. */
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Polls `cond` every 50 ms until it is truthy or `ms` pass (then throws `what`). */
export async function waitUntil(what, cond, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `orderly serve` with `args` (e.g. ["--token", "t"]). Returns
 * {base, api, stop}; `api(method, path, body, token)` answers {status, body}.
 */
export async function startServer({ args = [], token = null } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "orderly-dash-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir, "--durability", "none", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((r) => child.once("exit", r));
  const api = async (method, path, body, tok = token) => {
    const headers = { "content-type": "application/json" };
    if (tok) headers.authorization = `Bearer ${tok}`;
    const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  try {
    await waitUntil("the server to answer /healthz", async () => {
      if (child.exitCode !== null) throw new Error(`orderly serve exited: ${stderr}`);
      try {
        return (await fetch(`${base}/healthz`)).ok;
      } catch {
        return false;
      }
    });
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  return { base, api, stop, dir, stderr: () => stderr };
}

/** The worker side: claim up to `max` leases of `queue` now. */
export async function claim(api, queue, worker = "test-worker", max = 1) {
  const r = await api("POST", `/v1/queues/${encodeURIComponent(queue)}/claim`, { worker, max, wait_ms: 0 });
  if (r.status !== 200) throw new Error(`claim: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.leases;
}

/** Reports success of a lease. */
export async function complete(api, lease, result = { ok: true }) {
  const r = await api("POST", `/v1/jobs/${encodeURIComponent(lease.job.id)}/complete`, { token: lease.token, result });
  if (r.status !== 200) throw new Error(`complete: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Reports failure of a lease (no retry unless `retry`). */
export async function fail(api, lease, error, retry = false) {
  const r = await api("POST", `/v1/jobs/${encodeURIComponent(lease.job.id)}/fail`, { token: lease.token, error, retry });
  if (r.status !== 200) throw new Error(`fail: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Enqueues one job; returns it. */
export async function enqueue(api, queue, job) {
  const r = await api("POST", `/v1/queues/${encodeURIComponent(queue)}/jobs`, job);
  if (r.status !== 202) throw new Error(`enqueue: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Flags that keep chromium to the page under test: no network of its own. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A headless chromium (playwright gives each launch a fresh profile directory). */
export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * A new page that fails the test on any script error or CSP violation
 * (collected in `page.problems`).
 */
export async function newPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  return page;
}
