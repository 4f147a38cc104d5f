//! The coalescing reporter: one task that sends the reports of all of a
//! runner's slots, many per request.
//!
//! A slot whose job finished hands its [`Report`] (lease, outcome, and the
//! `claim_next` made with its own worker name) to the reporter and awaits
//! its own answer on a oneshot: the leases its `claim_next` brought, or
//! none. The reporter sends at once while fewer than its `in_flight`
//! requests (two by default, [`crate::RunnerConfig::reports_in_flight`])
//! are out; otherwise later reports queue and all go together in the next
//! request, as soon as one returns. There is no timer: a lone report is
//! never held back waiting for company, and under load a batch is as large
//! as what finished during a round trip. Two requests in flight let the
//! slots answered by one run their jobs and report while the other is at
//! the server (docs/performance.md, stop 20: +20–25% at 16 slots).
//!
//! Invariants (those of a single report, kept per report):
//! - A report that may not have arrived is sent again, with backoff, up to
//!   [`Resend::tries`] sends in all; then it is given up (its lease expires
//!   and the job runs again). A transport error (or any error of the whole
//!   request that may be retried) resends every report of that request; an
//!   item answered `Unavailable` is resent alone, with the reports that
//!   queued meanwhile. While a backoff runs, nothing new is sent; a request
//!   already out goes on.
//! - A report refused for good, or whose lease is lost, is final for that
//!   report only: answered with no leases, never resent; the other reports
//!   of its batch are not affected. A whole request refused for good is
//!   final for each of its reports.
//! - A report is in at most one request at a time, and each answer goes to
//!   its own slot. A batch lists its reports in the order they were handed
//!   over (resent ones first, as they were handed over earlier); two
//!   requests in flight may reach the server in either order, which orders
//!   nothing a slot relies on: each report is its own lease, and a slot
//!   awaits its report's answer before it runs its next job.
//! - The task ends when every slot has dropped its handle and nothing is
//!   left to send or in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::source::{JobSource, Lease, Report, ReportAnswer, SourceError};

/// Most reports in one request (the server takes up to 10,000).
pub(crate) const MAX_BATCH: usize = 1_000;

/// How reports are sent again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resend {
    /// Sends of one report before it is given up (at least 1).
    pub tries: u32,
    /// First pause before a resend.
    pub initial: Duration,
    /// Longest pause before a resend.
    pub max: Duration,
}

/// A report waiting for its answer.
struct Pending {
    report: Report,
    /// Times it was sent so far.
    sent: u32,
    answer: oneshot::Sender<Vec<Lease>>,
}

/// The slots' handle on the reporter task.
#[derive(Clone)]
pub(crate) struct Reporter {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Reporter {
    /// Starts the reporter task over `source`; it ends once every handle is
    /// dropped and its last batch is answered.
    pub(crate) fn spawn<S: JobSource>(
        source: Arc<S>,
        resend: Resend,
        in_flight: usize,
    ) -> (Reporter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(source, resend, in_flight, rx));
        (Reporter { tx }, task)
    }

    /// Hands `report` over and waits for its answer: the leases its
    /// `claim_next` brought (none when it was refused or given up).
    pub(crate) async fn report(&self, report: Report) -> Vec<Lease> {
        let (answer, rx) = oneshot::channel();
        let pending = Pending {
            report,
            sent: 0,
            answer,
        };
        if self.tx.send(pending).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

async fn run<S: JobSource>(
    source: Arc<S>,
    resend: Resend,
    in_flight: usize,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let in_flight = in_flight.max(1);
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut flights = FuturesUnordered::new();
    let mut wait = resend.initial;
    // After a batch with reports to resend: nothing is sent before this.
    let mut hold_until: Option<Instant> = None;
    let mut open = true;
    loop {
        // Everything handed over so far.
        while let Ok(p) = rx.try_recv() {
            queue.push_back(p);
        }
        if hold_until.is_some_and(|t| Instant::now() >= t) {
            hold_until = None;
        }
        if !queue.is_empty() && flights.len() < in_flight && hold_until.is_none() {
            let take = queue.len().min(MAX_BATCH);
            let mut batch: Vec<Pending> = queue.drain(..take).collect();
            for p in &mut batch {
                p.sent += 1;
            }
            let source = source.clone();
            flights.push(async move {
                let reports: Vec<Report> = batch.iter().map(|p| p.report.clone()).collect();
                let answers = source.report_many(&reports).await;
                (batch, answers)
            });
            continue;
        }
        if !open && queue.is_empty() && flights.is_empty() {
            return;
        }
        // Some branch is always enabled here: a batch in flight; else the
        // channel, while open; else (closed, nothing in flight, reports
        // left) the hold, which is what kept them from being sent.
        tokio::select! {
            Some((batch, answers)) = flights.next(), if !flights.is_empty() => {
                let again = settle(batch, answers, resend.tries);
                if again.is_empty() {
                    wait = resend.initial;
                } else {
                    // Resent first: they were handed over before what queued since.
                    for p in again.into_iter().rev() {
                        queue.push_front(p);
                    }
                    hold_until = Some(Instant::now() + wait);
                    wait = (wait * 2).min(resend.max);
                }
            }
            p = rx.recv(), if open => match p {
                Some(p) => queue.push_back(p),
                None => open = false,
            },
            _ = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now)),
                if hold_until.is_some() => {}
        }
    }
}

/// Answers each report of a returned batch, or keeps it for a resend (the
/// reports returned, in the batch's order).
fn settle(
    batch: Vec<Pending>,
    answers: Result<Vec<ReportAnswer>, SourceError>,
    tries: u32,
) -> Vec<Pending> {
    let answers = match answers {
        Ok(a) if a.len() == batch.len() => a,
        Ok(a) => {
            let e = SourceError::Unavailable(format!(
                "{} answers for {} reports",
                a.len(),
                batch.len()
            ));
            batch.iter().map(|_| Err(e.clone())).collect()
        }
        // The whole request: each report gets its error.
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut again = Vec::new();
    for (p, answer) in batch.into_iter().zip(answers) {
        let id = &p.report.lease.job.id;
        match answer {
            Ok(leases) => {
                let _ = p.answer.send(leases);
            }
            Err(SourceError::Unavailable(e)) if p.sent < tries => {
                tracing::warn!("job {id}: report not delivered ({e}); sending it again");
                again.push(p);
            }
            Err(e) => {
                tracing::warn!("job {id}: report not taken: {e}");
                let _ = p.answer.send(Vec::new());
            }
        }
    }
    again
}
