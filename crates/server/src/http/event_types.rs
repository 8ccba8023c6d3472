//! `/v1/event-types`: producers register the JSON Schema of the types they
//! publish (their grant must cover the type); anyone with a valid token may
//! read them.

use crate::auth::{Caller, Producer};
use crate::error::{ApiError, ApiResult};
use crate::http::json::{StrictJson, StrictPath};
use crate::http::openapi::Page;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{SecondsFormat, Utc};
use hookwarden_store::model::EventType;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// Producers manage only the types their grant lets them publish.
fn may_manage(state: &AppState, producer: &Producer, name: &str) -> ApiResult<()> {
    hookwarden_core::validate::event_type(name)?;
    let account = producer.principal.account_id.as_deref().unwrap_or("*");
    state
        .settings
        .grants
        .check(&producer.principal.subject, account, name)
        .map_err(ApiError::Forbidden)
}

#[utoipa::path(put, path = "/v1/event-types/{name}", tag = "events", request_body = PutEventType,
    params(("name" = String, Path, description = "Event type, e.g. `invoice.paid`")),
    security(("bearer" = [])),
    responses((status = 200, description = "Registered", body = EventTypeView)))]
pub async fn put(
    State(state): State<AppState>,
    producer: Producer,
    StrictPath(name): StrictPath<String>,
    StrictJson(body): StrictJson<PutEventType>,
) -> ApiResult<Json<EventTypeView>> {
    may_manage(&state, &producer, &name)?;
    crate::schemas::compile(&body.schema).map_err(ApiError::Validation)?;
    let description = body.description.unwrap_or_default();
    hookwarden_core::validate::description(&description)?;
    let now = Utc::now();
    let stored = state
        .store
        .put_event_type(&EventType {
            name: name.clone(),
            schema: body.schema,
            description,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(internal)?;
    state.schemas.invalidate(&name);
    tracing::info!(event.type = %name, producer = %producer.principal.subject, "event type schema registered");
    Ok(Json(view(&stored)))
}

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

#[utoipa::path(delete, path = "/v1/event-types/{name}", tag = "events",
    params(("name" = String, Path, description = "Event type")),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    producer: Producer,
    StrictPath(name): StrictPath<String>,
) -> ApiResult<StatusCode> {
    may_manage(&state, &producer, &name)?;
    if !state
        .store
        .delete_event_type(&name)
        .await
        .map_err(internal)?
    {
        return Err(ApiError::NotFound);
    }
    state.schemas.invalidate(&name);
    Ok(StatusCode::NO_CONTENT)
}
