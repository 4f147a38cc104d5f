//! In-process wake-ups: per-name notifiers for long polls (claims wait on
//! their queue's name, `/wait` on the job's id), dropped when nobody waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Above this many wake-ups at once, every waiter of the name is woken.
const MAX_WAKE_ONE_BY_ONE: usize = 1_024;

/// Per-name notifiers that are dropped when nobody waits on them.
#[derive(Default)]
pub(crate) struct Waiters {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// The notifier of `name`, created if needed; give it back with [`Self::release`].
    pub fn get(&self, name: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Wakes every waiter of `name`.
    pub fn wake_all(&self, name: &str) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(name) {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter of every name.
    pub fn wake_everyone(&self) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// Wakes at most `n` waiters of `name` (one each, in the order they
    /// started waiting). A waiter that is woken but gone passes its wake-up
    /// on to the next (tokio's `Notified` does so when dropped).
    pub fn wake_some(&self, name: &str, n: usize) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = map.get(name) {
            for _ in 0..n.min(MAX_WAKE_ONE_BY_ONE) {
                notify.notify_one();
            }
            if n > MAX_WAKE_ONE_BY_ONE {
                notify.notify_waiters();
            }
        }
    }

    /// Forgets `name`'s notifier if only the map holds it.
    pub fn release(&self, name: &str, notify: Arc<Notify>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        drop(notify);
        if map.get(name).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(name);
        }
    }
}
