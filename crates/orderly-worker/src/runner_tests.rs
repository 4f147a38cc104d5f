//! The runner against a scripted in-memory source: slots, heartbeats,
//! lost leases, report resends and the batching reporter.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::*;
use crate::handler::Job;
use crate::source::{Beat, Report};

/// A scripted in-memory source.
#[derive(Default)]
struct Fake {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    ready: VecDeque<Lease>,
    beats: VecDeque<Result<Beat, SourceError>>,
    reports: VecDeque<Result<(), SourceError>>,
    beat_at: Vec<Instant>,
    reported: Vec<(String, Outcome, bool)>,
    claims: u32,
    /// Whole-request answers of `report_many`, in turn (default `Ok`:
    /// then each item is answered as `report` would).
    whole: VecDeque<Result<(), SourceError>>,
    /// The job ids of each `report_many` call.
    batches: Vec<Vec<String>>,
    /// The worker names of the `claim_next`s reported.
    next_workers: Vec<String>,
    /// How long a `report_many` call is in flight.
    batch_delay: Duration,
    /// `report_many` calls in flight now, and the most at once.
    in_flight: usize,
    max_in_flight: usize,
}

fn lease(i: i64, lease_ms: u64) -> Lease {
    Lease {
        job: Job {
            id: format!("j{i}"),
            queue: "q".into(),
            key: None,
            seq: i,
            attempt: 1,
            payload: json!({ "i": i }),
            timeout_ms: None,
        },
        token: format!("t{i}"),
        lease_ms,
    }
}

impl Fake {
    fn with(leases: Vec<Lease>) -> Arc<Self> {
        let f = Fake::default();
        f.state.lock().unwrap().ready = leases.into();
        Arc::new(f)
    }
    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl JobSource for Fake {
    async fn claim(&self, _: &str, p: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
        let got = {
            let mut s = self.st();
            s.claims += 1;
            s.ready.pop_front()
        };
        match got {
            Some(l) => Ok(vec![l]),
            None => {
                tokio::time::sleep(p.wait).await;
                Ok(Vec::new())
            }
        }
    }
    async fn heartbeat(&self, l: &Lease, _: Option<Value>) -> Result<Beat, SourceError> {
        let mut s = self.st();
        s.beat_at.push(Instant::now());
        s.beats.pop_front().unwrap_or(Ok(Beat {
            lease_ms: l.lease_ms,
            cancel_requested: false,
        }))
    }
    async fn report(
        &self,
        l: &Lease,
        o: &Outcome,
        next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError> {
        let mut s = self.st();
        s.reported
            .push((l.job.id.clone(), o.clone(), next.is_some()));
        if let Some(n) = next {
            s.next_workers.push(n.worker.clone());
        }
        s.reports.pop_front().unwrap_or(Ok(()))?;
        Ok(next.and_then(|_| s.ready.pop_front()).into_iter().collect())
    }
    async fn report_many(
        &self,
        reports: &[Report],
    ) -> Result<Vec<crate::source::ReportAnswer>, SourceError> {
        let delay = {
            let mut s = self.st();
            s.batches
                .push(reports.iter().map(|r| r.lease.job.id.clone()).collect());
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.batch_delay
        };
        tokio::time::sleep(delay).await;
        let whole = {
            let mut s = self.st();
            s.in_flight -= 1;
            s.whole.pop_front().unwrap_or(Ok(()))
        };
        whole?;
        let mut out = Vec::new();
        for r in reports {
            out.push(
                self.report(&r.lease, &r.outcome, r.claim_next.as_ref())
                    .await,
            );
        }
        Ok(out)
    }
}

/// Sleeps ten times the job's `i`, then succeeds.
struct Staggered;

#[async_trait::async_trait]
impl Handler for Staggered {
    async fn handle(&self, job: Job, _: JobContext) -> Result<Value, Failure> {
        let i = job.payload["i"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(10 * i)).await;
        Ok(job.payload)
    }
}

/// Sleeps `ms`, or stops on cancel and says why.
struct Sleeper {
    ms: u64,
    seen: Mutex<Vec<Option<CancelReason>>>,
}

fn sleeper(ms: u64) -> Arc<Sleeper> {
    Arc::new(Sleeper {
        ms,
        seen: Mutex::new(Vec::new()),
    })
}

#[async_trait::async_trait]
impl Handler for Sleeper {
    async fn handle(&self, job: Job, ctx: JobContext) -> Result<Value, Failure> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.ms)) => {
                self.seen.lock().unwrap().push(None);
                Ok(job.payload)
            }
            _ = ctx.cancelled() => {
                self.seen.lock().unwrap().push(ctx.cancel_reason());
                Err(Failure::message("stopped"))
            }
        }
    }
}

fn config(max_jobs: u64) -> RunnerConfig {
    let mut c = RunnerConfig::new("q", "w");
    c.max_jobs = Some(max_jobs);
    c.claim_wait = Duration::from_millis(100);
    c
}

/// A third of the lease, with a floor.
#[test]
fn heartbeat_every_third_of_the_lease() {
    assert_eq!(heartbeat_interval(30_000), Duration::from_secs(10));
    assert_eq!(heartbeat_interval(1_500), Duration::from_millis(500));
    assert_eq!(heartbeat_interval(0), MIN_HEARTBEAT);
}

/// Heartbeats follow the granted `lease_ms` (and a renewed one), whatever
/// the local wall clock says.
#[tokio::test(start_paused = true)]
async fn heartbeats_are_paced_from_lease_ms() {
    let src = Fake::with(vec![lease(1, 3_000)]);
    // After two beats the server renews for 600 ms: beats every 200 ms.
    {
        let mut s = src.st();
        for ms in [3_000, 600, 600, 600, 600, 600, 600, 600, 600] {
            s.beats.push_back(Ok(Beat {
                lease_ms: ms,
                cancel_requested: false,
            }));
        }
    }
    let t0 = Instant::now();
    let h = sleeper(3_500);
    let s = Runner::new(src.clone(), h, config(1)).run().await.unwrap();
    assert_eq!(s.handled, 1);
    let st = src.st();
    let at: Vec<u128> = st.beat_at.iter().map(|t| (*t - t0).as_millis()).collect();
    assert_eq!(&at[..3], &[1_000, 2_000, 2_200], "{at:?}");
    assert_eq!(at.len(), 9, "{at:?}");
    assert!(at.windows(2).skip(2).all(|w| w[1] - w[0] == 200), "{at:?}");
    assert_eq!(st.reported.len(), 1);
    assert!(matches!(st.reported[0].1, Outcome::Succeeded(_)));
}

/// A lost lease stops the handler and nothing is reported.
#[tokio::test(start_paused = true)]
async fn lost_lease_cancels_and_does_not_report() {
    let src = Fake::with(vec![lease(1, 900)]);
    src.st()
        .beats
        .push_back(Err(SourceError::LeaseLost("409".into())));
    let h = sleeper(60_000);
    Runner::new(src.clone(), h.clone(), config(1))
        .run()
        .await
        .unwrap();
    assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::LeaseLost)]);
    assert!(src.st().reported.is_empty());
}

/// A cancel request stops the handler; its failure is reported without retry.
#[tokio::test(start_paused = true)]
async fn cancel_request_cancels_and_reports_no_retry() {
    let src = Fake::with(vec![lease(1, 900)]);
    src.st().beats.push_back(Ok(Beat {
        lease_ms: 900,
        cancel_requested: true,
    }));
    let h = sleeper(60_000);
    Runner::new(src.clone(), h.clone(), config(1))
        .run()
        .await
        .unwrap();
    assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::Requested)]);
    let st = src.st();
    assert!(matches!(&st.reported[0].1, Outcome::Failed(f) if !f.retry));
}

/// A run past the job's `timeout_ms` is stopped and reported failed
/// (retryable, reason `timeout`), whatever the handler returned.
#[tokio::test(start_paused = true)]
async fn timeout_stops_the_run_and_reports_a_failure() {
    let mut l = lease(1, 30_000);
    l.job.timeout_ms = Some(500);
    let src = Fake::with(vec![l]);
    let h = sleeper(60_000);
    let t0 = Instant::now();
    Runner::new(src.clone(), h.clone(), config(1))
        .run()
        .await
        .unwrap();
    assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::TimedOut)]);
    assert!(t0.elapsed() < Duration::from_secs(60));
    let st = src.st();
    match &st.reported[0].1 {
        Outcome::Failed(f) => {
            assert!(f.retry);
            assert_eq!(f.error["reason"], "timeout");
        }
        o => panic!("reported {o:?}"),
    }
}

/// The abandon token stops a running job and reports nothing.
#[tokio::test(start_paused = true)]
async fn abandon_stops_running_jobs_without_reporting() {
    let src = Fake::with(vec![lease(1, 30_000), lease(2, 30_000)]);
    let h = sleeper(60_000);
    let r = Runner::new(src.clone(), h.clone(), RunnerConfig::new("q", "w"));
    let abandon = r.abandon_token();
    let run = tokio::spawn(r.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    abandon.cancel();
    assert_eq!(run.await.unwrap().unwrap().handled, 1);
    assert_eq!(*h.seen.lock().unwrap(), vec![Some(CancelReason::Shutdown)]);
    let st = src.st();
    assert!(st.reported.is_empty(), "{:?}", st.reported);
    assert_eq!(st.ready.len(), 1, "no claim after the abandon");
}

/// A report that may not have arrived is sent again; a refused one is not.
#[tokio::test(start_paused = true)]
async fn reports_are_resent_on_transient_errors_only() {
    let src = Fake::with(vec![lease(1, 30_000), lease(2, 30_000)]);
    {
        let mut s = src.st();
        s.reports
            .push_back(Err(SourceError::Unavailable("503".into())));
        s.reports
            .push_back(Err(SourceError::Unavailable("reset".into())));
        s.reports.push_back(Ok(()));
        s.reports.push_back(Err(SourceError::Refused("400".into())));
    }
    Runner::new(src.clone(), sleeper(1), config(2))
        .run()
        .await
        .unwrap();
    let ids: Vec<String> = src.st().reported.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids, ["j1", "j1", "j1", "j2"]);
    assert!(src.st().batches.is_empty(), "one slot reports on its own");
}

/// Several slots hand their reports to one reporter: what finishes while
/// a request is in flight goes in the next one, each with its slot's own
/// `claim_next`; every job is reported once and its next job runs.
#[tokio::test(start_paused = true)]
async fn reports_of_several_slots_are_batched() {
    let src = Fake::with((1..=12).map(|i| lease(i, 30_000)).collect());
    src.st().batch_delay = Duration::from_millis(100);
    let mut c = config(12);
    c.slots = 4;
    let s = Runner::new(src.clone(), Arc::new(Staggered), c)
        .run()
        .await
        .unwrap();
    assert_eq!(s.handled, 12);
    let st = src.st();
    let mut ids: Vec<&str> = st.reported.iter().map(|r| r.0.as_str()).collect();
    ids.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
    let want: Vec<String> = (1..=12).map(|i| format!("j{i}")).collect();
    assert_eq!(ids, want, "each job reported once");
    assert_eq!(st.batches.iter().map(Vec::len).sum::<usize>(), 12);
    assert!(st.batches.iter().any(|b| b.len() > 1), "{:?}", st.batches);
    // The first report went alone, at once: nothing to wait for.
    assert_eq!(st.batches[0], ["j1"]);
    for w in &st.next_workers {
        assert!(["w/0", "w/1", "w/2", "w/3"].contains(&w.as_str()), "{w}");
    }
    assert!(st.ready.is_empty());
    assert_eq!(st.max_in_flight, 2, "two requests in flight at most");
}

/// With two requests in flight (the default), a report that finishes while
/// one is out goes at once in the second; a transport error resends the
/// reports of its own batch only, first, once the backoff is over, with
/// what queued meanwhile; every job is reported once.
#[tokio::test(start_paused = true)]
async fn two_batches_in_flight_resend_their_own_reports() {
    let src = Fake::with((1..=6).map(|i| lease(i, 30_000)).collect());
    {
        let mut s = src.st();
        s.batch_delay = Duration::from_millis(100);
        // The first request to come back ([j1]) is lost; the rest arrive.
        s.whole = VecDeque::from([Err(SourceError::Unavailable("reset".into()))]);
    }
    let mut c = config(6);
    c.slots = 3;
    assert_eq!(c.reports_in_flight, 2, "the default");
    let s = Runner::new(src.clone(), Arc::new(Staggered), c)
        .run()
        .await
        .unwrap();
    assert_eq!(s.handled, 6);
    let st = src.st();
    assert_eq!(st.max_in_flight, 2);
    // j1 (done at 10 ms) and j2 (20 ms) each went at once, alone; j3
    // (30 ms) waited for a free request; [j1] came back lost at 110 ms and
    // j1 was sent again after the 200 ms backoff, ahead of j3 and of j4
    // (j2's next job, done at 160 ms).
    assert_eq!(st.batches[0], ["j1"]);
    assert_eq!(st.batches[1], ["j2"]);
    assert_eq!(st.batches[2], ["j1", "j3", "j4"]);
    let mut ids: Vec<&str> = st.reported.iter().map(|r| r.0.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["j1", "j2", "j3", "j4", "j5", "j6"], "each once");
}

/// In a batch, a transport error resends every report; an item that may
/// not have arrived is resent alone; an item refused is final for it only.
#[tokio::test(start_paused = true)]
async fn batch_resends_per_report() {
    let src = Fake::with((1..=3).map(|i| lease(i, 30_000)).collect());
    {
        let mut s = src.st();
        s.batch_delay = Duration::from_millis(100);
        // [j1] · [j2, j3] lost · [j2, j3]: j2 refused, j3 not delivered · [j3]
        s.whole = VecDeque::from([
            Ok(()),
            Err(SourceError::Unavailable("reset".into())),
            Ok(()),
            Ok(()),
        ]);
        s.reports = VecDeque::from([
            Ok(()),
            Err(SourceError::Refused("400".into())),
            Err(SourceError::Unavailable("503".into())),
            Ok(()),
        ]);
    }
    let mut c = config(3);
    c.slots = 3;
    // One request at a time: the sequence below is that reporter's.
    c.reports_in_flight = 1;
    let s = Runner::new(src.clone(), Arc::new(Staggered), c)
        .run()
        .await
        .unwrap();
    assert_eq!(s.handled, 3);
    let st = src.st();
    assert_eq!(
        st.batches,
        [vec!["j1"], vec!["j2", "j3"], vec!["j2", "j3"], vec!["j3"]]
    );
    let ids: Vec<&str> = st.reported.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["j1", "j2", "j3", "j3"]);
}

/// A report given up after `report_tries` sends is answered with nothing
/// and its slot goes on.
#[tokio::test(start_paused = true)]
async fn batch_gives_a_report_up_after_its_tries() {
    let src = Fake::with((1..=2).map(|i| lease(i, 30_000)).collect());
    src.st().whole = (0..10)
        .map(|_| Err(SourceError::Unavailable("down".into())))
        .collect();
    let mut c = config(2);
    c.slots = 2;
    c.report_tries = 3;
    let s = Runner::new(src.clone(), Arc::new(Staggered), c)
        .run()
        .await
        .unwrap();
    assert_eq!(s.handled, 2);
    let st = src.st();
    let sends = |id: &str| {
        st.batches
            .iter()
            .filter(|b| b.iter().any(|x| x == id))
            .count()
    };
    assert_eq!((sends("j1"), sends("j2")), (3, 3), "{:?}", st.batches);
    assert!(st.reported.is_empty());
}

/// Each report claims the next job; `max_jobs` is never exceeded and the
/// last report asks for nothing.
#[tokio::test(start_paused = true)]
async fn claim_next_chains_jobs_up_to_max_jobs() {
    let src = Fake::with((1..=5).map(|i| lease(i, 30_000)).collect());
    let mut c = config(3);
    c.slots = 2;
    let s = Runner::new(src.clone(), sleeper(10), c)
        .run()
        .await
        .unwrap();
    assert_eq!(s.handled, 3);
    let st = src.st();
    assert_eq!(st.reported.len(), 3);
    assert_eq!(st.ready.len(), 2, "took more than max_jobs");
    // Every job came from a fresh claim or a claim_next, none beyond the three.
    assert_eq!(
        st.reported.iter().filter(|r| r.2).count() as u32 + st.claims,
        3
    );
}

/// The stop token ends a runner waiting for work.
#[tokio::test(start_paused = true)]
async fn stop_token_ends_an_idle_runner() {
    let src = Fake::with(Vec::new());
    let mut c = RunnerConfig::new("q", "w");
    c.slots = 3;
    let r = Runner::new(src, sleeper(1), c);
    let stop = r.stop_token();
    let run = tokio::spawn(r.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    assert_eq!(run.await.unwrap().unwrap().handled, 0);
}
