//! Each figure beside the floor it is made of (see [`crate::floors`]) and
//! the target issue 9 sets against that floor: the part of the report that
//! says how close Orderly is to what this machine can physically do.

use crate::floors::Floors;
use crate::stats::thousands;
use crate::workload::Results;
use crate::Durability;

/// One figure against its floor.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AgainstFloor {
    /// Figure id (as in `peers.json`).
    pub(crate) id: &'static str,
    /// Row label.
    pub(crate) figure: String,
    /// Orderly's figure.
    pub(crate) value: f64,
    /// The floor it is measured against, in the same unit.
    pub(crate) floor: f64,
    /// What the floor is.
    pub(crate) floor_is: String,
    /// `value / floor`.
    pub(crate) ratio: f64,
    /// The target, as a ratio to the floor (rates: at least; times: at most).
    pub(crate) target_ratio: f64,
    /// Higher is better (rates) or lower (times).
    pub(crate) higher_is_better: bool,
    /// Whether the target is met.
    pub(crate) met: bool,
}

impl AgainstFloor {
    fn rate(
        id: &'static str,
        figure: String,
        value: f64,
        floor: f64,
        floor_is: String,
        target: f64,
    ) -> Self {
        let ratio = value / floor.max(1e-9);
        AgainstFloor {
            id,
            figure,
            value,
            floor,
            floor_is,
            ratio,
            target_ratio: target,
            higher_is_better: true,
            met: ratio >= target,
        }
    }

    fn time(id: &'static str, figure: String, value: f64, limit: f64, floor_is: String) -> Self {
        let ratio = value / limit.max(1e-9);
        AgainstFloor {
            id,
            figure,
            value,
            floor: limit,
            floor_is,
            ratio,
            target_ratio: 1.0,
            higher_is_better: false,
            met: value <= limit,
        }
    }
}

/// The figures of `r` that have a floor, each against it.
pub(crate) fn against_floors(
    f: &Floors,
    r: &Results,
    durability: Durability,
    clients: u32,
) -> Vec<AgainstFloor> {
    let durable = durability != Durability::None;
    let (seq_floor, seq_floor_is) = if durable {
        (f.rtt_commit_per_s(), "1 / (rtt + commit)".to_string())
    } else {
        (f.rtt_per_s(), "1 / rtt".to_string())
    };
    let mut out = Vec::new();
    if let Some(e) = &r.single_c1 {
        out.push(AgainstFloor::rate(
            "single_c1",
            "W1 enqueue, 1 sequential client (jobs/s)".into(),
            e.per_s,
            seq_floor,
            seq_floor_is.clone(),
            0.8,
        ));
    }
    if let Some(e) = &r.single_many {
        out.push(AgainstFloor::rate(
            "single_many",
            format!("W1 enqueue, {clients} clients (jobs/s)"),
            e.per_s,
            f.healthz_many_per_s,
            format!("`/healthz` at {} connections", f.clients),
            0.7,
        ));
    }
    if let Some(d) = &r.drain_c1 {
        // Claims and reports are fsynced only with `--durability fsync`.
        let (floor, floor_is) = if durability == Durability::Fsync {
            (f.rtt_commit_per_s(), "1 / (rtt + commit)".to_string())
        } else {
            (f.rtt_per_s(), "1 / rtt".to_string())
        };
        out.push(AgainstFloor::rate(
            "drain_c1",
            "W1 drain, c = 1 (jobs/s)".into(),
            d.per_s,
            floor,
            floor_is,
            0.7,
        ));
    }
    if let Some(l) = &r.latency {
        let (floor, floor_is) = if durable {
            (
                f.rtt.p50 + f.commit.p50 + 0.3,
                "rtt + commit + 0.3 ms (p50s)".to_string(),
            )
        } else {
            (f.rtt.p50 + 0.3, "rtt + 0.3 ms (p50)".to_string())
        };
        out.push(AgainstFloor::time(
            "latency_p50",
            "W3 p50 (ms)".into(),
            l.p50,
            floor,
            floor_is,
        ));
        out.push(AgainstFloor::time(
            "latency_p99",
            "W3 p99 (ms)".into(),
            l.p99,
            2.0 * l.p50,
            "2 × this run's p50".into(),
        ));
    }
    out
}

/// Prints the floors and the figures against them.
pub(crate) fn print(f: &Floors, rows: &[AgainstFloor], store: &str) {
    let commit = if store == "PostgreSQL" {
        "one committed one-row `INSERT` on the PostgreSQL database"
    } else {
        "one fsynced one-row SQLite WAL commit"
    };
    println!();
    println!("### Floors (same run, same file system as the data directory)");
    println!();
    println!(
        "rtt (`GET /healthz`, one keep-alive connection) p50 / mean / p99: **{:.3} / {:.3} / {:.3} ms**; commit ({commit}) p50 / mean / p99: **{:.3} / {:.3} / {:.3} ms**; `/healthz` at {} connections: **{}/s**. So 1 / (rtt + commit) = {}/s and 1 / rtt = {}/s.",
        f.rtt.p50, f.rtt.mean, f.rtt.p99,
        f.commit.p50, f.commit.mean, f.commit.p99,
        f.clients,
        thousands(f.healthz_many_per_s),
        thousands(f.rtt_commit_per_s()),
        thousands(f.rtt_per_s()),
    );
    if rows.is_empty() {
        return;
    }
    println!();
    println!("| figure | Orderly | floor | Orderly ÷ floor | target | met |");
    println!("|---|---|---|---|---|---|");
    for a in rows {
        let (value, floor, target) = if a.higher_is_better {
            (
                thousands(a.value),
                format!("{} ({})", thousands(a.floor), a.floor_is),
                format!("≥ {:.0}% of the floor", a.target_ratio * 100.0),
            )
        } else {
            (
                format!("{:.2}", a.value),
                format!("{:.2} ({})", a.floor, a.floor_is),
                "≤ the floor".to_string(),
            )
        };
        println!(
            "| {} | {value} | {floor} | {:.2} | {target} | {} |",
            a.figure,
            a.ratio,
            if a.met { "yes" } else { "no" }
        );
    }
}
