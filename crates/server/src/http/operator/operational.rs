//! The operator's operational webhooks: the endpoints that receive
//! hookwarden's own events (`shared::operational`), created, listed and
//! deleted here, each change audited. They are webhooks of the reserved
//! operational account, so the dispatcher signs, delivers and retries to
//! them like to any other; their tries are listed by
//! `GET /api/v1/outbound/deliveries?webhookId=…`.

use crate::auth::operator::Operator;
use crate::config::operational::OperationalWebhookInput;
use crate::http::json::{StrictJson, StrictPath};
use crate::http::openapi::Page;
use crate::http::request_id::RequestId;
use crate::http::webhooks::{check_url, store_new, view, with_secret, NewWebhook, WebhookView};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::operational::{ACCOUNT, TYPES};
use crate::shared::secrets::{open_webhook_secret, seal_webhook_secret};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::{ids, validate};
use hookwarden_store::model::{Webhook, WebhookUpdate};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// The body of `POST /api/v1/operational-webhooks`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOperational {
    /// The platform's endpoint (the SSRF rules apply, as for tenants').
    url: String,
    /// Which operational events: `endpoint.paused`, `endpoint.disabled`,
    /// `endpoint.recovered`, `delivery.dead`,
    /// `integration.verification_failing`, `audit.head`, a `prefix.*`, or
    /// `*` (the default).
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    /// A `whsec_` secret; generated when absent.
    #[serde(default)]
    secret: Option<String>,
}

/// Each subscription names at least one operational event type.
fn check_types(types: &[String]) -> ApiResult<()> {
    validate::subscriptions(types)?;
    for t in types {
        if !TYPES
            .iter()
            .any(|known| validate::subscribed(std::slice::from_ref(t), known))
        {
            return Err(ApiError::Validation(format!(
                "eventTypes: {t} matches no operational event ({})",
                TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Add an operational webhook
///
/// Registers an endpoint of the platform that receives hookwarden's own events (operator key):
/// `endpoint.paused`, `endpoint.disabled`, `endpoint.recovered` (a tenant endpoint's health,
/// naming its account and id), `delivery.dead` (a delivery's last try failed),
/// `integration.verification_failing` (an integration refused more than
/// `HOOKWARDEN_VERIFICATION_FAILING_THRESHOLD` requests in a minute) and `audit.head` (the audit
/// chain's head, when it moved: an anchor kept outside hookwarden). They are signed with
/// Standard Webhooks under this endpoint's own secret, shown once here, and never carry a
/// secret or a payload. Audited (`operational_webhook.created`).
#[utoipa::path(post, path = "/api/v1/operational-webhooks", tag = "operator",
    request_body = CreateOperational,
    security(("operatorKey" = [])),
    responses((status = 201, description = "Created; the only view that shows the secret", body = WebhookView),
        (status = 409, description = "One with this url and these event types exists", body = crate::http::openapi::ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictJson(body): StrictJson<CreateOperational>,
) -> ApiResult<impl IntoResponse> {
    let secret = match &body.secret {
        Some(s) => parse_secret(s)?,
        None => WebhookSecret::generate(),
    };
    let webhook = add(
        &state,
        body.url,
        body.event_types,
        body.description.unwrap_or_default(),
        &secret,
    )
    .await?;
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "operational_webhook.created",
        &format!("webhook:{}", webhook.id),
        &rid.0,
        json!({"eventTypes": webhook.event_types}),
    )
    .await;
    let now = state.clock.now();
    Ok((
        StatusCode::CREATED,
        Json(with_secret(&webhook, &secret, now)),
    ))
}

fn parse_secret(text: &str) -> ApiResult<WebhookSecret> {
    WebhookSecret::parse(text).map_err(|e| ApiError::Validation(format!("secret: {e}")))
}

/// Checks and stores a new operational webhook.
async fn add(
    state: &AppState,
    url: String,
    event_types: Option<Vec<String>>,
    description: String,
    secret: &WebhookSecret,
) -> ApiResult<Webhook> {
    check_url(state, &url)?;
    let event_types = event_types.unwrap_or_else(|| vec!["*".into()]);
    check_types(&event_types)?;
    validate::description(&description)?;
    let webhook = store_new(
        state,
        NewWebhook {
            id: ids::webhook_id(),
            account_id: ACCOUNT,
            url,
            description,
            event_types,
            secret,
            controls: Default::default(),
        },
    )
    .await?;
    state.operational.changed();
    tracing::info!(webhook.id = %webhook.id, "operational webhook created");
    Ok(webhook)
}

/// The configuration file's operational webhooks, at start: each created,
/// or (one with the same URL exists) brought to the file's secret, the
/// previous one signing through the rotation grace, and its event types.
/// Those the file does not name are left as they are.
pub async fn apply_configured(
    state: &AppState,
    list: &[OperationalWebhookInput],
) -> anyhow::Result<()> {
    let existing = state
        .store
        .list_webhooks(Some(ACCOUNT), None, 100)
        .await?
        .items;
    for input in list {
        let fail = |e: ApiError| {
            anyhow::anyhow!(
                "operational webhook {:?} in the configuration: {}",
                input.url,
                e.message()
            )
        };
        let secret = parse_secret(&input.secret).map_err(fail)?;
        let Some(current) = existing.iter().find(|w| w.url == input.url) else {
            add(
                state,
                input.url.clone(),
                input.event_types.clone(),
                input.description.clone().unwrap_or_default(),
                &secret,
            )
            .await
            .map_err(fail)?;
            continue;
        };
        let event_types = input
            .event_types
            .clone()
            .unwrap_or_else(|| vec!["*".into()]);
        check_types(&event_types).map_err(fail)?;
        let now = state.clock.now();
        let same = open_webhook_secret(&state.keyring, ACCOUNT, &current.id, &current.secret)
            .is_ok_and(|stored| stored == secret);
        let grace = chrono::Duration::from_std(state.settings.rotation_grace)
            .unwrap_or(chrono::Duration::hours(24));
        let update = WebhookUpdate {
            event_types: Some(event_types),
            description: input.description.clone(),
            rotate: (!same).then(|| {
                (
                    seal_webhook_secret(&state.keyring, ACCOUNT, &current.id, &secret),
                    now + grace,
                )
            }),
            enable: true,
            updated_at: now,
            ..WebhookUpdate::default()
        };
        state
            .store
            .update_webhook(ACCOUNT, &current.id, &update)
            .await?;
        tracing::info!(webhook.id = %current.id, secret_rotated = !same, "operational webhook from the configuration file applied");
    }
    state.operational.changed();
    Ok(())
}

/// List the operational webhooks
///
/// Every endpoint that receives hookwarden's own events (operator key), without secrets.
#[utoipa::path(get, path = "/api/v1/operational-webhooks", tag = "operator",
    security(("operatorKey" = [])),
    responses((status = 200, description = "Every operational webhook", body = Page<WebhookView>)))]
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
) -> ApiResult<Json<Page<WebhookView>>> {
    let page = state
        .store
        .list_webhooks(Some(ACCOUNT), None, 100)
        .await
        .map_err(|e| ApiError::internal("list operational webhooks", e))?;
    let now = state.clock.now();
    Ok(Json(Page::new(
        page.items.iter().map(|w| view(w, now)).collect(),
        None,
    )))
}

/// Delete an operational webhook
///
/// Its pending tries become dead letters. Audited (`operational_webhook.deleted`).
#[utoipa::path(delete, path = "/api/v1/operational-webhooks/{id}", tag = "operator",
    params(("id" = String, Path, description = "Webhook id")),
    security(("operatorKey" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<StatusCode> {
    let deleted = state
        .store
        .delete_webhook(ACCOUNT, &id, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("delete operational webhook", e))?;
    if !deleted {
        return Err(ApiError::NotFound);
    }
    state.operational.changed();
    crate::shared::audit::record(
        state.store.as_ref(),
        &op.actor(),
        "operational_webhook.deleted",
        &format!("webhook:{id}"),
        &rid.0,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
