//! The public listener's first layer: who is calling (the TCP peer, or the
//! client a trusted proxy names; see `hookwarden_core::client_addr`), and
//! whether that client failed authentication so often that it is answered
//! 429 before any other work. Every response that refuses authentication
//! (401), a source address (403 from the ingress) or names no integration
//! (404 from the ingress) counts against the client.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};

/// The client's address as hookwarden judges it (rate limits, source
/// ranges, logs).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Reads the client address from a request's parts.
pub fn resolve(state: &AppState, req: &Request) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let values = |name: &str| -> Vec<&str> {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    Some(hookwarden_core::client_addr::client_address(
        peer,
        &values("forwarded"),
        &values("x-forwarded-for"),
        &state.settings.trusted_proxies,
    ))
}

pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(client) = resolve(&state, &req) else {
        return next.run(req).await;
    };
    tracing::Span::current().record("client.ip", tracing::field::display(client));
    if let Some(wait) = state.refusals.blocked(client) {
        metrics::counter!(crate::metrics::REFUSED_EARLY, "reason" => "failed_auth").increment(1);
        return ApiError::RateLimited(wait).into_response();
    }
    let ingress = req.uri().path().starts_with("/api/v1/webhooks/");
    req.extensions_mut().insert(ClientAddr(client));
    let resp = next.run(req).await;
    let refused = match resp.status() {
        StatusCode::UNAUTHORIZED => true,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => ingress,
        _ => false,
    };
    if refused {
        state.refusals.failed(client);
    }
    resp
}
