//! `POST /v1/webhooks/{id}/test`: a tenant sends a test event to one of its
//! endpoints (`outbound::test_event`), and reads its try in the deliveries.

use crate::auth::{Scope, Tenant};
use crate::http::deliveries::{view, AttemptView};
use crate::http::json::{OptionalJson, StrictPath};
use crate::http::operator::filters::finish;
use crate::http::request_id::RequestId;
use crate::http::webhooks::actor;
use crate::outbound::test_event::{self, TestError};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hookwarden_store::model::AttemptStatus;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// The optional body of `POST /v1/webhooks/{id}/test`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendTest {
    /// Only `webhook.test` (the default) for now.
    #[serde(default)]
    #[schema(pattern = "^webhook\\.test$")]
    event_type: Option<String>,
}

/// The test event and its try.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    /// The event's id: the `webhook-id` the endpoint receives.
    event_id: String,
    /// The try's id, as listed in `GET /v1/webhooks/{id}/deliveries`.
    delivery_id: String,
    /// The try as it stands when answering: its outcome (`succeeded`,
    /// `failed` with a retry to follow, `dead`), the endpoint's HTTP status,
    /// the duration and the error; `pending` if it was not made in time.
    delivery: Option<AttemptView>,
}

/// Send a test event to a webhook, and see what the endpoint answered
///
/// Sends one event of type `webhook.test` to this endpoint only, now (scope `webhooks:write`):
/// it is not fanned out to the account's other endpoints, and it is sent whatever this one
/// subscribes to. The dispatcher signs and delivers it like any other event (the same
/// `webhook-id`, `webhook-timestamp` and `webhook-signature` headers); a try that fails is
/// retried on the normal schedule. The body delivered is
/// `{"type": "webhook.test", "timestamp": "<RFC 3339>", "data": {"webhookId": "<id>", "test": true}}`.
/// The request body is optional; `eventType`, if given, must be `webhook.test`. The answer
/// waits for the try (at most the delivery timeout and two seconds) and is 200 with its
/// outcome in `delivery` (status, `httpStatus`, `durationMs`, `error`); it is 202 with the try
/// `pending` if the try was not made by then (the endpoint is paused, say: see `pausedUntil`).
/// Either way `GET /v1/webhooks/{id}/deliveries` lists it. A disabled endpoint is refused (409).
/// Audited (`webhook.test`).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    request_body(content = Option<SendTest>, description = "May be left out (no body and no `Content-Type`), or `null`", content_type = "application/json"),
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The test event was sent: `delivery` has the outcome", body = TestQueued),
        (status = 202, description = "The test event is queued, its try not made yet", body = TestQueued),
        (status = 409, description = "The endpoint is disabled", body = crate::http::openapi::ErrorResponse)))]
pub async fn send(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    OptionalJson(body): OptionalJson<SendTest>,
) -> ApiResult<(StatusCode, Json<TestQueued>)> {
    tenant.require(Scope::WebhooksWrite)?;
    test_event::event_type(body.and_then(|b| b.event_type).as_deref())
        .map_err(ApiError::Validation)?;
    let (store, account_id) = (state.store.clone(), tenant.account_id.clone());
    let within = state.settings.delivery_timeout + std::time::Duration::from_secs(2);
    // On its own task: a caller that disconnects cannot leave the queued
    // event unaudited.
    let queued = finish(async move {
        let queued = test_event::send(
            state.store.as_ref(),
            &state.wake,
            &tenant.account_id,
            &id,
            state.clock.now(),
        )
        .await
        .map_err(|e| match e {
            TestError::NotFound => ApiError::NotFound,
            TestError::Disabled => ApiError::Conflict(
                "this endpoint is disabled (see disabledReason): enable it to send a test event"
                    .into(),
            ),
            TestError::Store(e) => ApiError::internal("send test event", e),
        })?;
        tracing::info!(account.id = %tenant.account_id, webhook.id = %id, event.id = %queued.event_id, attempt.id = %queued.attempt_id, "test event queued");
        crate::shared::audit::record(
            state.store.as_ref(),
            &actor(&tenant),
            "webhook.test",
            &format!("webhook:{id}"),
            &rid.0,
            json!({"accountId": tenant.account_id, "eventId": queued.event_id}),
        )
        .await;
        Ok(queued)
    })
    .await?;
    let delivery = test_event::outcome(store.as_ref(), &account_id, &queued.attempt_id, within)
        .await
        .map_err(|e| ApiError::internal("read test event's try", e))?;
    let made = delivery
        .as_ref()
        .is_some_and(|a| a.status != AttemptStatus::Pending);
    Ok((
        if made {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        Json(TestQueued {
            event_id: queued.event_id,
            delivery_id: queued.attempt_id,
            delivery: delivery.as_ref().map(view),
        }),
    ))
}
