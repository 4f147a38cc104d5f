//! A parked claim's ticket: who may run it, the store or nobody.
//!
//! A long-polling claim that finds nothing may be *parked* in a store that
//! can hold it ([`crate::Store::job_claim_parked`]): the store runs it again
//! inside the next commit that may have made a job of its queue startable
//! (an enqueue, a finished attempt), so the job is started in the same
//! commit that accepted it instead of in a second one after a wake-up. The
//! caller keeps the right to give up (its wait ended, or something the
//! store does not see woke it): the ticket decides, atomically, which of
//! the two happens, so a claim is never run for a caller that left, nor
//! left unanswered for one that waits.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Waiting to be run (not yet run, or parked after finding nothing).
const WAITING: u8 = 0;
/// The store is running it now; it answers, or puts the ticket back.
const TAKEN: u8 = 1;
/// The caller gave up: the store must drop it unrun.
const WITHDRAWN: u8 = 2;

/// Shared between a parked claim's caller and the store holding it.
#[derive(Debug, Clone, Default)]
pub struct ParkTicket(Arc<AtomicU8>);

impl ParkTicket {
    /// A ticket waiting to be run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Store side: takes the claim to run it now; `false` if the caller
    /// withdrew it (then it must not run).
    pub fn take(&self) -> bool {
        self.0
            .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Store side: a taken claim found nothing and waits again.
    pub fn put_back(&self) {
        self.0.store(WAITING, Ordering::Release);
    }

    /// Caller side: withdraws the claim; `false` while the store is running
    /// it (its answer comes, or it is put back and can be withdrawn then).
    pub fn withdraw(&self) -> bool {
        self.0
            .compare_exchange(WAITING, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.is_withdrawn()
    }

    /// True once the caller withdrew it.
    pub fn is_withdrawn(&self) -> bool {
        self.0.load(Ordering::Acquire) == WITHDRAWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_ticket_cannot_be_taken() {
        let t = ParkTicket::new();
        assert!(t.withdraw());
        assert!(!t.take());
        assert!(t.is_withdrawn());
        assert!(t.withdraw(), "withdrawing twice is harmless");
    }

    #[test]
    fn a_taken_ticket_cannot_be_withdrawn_until_it_is_put_back() {
        let t = ParkTicket::new();
        assert!(t.take());
        assert!(!t.withdraw());
        assert!(!t.take(), "only one runner at a time");
        t.put_back();
        assert!(t.withdraw());
        assert!(!t.take());
    }
}
