//! Operator views of forwarding: the tries to forward inbound events to
//! internal targets, and the backlog counted by status.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::json::{page_limit, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::parse_status;
use crate::http::rfc3339;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::Json;
use hookwarden_store::ingress::Job;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator forwarding", e)
}

/// One forwarding try of an inbound event (or the next one, pending).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    id: String,
    event_id: String,
    provider: String,
    attempt: i32,
    /// pending, succeeded, failed or dead.
    status: String,
    /// What created it: `received` or `replay`.
    trigger: String,
    http_status: Option<i32>,
    duration_ms: Option<i64>,
    response_preview: Option<String>,
    error: Option<String>,
    #[schema(format = DateTime)]
    due_at: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    completed_at: Option<String>,
}

pub(crate) fn job_view(j: &Job) -> JobView {
    JobView {
        id: j.id.clone(),
        event_id: j.event_id.clone(),
        provider: j.provider.clone(),
        attempt: j.attempt,
        status: j.status.as_str().to_owned(),
        trigger: j.trigger.clone(),
        http_status: j.http_status,
        duration_ms: j.duration_ms,
        response_preview: j.response_preview.clone(),
        error: j.error.clone(),
        due_at: rfc3339(j.due_at),
        created_at: rfc3339(j.created_at),
        completed_at: j.completed_at.map(rfc3339),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// pending, succeeded, failed or dead.
    status: Option<String>,
    /// Only this inbound event's jobs.
    event_id: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List forwarding jobs
///
/// The tries to forward inbound events to internal targets, filtered by `eventId` and `status`,
/// paged with `limit` and `cursor`.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "operator", params(JobsQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Forwarding jobs", body = Page<JobView>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<JobsQuery>,
) -> ApiResult<Json<Page<JobView>>> {
    let page = state
        .store
        .list_jobs(
            q.event_id.as_deref(),
            parse_status(q.status.as_deref())?,
            cursor::id("job", q.cursor.as_deref())?,
            page_limit(q.limit)?,
        )
        .await
        .map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(job_view).collect(),
        page.next_cursor,
    )))
}

/// Forwarding jobs by status.
#[derive(Serialize, ToSchema, Default)]
pub struct JobCounts {
    pending: u64,
    succeeded: u64,
    failed: u64,
    dead: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingStatus {
    jobs: JobCounts,
    oldest_pending_age_seconds: f64,
}

/// Forwarding backlog
///
/// Forwarding jobs counted by status, and the age in seconds of the oldest pending one.
#[utoipa::path(get, path = "/api/v1/processing-status", tag = "operator",
    security(("operatorKey" = [])),
    responses((status = 200, description = "Forwarding backlog", body = ProcessingStatus)))]
pub async fn processing_status(
    State(state): State<AppState>,
    _op: Operator,
) -> ApiResult<Json<ProcessingStatus>> {
    let s = state
        .store
        .processing_status(state.clock.now())
        .await
        .map_err(internal)?;
    let mut jobs = JobCounts::default();
    for (status, n) in &s.by_status {
        let slot = match status.as_str() {
            "pending" => &mut jobs.pending,
            "succeeded" => &mut jobs.succeeded,
            "failed" => &mut jobs.failed,
            "dead" => &mut jobs.dead,
            _ => continue,
        };
        *slot = *n;
    }
    Ok(Json(ProcessingStatus {
        jobs,
        oldest_pending_age_seconds: s.oldest_pending_age_seconds,
    }))
}
