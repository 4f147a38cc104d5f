//! The pull protocol: claim, heartbeat, complete, fail, and batched reports.

use axum::extract::State;
use orderly_core::Outcome;
use orderly_proto::{
    ClaimRequest, ClaimResponse, CompleteRequest, ErrorBody, FailRequest, HeartbeatRequest,
    HeartbeatResponse, ReportResponse, ReportResult, ReportsRequest, ReportsResponse,
};

use crate::convert::{
    batch_claim_request, claim_request, job_view, lease_view, report_request, rfc3339, state_view,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::reply::Json;
use crate::service::Service;
use crate::AppState;

/// `POST /v1/queues/{queue}/claim`: leases in `seq` order, long-polling up to `wait_ms`.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/claim",
    operation_id = "claim_jobs",
    tag = "workers",
    params(("queue" = String, Path, description = "Queue name: 1 to 100 bytes of `A-Z a-z 0-9 . _ -`.", pattern = r"^[A-Za-z0-9._-]{1,100}$")),
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Leases in `seq` order; empty when nothing became eligible within `wait_ms`.", body = ClaimResponse),
        (status = 400, description = "A field is malformed or out of range.", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/heartbeat",
    operation_id = "heartbeat_job",
    tag = "workers",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The lease is renewed.", body = HeartbeatResponse),
        (status = 400, description = "The id or a field is malformed.", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The token is not the job's current lease (`stale_lease`).", body = ErrorBody),
        (status = 413, description = "The progress is larger than the payload limit (`payload_too_large`).", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/complete",
    operation_id = "complete_job",
    tag = "workers",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "The job, succeeded; and the next leases when `claim_next` was given.", body = ReportResponse),
        (status = 400, description = "The id or a field is malformed.", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The token is not the job's current lease (`stale_lease`).", body = ErrorBody),
        (status = 413, description = "The result is larger than the payload limit (`payload_too_large`).", body = ErrorBody),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<ReportResponse>, ApiError> {
    let outcome = Outcome::Succeeded { result: req.result };
    report(&state, &id, req.token, outcome, req.claim_next).await
}

/// `POST /v1/jobs/{id}/fail`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/fail",
    operation_id = "fail_job",
    tag = "workers",
    params(("id" = String, Path, description = "Job id: 1 to 200 bytes of `A-Z a-z 0-9 . _ : -`.", pattern = r"^[A-Za-z0-9._:-]{1,200}$")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "The job, back in line for a retry or failed for good; and the next leases when `claim_next` was given.", body = ReportResponse),
        (status = 400, description = "The id or a field is malformed or out of range.", body = ErrorBody),
        (status = 404, description = "No such job (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The token is not the job's current lease (`stale_lease`).", body = ErrorBody),
        (status = 413, description = "The error is larger than the payload limit (`payload_too_large`).", body = ErrorBody),
    )
)]
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

/// `POST /v1/reports`: one result per item, in order; an item with
/// `claim_next` also claims on its job's queue, in its report's commit.
#[utoipa::path(
    post,
    path = "/v1/reports",
    operation_id = "report_many",
    tag = "workers",
    request_body = ReportsRequest,
    responses(
        (status = 200, description = "One result per report, in order: the job (its `state` only with `brief`; and, with `claim_next`, the leases it took, in `seq` order), or why that report was refused (a refused report claims nothing).", body = ReportsResponse),
        (status = 400, description = "The body is malformed, has too many reports, or a `claim_next` is out of range or waits (`reports[i].claim_next.wait_ms` must be 0).", body = ErrorBody),
    )
)]
pub async fn reports(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ReportsRequest>,
) -> Result<Json<ReportsResponse>, ApiError> {
    // A bad `claim_next` refuses the whole request, whatever else its item says.
    for (i, item) in req.reports.iter().enumerate() {
        if let Some(c) = &item.claim_next {
            Service::check_batch_claim(i, &batch_claim_request(c.clone()))?;
        }
    }
    let brief = req.brief;
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
            Ok((job, leases)) => ReportResult {
                state: brief.then(|| state_view(job.state)),
                job: (!brief).then(|| job_view(job)),
                error: None,
                leases: leases.map(|l| l.into_iter().map(lease_view).collect()),
            },
            Err(e) => ReportResult {
                job: None,
                state: None,
                error: Some(ApiError::from(e).detail()),
                leases: None,
            },
        })
        .collect();
    Ok(Json(ReportsResponse { results }))
}
