//! `GET /v1/webhooks/{id}/secret`: a tenant reads its endpoint's signing
//! secret again (a portal shows it on demand). Every reading is written to
//! the audit trail before the secret is answered, and only the answer holds it.

use crate::auth::{Scope, Tenant};
use crate::http::json::StrictPath;
use crate::http::request_id::RequestId;
use crate::http::rfc3339;
use crate::http::webhooks::{actor, shown_key};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::secrets::reveal as open_secrets;
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// A webhook's signing secret.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    /// The current signing secret (`whsec_…`).
    key: String,
    /// During a rotation's grace period only: the previous secret, which
    /// still signs deliveries beside the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_key: Option<String>,
    /// When the previous secret stops signing (with `previousKey` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    previous_ends_at: Option<String>,
}

/// Reveal a webhook's signing secret
///
/// The webhook's current signing secret (`whsec_…`), and during a rotation's grace period the
/// previous one with the time it stops signing. Revealing a secret takes scope `webhooks:write`.
/// Every reveal is recorded in the audit trail (`webhook.secret_revealed`, without the secret)
/// before it is answered; the answer carries `Cache-Control: no-store`. Another account's
/// webhook answers 404, exactly as a missing one.
#[utoipa::path(get, path = "/v1/webhooks/{id}/secret", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The signing secret; not to be cached", body = SecretView,
        headers(("Cache-Control" = String, description = "`no-store`")))))]
pub async fn reveal(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<impl IntoResponse> {
    tenant.require(Scope::WebhooksWrite)?;
    let w = state
        .store
        .get_webhook(&tenant.account_id, &id)
        .await
        .map_err(|e| ApiError::internal("get webhook", e))?
        .ok_or(ApiError::NotFound)?;
    let secrets = open_secrets(&state.keyring, &w, state.clock.now())
        .map_err(|e| ApiError::internal("open webhook secret", e))?;
    // Recorded before it is shown: a reveal the trail cannot hold is refused.
    crate::shared::audit::record_or_fail(
        state.store.as_ref(),
        &actor(&tenant),
        "webhook.secret_revealed",
        &format!("webhook:{}", w.id),
        &rid.0,
        json!({"accountId": w.account_id, "previousShown": secrets.previous.is_some()}),
    )
    .await
    .map_err(|e| ApiError::internal("audit secret reveal", e))?;
    tracing::info!(account.id = %w.account_id, webhook.id = %w.id, "webhook secret revealed");
    let (previous_key, previous_ends_at) = match &secrets.previous {
        Some((key, until)) => (Some(shown_key(key)), Some(rfc3339(*until))),
        None => (None, None),
    };
    let view = SecretView {
        key: shown_key(&secrets.current),
        previous_key,
        previous_ends_at,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)))
}
