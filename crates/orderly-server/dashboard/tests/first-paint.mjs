// A measurement, not a test: how long the queue view takes to show its
// first page of jobs with N jobs waiting in the queue (default 1,000,000),
// filled through the batch API. Prints the median of 5 loads per view, in
// ms from navigation start until the rows are in the page.
//
//   node first-paint.mjs [N]        # from this directory, after `cargo build`

import { launch, newPage, startServer } from "./support.mjs";

const N = Number(process.argv[2] || 1_000_000);
const BATCH = 10_000;
const srv = await startServer();
try {
  await srv.api("PUT", "/v1/queues/big", { concurrency: 4 });
  const t0 = Date.now();
  for (let done = 0; done < N; done += BATCH) {
    const n = Math.min(BATCH, N - done);
    const jobs = Array.from({ length: n }, (_, i) => ({ key: `k${(done + i) % 1000}`, payload: { n: done + i } }));
    const r = await srv.api("POST", "/v1/queues/big/jobs/batch", { jobs });
    if (r.status !== 202) throw new Error(`batch: ${r.status} ${JSON.stringify(r.body)}`);
  }
  console.log(`filled ${N.toLocaleString("en-US")} jobs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const last = (await srv.api("GET", `/v1/queues/big/jobs?state=queued&after=${N - 2}&limit=1`)).body.jobs[0];

  const browser = await launch();
  const page = await newPage(browser);
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  async function measure(label, path, selector) {
    const times = [];
    for (let i = 0; i < 5; i++) {
      await page.goto(srv.base + path);
      await page.locator(selector).first().waitFor({ timeout: 60_000 });
      times.push(await page.evaluate(() => performance.now()));
    }
    console.log(`${label}: median ${median(times).toFixed(0)} ms (runs: ${times.map((t) => t.toFixed(0)).join(", ")})`);
  }
  await measure("queue view, first page of jobs", "/queues/big", "#jobs tr[data-job]");
  await measure("queue view, failed filter (empty)", "/queues/big?state=failed", "#jobs td.muted");
  await measure("overview", "/", '#queues tr[data-queue="big"]');
  await measure(`job view of the last job (position ${last.position})`, `/jobs/${last.id}`, "#waiting-on");
  if (page.problems.length) console.error(page.problems.join("\n"));
  await browser.close();
} finally {
  await srv.stop();
}
