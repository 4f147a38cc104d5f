//! The WAL's fsync, taken off the writer's path (`Durability::Fsync`).
//!
//! With `synchronous = FULL`, SQLite fsyncs the WAL inside `COMMIT`: the
//! writer thread waits on the disk and runs nothing meanwhile, so at 16
//! workers a third of a drain was the writer waiting for fsyncs it could
//! have overlapped with the next group's statements. Here the writer's
//! connection runs `synchronous = NORMAL` (SQLite writes the WAL frames and
//! syncs the WAL before every checkpoint, but not at each commit), and
//! every committed group's answers are held in this module until an
//! `fdatasync` of the WAL file that *began after that group's `COMMIT`
//! returned* has completed. So no write is answered before it is on disk,
//! as with `FULL`; what changes is who waits: the group's callers, not the
//! writer, which goes on with the next group while the disk works.
//!
//! The fsync is made by whichever is free: the writer itself when no
//! request is waiting for it (one client: no thread hop is added), else
//! this module's thread. One fsync is in flight at a time; every answer
//! pending when it starts is released when it ends (a group commit of
//! fsyncs). A failed fsync is never retried: the store fails stop (see
//! `writer`), every answer pending or still to come is refused.
//!
//! Readers see a commit as soon as SQLite wrote it, before it is synced:
//! [`Visibility`] makes a read wait, before it answers, until everything
//! that was committed when it finished is durable. So nothing a crash of
//! the machine could take back is ever shown, to a reader either.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use orderly_core::StoreError;
use tokio::sync::watch;

use crate::writer::{Answer, Health};

/// How the WAL file is made durable: [`File::sync_data`], or in tests a
/// stand-in that holds it back or fails it.
pub(crate) type SyncWal = Arc<dyn Fn(&File) -> std::io::Result<()> + Send + Sync>;

/// The real thing: `fdatasync(2)` (the WAL's data, and its size when it grew).
pub(crate) fn fdatasync() -> SyncWal {
    Arc::new(|f: &File| f.sync_data())
}

/// How far commits are visible and how far durable, for the readers.
pub(crate) struct Visibility {
    /// Whether reads wait for durability (only when the WAL is synced
    /// after the commit, by [`Syncer`]).
    gated: bool,
    /// The number of the last group whose `COMMIT` began: its writes may be
    /// visible to a reader from then on.
    begun: AtomicU64,
    /// The number of the last group known durable (or that the store failed).
    durable: watch::Sender<Durable>,
}

/// What is durable.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Durable {
    /// Every group up to this number is on disk.
    upto: u64,
    /// An fsync failed: nothing after `upto` ever will be.
    failed: bool,
}

impl Visibility {
    /// Visibility for a writer whose commits are durable when they return
    /// (`gated = false`) or only once [`Syncer`] synced them.
    pub fn new(gated: bool) -> Visibility {
        Visibility {
            gated,
            begun: AtomicU64::new(0),
            durable: watch::Sender::new(Durable::default()),
        }
    }

    /// Numbers the next group's `COMMIT` before it runs.
    pub fn begin_commit(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn synced(&self, upto: u64) {
        self.durable.send_modify(|d| d.upto = d.upto.max(upto));
    }

    fn failed(&self) {
        self.durable.send_modify(|d| d.failed = true);
    }

    /// Returns once everything committed so far is durable: call it after
    /// a read finished, before answering with what it read.
    pub async fn settled(&self) -> Result<(), StoreError> {
        if !self.gated {
            return Ok(());
        }
        let want = self.begun.load(Ordering::SeqCst);
        let ready = |d: &Durable| d.upto >= want || d.failed;
        let now = *self.durable.borrow();
        let d = if ready(&now) {
            now
        } else {
            let mut rx = self.durable.subscribe();
            let d = *rx.wait_for(ready).await.map_err(|_| StoreError::Closed)?;
            d
        };
        if d.upto >= want {
            Ok(())
        } else {
            Err(StoreError::StorageFailed(
                "an fsync of the write-ahead log failed: what this read saw may not be on disk"
                    .into(),
            ))
        }
    }
}

/// Answers waiting for an fsync, and whether one is running.
#[derive(Default)]
struct State {
    pending: Vec<Answer>,
    /// The last group number handed over.
    upto: u64,
    /// The last group number the last fsync covered.
    last: u64,
    /// An fsync is running.
    busy: bool,
    /// The writer stopped: the thread ends once nothing is pending.
    stop: bool,
    /// An fsync failed: every answer from now on is refused.
    failed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    wal: File,
    sync: SyncWal,
    health: Arc<Health>,
    visibility: Arc<Visibility>,
}

/// Holds committed groups' answers until the WAL is synced (module docs).
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Opens the WAL file of the database at `db` (the writer's connection
    /// has it open already, in WAL mode) and starts the thread.
    pub fn start(
        db: &Path,
        sync: SyncWal,
        health: Arc<Health>,
        visibility: Arc<Visibility>,
    ) -> std::io::Result<Syncer> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = File::options().write(true).open(wal)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            wal,
            sync,
            health,
            visibility,
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("orderly-sqlite-fsync".into())
            .spawn(move || thread_shared.run())?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Holds the answers of group `group`, which committed, until an fsync
    /// that begins now or later ends. With `inline`, the caller makes that
    /// fsync itself if none is running.
    pub fn committed(&self, group: u64, answers: Vec<Answer>, inline: bool) {
        {
            let mut st = self.shared.lock();
            if let Some(reason) = &st.failed {
                let e = StoreError::StorageFailed(reason.clone());
                drop(st);
                answers.into_iter().for_each(|a| a(Err(e.clone())));
                return;
            }
            st.pending.extend(answers);
            st.upto = group;
            if !inline || st.busy {
                drop(st);
                self.shared.wake.notify_all();
                return;
            }
        }
        self.shared.sync_pending();
    }

    /// Syncs whatever is pending and waits for any fsync running: every
    /// answer handed over so far is released when this returns.
    pub fn drain(&self) {
        self.shared.sync_pending();
        let mut st = self.shared.lock();
        while st.busy || (Shared::unsynced(&st) && st.failed.is_none()) {
            st = self.shared.wait(st);
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.drain();
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// Something was committed that no fsync has covered yet.
    fn unsynced(st: &State) -> bool {
        !st.pending.is_empty() || st.upto > st.last
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: std::sync::MutexGuard<'a, State>) -> std::sync::MutexGuard<'a, State> {
        self.wake.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            if !st.busy && Self::unsynced(&st) && st.failed.is_none() {
                drop(st);
                self.sync_pending();
                st = self.lock();
                continue;
            }
            if st.stop && !st.busy {
                return;
            }
            st = self.wait(st);
        }
    }

    /// If no fsync is running, takes every pending answer, fsyncs the WAL
    /// and releases them; otherwise leaves them to the running one's next
    /// round.
    fn sync_pending(&self) {
        let (answers, upto) = {
            let mut st = self.lock();
            if st.busy || !Self::unsynced(&st) || st.failed.is_some() {
                return;
            }
            st.busy = true;
            (std::mem::take(&mut st.pending), st.upto)
        };
        let began = Instant::now();
        let synced = (self.sync)(&self.wal);
        let took = began.elapsed();
        let (failed, rest) = {
            let mut st = self.lock();
            st.busy = false;
            st.last = upto;
            if let Err(e) = &synced {
                st.failed = Some(format!("fsync of the write-ahead log failed: {e}"));
            }
            // After a failed fsync nothing pending now will ever be synced.
            let rest = match st.failed {
                Some(_) => std::mem::take(&mut st.pending),
                None => Vec::new(),
            };
            (st.failed.clone(), rest)
        };
        self.wake.notify_all();
        match failed {
            None => {
                self.health.fsynced(took);
                self.visibility.synced(upto);
                answers.into_iter().for_each(|a| a(Ok(())));
            }
            Some(reason) => {
                self.health.fail(reason.clone());
                self.visibility.failed();
                let e = StoreError::StorageFailed(reason);
                answers
                    .into_iter()
                    .chain(rest)
                    .for_each(|a| a(Err(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use orderly_core::StoreError;

    use super::SyncWal;
    use crate::ctx::WriteCtx;
    use crate::rows::map_err;
    use crate::writer::{CommitKind, Writer};
    use crate::Durability;

    fn ctx(dir: &std::path::Path) -> WriteCtx {
        let mut conn = rusqlite::Connection::open(dir.join("s.db")).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("full");
        crate::schema::migrate(&mut conn).expect("migrate");
        conn.execute_batch("CREATE TABLE marks (what TEXT NOT NULL)")
            .expect("marks");
        WriteCtx::new(conn, Durability::Fsync).expect("ctx")
    }

    fn marks(dir: &std::path::Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(dir.join("s.db")).expect("open");
        let mut stmt = conn
            .prepare("SELECT what FROM marks ORDER BY rowid")
            .expect("select");
        let rows = stmt.query_map([], |r| r.get(0)).expect("rows");
        rows.map(|r| r.expect("row")).collect()
    }

    async fn mark(writer: &Writer, what: &'static str) -> Result<(), StoreError> {
        writer
            .write(CommitKind::Accepting, move |ctx| {
                ctx.conn
                    .execute("INSERT INTO marks VALUES (?1)", [what])
                    .map(|_| ())
                    .map_err(map_err)
            })
            .await
            .map(|c| c.value)
    }

    /// A gate the stand-in fsync waits at until the test opens it.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, Condvar)>);

    impl Gate {
        fn open(&self) {
            *self.0 .0.lock().expect("gate") = true;
            self.0 .1.notify_all();
        }

        fn sync(&self) -> SyncWal {
            let gate = self.clone();
            Arc::new(move |f: &std::fs::File| {
                let mut open = gate.0 .0.lock().expect("gate");
                while !*open {
                    open = gate.0 .1.wait(open).expect("gate");
                }
                f.sync_data()
            })
        }
    }

    /// A commit SQLite has written is visible to other connections before
    /// the WAL is fsynced; neither its caller nor a reader of the store may
    /// hear of it until the fsync ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_answered_and_shown_only_after_its_fsync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Gate::default();
        let (writer, handle) =
            Writer::start_syncing(ctx(dir.path()), Durability::Fsync, gate.sync());
        let write = {
            let writer = writer.clone();
            tokio::spawn(async move { mark(&writer, "a").await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SQLite committed it: a plain connection sees it already.
        assert_eq!(marks(dir.path()), ["a"], "the commit ran");
        assert!(!write.is_finished(), "answered before its fsync");
        let read = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.visibility.settled().await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!read.is_finished(), "a read showed an unsynced commit");
        gate.open();
        write.await.expect("task").expect("the write commits");
        read.await.expect("task").expect("the read goes on");
        // Nothing waits once everything is synced.
        writer.visibility.settled().await.expect("settled");
        assert!(writer.health.stats().fsync_seconds.count >= 1);
        writer.stop().await;
        drop(writer);
        handle.join().expect("writer thread");
    }

    /// A failed fsync is never retried: the writes it would have made
    /// durable are refused, the store fails stop, and readers hear it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fsync_refuses_its_writes_and_stops_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fail: SyncWal =
            Arc::new(|_: &std::fs::File| Err(std::io::Error::other("injected EIO")));
        let (writer, handle) = Writer::start_syncing(ctx(dir.path()), Durability::Fsync, fail);
        let first = mark(&writer, "a").await;
        assert!(
            matches!(&first, Err(StoreError::StorageFailed(m)) if m.contains("injected EIO")),
            "{first:?}"
        );
        assert!(writer.health.check().is_err(), "the store fails stop");
        let read = writer.visibility.settled().await;
        assert!(
            matches!(read, Err(StoreError::StorageFailed(_))),
            "{read:?}"
        );
        let later = mark(&writer, "b").await;
        assert!(
            matches!(later, Err(StoreError::StorageFailed(_))),
            "{later:?}"
        );
        writer.stop().await;
        drop(writer);
        handle.join().expect("writer thread");
    }
}
