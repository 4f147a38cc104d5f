//! The coalescing reporter: one task that sends the reports of all of a
//! runner's slots, many per request.
//!
//! A slot whose job finished hands its [`Report`] (lease, outcome, and the
//! `claim_next` made with its own worker name) to the reporter and awaits
//! its own answer on a oneshot: the leases its `claim_next` brought, or
//! none. The reporter sends at once when it is idle; while a request is in
//! flight, later reports queue and all go together in the next request, as
//! soon as the previous one returned. There is no timer: a lone report is
//! never held back waiting for company, and under load a batch is as large
//! as what finished during one round trip.
//!
//! Invariants (those of a single report, kept per report):
//! - A report that may not have arrived is sent again, with backoff, up to
//!   [`Resend::tries`] sends in all; then it is given up (its lease expires
//!   and the job runs again). A transport error (or any error of the whole
//!   request that may be retried) resends every report of the batch; an
//!   item answered `Unavailable` is resent alone, with the reports that
//!   queued meanwhile.
//! - A report refused for good, or whose lease is lost, is final for that
//!   report only: answered with no leases, never resent; the other reports
//!   of its batch are not affected. A whole request refused for good is
//!   final for each of its reports.
//! - Reports keep their order: a batch lists them in the order they were
//!   handed over (resent ones first, as they were handed over earlier), and
//!   each answer goes to its own slot.
//! - The task ends when every slot has dropped its handle and nothing is
//!   left to send.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::source::{JobSource, Lease, Report, SourceError};

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
    ) -> (Reporter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(source, resend, rx));
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
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut wait = resend.initial;
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // Everything that finished while the last request was in flight.
        while let Ok(p) = rx.try_recv() {
            queue.push_back(p);
        }
        let take = queue.len().min(MAX_BATCH);
        let mut batch: Vec<Pending> = queue.drain(..take).collect();
        let reports: Vec<Report> = batch.iter().map(|p| p.report.clone()).collect();
        for p in &mut batch {
            p.sent += 1;
        }
        let answers = match source.report_many(&reports).await {
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
                Err(SourceError::Unavailable(e)) if p.sent < resend.tries => {
                    tracing::warn!("job {id}: report not delivered ({e}); retrying in {wait:?}");
                    again.push(p);
                }
                Err(e) => {
                    tracing::warn!("job {id}: report not taken: {e}");
                    let _ = p.answer.send(Vec::new());
                }
            }
        }
        if again.is_empty() {
            wait = resend.initial;
            continue;
        }
        // Resent first: they were handed over before what queued since.
        for p in again.into_iter().rev() {
            queue.push_front(p);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(resend.max);
    }
}
