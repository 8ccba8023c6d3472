//! Tenant routes for webhook endpoints: `/v1/webhooks` CRUD. Every lookup is
//! scoped to the caller's account; another account's id answers 404.

use crate::auth::{Scope, Tenant};
use crate::http::cursor;
use crate::http::json::{page_limit, StrictJson, StrictPath, StrictQuery};
use crate::http::openapi::Page;
use crate::http::request_id::RequestId;
use crate::http::webhook_controls::{
    self as controls, view_headers, FilterBody, HeaderInput, HeaderView,
};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::secrets::seal_webhook_secret;
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::Utc;
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::{ids, validate};
use hookwarden_store::model::{Controls, ControlsUpdate};
use hookwarden_store::model::{Webhook, WebhookUpdate};
use hookwarden_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// How deliveries to an endpoint are signed (Standard Webhooks).
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    /// HMAC-SHA256 with the shared `whsec_` secret.
    V1,
    /// Ed25519: hookwarden keeps the private key; receivers verify with the
    /// public key (`publicKey`, `whpk_…`) alone.
    V1a,
}

impl Signing {
    fn of(key: &WebhookSecret) -> Self {
        if key.is_asymmetric() {
            Self::V1a
        } else {
            Self::V1
        }
    }

    fn generate(self) -> WebhookSecret {
        match self {
            Self::V1 => WebhookSecret::generate(),
            Self::V1a => WebhookSecret::generate_ed25519(),
        }
    }
}

/// What a new webhook is made of, checked.
pub(crate) struct NewWebhook<'a> {
    pub id: String,
    pub account_id: &'a str,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: &'a WebhookSecret,
    pub controls: Controls,
}

/// Stores a new webhook, its secret sealed to its row; the cap and the
/// duplicate the database refuses answer 422 and 409.
pub(crate) async fn store_new(state: &AppState, new: NewWebhook<'_>) -> ApiResult<Webhook> {
    let now = state.clock.now();
    let webhook = Webhook {
        secret: seal_webhook_secret(&state.keyring, new.account_id, &new.id, new.secret),
        id: new.id,
        account_id: new.account_id.to_owned(),
        url: new.url,
        description: new.description,
        event_types: new.event_types,
        old_secret: None,
        disabled: false,
        disabled_reason: None,
        held_by_operator: false,
        throttled_until: None,
        health: Default::default(),
        controls: new.controls,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .create_webhook(&webhook)
        .await
        .map_err(|e| match e {
            StoreError::WebhookLimit => ApiError::LimitExceeded(format!(
                "an account may have at most {} webhooks",
                state.settings.max_webhooks_per_account
            )),
            StoreError::WebhookDuplicate => duplicate(),
            other => ApiError::internal("create webhook", other),
        })?;
    Ok(webhook)
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// A signing key as the API may show it: a `whsec_` secret, or the public
/// key of an Ed25519 one (its private key is never shown).
pub(crate) fn shown_key(key: &WebhookSecret) -> String {
    key.public_key().unwrap_or_else(|| key.expose().to_string())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhook {
    /// The endpoint: http(s), a public address (SSRF rules apply at every try).
    url: String,
    /// Subscribed event types: exact names, `prefix.*` (every type under
    /// `prefix.`, at any depth) or `*` for all.
    #[schema(min_items = 1, max_items = 100)]
    event_types: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    /// A `whsec_` secret (or, for `v1a`, a `whsk_` Ed25519 private key);
    /// generated when absent.
    #[serde(default)]
    secret: Option<String>,
    /// `v1` (the default: HMAC-SHA256 with a shared secret) or `v1a`
    /// (Ed25519: receivers verify with the public key alone).
    #[serde(default)]
    signing: Option<Signing>,
    /// Headers every request to it carries (at most 20).
    #[serde(default)]
    headers: Option<Vec<HeaderInput>>,
    /// Only events whose payload matches are sent to it.
    #[serde(default)]
    filter: Option<FilterBody>,
    /// At most this many tries per second (1–1000), across replicas; tries
    /// over it wait, they are not failed.
    #[serde(default)]
    rate_limit_per_second: Option<u32>,
}

/// The body of `PUT /v1/webhooks/{id}`: every field is optional and a field
/// left out keeps its value (never cleared); `PATCH` does the same and can
/// also empty the description with `null`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateWebhook {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    /// Generate a new secret; the old one keeps signing during the grace period.
    #[serde(default)]
    rotate_secret: Option<bool>,
    /// Switch the signing scheme: a new key of that kind is generated (or
    /// `secret` gives it), and the old one keeps signing during the grace
    /// period, as for any rotation.
    #[serde(default)]
    signing: Option<Signing>,
    /// `true` stops deliveries (tries already queued wait; events published
    /// meanwhile are not queued); `false`, like any update without it,
    /// enables again. An endpoint the operator disabled stays so until the
    /// operator enables it.
    #[serde(default)]
    disabled: Option<bool>,
    /// Replaces the custom headers (`null` or `[]` removes them). A secret
    /// header may leave its value out to keep the stored one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<HeaderInput>>)]
    headers: Option<Option<Vec<HeaderInput>>>,
    /// Replaces the payload filter (`null` removes it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FilterBody>)]
    filter: Option<Option<FilterBody>>,
    /// Replaces the rate limit (`null` removes it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    rate_limit_per_second: Option<Option<u32>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PATCH /v1/webhooks/{id}` (JSON merge, RFC 7396): what is
/// absent is kept, `description: null` empties the description; `url` and
/// `eventTypes` cannot be null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchWebhook {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default)]
    secret: Option<String>,
    /// Generate a new secret; the old one keeps signing during the grace period.
    #[serde(default)]
    rotate_secret: Option<bool>,
    /// Switch the signing scheme: a new key of that kind is generated (or
    /// `secret` gives it), and the old one keeps signing during the grace
    /// period, as for any rotation.
    #[serde(default)]
    signing: Option<Signing>,
    /// As in `PUT`.
    #[serde(default)]
    disabled: Option<bool>,
    /// As in `PUT`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<HeaderInput>>)]
    headers: Option<Option<Vec<HeaderInput>>>,
    /// As in `PUT`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FilterBody>)]
    filter: Option<Option<FilterBody>>,
    /// As in `PUT`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    rate_limit_per_second: Option<Option<u32>>,
}

impl PatchWebhook {
    /// The same update as a `PUT` body, whose absent fields are kept too.
    fn into_update(self) -> ApiResult<UpdateWebhook> {
        let required = |f: &str| ApiError::Validation(format!("{f} cannot be null"));
        Ok(UpdateWebhook {
            url: match self.url {
                Some(None) => return Err(required("url")),
                other => other.flatten(),
            },
            event_types: match self.event_types {
                Some(None) => return Err(required("eventTypes")),
                other => other.flatten(),
            },
            description: self.description.map(Option::unwrap_or_default),
            secret: self.secret,
            rotate_secret: self.rotate_secret,
            signing: self.signing,
            disabled: self.disabled,
            headers: self.headers,
            filter: self.filter,
            rate_limit_per_second: self.rate_limit_per_second,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

use crate::http::rfc3339;

/// The reason shown when the tenant disabled its own endpoint.
const TENANT_DISABLED: &str = "disabled by the tenant";

/// The public view of a webhook: never the stored secret. `secret` appears
/// only in the answer that created or rotated it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    id: String,
    url: String,
    event_types: Vec<String>,
    description: String,
    disabled: bool,
    disabled_reason: Option<String>,
    /// Until then no try is made: the endpoint asked to slow down (429,
    /// 502, 503, 504) or failed several tries in a row. New tries after an
    /// update are not held back.
    #[schema(format = DateTime)]
    paused_until: Option<String>,
    /// Every try since then has failed (the first failure since the last
    /// success); after `HOOKWARDEN_DISABLE_AFTER` of that the endpoint is
    /// disabled. Absent while the endpoint is healthy.
    #[schema(format = DateTime)]
    failing_since: Option<String>,
    /// How deliveries are signed: `v1` (HMAC-SHA256) or `v1a` (Ed25519).
    signing: Signing,
    /// The `whpk_` key that verifies its `v1a` signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// Headers every request to it carries; a secret one without its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<HeaderView>>,
    /// Only events whose payload matches are sent to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<FilterBody>)]
    filter: Option<serde_json::Value>,
    /// At most this many tries per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_per_second: Option<u32>,
    /// Until then, deliveries carry the previous secret's signature too.
    #[schema(format = DateTime)]
    secret_rotation_ends_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// `now`: a pause that is over is not shown.
pub fn view(w: &Webhook, now: chrono::DateTime<Utc>) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        event_types: w.event_types.clone(),
        description: w.description.clone(),
        disabled: w.disabled,
        disabled_reason: w.disabled_reason.clone(),
        paused_until: w.throttled_until.filter(|t| *t > now).map(rfc3339),
        failing_since: w.health.failing_since.map(rfc3339),
        signing: if w.controls.public_key.is_some() {
            Signing::V1a
        } else {
            Signing::V1
        },
        public_key: w.controls.public_key.clone(),
        headers: view_headers(&w.controls),
        filter: w.controls.filter.clone(),
        rate_limit_per_second: w.controls.rate_limit_per_second,
        secret_rotation_ends_at: w.old_secret.as_ref().map(|(_, until)| rfc3339(*until)),
        created_at: rfc3339(w.created_at),
        updated_at: rfc3339(w.updated_at),
        secret: None,
    }
}

/// The view that shows a new `whsec_` secret, once (an Ed25519 key's
/// private half is never shown: `publicKey` is all its receivers need).
pub(crate) fn with_secret(
    w: &Webhook,
    secret: &WebhookSecret,
    now: chrono::DateTime<Utc>,
) -> WebhookView {
    WebhookView {
        secret: (!secret.is_asymmetric()).then(|| secret.expose().to_string()),
        ..view(w, now)
    }
}

/// Who made a tenant change, for the audit trail.
pub(crate) fn actor(tenant: &Tenant) -> String {
    format!("tenant:{}:{}", tenant.account_id, tenant.principal.subject)
}

/// A signing key given by the tenant, of the scheme asked for (if any).
fn parse_secret(text: &str, signing: Option<Signing>) -> ApiResult<WebhookSecret> {
    let key =
        WebhookSecret::parse_key(text).map_err(|e| ApiError::Validation(format!("secret: {e}")))?;
    match signing {
        Some(s) if s != Signing::of(&key) => Err(ApiError::Validation(
            "secret: v1 takes a whsec_ secret, v1a a whsk_ Ed25519 key".into(),
        )),
        _ => Ok(key),
    }
}

/// Two webhooks of an account with one URL and one set of event types would
/// deliver every event twice; the database refuses the second.
pub(crate) fn duplicate() -> ApiError {
    ApiError::Conflict(
        "this account already has a webhook with this url and these event types".into(),
    )
}

pub(crate) fn check_url(state: &AppState, url: &str) -> ApiResult<()> {
    state
        .policy
        .check_url(url)
        .map(|_| ())
        .map_err(|e| ApiError::Validation(format!("url: {e}")))
}

/// Register a webhook endpoint
///
/// Registers an endpoint for the caller's account (scope `webhooks:write`). `eventTypes` lists
/// exact types, `prefix.*` (every type under `prefix.`, at any depth) or `*` for all. The URL
/// must be `https` (or `http` outside production) with a public address; the SSRF rules apply
/// again at every try. The answer carries the signing secret (`whsec_…`, generated when none is
/// given): the only webhook view that shows it (`GET /v1/webhooks/{id}/secret` reveals it
/// again, audited). An account holds at most 10 webhooks by default
/// (422 `LIMIT_EXCEEDED`); a second webhook with the same URL and the same event types is
/// refused (409 `CONFLICT`).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    security(("bearer" = [])),
    responses((status = 201, description = "Created; the only webhook view that shows the secret", body = WebhookView),
        (status = 409, description = "The account has a webhook with this url and these event types", body = crate::http::openapi::ErrorResponse),
        (status = 422, description = "The account has as many webhooks as HOOKWARDEN_MAX_WEBHOOKS_PER_ACCOUNT allows (10 by default)", body = crate::http::openapi::ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictJson(body): StrictJson<CreateWebhook>,
) -> ApiResult<impl IntoResponse> {
    tenant.require(Scope::WebhooksWrite)?;
    check_url(&state, &body.url)?;
    validate::subscriptions(&body.event_types)?;
    let description = body.description.unwrap_or_default();
    validate::description(&description)?;
    let secret = match &body.secret {
        Some(s) => parse_secret(s, body.signing)?,
        None => body.signing.unwrap_or(Signing::V1).generate(),
    };
    let id = ids::webhook_id();
    let now = state.clock.now();
    let (headers, secret_headers) = match &body.headers {
        Some(h) => controls::headers(&state.keyring, &tenant.account_id, &id, h, None)?,
        None => (None, None),
    };
    let controls = Controls {
        headers,
        secret_headers,
        filter: body.filter.as_ref().map(controls::filter).transpose()?,
        rate_limit_per_second: body.rate_limit_per_second.map(controls::rate).transpose()?,
        public_key: secret.public_key(),
    };
    let webhook = store_new(
        &state,
        NewWebhook {
            id,
            account_id: &tenant.account_id,
            url: body.url,
            description,
            event_types: body.event_types,
            secret: &secret,
            controls,
        },
    )
    .await?;
    tracing::info!(account.id = %webhook.account_id, webhook.id = %webhook.id, "webhook created");
    crate::shared::audit::record(
        state.store.as_ref(),
        &actor(&tenant),
        "webhook.created",
        &format!("webhook:{}", webhook.id),
        &rid.0,
        json!({"accountId": webhook.account_id}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(with_secret(&webhook, &secret, now)),
    ))
}

/// List the account's webhooks
///
/// Pages through the webhooks of the caller's account (scope `webhooks:read`): `limit` per
/// page, and `nextCursor` of one page as `cursor` for the next. Secrets are never shown here.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "The account's webhooks", body = Page<WebhookView>)))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictQuery(q): StrictQuery<ListQuery>,
) -> ApiResult<Json<Page<WebhookView>>> {
    tenant.require(Scope::WebhooksRead)?;
    let limit = page_limit(q.limit)?;
    let after = cursor::id("wh", q.cursor.as_deref())?;
    let page = state
        .store
        .list_webhooks(Some(&tenant.account_id), after, limit)
        .await
        .map_err(|e| ApiError::internal("list webhooks", e))?;
    let now = state.clock.now();
    Ok(Json(Page::new(
        page.items.iter().map(|w| view(w, now)).collect(),
        page.next_cursor,
    )))
}

/// Get a webhook
///
/// One webhook of the caller's account (scope `webhooks:read`), without its secret. Another
/// account's webhook answers 404, exactly as a missing one.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The webhook", body = WebhookView)))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<Json<WebhookView>> {
    tenant.require(Scope::WebhooksRead)?;
    let w = state
        .store
        .get_webhook(&tenant.account_id, &id)
        .await
        .map_err(|e| ApiError::internal("get webhook", e))?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&w, state.clock.now())))
}

/// Update a webhook
///
/// Changes the fields given (scope `webhooks:write`); a field left out keeps its value, never
/// cleared. A new `secret`, or `rotateSecret: true`, rotates the signing secret: the answer
/// shows the new one, once, and the previous one keeps signing beside it for the grace period
/// (24 h by default). `disabled: true` stops deliveries; any other update enables the
/// endpoint again, unless the operator disabled it (then only the operator can; `disabled:
/// false` is refused with 403). A URL and event types that another webhook of the account
/// already has are refused (409 `CONFLICT`).
#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateWebhook,
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated (and re-enabled); shows a new secret once", body = WebhookView),
        (status = 409, description = "Another webhook of the account has this url and these event types", body = crate::http::openapi::ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<UpdateWebhook>,
) -> ApiResult<Json<WebhookView>> {
    tenant.require(Scope::WebhooksWrite)?;
    if let Some(url) = &body.url {
        check_url(&state, url)?;
    }
    if let Some(types) = &body.event_types {
        validate::subscriptions(types)?;
    }
    if let Some(d) = &body.description {
        validate::description(d)?;
    }
    if body.secret.is_some() && body.rotate_secret == Some(true) {
        return Err(ApiError::Validation(
            "give either secret or rotateSecret, not both".into(),
        ));
    }
    // An update re-enables an endpoint a 410 or its tenant disabled, never
    // one the operator did: that takes the operator.
    let current = state
        .store
        .get_webhook(&tenant.account_id, &id)
        .await
        .map_err(|e| ApiError::internal("get webhook", e))?
        .ok_or(ApiError::NotFound)?;
    // A new key: given, asked for, or of another scheme than the current.
    let current_signing = if current.controls.public_key.is_some() {
        Signing::V1a
    } else {
        Signing::V1
    };
    let new_secret = match (&body.secret, body.rotate_secret.unwrap_or(false)) {
        (Some(s), _) => Some(parse_secret(s, body.signing)?),
        (None, true) => Some(body.signing.unwrap_or(current_signing).generate()),
        (None, false) => body
            .signing
            .filter(|s| *s != current_signing)
            .map(Signing::generate),
    };
    // Secret headers go where the URL points: moving the endpoint to
    // another origin takes their values again (or drops them), so a token
    // that may write the webhook cannot carry them off to its own server.
    if current.controls.secret_headers.is_some()
        && body
            .url
            .as_deref()
            .is_some_and(|u| !same_origin(u, &current.url))
        && body.headers.as_ref().is_none_or(|given| {
            given
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(controls::keeps_stored_value)
        })
    {
        return Err(ApiError::Validation(
            "headers: a url at another origin takes the secret headers' values again (give them, or headers: null)".into(),
        ));
    }
    let held_by_operator = current.held_by_operator;
    if held_by_operator && body.disabled == Some(false) {
        return Err(ApiError::Forbidden(
            "the operator disabled this endpoint; only the operator can enable it".into(),
        ));
    }
    let now = state.clock.now();
    let grace = chrono::Duration::from_std(state.settings.rotation_grace)
        .unwrap_or(chrono::Duration::hours(24));
    let url_changed = body.url.as_deref().is_some_and(|u| u != current.url);
    let headers_changed = body.headers.is_some();
    let update = WebhookUpdate {
        url: body.url,
        description: body.description,
        event_types: body.event_types,
        rotate: new_secret.as_ref().map(|s| {
            (
                seal_webhook_secret(&state.keyring, &tenant.account_id, &id, s),
                now + grace,
            )
        }),
        enable: !held_by_operator && body.disabled != Some(true),
        controls: ControlsUpdate {
            headers: match &body.headers {
                Some(given) => Some(controls::headers(
                    &state.keyring,
                    &tenant.account_id,
                    &id,
                    given.as_deref().unwrap_or_default(),
                    Some(&current.controls),
                )?),
                None => None,
            },
            filter: body
                .filter
                .as_ref()
                .map(|f| f.as_ref().map(controls::filter).transpose())
                .transpose()?,
            rate_limit_per_second: body
                .rate_limit_per_second
                .map(|r| r.map(controls::rate).transpose())
                .transpose()?,
            public_key: new_secret.as_ref().map(WebhookSecret::public_key),
        },
        updated_at: now,
    };
    let mut w = state
        .store
        .update_webhook(&tenant.account_id, &id, &update)
        .await
        .map_err(|e| match e {
            StoreError::WebhookDuplicate => duplicate(),
            other => ApiError::internal("update webhook", other),
        })?
        .ok_or(ApiError::NotFound)?;
    // (A no-op when the operator holds it: that hold and its reason stay.)
    if body.disabled == Some(true)
        && state
            .store
            .disable_webhook(&id, TENANT_DISABLED, now)
            .await
            .map_err(|e| ApiError::internal("disable webhook", e))?
    {
        w.disabled = true;
        w.disabled_reason = Some(TENANT_DISABLED.into());
    }
    tracing::info!(account.id = %w.account_id, webhook.id = %w.id, secret_rotated = new_secret.is_some(), "webhook updated");
    // Never the URL (it may carry the customer's tokens) nor the secret.
    let target = format!("webhook:{}", w.id);
    crate::shared::audit::record(
        state.store.as_ref(),
        &actor(&tenant),
        "webhook.updated",
        &target,
        &rid.0,
        json!({"accountId": w.account_id, "disabled": w.disabled,
               "urlChanged": url_changed, "headersChanged": headers_changed}),
    )
    .await;
    if new_secret.is_some() {
        crate::shared::audit::record(
            state.store.as_ref(),
            &actor(&tenant),
            "webhook.secret_rotated",
            &target,
            &rid.0,
            json!({"accountId": w.account_id}),
        )
        .await;
    }
    Ok(Json(match &new_secret {
        Some(s) => with_secret(&w, s, now),
        None => view(&w, now),
    }))
}

/// Patch a webhook
///
/// Changes the fields given and keeps the others (JSON merge, RFC 7396; scope
/// `webhooks:write`); `description: null` empties the description, while `url` and `eventTypes`
/// cannot be null. Like `PUT`, it rotates the secret when asked, takes `disabled`, and
/// otherwise re-enables the endpoint unless the operator disabled it.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = PatchWebhook,
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 200, description = "Updated (and re-enabled); shows a new secret once", body = WebhookView)))]
pub async fn patch(
    state: State<AppState>,
    tenant: Tenant,
    rid: Extension<RequestId>,
    id: StrictPath<String>,
    StrictJson(body): StrictJson<PatchWebhook>,
) -> ApiResult<Json<WebhookView>> {
    tenant.require(Scope::WebhooksWrite)?;
    // One path for both verbs: PUT already keeps what its body leaves out.
    update(state, tenant, rid, id, StrictJson(body.into_update()?)).await
}

/// Delete a webhook
///
/// Removes a webhook of the caller's account (scope `webhooks:write`): events published
/// afterwards are no longer delivered to it. The change is audited.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
) -> ApiResult<StatusCode> {
    tenant.require(Scope::WebhooksWrite)?;
    let deleted = state
        .store
        .delete_webhook(&tenant.account_id, &id, state.clock.now())
        .await
        .map_err(|e| ApiError::internal("delete webhook", e))?;
    if !deleted {
        return Err(ApiError::NotFound);
    }
    tracing::info!(account.id = %tenant.account_id, webhook.id = %id, "webhook deleted");
    crate::shared::audit::record(
        state.store.as_ref(),
        &actor(&tenant),
        "webhook.deleted",
        &format!("webhook:{id}"),
        &rid.0,
        json!({"accountId": tenant.account_id}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
