//! Claims parked in the writer (`Store::job_claim_parked`).
//!
//! A long-polling claim that finds nothing stays here, per queue in the
//! order it parked. Each request the writer runs notes the queues whose jobs
//! it may have made startable (`Changes::startable`); after the group's
//! requests and before its `COMMIT`, the writer runs the parked claims of
//! those queues again, each in its own savepoint, oldest first, until one
//! finds nothing. A claim that took leases is answered with the group's
//! commit: a job enqueued to an idle worker is accepted and started by one
//! commit, not by the enqueue's commit, a wake-up and a second commit.
//!
//! A claim runs the same `job_claim` as any other, inside the same
//! transaction after the writes that made its jobs eligible, so order,
//! concurrency and key lines hold as for any claim. It runs at the time of
//! the latest of those writes (their `now`, never earlier than its own):
//! the store keeps no clock of its own. The [`ParkTicket`]
//! decides between the writer running a claim and its caller giving up;
//! a claim whose caller is gone (its answer's receiver dropped) is dropped
//! unrun.

use std::collections::{HashMap, VecDeque};

use orderly_core::{ClaimParams, Committed, Lease, Millis, ParkTicket, StoreError};
use tokio::sync::oneshot;

use crate::ctx::WriteCtx;
use crate::writer::{Answer, Run};

/// Where a parked claim's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Committed<Vec<Lease>>, StoreError>>;

/// One claim waiting in the writer.
pub(crate) struct ParkedClaim {
    params: ClaimParams,
    ticket: ParkTicket,
    reply: Reply,
}

impl ParkedClaim {
    /// A claim to run now and, if it finds nothing, to keep.
    pub fn new(params: ClaimParams, ticket: ParkTicket, reply: Reply) -> Self {
        ParkedClaim {
            params,
            ticket,
            reply,
        }
    }

    /// Takes the claim to run it, unless its caller gave up or left.
    fn take(&self) -> bool {
        !self.reply.is_closed() && self.ticket.take()
    }
}

/// The parked claims, and what the current group may have made startable.
#[derive(Default)]
pub(crate) struct Parking {
    by_queue: HashMap<String, VecDeque<ParkedClaim>>,
    /// Per queue, how many jobs the group's requests may have let start,
    /// and the latest time of the writes that did (the claims run at it).
    startable: HashMap<String, (usize, Millis)>,
}

impl Parking {
    /// Notes what a request changed, when a claim is parked that it may concern.
    pub fn note(&mut self, changes: &orderly_core::Changes) {
        if self.by_queue.is_empty() {
            return;
        }
        for (queue, (n, at)) in changes.startable_at() {
            if self.by_queue.contains_key(queue) {
                let entry = self.startable.entry(queue.to_string()).or_insert((0, at));
                entry.0 += n;
                entry.1 = entry.1.max(at);
            }
        }
    }

    /// Keeps `claim` at the end of its queue's line, forgetting the claims
    /// of that queue whose callers gave up.
    fn park(&mut self, claim: ParkedClaim) {
        let line = self.by_queue.entry(claim.params.queue.clone()).or_default();
        line.retain(|c| !c.ticket.is_withdrawn() && !c.reply.is_closed());
        line.push_back(claim);
    }

    fn pop(&mut self, queue: &str) -> Option<ParkedClaim> {
        let line = self.by_queue.get_mut(queue)?;
        let claim = line.pop_front();
        if line.is_empty() {
            self.by_queue.remove(queue);
        }
        claim
    }

    /// Puts a claim that found nothing back at the head of its line.
    fn unpop(&mut self, claim: ParkedClaim) {
        self.by_queue
            .entry(claim.params.queue.clone())
            .or_default()
            .push_front(claim);
    }
}

/// One claim as a request runs it: its own changes and counters.
fn claim_once(
    ctx: &mut WriteCtx<'_>,
    params: &ClaimParams,
) -> Result<Committed<Vec<Lease>>, StoreError> {
    ctx.begin_request();
    let value = ctx.job_claim(params)?;
    ctx.end_request();
    Ok(Committed {
        value,
        changes: std::mem::take(&mut ctx.changes),
    })
}

fn answer(reply: Reply, result: Result<Committed<Vec<Lease>>, StoreError>) -> Answer {
    Box::new(move |commit: Result<(), StoreError>| {
        let _ = reply.send(commit.and(result));
    })
}

/// True when a claim found nothing and changed nothing: it may wait.
fn found_nothing(result: &Result<Committed<Vec<Lease>>, StoreError>) -> bool {
    matches!(result, Ok(c) if c.value.is_empty() && c.changes.is_empty())
}

/// The request of a claim that parks if it finds nothing.
pub(crate) fn first_attempt(claim: ParkedClaim) -> Run {
    Box::new(move |ctx| {
        let ctx = match ctx {
            Ok(ctx) => ctx,
            Err(e) => return (Some(e.clone()), answer(claim.reply, Err(e))),
        };
        if !claim.take() {
            // Withdrawn before it ran: it answers with nothing, as if it had looked.
            let nothing = Ok(Committed {
                value: Vec::new(),
                changes: Default::default(),
            });
            return (None, answer(claim.reply, nothing));
        }
        let result = claim_once(ctx, &claim.params);
        if found_nothing(&result) {
            claim.ticket.put_back();
            ctx.parking.park(claim);
            return (None, Box::new(|_| {}));
        }
        ctx.parking.note(
            result
                .as_ref()
                .map(|c| &c.changes)
                .unwrap_or(&Default::default()),
        );
        (result.as_ref().err().cloned(), answer(claim.reply, result))
    })
}

/// Runs the parked claims of every queue the group's requests may have
/// made startable, inside the group's transaction; their answers go with
/// the group's; returns how many took jobs. `Err` when a failed claim's
/// savepoint could not be undone (the group must not commit).
pub(crate) fn run_parked(
    ctx: &mut WriteCtx<'_>,
    answers: &mut Vec<Answer>,
) -> Result<u64, StoreError> {
    let startable = std::mem::take(&mut ctx.parking.startable);
    let mut started = 0;
    for (queue, (mut budget, at)) in startable {
        while budget > 0 {
            let Some(claim) = ctx.parking.pop(&queue) else {
                break;
            };
            if !claim.take() {
                continue;
            }
            let before = ctx.counters();
            if let Err(e) = ctx.exec("SAVEPOINT parked") {
                answers.push(answer(claim.reply, Err(e.clone())));
                return Err(e);
            }
            // It runs at the time of the write that gave it work (never
            // earlier than its caller asked), on the callers' clock.
            let mut params = claim.params.clone();
            params.now = params.now.max(at);
            let result = claim_once(ctx, &params);
            if result.is_err() {
                ctx.conn
                    .execute_batch("ROLLBACK TO parked; RELEASE parked")
                    .map_err(|undo| {
                        StoreError::StorageFailed(format!("could not undo a failed claim: {undo}"))
                    })?;
                ctx.restore_request(before);
            } else {
                ctx.exec("RELEASE parked")?;
            }
            if found_nothing(&result) {
                claim.ticket.put_back();
                ctx.parking.unpop(claim);
                break;
            }
            let took = result.as_ref().map(|c| c.value.len()).unwrap_or(0);
            started += u64::from(took > 0);
            budget = budget.saturating_sub(took.max(1));
            answers.push(answer(claim.reply, result));
        }
    }
    Ok(started)
}
