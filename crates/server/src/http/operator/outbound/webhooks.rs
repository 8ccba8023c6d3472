//! Operator views of tenants' webhooks (endpoints) across accounts, and the
//! switch that disables or enables one: disabled, none of its tries is
//! claimed (they wait) and events published meanwhile are not queued for it.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::json::{page_limit, StrictJson, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::{finish, shown_url, Justification};
use crate::http::request_id::RequestId;
use crate::http::webhooks::{view, WebhookView};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use hookwarden_store::model::Webhook;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// How an operator's disable reason starts, as the tenant sees it.
const OPERATOR_DISABLED: &str = "disabled by the operator";

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator webhooks", e)
}

/// A webhook as the operator sees it: the tenant's view and its account,
/// the URL without its query (it may carry the customer's tokens).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorWebhookView {
    account_id: String,
    #[serde(flatten)]
    webhook: WebhookView,
}

fn operator_view(w: &Webhook, now: chrono::DateTime<chrono::Utc>) -> OperatorWebhookView {
    let shown = Webhook {
        url: shown_url(&w.url),
        ..w.clone()
    };
    OperatorWebhookView {
        account_id: w.account_id.clone(),
        webhook: view(&shown, now),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct WebhooksQuery {
    /// Only this account's webhooks.
    account_id: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List tenants' webhooks across accounts.
///
/// Oldest first, optionally one account's. Secrets are never shown; health
/// is: `disabled` (and why), `pausedUntil`.
#[utoipa::path(get, path = "/api/v1/outbound/webhooks", tag = "operator", params(WebhooksQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Webhooks, oldest first", body = Page<OperatorWebhookView>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<WebhooksQuery>,
) -> ApiResult<Json<Page<OperatorWebhookView>>> {
    let limit = page_limit(q.limit)?;
    let after = cursor::id("wh", q.cursor.as_deref())?;
    let page = state
        .store
        .list_webhooks(q.account_id.as_deref(), after, limit)
        .await
        .map_err(internal)?;
    let now = state.clock.now();
    Ok(Json(Page::new(
        page.items.iter().map(|w| operator_view(w, now)).collect(),
        page.next_cursor,
    )))
}

async fn find(state: &AppState, id: &str) -> ApiResult<Webhook> {
    state
        .store
        .webhooks_by_ids(&[id.to_owned()])
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound)
}

/// Read one tenant webhook.
///
/// Any account's webhook by id, with its health and without its secret.
#[utoipa::path(get, path = "/api/v1/outbound/webhooks/{id}", tag = "operator",
    params(("id" = String, Path, description = "Webhook id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The webhook", body = OperatorWebhookView)))]
pub async fn get(
    State(state): State<AppState>,
    _op: Operator,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<OperatorWebhookView>> {
    Ok(Json(operator_view(
        &find(&state, &id).await?,
        state.clock.now(),
    )))
}

/// Disable a webhook.
///
/// No try is made for it until the operator enables it again: tries already
/// queued wait, and events published meanwhile are not queued for it. The
/// tenant's updates, its own disable and a 410 from the endpoint leave this
/// hold and its reason as they are (`PUT`/`PATCH` with `disabled: false` is
/// refused with 403). It pauses this endpoint only: it is not an account
/// suspension (the tenant may still delete it or register other endpoints).
/// The reason shows as `disabledReason`, to the tenant too; audited as
/// `webhook.disabled`.
#[utoipa::path(post, path = "/api/v1/outbound/webhooks/{id}/disable", tag = "operator",
    request_body = Justification,
    params(("id" = String, Path, description = "Webhook id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The webhook, disabled", body = OperatorWebhookView)))]
pub async fn disable(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<Justification>,
) -> ApiResult<Json<OperatorWebhookView>> {
    // Runs to the end (and is audited) even if the caller goes away.
    finish(async move {
        let (requested_by, reason) = body.checked()?;
        let shown = format!("{OPERATOR_DISABLED}: {reason}");
        if !state
            .store
            .hold_webhook(&id, &shown, state.clock.now())
            .await
            .map_err(internal)?
        {
            return Err(ApiError::NotFound);
        }
        switched(
            &state,
            &op,
            &rid,
            &id,
            "webhook.disabled",
            requested_by,
            reason,
        )
        .await
    })
    .await
}

/// Enable a webhook.
///
/// Its waiting tries are claimed again and new events are queued for it.
/// Also what lifts a disable after the endpoint answered 410 Gone. Audited
/// as `webhook.enabled`.
#[utoipa::path(post, path = "/api/v1/outbound/webhooks/{id}/enable", tag = "operator",
    request_body = Justification,
    params(("id" = String, Path, description = "Webhook id")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The webhook, enabled", body = OperatorWebhookView)))]
pub async fn enable(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<Justification>,
) -> ApiResult<Json<OperatorWebhookView>> {
    // Runs to the end (and is audited) even if the caller goes away.
    finish(async move {
        let (requested_by, reason) = body.checked()?;
        if !state
            .store
            .enable_webhook(&id, state.clock.now())
            .await
            .map_err(internal)?
        {
            return Err(ApiError::NotFound);
        }
        state.wake.lanes([id.clone()]);
        switched(
            &state,
            &op,
            &rid,
            &id,
            "webhook.enabled",
            requested_by,
            reason,
        )
        .await
    })
    .await
}

/// Audits a disable or enable and answers the webhook as it now is.
async fn switched(
    state: &AppState,
    op: &Operator,
    rid: &RequestId,
    id: &str,
    action: &str,
    requested_by: String,
    reason: String,
) -> ApiResult<Json<OperatorWebhookView>> {
    // Audited whatever happens next (a delete racing this read, say).
    let webhook = find(state, id).await;
    let account = webhook.as_ref().map(|w| w.account_id.clone()).ok();
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        action,
        &format!("webhook:{id}"),
        &rid.0,
        json!({"requestedBy": requested_by, "reason": reason, "accountId": account}),
    )
    .await;
    let webhook = webhook?;
    tracing::info!(webhook.id = %id, account.id = %webhook.account_id, action, "webhook switched by the operator");
    Ok(Json(operator_view(&webhook, state.clock.now())))
}
