// The dashboard mounted under a prefix by the embedded library: the
// seed_app example mounts Orderly's router at `/orderly` (build it with
// `cargo build -p orderly --example seed_app`; `cargo test` does). Its
// dashboard loads there, and follows the app's in-process jobs live.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { launch, newPage, waitUntil } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const APP = process.env.SEED_APP_BIN || resolve(here, "../../../../target/debug/examples/seed_app");

let child, dir, base, browser;

before(async () => {
  assert.ok(existsSync(APP), `${APP} is missing: run cargo build -p orderly --example seed_app`);
  const port = await new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => ok(p));
    });
  });
  dir = mkdtempSync(join(tmpdir(), "orderly-mount-"));
  base = `http://127.0.0.1:${port}`;
  child = spawn(APP, ["--listen", `127.0.0.1:${port}`, "--job-seconds", "0.5", "--data-dir", dir], { stdio: "ignore" });
  await waitUntil("the app to answer", async () => {
    try {
      return (await fetch(`${base}/orderly/healthz`)).ok;
    } catch {
      return false;
    }
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (child) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the dashboard works mounted under /orderly", async () => {
  const page = await newPage(browser);
  await page.goto(`${base}/orderly`);
  await page.locator("#queues").waitFor();
  const uid = "c880cc1b-dc27-4175-b616-29a69322d156";
  const r = await fetch(`${base}/request/${uid}`, { method: "POST" });
  assert.equal(r.status, 202);
  const row = page.locator('#queues tr[data-queue="requests"]');
  await row.waitFor();
  await row.locator("a").click();
  assert.equal(new URL(page.url()).pathname, "/orderly/queues/requests");
  await page.locator(`#jobs tr[data-job="${uid}"][data-state="succeeded"]`).waitFor();
  await page.locator(`#jobs a[href="/orderly/jobs/${uid}"]`).click();
  await page.locator("#job-state", { hasText: "succeeded" }).waitFor();
  // Home again: the mount's root, without a reload.
  await page.evaluate(() => (window.__sameDocument = true));
  await page.locator("a.brand").click();
  await page.locator('#queues tr[data-queue="requests"]').waitFor();
  assert.equal(new URL(page.url()).pathname, "/orderly");
  assert.ok(await page.evaluate(() => window.__sameDocument === true));
  assert.deepEqual(page.problems, []);
});
