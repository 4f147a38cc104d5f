//! The store conformance suite (`orderly_core::conformance`) against the
//! SQLite store: one test per contract test (from
//! `orderly_core::store_conformance_tests!`) so a failure is pinpointed, and
//! the whole suite through `exercise` under each relaxed durability level.
//! Every store lives in its own temporary directory, removed when the test ends.

use std::future::{ready, Ready};
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

    /// A store factory for `conformance`: each call opens a fresh store, whose
    /// directory lives as long as the factory.
    fn factory(self) -> impl Fn() -> Ready<SqliteStore> {
        move || ready(self.open())
    }
}

// One test per contract test, on stores with the default durability (fsync on
// every commit).
orderly_core::store_conformance_tests!(Stores::default().factory());

/// `exercise` itself, the entry point other backends call, under the relaxed
/// durability settings (the tests above use the default, fsync on every commit):
/// what is fsynced when must never change what the store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exercise_runs_the_whole_suite_with_accepted_durability() {
    conformance::exercise(Stores::with(Durability::Accepted).factory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exercise_runs_the_whole_suite_without_fsync() {
    conformance::exercise(Stores::with(Durability::None).factory()).await;
}
