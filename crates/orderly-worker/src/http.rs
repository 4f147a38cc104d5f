//! [`HttpSource`]: the worker protocol of contract section 5 over
//! `orderly_client::Client`.
//!
//! Status codes are mapped to [`SourceError`] here and nowhere else: `404`
//! and `409` on a heartbeat or report mean the lease is lost, any other 4xx
//! is final, a 5xx or a transport error may be retried.

use std::time::Duration;

use orderly_client::proto::{
    ClaimRequest, CompleteRequest, FailRequest, HeartbeatRequest, JobView, LeaseView,
};
use orderly_client::{Client, ClientError};
use serde_json::Value;

use crate::handler::Job;
use crate::source::{Beat, ClaimParams, JobSource, Lease, Outcome, SourceError};

/// A [`JobSource`] that talks to an Orderly server over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSource {
    client: Client,
}

impl HttpSource {
    /// A source over `client`.
    pub fn new(client: Client) -> Self {
        HttpSource { client }
    }

    /// The client it uses.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The neutral job of a wire job.
fn job_of(v: JobView) -> Job {
    Job {
        id: v.id,
        queue: v.queue,
        key: v.key,
        seq: v.seq,
        attempt: v.attempt,
        payload: v.payload,
        timeout_ms: v.timeout_ms,
    }
}

/// The lease of a wire lease (`lease_ms` is the server's; `expires_at` is
/// deliberately not used: it is a reading of the server's clock).
fn lease_of(v: LeaseView) -> Lease {
    Lease {
        job: job_of(v.job),
        token: v.token,
        lease_ms: v.lease_ms,
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

/// Maps a client error; `lease_codes` says whether 404/409 mean a lost lease.
fn map_error(e: ClientError, lease_codes: bool) -> SourceError {
    match e.status() {
        Some(404 | 409) if lease_codes => SourceError::LeaseLost(e.to_string()),
        Some(s) if (400..500).contains(&s) => SourceError::Refused(e.to_string()),
        _ => SourceError::Unavailable(e.to_string()),
    }
}

/// Time limit of a whole call that may wait `wait` on the server: the
/// client's own limits apply first; this only guards against a hung socket.
fn limit(wait: Duration) -> Duration {
    orderly_client::REQUEST_TIMEOUT + wait + Duration::from_secs(5)
}

#[async_trait::async_trait]
impl JobSource for HttpSource {
    async fn claim(&self, queue: &str, params: &ClaimParams) -> Result<Vec<Lease>, SourceError> {
        let req = claim_request(params);
        match tokio::time::timeout(limit(params.wait), self.client.claim(queue, &req)).await {
            Ok(Ok(r)) => Ok(r.leases.into_iter().map(lease_of).collect()),
            Ok(Err(e)) => Err(map_error(e, false)),
            Err(_) => Err(SourceError::Unavailable("claim timed out".into())),
        }
    }

    async fn heartbeat(&self, lease: &Lease, progress: Option<Value>) -> Result<Beat, SourceError> {
        let req = HeartbeatRequest {
            token: lease.token.clone(),
            progress,
        };
        match tokio::time::timeout(
            limit(Duration::ZERO),
            self.client.heartbeat(&lease.job.id, &req),
        )
        .await
        {
            Ok(Ok(hb)) => Ok(Beat {
                lease_ms: hb.lease_ms,
                cancel_requested: hb.cancel_requested,
            }),
            Ok(Err(e)) => Err(map_error(e, true)),
            Err(_) => Err(SourceError::Unavailable("heartbeat timed out".into())),
        }
    }

    async fn report(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        claim_next: Option<&ClaimParams>,
    ) -> Result<Vec<Lease>, SourceError> {
        let next = claim_next.map(claim_request);
        let wait = claim_next.map_or(Duration::ZERO, |c| c.wait);
        let id = &lease.job.id;
        let sent = match outcome {
            Outcome::Succeeded(result) => {
                let req = CompleteRequest {
                    token: lease.token.clone(),
                    result: Some(result.clone()),
                    claim_next: next,
                };
                tokio::time::timeout(limit(wait), self.client.complete(id, &req)).await
            }
            Outcome::Failed(f) => {
                let req = FailRequest {
                    token: lease.token.clone(),
                    error: f.error.clone(),
                    // `None` lets the queue's policy decide.
                    retry: (!f.retry).then_some(false),
                    retry_after_ms: f
                        .retry_after
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    claim_next: next,
                };
                tokio::time::timeout(limit(wait), self.client.fail(id, &req)).await
            }
        };
        match sent {
            Ok(Ok(r)) => Ok(r
                .leases
                .unwrap_or_default()
                .into_iter()
                .map(lease_of)
                .collect()),
            Ok(Err(e)) => Err(map_error(e, true)),
            Err(_) => Err(SourceError::Unavailable("report timed out".into())),
        }
    }
}
