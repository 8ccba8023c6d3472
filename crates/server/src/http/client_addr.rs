//! The public listener's first layer: who is calling (the TCP peer, or the
//! client a trusted proxy names; see `hookwarden_core::client_addr`), and
//! whether that client failed authentication so often that it is answered
//! 429 before any other work. Responses that refuse authentication (401) or
//! a source address (the ingress's 403) count against the client, in the
//! scope of the route: one provider's ingress, or the APIs. Requests naming
//! no integration are limited in the receive handler.

use crate::shared::error::ApiError;
use crate::shared::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};

/// The client's address as hookwarden judges it (rate limits, source
/// ranges, logs).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Reads the client address from a request's parts.
pub fn resolve(state: &AppState, req: &Request) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let settings = &state.settings;
    if settings.trusted_proxies.is_empty() {
        warn_ignored_forwarding(req);
    }
    let values: Vec<&[u8]> = req
        .headers()
        .get_all(settings.trusted_proxy_header.name())
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    Some(hookwarden_core::client_addr::client_address(
        peer,
        settings.trusted_proxy_header,
        &values,
        &settings.trusted_proxies,
    ))
}

/// Forwarding headers with no trusted proxy configured are ignored (as they
/// must be); said once in ten minutes, as behind a proxy it means every
/// client shares the proxy's address and its limits.
fn warn_ignored_forwarding(req: &Request) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let h = req.headers();
    if !(h.contains_key("x-forwarded-for") || h.contains_key("forwarded")) {
        return;
    }
    metrics::counter!(crate::shared::metrics::FORWARDING_HEADERS_IGNORED).increment(1);
    let now = chrono::Utc::now().timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if now - last >= 600
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("requests carry X-Forwarded-For or Forwarded, but HOOKWARDEN_TRUSTED_PROXIES is unset: they are ignored, and if a proxy is in front every client shares its address and limits");
    }
}

/// The scope a refusal counts in: one provider's ingress, or the APIs. The
/// provider is named as the route reads it, percent-decoded: `%61cme`
/// is `acme`, and its refusals count in `acme`'s scope (each spelling its
/// own scope would multiply a client's budget of forgeries).
fn scope(path: &str) -> String {
    match path.strip_prefix("/api/v1/webhooks/") {
        Some(p) => {
            let segment = p.split('/').next().unwrap_or_default();
            let decoded = percent_decoded(segment);
            let provider: String = decoded.chars().take(64).collect();
            format!("ingress:{provider}")
        }
        None => "api".to_owned(),
    }
}

/// A path segment with its `%XX` escapes decoded (invalid escapes and
/// bytes that do not make UTF-8 kept or replaced, as the path extractor
/// would refuse them anyway).
fn percent_decoded(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return segment.into();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(client) = resolve(&state, &req) else {
        return next.run(req).await;
    };
    tracing::Span::current().record("client.ip", tracing::field::display(client));
    let scope = scope(req.uri().path());
    if let Some(wait) = state.refusals.blocked(&scope, client) {
        metrics::counter!(crate::shared::metrics::REFUSED_EARLY, "reason" => "failed_auth")
            .increment(1);
        if scope.starts_with("ingress:") {
            state
                .activity
                .count(crate::shared::activity::Count::Refused);
        }
        return ApiError::RateLimited(wait).into_response();
    }
    let ingress = scope.starts_with("ingress:");
    req.extensions_mut().insert(ClientAddr(client));
    let resp = next.run(req).await;
    let refused = match resp.status() {
        StatusCode::UNAUTHORIZED => true,
        StatusCode::FORBIDDEN => ingress,
        _ => false,
    };
    if refused {
        state.refusals.failed(&scope, client);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::scope;

    #[test]
    fn every_spelling_of_a_provider_counts_in_its_one_scope() {
        for path in [
            "/api/v1/webhooks/acme",
            "/api/v1/webhooks/%61cme",
            "/api/v1/webhooks/ac%6de",
            "/api/v1/webhooks/ac%6De",
            "/api/v1/webhooks/%61%63%6d%65",
        ] {
            assert_eq!(scope(path), "ingress:acme", "{path}");
        }
        // Broken escapes are kept as they are (the route refuses them).
        assert_eq!(scope("/api/v1/webhooks/a%6"), "ingress:a%6");
        assert_eq!(scope("/api/v1/webhooks/a%zz"), "ingress:a%zz");
        assert_eq!(scope("/v1/webhooks"), "api");
    }
}
