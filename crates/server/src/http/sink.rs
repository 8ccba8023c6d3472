//! The development delivery sink (outside production only): records what
//! it receives in memory so forwarding can be tried on one machine.

use crate::http::json::StrictPath;
use crate::http::openapi::Page;
use crate::http::rfc3339;
use crate::inbound::integrations::keepable_header;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::sink::SinkRecord;
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

/// The sink keeps at most this much of each body (it is a development aid:
/// 1,000 records × 64 KiB bounds its memory).
const SINK_BODY_KEPT: usize = 64 * 1024;
/// And at most this many headers of a request, each value cut to
/// `SINK_HEADER_KEPT` bytes: with the body's bound, a record stays under
/// about 80 KiB, the whole sink under about 80 MiB.
const SINK_HEADERS_KEPT: usize = 32;
const SINK_HEADER_KEPT: usize = 256;

/// What the sink answers to a delivery.
#[derive(Serialize, ToSchema)]
pub struct SinkReceived {
    received: bool,
}

/// Record a request (development sink)
///
/// Records the request's headers and at most 64 KiB of its body under `provider`, to try
/// forwarding locally: point an integration's `targetUrl` here. Credentials it is sent
/// (`authorization`, `cookie`, a header naming a signature, token, secret or key) are kept as `[redacted]`; at most 32
/// headers are kept, each cut to 256 bytes. No credentials. Outside production only: in
/// production it answers 404.
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
            let v = v.to_str().ok()?;
            // A credential (the forwarder's token for the internal service,
            // a signature), as the ingress judges one: the sink answers
            // anyone who asks, so it shows that it came, never what it held.
            let v = if !keepable_header(k.as_str(), None) {
                "[redacted]"
            } else {
                cut(v, SINK_HEADER_KEPT)
            };
            Some((k.as_str().to_owned(), v.to_owned()))
        })
        .take(SINK_HEADERS_KEPT)
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

/// `s` up to `bytes` bytes, cut at a character's boundary.
fn cut(s: &str, bytes: usize) -> &str {
    let mut end = s.len().min(bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
