//! The pull protocol: claim, heartbeat, complete, fail, and batched reports.

use axum::extract::State;
use axum::Json;
use orderly_core::Outcome;
use orderly_proto::{
    ClaimRequest, ClaimResponse, CompleteRequest, FailRequest, HeartbeatRequest, HeartbeatResponse,
    ReportResponse, ReportResult, ReportsRequest, ReportsResponse,
};

use crate::convert::{claim_request, job_view, lease_view, report_request, rfc3339};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

/// `POST /v1/queues/{queue}/claim`: leases in `seq` order, long-polling up to `wait_ms`.
pub async fn claim(
    State(state): State<AppState>,
    ApiPath(queue): ApiPath<String>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let leases = state.service.claim(&queue, claim_request(req)).await?;
    Ok(Json(ClaimResponse {
        leases: leases.into_iter().map(lease_view).collect(),
    }))
}

/// `POST /v1/jobs/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let hb = state
        .service
        .heartbeat(&id, req.token, req.progress)
        .await?;
    Ok(Json(HeartbeatResponse {
        expires_at: rfc3339(hb.expires_at),
        lease_ms: hb.lease_ms,
        cancel_requested: hb.cancel_requested,
    }))
}

/// `POST /v1/jobs/{id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    let outcome = Outcome::Succeeded { result: req.result };
    report(&state, &id, req.token, outcome, req.claim_next).await
}

/// `POST /v1/jobs/{id}/fail`.
pub async fn fail(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FailRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    let outcome = Outcome::Failed {
        error: req.error,
        retry: req.retry.unwrap_or(true),
        retry_after_ms: req.retry_after_ms,
    };
    report(&state, &id, req.token, outcome, req.claim_next).await
}

/// Reports one outcome and shapes the answer of `complete` and `fail`.
async fn report(
    state: &AppState,
    id: &str,
    token: String,
    outcome: Outcome,
    claim_next: Option<ClaimRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    let (job, leases) = state
        .service
        .report(id, token, outcome, claim_next.map(claim_request))
        .await?;
    Ok(Json(ReportResponse {
        job: job_view(job),
        leases: leases.map(|l| l.into_iter().map(lease_view).collect()),
    }))
}

/// `POST /v1/reports`: one result per item, in order.
pub async fn reports(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ReportsRequest>,
) -> Result<Json<ReportsResponse>, ApiError> {
    let items = req
        .reports
        .into_iter()
        .enumerate()
        .map(|(i, item)| report_request(i, item))
        .collect();
    let results = state.service.report_many(items).await?;
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(job) => ReportResult {
                job: Some(job_view(job)),
                error: None,
            },
            Err(e) => ReportResult {
                job: None,
                error: Some(ApiError::from(e).detail()),
            },
        })
        .collect();
    Ok(Json(ReportsResponse { results }))
}
