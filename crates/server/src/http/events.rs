//! `POST /v1/events`: producers publish events for an account.

use crate::auth::Producer;
use crate::error::{ApiError, ApiResult};
use crate::http::json::StrictJson;
use crate::intake::{self, IntakeError, PublishRequest};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use serde::Serialize;
use utoipa::ToSchema;

/// What `POST /v1/events` answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    event_id: String,
    /// Deliveries scheduled (one per subscribed webhook).
    deliveries: u64,
    /// True when this id was published before with the same content.
    duplicate: bool,
}

#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = PublishRequest,
    security(("bearer" = [])),
    responses((status = 202, description = "Stored; deliveries scheduled", body = Accepted),
        (status = 409, description = "The id was used for other content", body = crate::http::openapi::ErrorResponse)))]
pub async fn publish(
    State(state): State<AppState>,
    producer: Producer,
    StrictJson(body): StrictJson<PublishRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    // A token bound to an account may publish for that account only.
    if let Some(account) = &producer.principal.account_id {
        if account != &body.account_id {
            return Err(ApiError::Forbidden(
                "token may not publish for this account".into(),
            ));
        }
    }
    let accepted = intake::publish(&state, body, &producer.principal.subject, "http")
        .await
        .map_err(|e| match e {
            IntakeError::Invalid(m) => ApiError::Validation(m),
            IntakeError::Conflict => ApiError::Conflict(e.to_string()),
            IntakeError::Forbidden(m) => ApiError::Forbidden(m),
            IntakeError::Store(s) => ApiError::internal("publish event", s),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            event_id: accepted.event_id,
            deliveries: accepted.deliveries,
            duplicate: accepted.duplicate,
        }),
    ))
}
