//! `POST /v1/webhooks/{id}/recover`: a tenant whose endpoint is back after an
//! outage has every delivery that failed since a time tried again
//! (`outbound::recover`).

use crate::auth::{Scope, Tenant};
use crate::http::json::{StrictJson, StrictPath};
use crate::http::operator::filters::{finish, parse_time};
use crate::http::request_id::RequestId;
use crate::http::webhooks::actor;
use crate::outbound::recover::{self, RecoverError};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// The body of `POST /v1/webhooks/{id}/recover`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Recover {
    /// Deliveries whose failed try was made at or after this time.
    #[schema(format = DateTime)]
    since: String,
}

/// What a recovery did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverReport {
    /// Deliveries tried again: dead letters given a new try and deliveries
    /// waiting for a retry, all due now.
    requeued: u64,
    /// More dead letters remain (more than 1,000 in one call): call again
    /// with the same `since`, a minute later (those re-queued are not
    /// selected again).
    more: bool,
}

/// Recover a webhook after an outage
///
/// Tries again, once each, every delivery to this endpoint that failed since `since` (scope
/// `webhooks:write`): a dead letter gets a new try, and a delivery waiting for its next retry
/// is due at once. The endpoint's pause and failure count are cleared, since its tenant says it
/// is back (should it still fail, it is paused again after a few tries). The tries go out at
/// the endpoint's share of the dispatcher, like any backlog. A dead letter is re-queued once:
/// calls that overlap, or a retry of the same delivery, re-queue it once between them. At most
/// 1,000 dead letters per call (`more` says to call again) and one call per endpoint per minute
/// (429 with `Retry-After` before that). A disabled endpoint is refused (409): enable it first.
/// The time the endpoint started failing is kept: an endpoint that still fails every try is
/// disabled after `HOOKWARDEN_DISABLE_AFTER` whatever the recoveries. Audited
/// (`webhook.recovered`).
#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", tag = "webhooks",
    request_body = Recover,
    params(("id" = String, Path, description = "Webhook id")),
    security(("bearer" = [])),
    responses((status = 202, description = "The failed deliveries are due again", body = RecoverReport),
        (status = 409, description = "The endpoint is disabled", body = crate::http::openapi::ErrorResponse)))]
pub async fn recover(
    State(state): State<AppState>,
    tenant: Tenant,
    Extension(rid): Extension<RequestId>,
    StrictPath(id): StrictPath<String>,
    StrictJson(body): StrictJson<Recover>,
) -> ApiResult<(StatusCode, Json<RecoverReport>)> {
    tenant.require(Scope::WebhooksWrite)?;
    let since = parse_time("since", Some(&body.since))?
        .ok_or_else(|| ApiError::Validation("since is required".into()))?;
    // On its own task: a caller that disconnects cannot leave a recovery
    // half done and unaudited.
    finish(async move {
        let done = recover::recover(
            state.store.as_ref(),
            &state.wake,
            &tenant.account_id,
            &id,
            since,
            state.clock.now(),
        )
        .await
        .map_err(|e| match e {
            RecoverError::NotFound => ApiError::NotFound,
            RecoverError::Disabled => ApiError::Conflict(
                "this endpoint is disabled (see disabledReason): enable it before recovering it"
                    .into(),
            ),
            RecoverError::TooSoon(wait) => ApiError::RateLimited(wait),
            RecoverError::Store(e) => ApiError::internal("recover webhook", e),
        })?;
        tracing::info!(account.id = %tenant.account_id, webhook.id = %id, requeued = done.requeued, hurried = done.hurried, more = done.more, "endpoint recovered by its tenant");
        crate::shared::audit::record(
            state.store.as_ref(),
            &actor(&tenant),
            "webhook.recovered",
            &format!("webhook:{id}"),
            &rid.0,
            json!({"accountId": tenant.account_id, "since": body.since,
                   "requeued": done.requeued, "hurried": done.hurried, "more": done.more}),
        )
        .await;
        Ok((
            StatusCode::ACCEPTED,
            Json(RecoverReport {
                requeued: done.requeued + done.hurried,
                more: done.more,
            }),
        ))
    })
    .await
}
