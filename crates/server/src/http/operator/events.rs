//! Operator views of inbound traffic: events (filters, sort, cursor), one
//! event with its raw body, replays, forwarding tries, the audit trail and
//! processing status. Every unexpected query parameter is a 400.

use crate::auth::operator::Operator;
use crate::error::{ApiError, ApiResult};
use crate::http::json::{page_limit, StrictJson, StrictQuery};
use crate::http::request_id::RequestId;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use hookwarden_core::ids;
use hookwarden_store::ingress::{AuditRecord, EventQuery, InboundEvent, Job, NewReplay};
use hookwarden_store::model::AttemptStatus;
use serde::Deserialize;
use serde_json::{json, Value};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator events", e)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_status(s: Option<&str>) -> ApiResult<Option<AttemptStatus>> {
    s.map(|s| {
        AttemptStatus::parse(s).ok_or_else(|| {
            ApiError::Validation("status must be pending, succeeded, failed or dead".into())
        })
    })
    .transpose()
}

fn parse_time(name: &str, s: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::Validation(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    provider: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    sort: Option<String>,
}

fn event_summary(e: &InboundEvent) -> Value {
    json!({
        "id": e.id,
        "provider": e.provider,
        "deliveryId": e.delivery_id,
        "status": e.status.map(AttemptStatus::as_str),
        "bodySha256": e.body_sha256,
        "sourceIp": e.source_ip,
        "correlationId": e.correlation_id,
        "createdAt": rfc3339(e.received_at),
    })
}

fn job_view(j: &Job) -> Value {
    json!({
        "id": j.id,
        "eventId": j.event_id,
        "provider": j.provider,
        "attempt": j.attempt,
        "status": j.status.as_str(),
        "trigger": j.trigger,
        "httpStatus": j.http_status,
        "durationMs": j.duration_ms,
        "responsePreview": j.response_preview,
        "error": j.error,
        "dueAt": rfc3339(j.due_at),
        "createdAt": rfc3339(j.created_at),
        "completedAt": j.completed_at.map(rfc3339),
    })
}

fn audit_view(a: &AuditRecord) -> Value {
    json!({
        "seq": a.seq,
        "id": a.id,
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "requestId": a.request_id,
        "details": serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null),
        "createdAt": a.created_at,
        "hash": a.hash,
    })
}

pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<EventsQuery>,
) -> ApiResult<Json<Value>> {
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
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            let bad = || ApiError::Validation("cursor is not valid".into());
            let (micros, id) = c.split_once(':').ok_or_else(bad)?;
            let micros: i64 = micros.parse().map_err(|_| bad())?;
            let t = Utc.timestamp_micros(micros).single().ok_or_else(bad)?;
            if !ids::is_well_formed_request_id(id) {
                return Err(bad());
            }
            Ok((t, id.to_owned()))
        })
        .transpose()?;
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
    Ok(Json(
        json!({"items": page.items.iter().map(event_summary).collect::<Vec<_>>(), "nextCursor": page.next_cursor}),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
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
    let mut body = event_summary(&e);
    // The raw body as received (it verified as such); base64 if it is not UTF-8.
    match String::from_utf8(e.raw_body.clone()) {
        Ok(text) => body["rawBody"] = Value::String(text),
        Err(_) => {
            body["rawBodyBase64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(&e.raw_body))
        }
    }
    body["headers"] = e.headers.clone();
    body["jobs"] = Value::Array(jobs.items.iter().map(job_view).collect());
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayBody {
    requested_by: String,
    reason: String,
}

pub async fn replay(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
    StrictJson(body): StrictJson<ReplayBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let requested_by = body.requested_by.trim();
    let reason = body.reason.trim();
    if !(1..=100).contains(&requested_by.chars().count()) {
        return Err(ApiError::Validation(
            "requestedBy must be 1 to 100 characters".into(),
        ));
    }
    if !(1..=500).contains(&reason.chars().count()) {
        return Err(ApiError::Validation(
            "reason must be 1 to 500 characters".into(),
        ));
    }
    let replay = NewReplay {
        id: ids::new_id("rpl"),
        event_id: id.clone(),
        requested_by: requested_by.to_owned(),
        reason: reason.to_owned(),
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
    state.forward_wake.notify_one();
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
        Json(json!({"replayId": replay.id, "eventId": id, "job": job_view(&job)})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobsQuery {
    status: Option<String>,
    event_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<JobsQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .store
        .list_jobs(
            q.event_id.as_deref(),
            parse_status(q.status.as_deref())?,
            q.cursor.as_deref(),
            page_limit(q.limit)?,
        )
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({"items": page.items.iter().map(job_view).collect::<Vec<_>>(), "nextCursor": page.next_cursor}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

pub async fn audit_entries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::Validation("cursor is not valid".into()))
        })
        .transpose()?;
    let page = state
        .store
        .list_audit(after, page_limit(q.limit)?)
        .await
        .map_err(internal)?;
    Ok(Json(
        json!({"items": page.items.iter().map(audit_view).collect::<Vec<_>>(), "nextCursor": page.next_cursor}),
    ))
}

pub async fn processing_status(
    State(state): State<AppState>,
    _op: Operator,
) -> ApiResult<Json<Value>> {
    let s = state
        .store
        .processing_status(Utc::now())
        .await
        .map_err(internal)?;
    let mut jobs = json!({"pending": 0, "succeeded": 0, "failed": 0, "dead": 0});
    for (status, n) in &s.by_status {
        jobs[status] = json!(n);
    }
    Ok(Json(
        json!({"jobs": jobs, "oldestPendingAgeSeconds": s.oldest_pending_age_seconds}),
    ))
}

/// `GET /api/v1/health` (public).
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The sink keeps at most this much of each body (it is a development aid:
/// 1,000 records × 64 KiB bounds its memory).
const SINK_BODY_KEPT: usize = 64 * 1024;

/// `POST /api/v1/internal/delivery-sink/{provider}`: records what it receives,
/// for local testing. Outside production only: in production it is 404.
pub async fn sink_receive(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !state.settings.delivery_sink {
        return Err(ApiError::NotFound);
    }
    let kept: serde_json::Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), Value::String(v.to_owned())))
        })
        .collect();
    let mut sink = state.sink.lock().unwrap_or_else(|p| p.into_inner());
    sink.push_back(json!({"provider": provider, "headers": kept, "body": String::from_utf8_lossy(&body[..body.len().min(SINK_BODY_KEPT)]), "receivedAt": rfc3339(Utc::now())}));
    while sink.len() > 1000 {
        sink.pop_front();
    }
    Ok((StatusCode::OK, Json(json!({"received": true}))))
}

/// `GET /api/v1/internal/delivery-sink/{provider}`: what the sink recorded.
pub async fn sink_list(
    State(state): State<AppState>,
    Path(provider): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state.settings.delivery_sink {
        return Err(ApiError::NotFound);
    }
    let sink = state.sink.lock().unwrap_or_else(|p| p.into_inner());
    let items: Vec<Value> = sink
        .iter()
        .filter(|v| v["provider"] == provider.as_str())
        .cloned()
        .collect();
    Ok(Json(json!({"items": items, "nextCursor": null})))
}
