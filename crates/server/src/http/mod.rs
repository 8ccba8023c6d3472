//! The two HTTP surfaces: the public router (`/v1/*`, `/api/v1/*`) and the
//! internal ops router (`/health`, `/ready`, `/metrics`). The public one
//! also serves its OpenAPI document at `/openapi.json`.

pub mod client_addr;
pub mod cursor;
pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod json;
pub mod openapi;
pub mod operator;
pub mod ops;
pub mod request_id;
pub mod route_metrics;
pub mod serve;
pub mod webhooks;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body on the tenant API.
const BODY_LIMIT: usize = crate::limits::MAX_BODY;

/// Times in answers: RFC 3339, UTC, milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::Validation("method not allowed on this route".into())
}

/// The public routes and the OpenAPI document that describes them, built
/// from the same list so that neither can have a route the other lacks.
pub fn public_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use operator::{events as op_events, integrations as op_integrations};
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(
            webhooks::get,
            webhooks::update,
            webhooks::patch,
            webhooks::delete
        ))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::retry))
        .routes(routes!(events::publish))
        .routes(routes!(events::get))
        .routes(routes!(event_types::list))
        .routes(routes!(
            event_types::get,
            event_types::put,
            event_types::delete
        ))
        .routes(routes!(
            event_types::operator_put,
            event_types::operator_delete
        ))
        .routes(routes!(op_events::health))
        .routes(routes!(crate::ingress::receive::receive))
        .routes(routes!(op_events::sink_receive, op_events::sink_list))
        .routes(routes!(op_integrations::create, op_integrations::list))
        .routes(routes!(
            op_integrations::get,
            op_integrations::update,
            op_integrations::patch,
            op_integrations::delete
        ))
        .routes(routes!(operator::integration_secrets::rotate_secret))
        .routes(routes!(operator::integration_secrets::retire_secret))
        .routes(routes!(op_events::list))
        .routes(routes!(op_events::get))
        .routes(routes!(op_events::replay))
        .routes(routes!(op_events::deliveries))
        .routes(routes!(op_events::audit_entries))
        .routes(routes!(op_events::processing_status))
        .routes(routes!(operator::audit_chain::verify))
        .routes(routes!(operator::outbound::list))
        .routes(routes!(operator::outbound::bulk_retry))
        .routes(routes!(operator::outbound::get))
        .routes(routes!(operator::outbound::retry))
        .routes(routes!(operator::outbound_events::list))
        .routes(routes!(operator::outbound_events::get))
        .routes(routes!(operator::outbound_webhooks::list))
        .routes(routes!(operator::outbound_webhooks::get))
        .routes(routes!(operator::outbound_webhooks::disable))
        .routes(routes!(operator::outbound_webhooks::enable))
        .split_for_parts();
    openapi::complete(&mut doc);
    (router, doc)
}

pub fn public_router(state: AppState) -> Router {
    let (routes, doc) = public_routes();
    let document = axum::body::Bytes::from(openapi::render(&doc));
    routes
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client_addr::layer,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(axum::middleware::from_fn(route_metrics::layer))
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
        .layer(axum::middleware::from_fn(route_metrics::layer))
        .with_state(state)
}
