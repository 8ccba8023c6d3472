//! Browser sessions: a random token in an HttpOnly, SameSite=Strict cookie
//! (Secure when clients reach us over TLS), only its SHA-256 stored, with a
//! CSRF token of its own; and the extractors pages use to require one.

use super::Web;
use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use hookwarden_store::model::{SessionKind, WebSession};

pub const CONSOLE_COOKIE: &str = "hw_console";
pub const PORTAL_COOKIE: &str = "hw_portal";

pub use crate::shared::tokens::{digest, random as new_token};

/// Whether `token` has the form of ours (43 URL-safe characters): any
/// other cookie or link costs no lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether clients reach the pages over TLS (here or at a proxy in front).
pub fn secure(web: &Web) -> bool {
    let s = &web.app.settings;
    // Production is served over TLS, here or at a proxy in front.
    s.is_production()
        || s.tls_cert_file.is_some()
        || s.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The cookie's name and path. Over TLS, `__Host-` names (host-only,
/// `Path=/`, `Secure`): a sibling subdomain cannot set one of ours.
pub fn cookie_path(web: &Web, kind: SessionKind) -> (&'static str, &'static str) {
    match (kind, secure(web)) {
        (SessionKind::Operator, true) => ("__Host-hw_console", "/"),
        (SessionKind::Portal, true) => ("__Host-hw_portal", "/"),
        (SessionKind::Operator, false) => (CONSOLE_COOKIE, "/console"),
        (SessionKind::Portal, false) => (PORTAL_COOKIE, "/portal"),
    }
}

/// The `Set-Cookie` value that carries a new session's token.
pub fn set_cookie(
    web: &Web,
    kind: SessionKind,
    token: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> HeaderValue {
    let (name, path) = cookie_path(web, kind);
    let age = (expires - now).num_seconds().max(0);
    let secure = if secure(web) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={token}; Path={path}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(web: &Web, kind: SessionKind) -> HeaderValue {
    let (name, path) = cookie_path(web, kind);
    let secure = if secure(web) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of cookie `name` in the request, if sent once (two would mean
/// another party set one for a path or domain of its own) and not empty.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v);
    let first = values.next()?;
    (values.next().is_none() && !first.is_empty() && first.len() <= 64).then_some(first)
}

/// Stores a new session and answers its token (for the cookie).
pub async fn start(
    web: &Web,
    kind: SessionKind,
    account_id: Option<String>,
    actor: String,
    expires_at: DateTime<Utc>,
) -> Result<(String, WebSession), hookwarden_store::StoreError> {
    let now = web.app.clock.now();
    let token = new_token();
    let session = WebSession {
        id_hash: digest(&token),
        kind,
        account_id,
        actor,
        csrf: new_token(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    web.app.store.create_web_session(&session).await?;
    Ok((token, session))
}

/// The session the guard found for this request (see `guard.rs`).
#[derive(Debug, Clone)]
pub struct Signed(pub WebSession);

/// Revokes a session and says so in the audit trail.
pub async fn end(
    web: &Web,
    s: &hookwarden_store::model::WebSession,
    request_id: &str,
    action: &str,
) {
    let now = web.app.clock.now();
    if let Err(e) = web.app.store.revoke_web_session(&s.id_hash, now).await {
        tracing::error!(error.message = %e, "revoking a session failed");
    }
    crate::shared::audit::record(
        web.app.store.as_ref(),
        &s.actor,
        action,
        &format!("session:{}", &s.id_hash[..12]),
        request_id,
        serde_json::json!({}),
    )
    .await;
}

/// How often ended sessions and links are removed.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes sessions and links a day past their end, every `PRUNE_EVERY`
/// (each replica; the deletes are idempotent and batched).
pub async fn prune(
    store: std::sync::Arc<dyn hookwarden_store::Store>,
    clock: crate::shared::clock::Clock,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = clock.sleep(PRUNE_EVERY) => {}
        }
        match store.prune_web_sessions(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "ended console and portal sessions removed"),
            Err(e) => tracing::warn!(error.message = %e, "removing ended sessions failed"),
        }
    }
}
