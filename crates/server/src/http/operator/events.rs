//! Operator views of inbound traffic: events (filters, sort, cursor), one
//! event with its raw body, replays, forwarding tries, the audit trail and
//! processing status. Every unexpected query parameter is a 400.

use crate::auth::operator::Operator;
use crate::error::{ApiError, ApiResult};
use crate::http::cursor;
use crate::http::json::{page_limit, StrictJson, StrictPath, StrictQuery};
use crate::http::openapi::{Health, Page};
use crate::http::operator::filters::{checked, parse_status, parse_time};
use crate::http::request_id::RequestId;
use crate::sink::SinkRecord;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use chrono::Utc;
use hookwarden_core::ids;
use hookwarden_store::ingress::{AuditRecord, EventQuery, InboundEvent, Job, NewReplay};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator events", e)
}

use crate::http::rfc3339;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Integration name.
    provider: Option<String>,
    /// Status of the latest forwarding job: pending, succeeded, failed or dead.
    status: Option<String>,
    /// Received at or after (RFC 3339).
    from: Option<String>,
    /// Received before (RFC 3339).
    to: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// `createdAt` (default) or `-createdAt`.
    sort: Option<String>,
}

/// An inbound event in listings.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    id: String,
    provider: String,
    /// The provider's own delivery id, when it sends one.
    delivery_id: Option<String>,
    /// Status of the latest forwarding job.
    status: Option<String>,
    body_sha256: String,
    source_ip: Option<String>,
    correlation_id: String,
    #[schema(format = DateTime)]
    created_at: String,
}

fn event_summary(e: &InboundEvent) -> EventSummary {
    EventSummary {
        id: e.id.clone(),
        provider: e.provider.clone(),
        delivery_id: e.delivery_id.clone(),
        status: e.status.map(|s| s.as_str().to_owned()),
        body_sha256: e.body_sha256.clone(),
        source_ip: e.source_ip.clone(),
        correlation_id: e.correlation_id.clone(),
        created_at: rfc3339(e.received_at),
    }
}

/// One inbound event in full: the raw body as received (it verified as
/// such), the headers kept with it, and its forwarding jobs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    #[serde(flatten)]
    summary: EventSummary,
    /// The body, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body: Option<String>,
    /// The body in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body_base64: Option<String>,
    /// Headers kept (never one carrying a signature or credential).
    headers: Value,
    jobs: Vec<JobView>,
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

fn job_view(j: &Job) -> JobView {
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

/// One entry of the hash-chained audit trail.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    seq: i64,
    id: String,
    actor: String,
    action: String,
    target: String,
    request_id: String,
    details: Value,
    #[schema(format = DateTime)]
    created_at: String,
    /// This entry's link in the chain, hex: HMAC-SHA256 under the
    /// database's secret audit chain key (stored sealed under the master
    /// key) over the previous entry's link and this entry's fields; entries
    /// written before that key existed keep a plain SHA-256 link.
    /// `GET /api/v1/audit-chain` verifies the chain.
    hash: String,
}

fn audit_view(a: &AuditRecord) -> AuditView {
    AuditView {
        seq: a.seq,
        id: a.id.clone(),
        actor: a.actor.clone(),
        action: a.action.clone(),
        target: a.target.clone(),
        request_id: a.request_id.clone(),
        details: serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null),
        created_at: a.created_at.clone(),
        hash: a.hash.clone(),
    }
}

/// List inbound events
///
/// Inbound events, filtered by `provider`, `status` (of the latest forwarding job) and the time
/// received (`from` included, `to` excluded, RFC 3339); `sort=createdAt` (the default) or
/// `-createdAt`; paged with `limit` and `cursor`. Any other query parameter is refused (400).
#[utoipa::path(get, path = "/api/v1/events", tag = "operator", params(EventsQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Inbound events", body = Page<EventSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<EventsQuery>,
) -> ApiResult<Json<Page<EventSummary>>> {
    let descending = match q.sort.as_deref() {
        None | Some("createdAt") => false,
        Some("-createdAt") => true,
        Some(_) => {
            return Err(ApiError::Validation(
                "sort must be createdAt or -createdAt".into(),
            ))
        }
    };
    if let Some(p) = &q.provider {
        if !crate::ingress::integrations::valid_name(p) {
            return Err(ApiError::Validation(
                "provider is not a valid integration name".into(),
            ));
        }
    }
    let after = cursor::time_id(q.cursor.as_deref())?;
    let query = EventQuery {
        provider: q.provider,
        status: parse_status(q.status.as_deref())?,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        descending,
        after,
        limit: page_limit(q.limit)?,
    };
    let page = state.store.list_inbound(&query).await.map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(event_summary).collect(),
        page.next_cursor,
    )))
}

/// Get an inbound event
///
/// One inbound event with the raw body as received (`rawBody`, or `rawBodyBase64` when it is
/// not UTF-8), the headers kept with it (never one carrying a signature or a credential) and
/// its forwarding jobs.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "operator",
    params(("id" = String, Path, description = "Inbound event id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The event with its raw body and jobs", body = EventDetail)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<EventDetail>> {
    let e = state
        .store
        .get_inbound(&id)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    let jobs = state
        .store
        .list_jobs(Some(&id), None, None, 100)
        .await
        .map_err(internal)?;
    let (raw_body, raw_body_base64) = match String::from_utf8(e.raw_body.clone()) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&e.raw_body)),
        ),
    };
    Ok(Json(EventDetail {
        summary: event_summary(&e),
        raw_body,
        raw_body_base64,
        headers: e.headers.clone(),
        jobs: jobs.items.iter().map(job_view).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    /// Who asked (1–100 characters), for the audit trail.
    requested_by: String,
    /// Why (1–500 characters).
    reason: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAccepted {
    replay_id: String,
    event_id: String,
    job: JobView,
}

/// Replay an inbound event
///
/// Forwards the event to its integration's target again: a new forwarding job, due now (202).
/// `requestedBy` (1–100 characters) and `reason` (1–500) are recorded with the replay and in
/// the audit trail.
#[utoipa::path(post, path = "/api/v1/events/{id}/replay", tag = "operator", request_body = ReplayBody,
    params(("id" = String, Path, description = "Inbound event id")),
    security(("operatorKey" = [])),
    responses((status = 202, description = "A new forwarding job is due now", body = ReplayAccepted)))]
pub async fn replay(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<ReplayBody>,
) -> ApiResult<(StatusCode, Json<ReplayAccepted>)> {
    let (requested_by, reason) = checked(&body.requested_by, &body.reason)?;
    let replay = NewReplay {
        id: ids::new_id("rpl"),
        event_id: id.clone(),
        requested_by,
        reason,
        request_id: rid.0.clone(),
        job_id: ids::new_id("job"),
        created_at: Utc::now(),
    };
    let job = state
        .store
        .replay(&replay)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    state.forward_wake.any();
    crate::audit::record(
        &state,
        &op.actor(),
        "event.replay_requested",
        &format!("event:{id}"),
        &rid.0,
        json!({"requestedBy": replay.requested_by, "reason": replay.reason, "jobId": job.id}),
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            replay_id: replay.id,
            event_id: id,
            job: job_view(&job),
        }),
    ))
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Read the audit trail
///
/// The hash-chained audit trail, oldest first: every management change, verification failure,
/// replay request and secret or key rotation, with actor, action, target, request id and
/// details (never a secret). `hookwarden audit verify` checks the chain.
#[utoipa::path(get, path = "/api/v1/audit-entries", tag = "operator", params(AuditQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The audit trail, oldest first", body = Page<AuditView>)))]
pub async fn audit_entries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditView>>> {
    let after = cursor::seq(q.cursor.as_deref())?;
    let page = state
        .store
        .list_audit(after, page_limit(q.limit)?)
        .await
        .map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(audit_view).collect(),
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
        .processing_status(Utc::now())
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

/// Liveness of the public listener
///
/// Answers `{"status":"ok"}` while the process serves requests; no credentials. Readiness
/// (database, NATS, Redis) is `/ready` on the ops listener.
#[utoipa::path(get, path = "/api/v1/health", tag = "inbound",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health::ok())
}

/// The sink keeps at most this much of each body (it is a development aid:
/// 1,000 records × 64 KiB bounds its memory).
const SINK_BODY_KEPT: usize = 64 * 1024;

/// What the sink answers to a delivery.
#[derive(Serialize, ToSchema)]
pub struct SinkReceived {
    received: bool,
}

/// Record a request (development sink)
///
/// Records the request's headers and at most 64 KiB of its body under `provider`, to try
/// forwarding locally: point an integration's `targetUrl` here. No credentials. Outside
/// production only: in production it answers 404.
#[utoipa::path(post, path = "/api/v1/internal/delivery-sink/{provider}", tag = "inbound",
    params(("provider" = String, Path, description = "Any name, to sort what is recorded")),
    request_body(content = String, description = "Anything; at most 64 KiB of it is kept", content_type = "*/*"),
    responses((status = 200, description = "Recorded (outside production; 404 in production)", body = SinkReceived)))]
pub async fn sink_receive(
    State(state): State<AppState>,
    StrictPath(provider): StrictPath<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<SinkReceived>)> {
    if !state.settings.delivery_sink {
        return Err(ApiError::NotFound);
    }
    let kept = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    let mut sink = state.sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.push_back(SinkRecord {
        provider,
        headers: kept,
        body: String::from_utf8_lossy(&body[..body.len().min(SINK_BODY_KEPT)]).into_owned(),
        received_at: rfc3339(Utc::now()),
    });
    while sink.len() > 1000 {
        sink.pop_front();
    }
    Ok((StatusCode::OK, Json(SinkReceived { received: true })))
}

/// List what the development sink recorded
///
/// The requests the sink recorded under `provider` (kept in memory, the latest 1,000 at most).
/// No credentials. Outside production only: in production it answers 404.
#[utoipa::path(get, path = "/api/v1/internal/delivery-sink/{provider}", tag = "inbound",
    params(("provider" = String, Path, description = "The name used when sending")),
    responses((status = 200, description = "What was recorded under that name (outside production)", body = Page<SinkRecord>)))]
pub async fn sink_list(
    State(state): State<AppState>,
    StrictPath(provider): StrictPath<String>,
) -> ApiResult<Json<Page<SinkRecord>>> {
    if !state.settings.delivery_sink {
        return Err(ApiError::NotFound);
    }
    let sink = state.sink.lock().unwrap_or_else(|p| p.into_inner());
    let items = sink
        .iter()
        .filter(|r| r.provider == provider)
        .cloned()
        .collect();
    Ok(Json(Page::new(items, None)))
}
