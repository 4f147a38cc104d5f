//! The Markdown report: Orderly's figures, then the comparison with the
//! peers' figures of [`Peers`].

use crate::backlog::{Backlog, Cost, Side};
use crate::enqueue::BATCH;
use crate::peers::Peers;
use crate::server::Memory;
use crate::stats::thousands;
use crate::workload::{Enqueue, Results};
use crate::{Durability, Plan, Target, RSS_TARGET_JOBS, RSS_TARGET_MIB};

/// Orderly's figure for a [`crate::peers::PeerFigure::id`], if it was measured.
pub(crate) fn measured(id: &str, r: &Results) -> Option<f64> {
    match id {
        "single_c1" => r.single_c1.as_ref().map(|e| e.per_s),
        "single_many" => r.single_many.as_ref().map(|e| e.per_s),
        "bulk" => r.bulk.as_ref().map(|e| e.per_s),
        "drain_c1" => r.drain_c1.as_ref().map(|d| d.per_s),
        "drain_c16" => r.drain_c16.as_ref().map(|d| d.per_s),
        "embedded_c1" => r.embedded_c1.as_ref().map(|d| d.per_s),
        "embedded_c16" => r.embedded_c16.as_ref().map(|d| d.per_s),
        "latency_p50" => r.latency.as_ref().map(|l| l.p50),
        "latency_p99" => r.latency.as_ref().map(|l| l.p99),
        _ => None,
    }
}

/// The in-process drains' rows of the table, then their ratio to the HTTP
/// drains of the same run.
fn in_process(plan: &Plan, r: &Results) {
    let pairs = [
        (&r.embedded_c1, &r.drain_c1),
        (&r.embedded_c16, &r.drain_c16),
    ];
    for d in pairs.iter().filter_map(|(e, _)| e.as_ref()) {
        println!(
            "| W1 drain in-process (embedded library, no HTTP) | in-process batches ({}/s) | {} | {} | {} / {} | {} |",
            thousands(d.fill_per_s),
            d.c,
            thousands(d.per_s),
            thousands(d.client.inversions as f64),
            thousands(d.client.max_displacement as f64),
            thousands(d.server.inversions as f64),
        );
    }
    let ratios: Vec<String> = pairs
        .iter()
        .filter_map(|(e, h)| {
            let e = e.as_ref()?;
            Some(match h {
                Some(h) => format!(
                    "c = {}: **{:.2}x** ({} vs {} jobs/s)",
                    e.c,
                    e.per_s / h.per_s,
                    thousands(e.per_s),
                    thousands(h.per_s)
                ),
                None => format!("c = {}: — (no HTTP drain at c = {} in this run)", e.c, e.c),
            })
        })
        .collect();
    if !ratios.is_empty() {
        println!();
        println!(
            "In-process drain ÷ HTTP drain, same run and N: {}. In-process: the embedded library's handlers (a no-op `async` handler) claim and report through its own SQLite store directly (whatever store the server has), on a fresh data directory per drain with durability `{}`; every job was checked to have succeeded once, and at c = 1 to have started in `seq` order.",
            ratios.join("; "),
            plan.durability.flag()
        );
    }
}

/// Prints the Markdown report on stdout.
pub(crate) fn print_report(plan: &Plan, target: &Target, r: &Results, peers: &Peers) {
    let n = plan.n as f64;
    let durability = match target {
        Target::Local { durability, isolate } if plan.store == "PostgreSQL" => format!(
            "**PostgreSQL store** (`--database-url`: a fresh schema per server, dropped after), {}; {}",
            if *durability == Durability::None {
                "`synchronous_commit = off`"
            } else {
                "`synchronous_commit = on` (every acknowledged job's commit is flushed, as PostgreSQL's `fsync` setting says)"
            },
            if *isolate {
                "a fresh server per workload (`--isolate`)"
            } else {
                "one server started by the bench, shared by the workloads in turn"
            }
        ),
        Target::Local { durability, isolate } => format!(
            "{}; {}",
            match durability {
                Durability::Fsync => "**fsync on every commit** (`--durability fsync`, the default: every acknowledged job is on disk)",
                Durability::Accepted => "**fsync on commits that accept jobs** (`--durability accepted`: every acknowledged job is on disk; claims and reports ride along with the next fsync)",
                Durability::None => "**fsync off** (`--durability none`: survives a process crash, not a machine crash)",
            },
            if *isolate {
                "a fresh server and data directory per workload (`--isolate`)"
            } else {
                "one server started by the bench with a fresh data directory, shared by the workloads in turn"
            }
        ),
        Target::Existing(url) => {
            format!("as configured on the server at {url} (not started by the bench)")
        }
    };
    println!("## Orderly bench");
    println!();
    println!(
        "N = {} jobs per W1 workload, W3 samples = {}; durability: {durability}; build: {}.",
        thousands(n),
        thousands(plan.samples as f64),
        if cfg!(debug_assertions) {
            "debug (figures are not representative: use a --release build)"
        } else {
            "release"
        }
    );
    println!();
    println!("| workload | enqueue | c | jobs/s | FIFO inversions / max displacement (client) | server start-order inversions |");
    println!("|---|---|---|---|---|---|");
    let enqueue_row = |what: &str, c: u32, e: &Option<Enqueue>| {
        if let Some(e) = e {
            println!(
                "| W1 enqueue | {what} | {c} | {} | — | — |",
                thousands(e.per_s)
            );
        }
    };
    enqueue_row("single, 1 client", 1, &r.single_c1);
    enqueue_row(
        &format!("single, {} clients", plan.clients),
        plan.clients,
        &r.single_many,
    );
    enqueue_row(
        &format!("bulk ({} per batch)", thousands(BATCH as f64)),
        1,
        &r.bulk,
    );
    let mut notes = Vec::new();
    for d in [&r.drain_c1, &r.drain_c16].into_iter().flatten() {
        println!(
            "| W1 drain + W2 | bulk fill ({}/s) | {} | {} | {} / {} | {} |",
            thousands(d.fill_per_s),
            d.c,
            thousands(d.per_s),
            thousands(d.client.inversions as f64),
            thousands(d.client.max_displacement as f64),
            thousands(d.server.inversions as f64),
        );
        if d.client.duplicates + d.client.missing + d.never_started + d.not_succeeded > 0 {
            notes.push(format!(
                "drain c = {}: {} redelivered, {} never handled, {} never started by the server, {} not succeeded",
                d.c, d.client.duplicates, d.client.missing, d.never_started, d.not_succeeded
            ));
        }
    }
    in_process(plan, r);
    if let Some(l) = &r.latency {
        println!();
        println!(
            "W3 latency, enqueue call → handler start ({} samples{}), p50 / p99 / max ms: **{:.2} / {:.2} / {:.2}**",
            thousands(l.samples as f64),
            if l.lost > 0 {
                format!(", {} lost", l.lost)
            } else {
                String::new()
            },
            l.p50,
            l.p99,
            l.max
        );
    }
    if let Some(b) = &r.backlog {
        backlog(b);
    }
    for note in &notes {
        println!();
        println!("Note: {note}.");
    }

    println!();
    println!("### Against the fastest peer (same workloads)");
    println!();
    println!("Peers' figures: {}", peers.source);
    println!();
    println!("| figure | Orderly | fastest peer | Orderly ÷ peer | target | met |");
    println!("|---|---|---|---|---|---|");
    for rf in &peers.figures {
        let ours = measured(&rf.id, r);
        let show = |x: f64| {
            if rf.higher_is_better {
                thousands(x)
            } else {
                format!("{x:.2}")
            }
        };
        let (cmp, sign) = if rf.higher_is_better {
            ("≥", "/s")
        } else {
            ("≤", " ms")
        };
        match ours {
            Some(x) => {
                let met = if rf.higher_is_better {
                    x >= rf.target
                } else {
                    x <= rf.target
                };
                println!(
                    "| {} | {} | {}{sign} ({}) | {:.2}x | {cmp} {}{sign} | {} |",
                    rf.figure,
                    show(x),
                    show(rf.peer),
                    rf.who,
                    x / rf.peer,
                    show(rf.target),
                    if met { "yes" } else { "no" }
                );
            }
            None => println!(
                "| {} | not run | {}{sign} ({}) | — | {cmp} {}{sign} | — |",
                rf.figure,
                show(rf.peer),
                rf.who,
                show(rf.target)
            ),
        }
    }
    if let Some(d) = &r.drain_c1 {
        println!();
        println!(
            "W2 target: 0 inversions at c = 1, always: client {}, server {} ({}).",
            d.client.inversions,
            d.server.inversions,
            if d.client.inversions == 0 && d.server.inversions == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}

/// Reads one operation's cost off a [`Side`].
type CostOf = fn(&Side) -> Cost;

/// W4's operations: a label and where its cost is kept.
const W4_OPERATIONS: [(&str, CostOf); 5] = [
    ("enqueue one job", |s| s.enqueue),
    ("claim + complete one job", |s| s.claim),
    ("`GET /v1/jobs/{id}` of the last job", |s| s.get),
    ("first list page (50)", |s| s.list),
    ("`GET /metrics`", |s| s.metrics),
];

/// The W4 table: each operation on the empty queues and at the backlog.
fn backlog(b: &Backlog) {
    println!();
    println!(
        "### W4 backlog: {} waiting jobs (filled by the batch API at {} jobs/s) against an empty queue",
        thousands(b.jobs as f64),
        thousands(b.fill_per_s)
    );
    println!();
    println!(
        "{} calls of each, in this order: enqueue one job, `GET` of the last job (position {} at the backlog, {} on the empty queue, checked), the first list page ({} jobs, positions checked), a `/metrics` scrape (the queue's `orderly_jobs` queued line checked), claim one job and complete it.",
        crate::backlog::SAMPLES,
        thousands(b.full.last_position as f64),
        thousands(b.empty.last_position as f64),
        crate::backlog::PAGE
    );
    println!();
    println!(
        "The ratio is against the empty queue measured after the fill, on the same grown store."
    );
    println!();
    println!("| operation | empty before the fill, p50 / p99 ms | empty after the fill | backlog | backlog ÷ empty after (p50) | within 2x |");
    println!("|---|---|---|---|---|---|");
    for (what, pick) in W4_OPERATIONS {
        let (before, after, full) = (pick(&b.empty), pick(&b.empty_after), pick(&b.full));
        let ratio = full.p50 / after.p50.max(1e-9);
        println!(
            "| {what} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {ratio:.2}x | {} |",
            before.p50,
            before.p99,
            after.p50,
            after.p99,
            full.p50,
            full.p99,
            if ratio <= 2.0 { "yes" } else { "no" }
        );
    }
    memory(b);
}

/// The server's resident memory during W4, against the target.
fn memory(b: &Backlog) {
    println!();
    let (Some(before), Some(filled), Some(after)) =
        (b.memory_before, b.memory_filled, b.memory_after)
    else {
        println!("Server memory: not measured (the bench did not start the server, or there is no /proc).");
        return;
    };
    let show = |m: Memory| format!("{:.1} / {:.1}", m.rss_mib(), m.hwm_mib());
    println!(
        "Server memory, `VmRSS` / `VmHWM` (peak) MiB: **{}** before the fill, **{}** right after it, **{}** after the reads at the backlog.",
        show(before),
        show(filled),
        show(after)
    );
    // Resident while the backlog waits; the peak (the fill's batches
    // included) is shown beside it.
    let resident = filled.rss_mib().max(after.rss_mib());
    let peak = after.hwm_mib();
    let target = format!(
        "Target (issue 9): < {RSS_TARGET_MIB:.0} MiB with {} waiting",
        thousands(RSS_TARGET_JOBS as f64)
    );
    if b.jobs >= RSS_TARGET_JOBS {
        println!(
            "{target}: resident {resident:.1} MiB, {} (peak {peak:.1} MiB, {} the target).",
            if resident < RSS_TARGET_MIB {
                "met"
            } else {
                "NOT met"
            },
            if peak < RSS_TARGET_MIB {
                "also under"
            } else {
                "over"
            }
        );
    } else {
        println!(
            "{target}: judged with `--big` ({} waiting); this run held {}.",
            thousands(RSS_TARGET_JOBS as f64),
            thousands(b.jobs as f64)
        );
    }
}
