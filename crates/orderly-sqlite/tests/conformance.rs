//! The store conformance suite (`orderly_core::conformance`) against the
//! SQLite store, one test per contract test so a failure is pinpointed.
//! Every store lives in its own temporary directory, removed when the test ends.

use std::sync::Mutex;

use orderly_core::conformance;
use orderly_sqlite::{Durability, SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// Opens fresh stores and keeps their directories alive until dropped.
#[derive(Default)]
struct Stores {
    dirs: Mutex<Vec<TempDir>>,
    durability: Durability,
}

impl Stores {
    fn with(durability: Durability) -> Self {
        Stores {
            durability,
            ..Default::default()
        }
    }

    fn open(&self) -> SqliteStore {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let options = SqliteOptions {
            durability: self.durability,
            ..SqliteOptions::new(dir.path())
        };
        let store = SqliteStore::open(&options).expect("open the store");
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir);
        store
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let stores = Stores::default();
                conformance::$name(stores.open()).await;
            }
        )*
    };
}

conformance_tests!(
    enqueue_assigns_consecutive_seqs,
    idempotent_enqueue,
    payloads_are_kept_exactly,
    payload_floats_are_kept_exactly,
    fifo_claim_at_concurrency_one,
    concurrency_is_never_exceeded,
    keys_run_one_at_a_time_in_seq_order,
    retrying_keyed_job_holds_its_key,
    retrying_keyless_job_lets_later_jobs_go,
    delayed_keyed_job_holds_its_place,
    cancelling_waiting_key_head_passes_the_key,
    long_line_behind_busy_key_does_not_block_other_keys,
    expired_lease_is_claimed_again_first,
    expired_lease_without_attempts_left_fails,
    maintenance_reaps_and_promotes,
    timeouts_fail_the_attempt,
    heartbeat_and_cancel_of_running_job,
    fail_outcomes,
    invalid_operations_and_retry,
    report_and_claim,
    report_many_is_independent_per_report,
    job_list_pages_by_seq,
    queue_configure_and_counts,
    retention_purge_deletes_only_old_finished_jobs,
    start_no_increases_in_start_order,
    concurrent_claimers,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_match_model() {
    let stores = Stores::default();
    conformance::random_interleavings_match_model(|| async { stores.open() }).await;
}

/// `exercise` itself, the entry point other backends call, under the relaxed
/// durability settings (the tests above use the default, fsync on every commit):
/// what is fsynced when must never change what the store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exercise_runs_the_whole_suite_with_accepted_durability() {
    let stores = Stores::with(Durability::Accepted);
    conformance::exercise(|| async { stores.open() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exercise_runs_the_whole_suite_without_fsync() {
    let stores = Stores::with(Durability::NoFsync);
    conformance::exercise(|| async { stores.open() }).await;
}
