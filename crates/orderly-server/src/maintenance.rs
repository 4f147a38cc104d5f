//! Background services: the scheduler and lease reaper, and retention.
//!
//! Each is a [`Config`] with named defaults and a `run(cancel)` loop.
//!
//! With several nodes on one database only the maintenance leader
//! ([`orderly_core::Store::maintenance_leader`]) runs the passes; the others
//! ask again every [`Config::max_idle`] and take over when the leader is gone.
//! Every `now` comes from [`Service::now`], the database's clock.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Service;

/// Settings of the maintenance loops.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest sleep between passes of the scheduler and lease reaper.
    pub max_idle: Duration,
    /// Finished jobs older than this are deleted.
    pub retention: Duration,
    /// How often retention runs.
    pub retention_every: Duration,
}

impl Config {
    /// Default longest idle time of the scheduler/reaper.
    pub const DEFAULT_MAX_IDLE: Duration = Duration::from_millis(500);
    /// Default retention of finished jobs: 7 days.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Default retention pass interval.
    pub const DEFAULT_RETENTION_EVERY: Duration = Duration::from_secs(600);
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_idle: Self::DEFAULT_MAX_IDLE,
            retention: Self::DEFAULT_RETENTION,
            retention_every: Self::DEFAULT_RETENTION_EVERY,
        }
    }
}

/// Promotes due jobs and reaps expired leases until `cancel`, sleeping until
/// the next due time (at most `max_idle`) or until woken by a delayed enqueue.
pub async fn run_scheduler(service: Arc<Service>, config: Config, cancel: CancellationToken) {
    let mut last_failure: Option<(String, std::time::Instant)> = None;
    loop {
        let now = service.now();
        let mut sleep_for = config.max_idle;
        let leader = service.store().maintenance_leader().await;
        if !leader {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(sleep_for) => {}
            }
            continue;
        }
        match service.maintain().await {
            Ok(next_due) => {
                if let Some(next) = next_due {
                    let until = Duration::from_millis((next - now).max(1) as u64);
                    sleep_for = sleep_for.min(until);
                }
            }
            Err(e) => {
                // Once a minute is enough to say the same thing (a full disk, a failed store).
                let message = e.to_string();
                let repeated =
                    last_failure
                        .as_ref()
                        .is_some_and(|(m, at): &(String, std::time::Instant)| {
                            *m == message && at.elapsed() < Duration::from_secs(60)
                        });
                if !repeated {
                    tracing::warn!(error = %message, "maintenance pass failed");
                    last_failure = Some((message, std::time::Instant::now()));
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(sleep_for) => {}
            _ = service.maintenance_wake.notified() => {}
        }
    }
}

/// Jobs deleted per retention transaction.
const RETENTION_BATCH: u32 = 5_000;

/// Deletes finished jobs older than the retention, until `cancel`. A node
/// that does not lead maintenance asks again every `max_idle`, so a node
/// that takes over runs its first pass then, not a `retention_every` later.
pub async fn run_retention(service: Arc<Service>, config: Config, cancel: CancellationToken) {
    loop {
        let retention = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = service.now().saturating_sub(retention);
        let mut deleted = 0u64;
        if !service.store().maintenance_leader().await {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(config.max_idle.min(config.retention_every)) => {}
            }
            continue;
        }
        // Small deletes, one transaction each, so enqueues and claims interleave.
        {
            loop {
                match service
                    .store()
                    .retention_purge(cutoff, RETENTION_BATCH)
                    .await
                {
                    Ok(n) => {
                        deleted += n;
                        if n < RETENTION_BATCH as u64 || cancel.is_cancelled() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed");
                        break;
                    }
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "retention removed finished jobs");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(config.retention_every) => {}
        }
    }
}
