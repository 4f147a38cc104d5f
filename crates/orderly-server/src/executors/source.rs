//! [`ServiceSource`]: the worker runtime's [`JobSource`] over the service,
//! in-process. Executors and the embedded library's handlers take jobs
//! through it: the same claim, heartbeat and report operations (and so the
//! same ordering, fencing and wake-ups) as HTTP workers, without HTTP.

use std::sync::Arc;

use orderly_core::{Outcome as StoreOutcome, StoreError};
use orderly_worker::{Beat, ClaimParams, Job, JobSource, Lease, Outcome, SourceError};
use serde_json::Value;

use crate::error::ServiceError;
use crate::service::{ClaimRequest, Service};

/// A [`JobSource`] that calls the [`Service`] directly.
#[derive(Clone)]
pub struct ServiceSource {
    service: Arc<Service>,
}

impl ServiceSource {
    /// A source over `service`.
    pub fn new(service: Arc<Service>) -> Self {
        ServiceSource { service }
    }
}

/// A store lease as the worker runtime sees it.
pub fn lease_of(l: orderly_core::Lease) -> Lease {
    Lease {
        job: Job {
            id: l.job.id,
            queue: l.job.queue,
            key: l.job.key,
            seq: l.job.seq,
            attempt: l.job.attempt,
            payload: l.job.payload,
            timeout_ms: l.job.timeout_ms,
        },
        token: l.token,
        lease_ms: l.lease_ms,
    }
}

fn claim_request(p: &ClaimParams) -> ClaimRequest {
    ClaimRequest {
        worker: p.worker.clone(),
        max: p.max,
        wait_ms: u64::try_from(p.wait.as_millis()).unwrap_or(u64::MAX),
        lease_ms: p.lease_ms,
    }
}

/// What the runtime should do about a service error.
fn source_error(e: ServiceError) -> SourceError {
    match e {
        ServiceError::Store(
            e @ (StoreError::StaleLease { .. }
            | StoreError::JobNotFound(_)
            | StoreError::InvalidState { .. }),
        ) => SourceError::LeaseLost(e.to_string()),
        ServiceError::Store(
            e @ (StoreError::Unavailable(_)
            | StoreError::StorageFull(_)
            | StoreError::StorageFailed(_)
            | StoreError::Closed
            | StoreError::Backend(_)),
        ) => SourceError::Unavailable(e.to_string()),
        e => SourceError::Refused(e.to_string()),
    }
}

fn store_outcome(o: &Outcome) -> StoreOutcome {
    match o {
        Outcome::Succeeded(v) => StoreOutcome::Succeeded {
            result: Some(v.clone()),
        },
        Outcome::Failed(f) => StoreOutcome::Failed {
            error: f.error.clone(),
            retry: f.retry,
            retry_after_ms: f
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        },
    }
}

#[async_trait::async_trait]
impl JobSource for ServiceSource {
    async fn claim(&self, queue: &str, params: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
        let leases = self
            .service
            .claim(queue, claim_request(params))
            .await
            .map_err(source_error)?;
        Ok(leases.into_iter().map(lease_of).collect())
    }

    async fn heartbeat(&self, lease: &Lease, progress: Option<Value>) -> Result<Beat, SourceError> {
        let h = self
            .service
            .heartbeat(&lease.job.id, lease.token.clone(), progress)
            .await
            .map_err(source_error)?;
        Ok(Beat {
            lease_ms: h.lease_ms,
            cancel_requested: h.cancel_requested,
        })
    }

    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError> {
        let (_, leases) = self
            .service
            .report(
                &lease.job.id,
                lease.token.clone(),
                store_outcome(outcome),
                claim_next.map(claim_request),
            )
            .await
            .map_err(source_error)?;
        Ok(leases
            .unwrap_or_default()
            .into_iter()
            .map(lease_of)
            .collect())
    }
}
