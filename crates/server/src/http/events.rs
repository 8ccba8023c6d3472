//! `POST /v1/events`: producers publish events for an account.

use crate::auth::Producer;
use crate::error::{ApiError, ApiResult};
use crate::http::json::StrictJson;
use crate::intake::{self, IntakeError, PublishRequest};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

pub async fn publish(
    State(state): State<AppState>,
    producer: Producer,
    StrictJson(body): StrictJson<PublishRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
        Json(
            json!({"eventId": accepted.event_id, "deliveries": accepted.deliveries, "duplicate": accepted.duplicate}),
        ),
    ))
}
