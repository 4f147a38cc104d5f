// What the dashboard shows from job data is text, never markup; a missing
// token gets the login prompt; a read-only token sees everything, its
// buttons are disabled, and the server refuses its changes anyway.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { claim, complete, enqueue, fail, launch, newPage, startServer, waitUntil } from "./support.mjs";

const TOKEN = "full-token-for-tests";
const READ = "read-only-token-for-tests";
const HOSTILE = `<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = 'img'">`;

let srv, browser;

before(async () => {
  srv = await startServer({ args: ["--token", TOKEN, "--read-token", READ], token: TOKEN });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

async function signIn(page, token) {
  await page.locator("form#login input#token").fill(token);
  await page.locator("form#login button[type=submit]").click();
}

test("a missing token gets the login prompt, a wrong one stays there, the right one shows the data", async () => {
  const page = await newPage(browser);
  await page.goto(`${srv.base}/`);
  await page.locator("form#login").waitFor();
  assert.equal(await page.locator("#queues").count(), 0, "no data without a token");
  await signIn(page, "wrong-token");
  await page.locator("form#login", { hasText: "refused" }).waitFor();
  await enqueue(srv.api, "visible", { payload: 1 });
  await signIn(page, TOKEN);
  await page.locator('#queues tr[data-queue="visible"]').waitFor();
  // The token is kept for the tab: a reload needs no new prompt.
  await page.reload();
  await page.locator('#queues tr[data-queue="visible"]').waitFor();
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test("hostile payload, key, error, result and worker name render as text", async () => {
  await srv.api("PUT", "/v1/queues/hostile", { concurrency: 3 });
  const job = await enqueue(srv.api, "hostile", { key: HOSTILE, payload: { html: HOSTILE } });
  const [lease] = await claim(srv.api, "hostile", HOSTILE);
  await fail(srv.api, lease, { message: HOSTILE }, false);
  const done = await enqueue(srv.api, "hostile", { payload: HOSTILE });
  const [ok] = await claim(srv.api, "hostile", "w");
  await complete(srv.api, ok, { html: HOSTILE });
  const page = await newPage(browser);
  await page.goto(`${srv.base}/`);
  await signIn(page, TOKEN);
  await page.goto(`${srv.base}/jobs/${done.id}`);
  await page.locator("#result").waitFor();
  assert.ok((await page.locator("#result").textContent()).includes("<script>"), "the result as text");
  for (const path of [`/jobs/${job.id}`, "/queues/hostile", `/queues/hostile/keys/${encodeURIComponent(HOSTILE)}`]) {
    await page.goto(srv.base + path);
    await page.locator("main").getByText(HOSTILE, { exact: false }).first().waitFor();
    assert.equal(await page.locator("main img").count(), 0, `${path}: no <img> from data`);
    assert.equal(await page.locator("main script").count(), 0, `${path}: no <script> from data`);
  }
  await page.goto(`${srv.base}/jobs/${job.id}`);
  await page.locator("#error").waitFor();
  for (const id of ["#payload", "#error"]) {
    assert.ok((await page.locator(id).textContent()).includes("<script>"), `${id} shows the markup as text`);
  }
  assert.ok((await page.locator(".facts-grid").textContent()).includes(HOSTILE), "worker and key as text");
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "nothing from the data ran");
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test("a read-only token sees everything, cannot act, and the server refuses it", async () => {
  await srv.api("PUT", "/v1/queues/guarded", {});
  const job = await enqueue(srv.api, "guarded", { payload: "keep me" });
  const page = await newPage(browser);
  await page.goto(`${srv.base}/queues/guarded`);
  await signIn(page, READ);
  await page.locator(`#jobs tr[data-job="${job.id}"]`).waitFor();
  await page.locator("#access", { hasText: "read-only" }).waitFor();
  await waitUntil("disabled actions", async () => {
    const buttons = page.locator("button.action");
    const n = await buttons.count();
    if (n === 0) return false;
    for (let i = 0; i < n; i++) if (!(await buttons.nth(i).isDisabled())) return false;
    return true;
  });
  await page.goto(`${srv.base}/jobs/${job.id}`);
  await page.locator('button.action[data-action="Cancel"]').waitFor();
  assert.ok(await page.locator('button.action[data-action="Cancel"]').isDisabled());
  // Even a request made by hand from the page is refused.
  const refused = await page.evaluate(async (token) => {
    const r = await fetch("/v1/queues/guarded", {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ paused: true }),
    });
    return { status: r.status, body: await r.json() };
  }, READ);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, "read_only");
  assert.equal((await srv.api("GET", "/v1/queues/guarded")).body.paused, false, "nothing changed");
  assert.equal((await srv.api("GET", `/v1/jobs/${job.id}`)).body.state, "queued");
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
