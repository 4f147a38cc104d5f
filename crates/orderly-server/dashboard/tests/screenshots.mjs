// Saves the README's screenshots of the overview, queue and job views
// (docs/dashboard-*.png) from a real server with a little demo traffic.
//
//   node screenshots.mjs            # from this directory, after `cargo build`

import { resolve } from "node:path";
import { claim, complete, enqueue, fail, launch, newPage, startServer, waitUntil } from "./support.mjs";

const docs = resolve(import.meta.dirname, "../../../../docs");
const srv = await startServer();
const { api } = srv;
try {
  await api("PUT", "/v1/queues/emails", { concurrency: 2 });
  await api("PUT", "/v1/queues/reports", { concurrency: 1, max_attempts: 3, backoff: { initial_ms: 1, max_ms: 1, factor: 1 } });
  await api("PUT", "/v1/queues/thumbnails", { concurrency: 4, paused: true });
  const batch = (n, f) => Array.from({ length: n }, (_, i) => f(i));
  await api("POST", "/v1/queues/emails/jobs/batch", {
    jobs: batch(40, (i) => ({ key: `customer-${i % 5}`, payload: { to: `user${i}@example.com`, template: "welcome" } })),
  });
  await api("POST", "/v1/queues/reports/jobs/batch", { jobs: batch(6, (i) => ({ payload: { report: "monthly", month: i + 1 } })) });
  await api("POST", "/v1/queues/thumbnails/jobs/batch", { jobs: batch(12, (i) => ({ payload: { image: `img-${i}.png` } })) });
  // Some history: finished, failed and running jobs.
  for (let round = 0; round < 6; round++) {
    for (const l of await claim(api, "emails", `mailer-${round % 2}`, 2)) await complete(api, l, { sent: true });
  }
  // A report fails once (its retry waits out a 1 ms backoff), then runs again.
  const [r1] = await claim(api, "reports", "reporter-1");
  await fail(api, r1, { message: "database timeout after 30 s", query: "SELECT …" }, true);
  await waitUntil("the retry to be due", async () => (await api("GET", `/v1/jobs/${r1.job.id}`)).body.state === "queued");
  await claim(api, "emails", "mailer-0", 2);
  const [rep] = await claim(api, "reports", "reporter-2");
  await api("POST", `/v1/jobs/${rep.job.id}/heartbeat`, { token: rep.token, progress: { fraction: 0.6, step: "render" } });
  const waiting = (await api("GET", "/v1/queues/emails/jobs?state=queued&limit=20")).body.jobs;
  const target = waiting.find((j) => j.waiting_on && j.waiting_on.reason === "key") || waiting[0];

  const browser = await launch();
  const page = await newPage(browser, { width: 1360, height: 860 });
  await page.goto(srv.base + "/");
  await page.locator("#queues tbody tr").nth(2).waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${docs}/dashboard-overview.png` });
  // From seq 10 on: the last finished jobs, the running ones and the line.
  await page.setViewportSize({ width: 1360, height: 1000 });
  await page.goto(srv.base + "/queues/emails?after=9");
  await page.locator("#jobs tbody tr").nth(5).waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${docs}/dashboard-queue.png` });
  await page.setViewportSize({ width: 1360, height: 860 });
  await page.goto(srv.base + `/jobs/${rep.job.id}`);
  await waitUntil("job view", () => page.locator("#attempts li").count());
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${docs}/dashboard-job.png`, fullPage: true });
  await page.goto(srv.base + `/jobs/${target.id}`);
  await waitUntil("job view", () => page.locator("#waiting-on").count());
  await page.screenshot({ path: `${docs}/dashboard-job-waiting.png` });
  if (page.problems.length) console.error(page.problems.join("\n"));
  await browser.close();
  console.log("saved docs/dashboard-{overview,queue,job,job-waiting}.png");
} finally {
  await srv.stop();
}
