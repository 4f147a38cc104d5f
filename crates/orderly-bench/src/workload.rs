//! Which workloads run (`--only`), in what order, and the figures each
//! leaves.

use std::time::Duration;

use anyhow::bail;
use orderly_client::Client;

use crate::backlog::Backlog;
use crate::enqueue::BATCH;
use crate::server::LocalServer;
use crate::stats::{thousands, Fifo};
use crate::{backlog, drain, embedded, enqueue, latency, Launch, Plan};

/// Concurrency of the second drain (the peers' c = 16).
pub(crate) const DRAIN_HIGH_C: u32 = 16;

/// One workload of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// W1: single awaited enqueues, one client.
    SingleC1,
    /// W1: single awaited enqueues, `--clients` concurrent clients.
    SingleMany,
    /// W1: batches of 1,000.
    Bulk,
    /// W1 drain + W2 at c = 1.
    DrainC1,
    /// W1 drain + W2 at c = 16.
    DrainC16,
    /// W1 drain in-process (the embedded library's handlers) at c = 1.
    EmbeddedC1,
    /// W1 drain in-process at c = 16.
    EmbeddedC16,
    /// W3.
    Latency,
    /// W4: the costs at a backlog of `--backlog` waiting jobs against an
    /// empty queue (not in `all`: its fill takes a while).
    Backlog,
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 9] = [
        Workload::SingleC1,
        Workload::SingleMany,
        Workload::Bulk,
        Workload::DrainC1,
        Workload::DrainC16,
        Workload::EmbeddedC1,
        Workload::EmbeddedC16,
        Workload::Latency,
        Workload::Backlog,
    ];

    /// Name used by `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SingleC1 => "single-c1",
            Workload::SingleMany => "single-many",
            Workload::Bulk => "bulk",
            Workload::DrainC1 => "drain-c1",
            Workload::DrainC16 => "drain-c16",
            Workload::EmbeddedC1 => "embedded-c1",
            Workload::EmbeddedC16 => "embedded-c16",
            Workload::Latency => "latency",
            Workload::Backlog => "w4",
        }
    }

    /// Whether it measures the server (the in-process drains open their own
    /// store instead).
    pub fn uses_server(self) -> bool {
        !matches!(self, Workload::EmbeddedC1 | Workload::EmbeddedC16)
    }
}

/// Parses `--only` (names and groups: single-c1, single-many, bulk,
/// drain-c1, drain-c16, embedded-c1, embedded-c16, latency, w4 (= backlog);
/// enqueue, drain (= w2), embedded (= in-process), w1, w3, all) into the
/// workloads to run, in their canonical order. `drain` and `w1` are the HTTP
/// workloads of the peers' comparison; `all` adds the in-process drains and
/// W3, not W4 (its fill of a million jobs is asked for by name).
pub fn parse_only(list: &[String]) -> anyhow::Result<Vec<Workload>> {
    use Workload::*;
    let mut chosen: Vec<Workload> = Vec::new();
    for raw in list {
        let item = raw.trim().to_ascii_lowercase();
        let group: &[Workload] = match item.as_str() {
            "" => continue,
            "all" => &Workload::ALL[..8],
            "w4" | "backlog" => &[Backlog],
            "w1" => &[SingleC1, SingleMany, Bulk, DrainC1, DrainC16],
            "enqueue" => &[SingleC1, SingleMany, Bulk],
            "drain" | "w2" => &[DrainC1, DrainC16],
            "w3" | "latency" => &[Latency],
            "single-c1" => &[SingleC1],
            "single-many" | "single-c32" | "single-clients" => &[SingleMany],
            "bulk" => &[Bulk],
            "drain-c1" => &[DrainC1],
            "drain-c16" => &[DrainC16],
            "embedded" | "in-process" => &[EmbeddedC1, EmbeddedC16],
            "embedded-c1" => &[EmbeddedC1],
            "embedded-c16" => &[EmbeddedC16],
            _ => bail!(
                "--only: unknown workload {raw:?}; use {} (= backlog) or the groups enqueue, drain (w2), embedded (in-process), w1, w3, all",
                Workload::ALL.map(Workload::name).join(", ")
            ),
        };
        chosen.extend_from_slice(group);
    }
    let selected: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| chosen.contains(w))
        .collect();
    if selected.is_empty() {
        bail!("--only selects no workload");
    }
    Ok(selected)
}

/// Figures of every workload that ran.
#[derive(Default)]
pub(crate) struct Results {
    /// W1 single, one client.
    pub(crate) single_c1: Option<Enqueue>,
    /// W1 single, many clients.
    pub(crate) single_many: Option<Enqueue>,
    /// W1 bulk.
    pub(crate) bulk: Option<Enqueue>,
    /// W1 drain + W2 at c = 1.
    pub(crate) drain_c1: Option<Drain>,
    /// W1 drain + W2 at c = 16.
    pub(crate) drain_c16: Option<Drain>,
    /// W1 drain in-process at c = 1.
    pub(crate) embedded_c1: Option<Drain>,
    /// W1 drain in-process at c = 16.
    pub(crate) embedded_c16: Option<Drain>,
    /// W3.
    pub(crate) latency: Option<Latency>,
    /// W4.
    pub(crate) backlog: Option<Backlog>,
}

/// An enqueue workload's figure.
pub(crate) struct Enqueue {
    /// Jobs per second.
    pub(crate) per_s: f64,
    /// Wall time.
    pub(crate) took: Duration,
}

/// A drain's figures (W1 drain and W2), over HTTP or in-process.
pub(crate) struct Drain {
    /// Concurrency (queue and workers).
    pub(crate) c: u32,
    /// Jobs/s of the batch fill.
    pub(crate) fill_per_s: f64,
    /// N / (last end − first start).
    pub(crate) per_s: f64,
    /// From first start to last end.
    pub(crate) span: Duration,
    /// Handler runs.
    pub(crate) handled: u64,
    /// FIFO of the start order the workers saw.
    pub(crate) client: Fifo,
    /// FIFO of the start order the server recorded.
    pub(crate) server: Fifo,
    /// Jobs of the queue the server never started.
    pub(crate) never_started: u64,
    /// Jobs of the queue not `succeeded` after the drain.
    pub(crate) not_succeeded: u64,
}

/// W3 figures, in milliseconds.
pub(crate) struct Latency {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Largest.
    pub(crate) max: f64,
    /// Samples measured.
    pub(crate) samples: usize,
    /// Samples whose job did not start within the sample timeout.
    pub(crate) lost: u64,
}

/// Runs the selected workloads in order, with a line on stderr for each.
/// With `restart`, every workload of the server after the first gets a
/// fresh server in `local` (the previous one is stopped first).
pub(crate) async fn run_workloads(
    plan: &mut Plan,
    selected: &[Workload],
    local: &mut Option<LocalServer>,
    restart: Option<&Launch>,
) -> anyhow::Result<Results> {
    let mut r = Results::default();
    let total = selected.len();
    for (k, w) in selected.iter().enumerate() {
        if let (Some(launch), true) = (restart, k > 0 && w.uses_server()) {
            if let Some(old) = local.take() {
                old.stop().await;
            }
            let fresh = LocalServer::start(
                &launch.exe,
                launch.durability,
                launch.token.as_deref(),
                launch.database.as_ref().map(|d| (d, plan.tag.as_str())),
            )
            .await?;
            plan.client = Client::new(fresh.url().to_string(), launch.token.clone());
            *local = Some(fresh);
        }
        let plan: &Plan = plan;
        let step = format!("[{}/{total}]", k + 1);
        let n = plan.n;
        match w {
            Workload::SingleC1 => {
                eprintln!("{step} W1 enqueue, single, 1 client: {n} jobs …");
                let e = enqueue::enqueue_single(plan, &plan.queue("w1-single-c1"), 1).await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.single_c1 = Some(e);
            }
            Workload::SingleMany => {
                let c = plan.clients;
                eprintln!("{step} W1 enqueue, single, {c} clients: {n} jobs …");
                let e = enqueue::enqueue_single(plan, &plan.queue(&format!("w1-single-c{c}")), c)
                    .await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.single_many = Some(e);
            }
            Workload::Bulk => {
                eprintln!("{step} W1 enqueue, bulk (batches of {BATCH}): {n} jobs …");
                let e = enqueue::enqueue_bulk(plan, &plan.queue("w1-bulk")).await?;
                eprintln!(
                    "      {} jobs/s ({:.2} s)",
                    thousands(e.per_s),
                    e.took.as_secs_f64()
                );
                r.bulk = Some(e);
            }
            Workload::DrainC1 | Workload::DrainC16 => {
                let c = if *w == Workload::DrainC1 {
                    1
                } else {
                    DRAIN_HIGH_C
                };
                eprintln!("{step} W1 drain + W2 FIFO, c = {c}: fill {n} jobs, then drain …");
                let d = drain::drain(plan, &plan.queue(&format!("w1-drain-c{c}")), c).await?;
                eprintln!(
                    "      fill {} jobs/s; drain {} jobs/s ({:.2} s); inversions client {} / server {}",
                    thousands(d.fill_per_s),
                    thousands(d.per_s),
                    d.span.as_secs_f64(),
                    d.client.inversions,
                    d.server.inversions
                );
                if *w == Workload::DrainC1 {
                    r.drain_c1 = Some(d);
                } else {
                    r.drain_c16 = Some(d);
                }
            }
            Workload::EmbeddedC1 | Workload::EmbeddedC16 => {
                let (c, http) = if *w == Workload::EmbeddedC1 {
                    (1, &r.drain_c1)
                } else {
                    (DRAIN_HIGH_C, &r.drain_c16)
                };
                eprintln!(
                    "{step} W1 drain in-process (embedded library), c = {c}: fill {n} jobs, then drain …"
                );
                let d = embedded::embedded_drain(n, c, plan.durability).await?;
                eprintln!(
                    "      fill {} jobs/s; drain {} jobs/s ({:.2} s){}",
                    thousands(d.fill_per_s),
                    thousands(d.per_s),
                    d.span.as_secs_f64(),
                    http.as_ref()
                        .map(|h| format!("; {:.2}x the HTTP drain", d.per_s / h.per_s))
                        .unwrap_or_default()
                );
                if *w == Workload::EmbeddedC1 {
                    r.embedded_c1 = Some(d);
                } else {
                    r.embedded_c16 = Some(d);
                }
            }
            Workload::Latency => {
                eprintln!(
                    "{step} W3 latency: {} samples, enqueue → handler start …",
                    plan.samples
                );
                let l = latency::latency(plan, &plan.queue("w3-latency")).await?;
                eprintln!(
                    "      p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    l.p50, l.p99, l.max
                );
                r.latency = Some(l);
            }
            Workload::Backlog => {
                let jobs = plan.backlog;
                eprintln!(
                    "{step} W4 backlog: {} samples of each operation on an empty queue, fill {jobs} jobs, the same again …",
                    backlog::SAMPLES
                );
                let server = local.as_ref();
                let b = backlog::backlog(plan, jobs, || server.and_then(|s| s.memory())).await?;
                eprintln!(
                    "      fill {} jobs/s; GET last job p50 {:.2} ms empty, {:.2} ms at the backlog; /metrics p50 {:.2} ms empty, {:.2} ms at the backlog{}",
                    thousands(b.fill_per_s),
                    b.empty.get.p50,
                    b.full.get.p50,
                    b.empty.metrics.p50,
                    b.full.metrics.p50,
                    b.memory_after
                        .map(|m| format!("; server RSS {:.0} MiB (peak {:.0} MiB)", m.rss_mib(), m.hwm_mib()))
                        .unwrap_or_default()
                );
                r.backlog = Some(b);
            }
        }
    }
    Ok(r)
}

/// Unit tests of `--only`.
#[cfg(test)]
mod tests {
    use super::*;

    /// `--only` expands groups, keeps the canonical order and rejects unknown names.
    #[test]
    fn only_parses_groups() {
        let w = parse_only(&["drain".into(), "bulk".into()]).unwrap();
        assert_eq!(
            w,
            vec![Workload::Bulk, Workload::DrainC1, Workload::DrainC16]
        );
        assert!(parse_only(&["nope".into()]).is_err());
        assert_eq!(parse_only(&["all".into()]).unwrap().len(), 8);
        assert!(!parse_only(&["all".into()])
            .unwrap()
            .contains(&Workload::Backlog));
        assert_eq!(parse_only(&["w4".into()]).unwrap(), vec![Workload::Backlog]);
        let w = parse_only(&["embedded".into(), "drain".into()]).unwrap();
        assert_eq!(
            w,
            vec![
                Workload::DrainC1,
                Workload::DrainC16,
                Workload::EmbeddedC1,
                Workload::EmbeddedC16
            ]
        );
        assert!(parse_only(&["w1".into()])
            .unwrap()
            .iter()
            .all(|w| w.uses_server()));
    }
}
