//! `POST /api/v1/portal-sessions`: the platform's backend mints a link into
//! the tenant portal for one account. The link is single-use (its token is
//! stored only as a digest) and becomes a session that sees that account
//! alone, until `expiresAt`.

use crate::auth::operator::Operator;
use crate::http::json::{StrictJson, StrictQuery};
use crate::http::request_id::RequestId;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use crate::shared::tokens;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hookwarden_core::validate;
use hookwarden_store::model::PortalLink;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The portal session's length when none is asked for, and its bounds.
const DEFAULT_TTL: u64 = 3600;
const MIN_TTL: u64 = 60;
const MAX_TTL: u64 = 86_400;
/// How long the link itself may wait to be opened (at most the session's
/// length): a link found later in a mailbox or a log opens nothing.
const LINK_WINDOW: u64 = 15 * 60;

/// The body of `POST /api/v1/portal-sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPortalSession {
    /// The account the portal shows (and nothing else).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    account_id: String,
    /// How long the session lasts, in seconds from now (60–86400; default 3600).
    /// The link must be opened within 15 minutes (or the ttl, if shorter).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86400)]
    ttl: Option<u64>,
}

/// A link into the portal: give it to the account's user (a redirect or an
/// iframe `src`). It works once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalSessionLink {
    url: String,
    /// When the session (and an unused link) ends.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Mint a tenant portal link
///
/// A single-use link into the tenant portal for one account, to be opened within 15 minutes;
/// once opened it becomes a session that sees only that account, until `expiresAt`. Audited
/// (the account, never the link).
#[utoipa::path(post, path = "/api/v1/portal-sessions", tag = "operator", request_body = NewPortalSession,
    security(("operatorKey" = [])),
    responses((status = 201, description = "The link", body = PortalSessionLink)))]
pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictJson(body): StrictJson<NewPortalSession>,
) -> ApiResult<(
    StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    Json<PortalSessionLink>,
)> {
    validate::identifier("accountId", &body.account_id)?;
    let ttl = body.ttl.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::Validation(format!(
            "ttl: must be {MIN_TTL}–{MAX_TTL} seconds"
        )));
    }
    let now = state.clock.now();
    let expires_at = now + chrono::Duration::seconds(ttl as i64);
    let token = tokens::random();
    let link = PortalLink {
        token_hash: tokens::digest(&token),
        account_id: body.account_id.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::seconds(ttl.min(LINK_WINDOW) as i64),
        session_ttl_seconds: ttl as i64,
        used_at: None,
    };
    state
        .store
        .create_portal_link(&link)
        .await
        .map_err(|e| ApiError::internal("storing a portal link", e))?;
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "portal.link_minted",
        &format!("account:{}", body.account_id),
        &rid.0,
        serde_json::json!({ "expiresAt": crate::shared::rfc3339(expires_at) }),
    )
    .await;
    let url = format!("{}/portal/enter?token={token}", public_base(&state));
    Ok((
        StatusCode::CREATED,
        // The link is a bearer credential until it is opened.
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(PortalSessionLink {
            url,
            expires_at: crate::shared::rfc3339(expires_at),
        }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// The account whose portal sessions and unopened links end.
    account_id: String,
}

/// How many portal sessions were ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortalSessionsRevoked {
    revoked: u64,
}

/// End an account's portal sessions
///
/// Ends every live portal session of the account at once, and spends its links not opened
/// yet (a leaked link stops working too). Audited.
#[utoipa::path(delete, path = "/api/v1/portal-sessions", tag = "operator", params(RevokeQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Ended", body = PortalSessionsRevoked)))]
pub async fn revoke(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictQuery(q): StrictQuery<RevokeQuery>,
) -> ApiResult<Json<PortalSessionsRevoked>> {
    validate::identifier("accountId", &q.account_id)?;
    let revoked = state
        .store
        .revoke_web_sessions(
            hookwarden_store::model::SessionKind::Portal,
            Some(&q.account_id),
            state.clock.now(),
        )
        .await
        .map_err(|e| ApiError::internal("revoking portal sessions", e))?;
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "portal.sessions_revoked",
        &format!("account:{}", q.account_id),
        &rid.0,
        serde_json::json!({ "revoked": revoked }),
    )
    .await;
    Ok(Json(PortalSessionsRevoked { revoked }))
}

/// Where clients reach the public listener: the configured URL, else the
/// listen address itself.
fn public_base(state: &AppState) -> String {
    let s = &state.settings;
    match &s.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if s.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", s.listen)
        }
    }
}
