//! The writer thread: the only owner of the write connection.
//!
//! Requests arrive on a channel as closures. The thread takes every request
//! that is waiting (up to [`MAX_GROUP`]), runs them in one `BEGIN IMMEDIATE`
//! transaction, each inside its own savepoint when there are several so one
//! request's error undoes only its own changes, commits once (one fsync for
//! the whole group), and only then answers each request. Nobody is told
//! "accepted" before the commit returned. Requests that refuse only before
//! their first write (claims, heartbeats, reports: [`Undo::ChecksFirst`])
//! run without a savepoint.
//!
//! Failure policy:
//! - a full disk (`SQLITE_FULL`) fails the request that hit it with
//!   `StorageFull` (the whole group if SQLite rolled the transaction back,
//!   or if the commit itself hit it); the thread goes on, so writes resume
//!   by themselves once space is freed;
//! - an I/O error on commit (a failed fsync) is not retried: the writer
//!   fails stop, answers every later request with `StorageFailed`, and the
//!   store reports unhealthy. After a failed fsync the page cache may hold
//!   data the disk does not, so retrying could acknowledge lost writes;
//! - a request without a savepoint that fails after writing (an I/O error,
//!   a full disk) cannot be undone alone: the whole group is rolled back and
//!   every request of it fails with its error;
//! - a savepoint that cannot be rolled back (a failed `ROLLBACK TO`) would
//!   leave a failed request's partial writes in the group: the whole group
//!   is rolled back and the writer fails stop, as for an I/O error.
//!
//! Each request's [`Changes`] (the jobs it moved) are handed back with its
//! answer, and only once it committed.

use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use orderly_core::{ClaimParams, Committed, Lease, ParkTicket, StoreError, WriterStats};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::ctx::WriteCtx;
use crate::parked::{self, ParkedClaim};
use crate::rows::map_err;
use crate::Durability;

/// Most requests committed in one transaction.
pub const MAX_GROUP: usize = 4096;

/// Sends a request's answer once the commit's outcome is known.
pub(crate) type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs against the transaction; returns its error if it failed (so its
/// savepoint is rolled back) and the answer to send once the commit's outcome
/// is known.
pub(crate) type Run =
    Box<dyn FnOnce(Result<&mut WriteCtx<'_>, StoreError>) -> (Option<StoreError>, Answer) + Send>;

/// Whether a write must reach the disk before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitKind {
    /// It accepts or settles something a client was promised (an enqueue, a
    /// cancel, a retry, a queue change): fsynced unless durability is `None`.
    Accepting,
    /// It records progress (a claim, heartbeat, report, maintenance): fsynced
    /// only under `Durability::Fsync`; otherwise it reaches the disk with the
    /// next fsynced commit or checkpoint, and a machine crash may forget it
    /// (the job then runs again: delivery is at least once).
    Progress,
}

/// How a request of a group of several is undone if it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undo {
    /// It runs in its own savepoint, rolled back if it fails: for requests
    /// that may refuse after writing (a batch enqueue whose fifth job's id
    /// conflicts has inserted four).
    Savepoint,
    /// It makes every check that can refuse it before its first write, so
    /// a refused request wrote nothing and needs no savepoint (a savepoint
    /// copies every page the request touches into the savepoint journal:
    /// a fifth of the writer's instructions in a drain at c = 16,
    /// docs/performance.md, stop 21). If it fails after writing anyway (an
    /// I/O error, a full disk, a bug), its writes cannot be taken out alone:
    /// the whole group is rolled back and every request of it fails.
    ChecksFirst,
}

struct Request {
    kind: CommitKind,
    undo: Undo,
    run: Run,
}

/// What the writer's channel carries.
enum Message {
    /// A write to commit.
    Write(Request),
    /// Commit what came before, then stop.
    Stop,
}

/// Shared view of the writer: its health, and its figures for metrics.
#[derive(Default)]
pub(crate) struct Health {
    failed: Mutex<Option<String>>,
    stats: Mutex<WriterStats>,
}

impl Health {
    /// `Err(StorageFailed)` once the writer has failed stop.
    pub fn check(&self) -> Result<(), StoreError> {
        match &*self.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(StoreError::StorageFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts a committed group of `size` requests, `parked_starts` of them
    /// parked claims that took jobs; `fsync` is how long the commit took
    /// when it was fsynced.
    fn committed(&self, size: usize, parked_starts: u64, fsync: Option<Duration>) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.commits += 1;
        s.parked_claim_starts += parked_starts;
        s.group_sizes.observe(size as f64);
        if let Some(d) = fsync {
            s.fsync_seconds.observe(d.as_secs_f64());
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "storage failed: the writer stops accepting writes");
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
}

/// Handle to send work to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Message>,
    /// The writer's health.
    pub health: Arc<Health>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which it owns from then on; it
    /// stops when every handle is dropped, after finishing the requests
    /// already sent. Fails if the writer's context cannot be read from the
    /// database (the thread has then stopped).
    pub fn start(
        conn: Connection,
        durability: Durability,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel::<Message>(MAX_GROUP * 4);
        let health = Arc::new(Health::default());
        let thread_health = health.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("orderly-sqlite-writer".into())
            .spawn(move || match WriteCtx::new(&conn, durability) {
                Ok(ctx) => {
                    let _ = ready_tx.send(Ok(()));
                    run(ctx, rx, &thread_health, durability);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Backend(format!("could not start the writer thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok((Writer { tx, health }, handle)),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                Err(StoreError::Backend(
                    "the writer thread stopped while starting".into(),
                ))
            }
        }
    }

    /// Asks the thread to stop once it has committed every write sent
    /// before this call; writes sent after it answer `Closed`.
    pub async fn stop(&self) {
        let _ = self.tx.send(Message::Stop).await;
    }

    /// True once the writer thread is gone (it only stops when every handle
    /// is dropped, or if it panicked).
    pub fn is_stopped(&self) -> bool {
        self.tx.is_closed()
    }

    /// Runs `f` in the next group transaction, in its own savepoint, and
    /// returns its result, with what it changed, once committed.
    pub async fn write<T, F>(&self, kind: CommitKind, f: F) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_undone_by(kind, Undo::Savepoint, f).await
    }

    /// [`Self::write`] for an `f` that refuses only before its first write
    /// ([`Undo::ChecksFirst`]): it runs without a savepoint.
    pub async fn write_checked_first<T, F>(
        &self,
        kind: CommitKind,
        f: F,
    ) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_undone_by(kind, Undo::ChecksFirst, f).await
    }

    async fn write_undone_by<T, F>(
        &self,
        kind: CommitKind,
        undo: Undo,
        f: F,
    ) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.health.check()?;
        let (reply, answer) = oneshot::channel::<Result<Committed<T>, StoreError>>();
        let run: Run = Box::new(move |ctx| {
            let result = ctx.and_then(|ctx| {
                ctx.begin_request();
                let value = f(ctx)?;
                // Its counter changes join the group's (written before the commit).
                ctx.end_request();
                ctx.parking.note(&ctx.changes);
                Ok(Committed {
                    value,
                    changes: std::mem::take(&mut ctx.changes),
                })
            });
            let failed = result.as_ref().err().cloned();
            let answer: Answer = Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send(commit.and(result));
            });
            (failed, answer)
        });
        self.tx
            .send(Message::Write(Request { kind, undo, run }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Writer {
    /// A claim that, when it finds nothing, stays parked in the writer
    /// until a later group makes a job of its queue startable (see
    /// `parked`); answered once it took leases or changed something.
    pub async fn claim_parked(
        &self,
        params: ClaimParams,
        ticket: ParkTicket,
    ) -> Result<Committed<Vec<Lease>>, StoreError> {
        self.health.check()?;
        let (reply, answer) = oneshot::channel();
        let run = parked::first_attempt(ParkedClaim::new(params, ticket, reply));
        self.tx
            .send(Message::Write(Request {
                kind: CommitKind::Progress,
                undo: Undo::Savepoint,
                run,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(
    mut ctx: WriteCtx<'_>,
    mut rx: mpsc::Receiver<Message>,
    health: &Health,
    durability: Durability,
) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    // The connection starts in the mode `SqliteStore::open` set for `durability`.
    let mut syncing = durability == Durability::Fsync;
    let mut stopping = false;
    while !stopping {
        match rx.blocking_recv() {
            Some(Message::Write(first)) => group.push(first),
            Some(Message::Stop) | None => break,
        }
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Message::Write(r)) => group.push(r),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = health.check() {
            for r in group.drain(..) {
                (r.run)(Err(e.clone())).1(Err(e.clone()));
            }
            continue;
        }
        let want_sync = match durability {
            Durability::Fsync => true,
            Durability::None => false,
            Durability::Accepted => group.iter().any(|r| r.kind == CommitKind::Accepting),
        };
        if want_sync != syncing {
            let mode = if want_sync { "FULL" } else { "NORMAL" };
            match ctx.conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => syncing = want_sync,
                Err(e) => {
                    // Never answer an accepting write without the sync it needs.
                    let e = map_err(e);
                    for r in group.drain(..) {
                        (r.run)(Err(e.clone())).1(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        commit_group(&mut ctx, &mut group, health, syncing);
    }
    if health.check().is_ok() {
        if let Err(e) = close_cleanly(&mut ctx) {
            tracing::warn!(error = %e, "could not record the counters on close; they are recovered on open");
        }
    }
    // Writes sent after the stop are refused when `rx` drops: they answer `Closed`.
    tracing::debug!("SQLite writer committed everything sent before it stopped");
}

/// The last commit: the exact counters, fsynced, so a restart continues
/// without a gap in `seq` or start numbers.
fn close_cleanly(ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
    ctx.conn
        .pragma_update(None, "synchronous", "FULL")
        .map_err(map_err)?;
    ctx.conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    let written = ctx.persist_exact_counters();
    match written.and_then(|()| ctx.conn.execute_batch("COMMIT").map_err(map_err)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = ctx.conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Makes everything committed so far durable now, for a commit that was not
/// fsynced but raised a counter reservation (see `ctx`): in WAL mode one
/// fsynced commit syncs the log, and with it every commit before it.
fn sync_now(ctx: &mut WriteCtx<'_>) -> Result<(), StoreError> {
    let synced = (|| {
        ctx.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(map_err)?;
        ctx.conn
            // A commit that changes nothing writes no frame and syncs nothing:
            // count the syncs, so this one writes (and fsyncs) a page.
            .execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT INTO meta (name, value) VALUES ('syncs', 1)
                     ON CONFLICT (name) DO UPDATE SET value = value + 1;
                 COMMIT",
            )
            .map_err(map_err)
    })();
    if synced.is_err() && !ctx.conn.is_autocommit() {
        let _ = ctx.conn.execute_batch("ROLLBACK");
    }
    let restored = ctx
        .conn
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(map_err);
    synced.and(restored)
}

fn fail_group(answers: Vec<Answer>, rest: std::vec::Drain<'_, Request>, e: &StoreError) {
    for a in answers {
        a(Err(e.clone()));
    }
    for r in rest {
        (r.run)(Err(e.clone())).1(Err(e.clone()));
    }
}

fn commit_group(ctx: &mut WriteCtx<'_>, group: &mut Vec<Request>, health: &Health, syncing: bool) {
    let start = ctx.counters();
    if let Err(e) = ctx.exec("BEGIN IMMEDIATE") {
        if let StoreError::StorageFailed(reason) = &e {
            health.fail(reason.clone());
        }
        for r in group.drain(..) {
            (r.run)(Err(e.clone())).1(Err(e.clone()));
        }
        return;
    }
    // A group of one needs no savepoint: if it fails, the whole transaction
    // is rolled back. (Savepoints are not free: SQLite keeps every page a
    // savepoint changed in a sub-journal until it is released, which makes a
    // large batch inside one cost more per row as it grows.)
    let alone = group.len() == 1;
    let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
    let mut requests = group.drain(..);
    while let Some(request) = requests.next() {
        let before = ctx.counters();
        let savepoint = !alone && request.undo == Undo::Savepoint;
        if savepoint {
            if let Err(e) = ctx.exec("SAVEPOINT request") {
                answers.push((request.run)(Err(e)).1);
                continue;
            }
        }
        let rows_before = ctx.conn.total_changes();
        let (failed, answer) = (request.run)(Ok(ctx));
        match failed {
            Some(e) => {
                // An I/O error inside the transaction is as untrustworthy as one on commit.
                if let StoreError::StorageFailed(reason) = &e {
                    health.fail(reason.clone());
                }
                // Some errors (a full disk, an I/O error, out of memory) make SQLite
                // roll back the whole transaction by itself. Then nothing of the
                // group is left to commit: fail every request of it.
                if ctx.conn.is_autocommit() {
                    ctx.restore(start);
                    ctx.clear_needs_sync();
                    answers.push(answer);
                    fail_group(answers, requests, &e);
                    return;
                }
                if alone {
                    let _ = ctx.conn.execute_batch("ROLLBACK");
                    ctx.restore(start);
                    ctx.clear_needs_sync();
                    // The answer carries the request's own error.
                    answer(Ok(()));
                    return;
                }
                if !savepoint {
                    if ctx.conn.total_changes() == rows_before {
                        // Refused before writing: nothing to take out.
                        ctx.restore_request(before);
                        answers.push(answer);
                        continue;
                    }
                    if !matches!(e, StoreError::StorageFailed(_) | StoreError::StorageFull(_)) {
                        tracing::error!(error = %e, "a request without a savepoint failed after writing; its group is rolled back");
                    }
                    let _ = ctx.conn.execute_batch("ROLLBACK");
                    ctx.restore(start);
                    ctx.clear_needs_sync();
                    answers.push(answer);
                    fail_group(answers, requests, &e);
                    return;
                }
                if let Err(undo) = ctx
                    .conn
                    .execute_batch("ROLLBACK TO request; RELEASE request")
                {
                    // The failed request's writes cannot be taken out: nothing
                    // of this group may commit, and the store cannot be trusted.
                    let reason = format!("could not undo a failed request ({e}): {undo}");
                    health.fail(reason.clone());
                    let _ = ctx.conn.execute_batch("ROLLBACK");
                    ctx.restore(start);
                    ctx.clear_needs_sync();
                    answers.push(answer);
                    fail_group(answers, requests, &StoreError::StorageFailed(reason));
                    return;
                }
                ctx.restore_request(before);
            }
            None if !savepoint => {}
            None => {
                let _ = ctx.exec("RELEASE request");
            }
        }
        answers.push(answer);
    }
    // The parked claims this group's writes may have given work to, then
    // the counters of everything the group changed.
    let parked_from = answers.len();
    let finished = parked::run_parked(ctx, &mut answers)
        .and_then(|started| ctx.flush_group_tally().map(|()| started));
    let parked_starts = match finished {
        Ok(started) => started,
        Err(e) => {
            if let StoreError::StorageFailed(reason) = &e {
                health.fail(reason.clone());
            }
            let _ = ctx.conn.execute_batch("ROLLBACK");
            ctx.restore(start);
            ctx.clear_needs_sync();
            fail_group(answers, requests, &e);
            return;
        }
    };
    let began = Instant::now();
    let mut synced = syncing;
    let commit = health
        .check()
        .and_then(|()| ctx.exec("COMMIT"))
        .and_then(|()| {
            if ctx.take_needs_sync() && !syncing {
                synced = true;
                sync_now(ctx).inspect_err(|e| {
                    health.fail(format!("could not fsync a counter reservation: {e}"));
                })
            } else {
                Ok(())
            }
        });
    match commit {
        Ok(()) => {
            health.committed(
                answers.len(),
                parked_starts,
                synced.then(|| began.elapsed()),
            );
            // The idle workers first: a handler waiting for its job is the
            // enqueue-to-start latency; the group's callers wake after them.
            let requests_answers: Vec<Answer> = answers.drain(..parked_from).collect();
            answers
                .into_iter()
                .chain(requests_answers)
                .for_each(|a| a(Ok(())));
        }
        Err(e) => {
            if !ctx.conn.is_autocommit() {
                let _ = ctx.conn.execute_batch("ROLLBACK");
            }
            ctx.restore(start);
            ctx.clear_needs_sync();
            if let StoreError::StorageFailed(reason) = &e {
                health.fail(reason.clone());
            }
            answers.into_iter().for_each(|a| a(Err(e.clone())));
        }
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
