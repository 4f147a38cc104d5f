//! What other nodes commit: a loop that feeds the store's
//! [`Store::external`](orderly_core::Store::external) events into the
//! service's wake-ups, so a job enqueued through node A wakes a claimer
//! long-polling on node B at once rather than at its next recheck.

use std::sync::Arc;

use orderly_core::External;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// Applies each event until `cancel` fires or the store stops sending:
/// [`External::Wake`] wakes claimers, `/wait`ers and the scheduler
/// ([`Service::wake_external`]); [`External::Committed`] is this node's
/// own change ([`Service::wake_for`]: events, metrics, wake-ups);
/// [`External::WakeAll`] wakes everyone ([`Service::wake_everyone`]).
pub async fn run(
    service: Arc<Service>,
    mut events: UnboundedReceiver<External>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Some(External::Wake(w)) => service.wake_external(&w),
            Some(External::Committed(changes)) => service.wake_for(&changes),
            Some(External::WakeAll) => service.wake_everyone(),
            None => return,
        }
    }
}
