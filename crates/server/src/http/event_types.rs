//! `/v1/event-types`: the JSON Schema of each event type. A schema applies
//! to every account's events, so it is written only by its owner: the
//! operator API (`/api/v1/event-types/{name}`), or a producer granted the
//! type for all accounts. Every change is audited. Anyone with a valid
//! token may read them.

use crate::auth::operator::Operator;
use crate::auth::{Caller, Producer};
use crate::http::json::{StrictJson, StrictPath};
use crate::http::openapi::Page;
use crate::http::request_id::RequestId;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{SecondsFormat, Utc};
use hookwarden_store::model::EventType;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventType {
    /// A JSON Schema (draft 2020-12) the payloads must match.
    schema: Value,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeView {
    name: String,
    schema: Value,
    description: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

fn view(t: &EventType) -> EventTypeView {
    EventTypeView {
        name: t.name.clone(),
        schema: t.schema.clone(),
        description: t.description.clone(),
        created_at: t.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: t.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("event types", e)
}

/// A producer may write a schema only if it owns the type: granted it for
/// every account, with a token not bound to one account.
fn may_manage(state: &AppState, producer: &Producer, name: &str) -> ApiResult<()> {
    hookwarden_core::validate::event_type(name)?;
    if producer.principal.account_id.is_some() {
        return Err(ApiError::Forbidden(
            "a token bound to one account may not change a schema every account shares".into(),
        ));
    }
    state
        .settings
        .grants
        .may_own_schema(&producer.principal.subject, name)
        .map_err(ApiError::Forbidden)
}

/// Who changed a schema, in the audit trail.
fn producer_actor(producer: &Producer) -> String {
    format!("producer:{}", producer.principal.subject)
}

/// A schema's fingerprint for the audit trail (the schema itself stays out).
fn fingerprint(schema: &Value) -> String {
    hex::encode(Sha256::digest(schema.to_string().as_bytes()))
}

/// Validates and stores a schema, then audits the change.
async fn set_schema(
    state: &AppState,
    name: &str,
    body: PutEventType,
    actor: &str,
    request_id: &str,
) -> ApiResult<EventTypeView> {
    hookwarden_core::validate::event_type(name)?;
    if let Some(why) = crate::outbound::intake::unstorable(&body.schema) {
        return Err(ApiError::Validation(format!("schema: {why}")));
    }
    crate::outbound::schemas::compile(&body.schema).map_err(ApiError::Validation)?;
    let description = body.description.unwrap_or_default();
    hookwarden_core::validate::description(&description)?;
    let previous = state.store.get_event_type(name).await.map_err(internal)?;
    let now = Utc::now();
    let stored = state
        .store
        .put_event_type(&EventType {
            name: name.to_owned(),
            schema: body.schema,
            description,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(internal)?;
    state.schemas.invalidate(name).await;
    crate::shared::audit::record(
        state.store.as_ref(),
        actor,
        "event_type.schema_set",
        &format!("event_type:{name}"),
        request_id,
        json!({
            "schemaSha256": fingerprint(&stored.schema),
            "previousSchemaSha256": previous.map(|p| fingerprint(&p.schema)),
        }),
    )
    .await;
    tracing::info!(event.type = %name, actor = %actor, "event type schema registered");
    Ok(view(&stored))
}

/// Deletes a schema, then audits the change.
async fn delete_schema(
    state: &AppState,
    name: &str,
    actor: &str,
    request_id: &str,
) -> ApiResult<StatusCode> {
    hookwarden_core::validate::event_type(name)?;
    let previous = state
        .store
        .get_event_type(name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    if !state
        .store
        .delete_event_type(name)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::NotFound);
    }
    state.schemas.invalidate(name).await;
    crate::shared::audit::record(
        state.store.as_ref(),
        actor,
        "event_type.schema_deleted",
        &format!("event_type:{name}"),
        request_id,
        json!({"previousSchemaSha256": fingerprint(&previous.schema)}),
    )
    .await;
    tracing::info!(event.type = %name, actor = %actor, "event type schema deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Register an event type's schema (producer)
///
/// Sets the JSON Schema (draft 2020-12) that payloads of this type must match, at publish and
/// again before each delivery. A schema applies to every account, so only its owner may write
/// it: a producer granted the type for all accounts, with a token bound to no account (403
/// otherwise; when no grants are configured, no producer owns a type). Audited, with the
/// schema's SHA-256.
#[utoipa::path(put, path = "/v1/event-types/{name}", tag = "events", request_body = PutEventType,
    params(("name" = String, Path, description = "Event type, e.g. `invoice.paid`")),
    security(("bearer" = [])),
    responses((status = 200, description = "Registered", body = EventTypeView),
        (status = 403, description = "The producer does not own the type: it is not granted it for every account", body = crate::http::openapi::ErrorResponse)))]
pub async fn put(
    State(state): State<AppState>,
    producer: Producer,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(body): StrictJson<PutEventType>,
) -> ApiResult<Json<EventTypeView>> {
    may_manage(&state, &producer, &name)?;
    let view = set_schema(&state, &name, body, &producer_actor(&producer), &rid.0).await?;
    Ok(Json(view))
}

/// Register an event type's schema (operator)
///
/// The operator's way to set a type's JSON Schema (draft 2020-12), enforced for every account
/// at publish and before each delivery. Audited, with the schema's SHA-256.
#[utoipa::path(put, path = "/api/v1/event-types/{name}", tag = "operator", request_body = PutEventType,
    params(("name" = String, Path, description = "Event type, e.g. `invoice.paid`")),
    security(("operatorKey" = [])),
    responses((status = 200, description = "Registered", body = EventTypeView)))]
pub async fn operator_put(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
    StrictJson(body): StrictJson<PutEventType>,
) -> ApiResult<Json<EventTypeView>> {
    let view = set_schema(&state, &name, body, &op.actor(), &rid.0).await?;
    Ok(Json(view))
}

/// Delete an event type's schema (operator)
///
/// Removes the type's schema. Audited.
#[utoipa::path(delete, path = "/api/v1/event-types/{name}", tag = "operator",
    params(("name" = String, Path, description = "Event type")),
    security(("operatorKey" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn operator_delete(
    State(state): State<AppState>,
    op: Operator,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<StatusCode> {
    delete_schema(&state, &name, &op.actor(), &rid.0).await
}

/// List event types and their schemas
///
/// Every registered event type with its JSON Schema. Any valid tenant or producer token may
/// read them, within the API's rate limit (a tenant's in its account's budget).
#[utoipa::path(get, path = "/v1/event-types", tag = "events",
    security(("bearer" = [])),
    responses((status = 200, description = "Every registered type", body = Page<EventTypeView>)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Page<EventTypeView>>> {
    let all = state.store.list_event_types().await.map_err(internal)?;
    Ok(Json(Page::new(all.iter().map(view).collect(), None)))
}

/// Get an event type's schema
///
/// The type's JSON Schema and description; any valid token may read it. 404 when the type has
/// no schema.
#[utoipa::path(get, path = "/v1/event-types/{name}", tag = "events",
    params(("name" = String, Path, description = "Event type")),
    security(("bearer" = [])),
    responses((status = 200, description = "The type and its schema", body = EventTypeView)))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<Json<EventTypeView>> {
    let t = state
        .store
        .get_event_type(&name)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&t)))
}

/// Delete an event type's schema (producer)
///
/// Removes the type's schema; its payloads are then only checked to be JSON objects. The same
/// ownership rule as `PUT` applies. Audited.
#[utoipa::path(delete, path = "/v1/event-types/{name}", tag = "events",
    params(("name" = String, Path, description = "Event type")),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"),
        (status = 403, description = "The producer does not own the type", body = crate::http::openapi::ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    producer: Producer,
    Extension(rid): Extension<RequestId>,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<StatusCode> {
    may_manage(&state, &producer, &name)?;
    delete_schema(&state, &name, &producer_actor(&producer), &rid.0).await
}
