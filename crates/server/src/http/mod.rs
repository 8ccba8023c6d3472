//! The two HTTP surfaces: the public router (`/v1/*`, `/api/v1/*`) and the
//! internal ops router (`/health`, `/ready`, `/metrics`).

pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod json;
pub mod operator;
pub mod ops;
pub mod request_id;
pub mod serve;
pub mod webhooks;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

/// Largest request body on the tenant API.
const BODY_LIMIT: usize = crate::ingress::receive::MAX_BODY;

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::Validation("method not allowed on this route".into())
}

pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/events", post(events::publish))
        .route("/v1/event-types", get(event_types::list))
        .route(
            "/v1/event-types/{name}",
            get(event_types::get)
                .put(event_types::put)
                .delete(event_types::delete),
        )
        .route("/api/v1/health", get(operator::events::health))
        .route(
            "/api/v1/webhooks/{provider}",
            post(crate::ingress::receive::receive),
        )
        .route(
            "/api/v1/internal/delivery-sink/{provider}",
            post(operator::events::sink_receive).get(operator::events::sink_list),
        )
        .route(
            "/api/v1/integrations",
            post(operator::integrations::create).get(operator::integrations::list),
        )
        .route(
            "/api/v1/integrations/{name}",
            get(operator::integrations::get)
                .put(operator::integrations::update)
                .delete(operator::integrations::delete),
        )
        .route("/api/v1/events", get(operator::events::list))
        .route("/api/v1/events/{id}", get(operator::events::get))
        .route("/api/v1/events/{id}/replay", post(operator::events::replay))
        .route("/api/v1/deliveries", get(operator::events::deliveries))
        .route(
            "/api/v1/audit-entries",
            get(operator::events::audit_entries),
        )
        .route(
            "/api/v1/processing-status",
            get(operator::events::processing_status),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
