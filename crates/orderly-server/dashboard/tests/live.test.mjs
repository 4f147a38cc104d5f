// The dashboard follows the server live, without a reload: a job appears
// and moves queued → running → succeeded, `waiting_on` changes when the job
// ahead finishes, and the actions (pause, cancel, retry) are confirmed,
// carried out by the server, and reflected.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { claim, complete, enqueue, fail, launch, newPage, startServer, waitUntil } from "./support.mjs";

let srv, browser, page;

before(async () => {
  srv = await startServer();
  browser = await launch();
  page = await newPage(browser);
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  assert.deepEqual(page?.problems ?? [], [], "no script errors or CSP violations");
});

/** Marks the document; `sameDocument()` is true while no reload happened. */
async function mark() {
  await page.evaluate(() => (window.__sameDocument = true));
}
const sameDocument = () => page.evaluate(() => window.__sameDocument === true);

const rowState = (id) => page.locator(`#jobs tr[data-job="${id}"]`).getAttribute("data-state");

test("a job appears and moves queued → running → succeeded without a reload", async () => {
  await srv.api("PUT", "/v1/queues/life", {});
  await page.goto(`${srv.base}/queues/life`);
  await page.locator("#jobs").getByText("no jobs").waitFor();
  await page.locator('#live[data-state="live"]').waitFor();
  await mark();

  const job = await enqueue(srv.api, "life", { payload: { n: 1 } });
  await waitUntil("the job to appear queued", async () => (await page.locator(`#jobs tr[data-job="${job.id}"]`).count()) && (await rowState(job.id)) === "queued");
  const [lease] = await claim(srv.api, "life", "browser-test-worker");
  await waitUntil("the job to show running", async () => (await rowState(job.id)) === "running");
  await page.locator("#line .slot.running").filter({ hasText: `#${job.seq}` }).waitFor();
  await complete(srv.api, lease, { done: true });
  await waitUntil("the job to show succeeded", async () => (await rowState(job.id)) === "succeeded");
  assert.ok(await sameDocument(), "the page was not reloaded");

  // The same job on its own page, and the overview's counts.
  await page.locator(`#jobs a[href$="/jobs/${job.id}"]`).first().click();
  await page.locator("#job-state", { hasText: "succeeded" }).waitFor();
  assert.ok(await sameDocument(), "navigating inside the dashboard does not reload");
  assert.match(await page.locator("#result").textContent(), /"done": true/);
  assert.match(await page.locator("#attempts").textContent(), /browser-test-worker/);
  await page.locator("a.brand").click();
  await page.locator('#queues tr[data-queue="life"] td[data-state="succeeded"]', { hasText: "1" }).waitFor();
});

test("the queue view pages by cursor and filters by state", async () => {
  const jobs = Array.from({ length: 60 }, (_, i) => ({ payload: { i } }));
  const r = await srv.api("POST", "/v1/queues/paged/jobs/batch", { jobs });
  assert.equal(r.status, 202);
  const [lease] = await claim(srv.api, "paged", "pager");
  await complete(srv.api, lease);
  await page.goto(`${srv.base}/queues/paged`);
  await waitUntil("a full first page", async () => (await page.locator("#jobs tr[data-job]").count()) === 50);
  const seqs = async () => page.locator("#jobs tr[data-job] td:first-child").allTextContents();
  const first = await seqs();
  assert.deepEqual(first.map(Number), Array.from({ length: 50 }, (_, i) => r.body.jobs[0].seq + i), "seq order");
  await page.locator("#next-page").click();
  await waitUntil("the second page", async () => (await page.locator("#jobs tr[data-job]").count()) === 10);
  assert.equal(Number((await seqs())[0]), r.body.jobs[50].seq, "the page after the cursor");
  assert.match(page.url(), /after=/);
  await page.goBack();
  await waitUntil("the first page again", async () => (await page.locator("#jobs tr[data-job]").count()) === 50);
  await page.locator("#state-filter").selectOption("succeeded");
  await waitUntil("only the succeeded job", async () => (await page.locator("#jobs tr[data-job]").count()) === 1);
  assert.equal(await page.locator("#jobs tr[data-job]").getAttribute("data-job"), lease.job.id);
  assert.match(page.url(), /state=succeeded/);
  // The positions of the waiting ones count from 0, in seq order.
  await page.locator("#state-filter").selectOption("queued");
  await waitUntil("the queued ones", async () => (await page.locator("#jobs tr[data-job]").count()) === 50);
  assert.equal(await page.locator("#jobs tr[data-job] td:nth-child(4)").first().textContent(), "0");
});

test("waiting_on changes when the job ahead of it finishes", async () => {
  await srv.api("PUT", "/v1/queues/why", { concurrency: 5 });
  const first = await enqueue(srv.api, "why", { key: "acct-1", payload: { step: 1 } });
  const second = await enqueue(srv.api, "why", { key: "acct-1", payload: { step: 2 } });
  const [lease] = await claim(srv.api, "why", "w1");
  assert.equal(lease.job.id, first.id);
  await page.goto(`${srv.base}/jobs/${second.id}`);
  await page.locator("#waiting-on", { hasText: "an earlier job of its key must finish first" }).waitFor();
  assert.equal(await page.locator("#waits-for").textContent(), first.id, "it names the job it waits on");
  assert.match(await page.locator("#eta").textContent(), /estimate/);
  await mark();
  await complete(srv.api, lease);
  await waitUntil("waiting_on to change", async () => {
    const t = await page.locator("#waiting-on").textContent().catch(() => "");
    return t && !t.includes("earlier job of its key");
  });
  assert.equal(await page.locator("#waits-for").count(), 0, "no longer waits on a job");
  assert.ok(await sameDocument());
  // The key's line shows only the second job now.
  await page.goto(`${srv.base}/queues/why/keys/acct-1`);
  await page.locator(`#key-line li[data-job="${second.id}"]`).waitFor();
  assert.equal(await page.locator("#key-line li").count(), 1);
});

/** Clicks the action button `label` and confirms in the dialog. */
async function act(label) {
  await page.locator(`button.action[data-action="${label}"]`).click();
  await page.locator("dialog.confirm[open] button[value=ok]").click();
}

test("pause stops claims and resume lets them go on; concurrency changes", async () => {
  await srv.api("PUT", "/v1/queues/pausable", {});
  await enqueue(srv.api, "pausable", { payload: 1 });
  await page.goto(`${srv.base}/queues/pausable`);
  // Cancelling the dialog does nothing.
  await page.locator('button.action[data-action="Pause"]').click();
  await page.locator("dialog.confirm[open] button[value=cancel]").click();
  assert.equal((await srv.api("GET", "/v1/queues/pausable")).body.paused, false, "not confirmed: not paused");
  await act("Pause");
  await page.locator("#paused").waitFor();
  assert.equal((await srv.api("GET", "/v1/queues/pausable")).body.paused, true);
  assert.deepEqual(await claim(srv.api, "pausable"), [], "a paused queue hands out nothing");
  await act("Resume");
  await page.locator('button.action[data-action="Pause"]').waitFor();
  assert.equal((await claim(srv.api, "pausable")).length, 1, "resumed: claims go on");
  await page.locator("#concurrency").fill("7");
  await act("Set concurrency");
  await waitUntil("concurrency 7", async () => (await srv.api("GET", "/v1/queues/pausable")).body.concurrency === 7);
  await page.locator(".queue-head", { hasText: "concurrency 7" }).waitFor();
});

test("cancel a waiting job, retry a failed one", async () => {
  const victim = await enqueue(srv.api, "acts", { payload: "cancel me" });
  await page.goto(`${srv.base}/jobs/${victim.id}`);
  await page.locator("#job-state", { hasText: "queued" }).waitFor();
  await act("Cancel");
  await page.locator("#job-state", { hasText: "cancelled" }).waitFor();
  assert.equal((await srv.api("GET", `/v1/jobs/${victim.id}`)).body.state, "cancelled");

  const doomed = await enqueue(srv.api, "acts2", { payload: "fail me" });
  const [lease] = await claim(srv.api, "acts2", "w-fail");
  await fail(srv.api, lease, { message: "disk on fire" }, false);
  await page.goto(`${srv.base}/jobs/${doomed.id}`);
  await page.locator("#job-state", { hasText: "failed" }).waitFor();
  assert.match(await page.locator("#error").textContent(), /disk on fire/);
  assert.match(await page.locator("#attempts").textContent(), /disk on fire/, "the attempt's error");
  await act("Retry");
  await page.locator("#job-state", { hasText: "queued" }).waitFor();
  assert.equal((await srv.api("GET", `/v1/jobs/${doomed.id}`)).body.state, "queued");
  // A second run fails again: both attempts' errors are shown.
  const [again] = await claim(srv.api, "acts2", "w-fail-2");
  await fail(srv.api, again, { message: "still on fire" }, false);
  await page.locator("#job-state", { hasText: "failed" }).waitFor();
  await waitUntil("both attempts", async () => (await page.locator("#attempts li").count()) === 2);
  const attempts = await page.locator("#attempts").textContent();
  assert.match(attempts, /disk on fire/);
  assert.match(attempts, /still on fire/);
});
