//! `POST /api/v1/webhooks/{provider}`: the HTTP face of the inbound path
//! (`inbound/receive.rs` decides): who is calling, the body read only once
//! the request is admitted, and the answer.

use crate::http::client_addr::ClientAddr;
use crate::http::json::StrictPath;
use crate::inbound::receive::{accept, admit};
use crate::shared::error::ApiResult;
use crate::shared::limits::MAX_BODY;
use crate::shared::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use std::net::SocketAddr;

/// What an accepted inbound webhook is answered.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    /// The stored event (the earlier one, for a duplicate).
    event_id: String,
    /// Present, and true, when this delivery was received before.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// Receive a provider's webhook
///
/// The endpoint a provider calls for the integration named `provider` (404 when there is none);
/// no credentials but the provider's signature. The request is verified over its raw bytes with
/// the integration's scheme before anything is stored (401 `INVALID_SIGNATURE`, also for a
/// timestamp outside the tolerance window), must come from the integration's allowed address
/// ranges when it has some (403), holds at most 1 MiB (413) of one JSON object (400), and is
/// rate-limited per provider and source address (429). A new delivery is stored and answered
/// 202 `{eventId}`; forwarding to the integration's target follows. A delivery received before
/// (the same provider delivery id, or the same body when the provider sends no id) is answered
/// 200 `{eventId, duplicate: true}`, naming the earlier event.
#[utoipa::path(post, path = "/api/v1/webhooks/{provider}", tag = "inbound",
    params(("provider" = String, Path, description = "Integration name")),
    request_body(content = Object, description = "The provider's JSON object, verified over its raw bytes \
        with the integration's scheme (signature headers as the provider documents them)"),
    responses(
        (status = 202, description = "Verified and stored; forwarding is under way", body = Received),
        (status = 200, description = "Received before: not stored again", body = Received),
        (status = 401, description = "Signature, token or timestamp did not verify", body = crate::http::openapi::ErrorResponse),
        (status = 403, description = "Source address outside the integration's ranges", body = crate::http::openapi::ErrorResponse),
        (status = 429, description = "Too many requests from this provider and address, or too many refused ones (bad signature, outside the source ranges, unknown provider) from this client", body = crate::http::openapi::ErrorResponse)))]
pub async fn receive(
    State(state): State<AppState>,
    StrictPath(provider): StrictPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Received>)> {
    let source_ip = client.map_or(peer.ip(), |c| c.0 .0);
    let admitted = admit(&state, provider, source_ip, &headers).await?;
    crate::http::json::reject_declared_oversize(&headers, MAX_BODY)?;
    let raw = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| crate::http::body_deadline::refusal(&e))?;
    let received = accept(&state, admitted, &headers, raw).await?;
    let status = if received.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(Received {
            event_id: received.event_id,
            duplicate: received.duplicate.then_some(true),
        }),
    ))
}
