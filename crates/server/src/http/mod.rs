//! The two HTTP surfaces: the public router (`/v1/*`, `/api/v1/*`) and the
//! internal ops router (`/health`, `/ready`, `/metrics`). The public one
//! also serves its OpenAPI document at `/openapi.json`.

pub(crate) mod body_deadline;
pub(crate) mod client_addr;
pub(crate) mod cursor;
pub(crate) mod deliveries;
pub mod event_types;
pub(crate) mod events;
pub(crate) mod json;
pub mod openapi;
pub mod operator;
pub(crate) mod ops;
pub(crate) mod receive;
pub(crate) mod request_id;
pub(crate) mod route_metrics;
pub(crate) mod serve;
pub(crate) mod sink;
pub(crate) mod webhook_controls;
pub(crate) mod webhook_recover;
pub(crate) mod webhook_secret;
pub(crate) mod webhook_test;
pub mod webhooks;

use crate::shared::error::ApiError;
use crate::shared::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body on the tenant API.
const BODY_LIMIT: usize = crate::shared::limits::MAX_BODY;

pub(crate) use crate::shared::rfc3339;

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::Validation("method not allowed on this route".into())
}

/// The public routes and the OpenAPI document that describes them, built
/// from the same list so that neither can have a route the other lacks.
pub fn public_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use operator::inbound::{events as op_events, forwarding, integrations as op_integrations};
    use operator::outbound as op_out;
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(
            webhooks::get,
            webhooks::update,
            webhooks::patch,
            webhooks::delete
        ))
        .routes(routes!(webhook_secret::reveal))
        .routes(routes!(webhook_test::send))
        .routes(routes!(webhook_recover::recover))
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
        .routes(routes!(ops::api_health))
        .routes(routes!(receive::receive))
        .routes(routes!(sink::sink_receive, sink::sink_list))
        .routes(routes!(op_integrations::create, op_integrations::list))
        .routes(routes!(
            op_integrations::get,
            op_integrations::update,
            op_integrations::patch,
            op_integrations::delete
        ))
        .routes(routes!(
            operator::inbound::integration_secrets::rotate_secret
        ))
        .routes(routes!(
            operator::inbound::integration_secrets::retire_secret
        ))
        .routes(routes!(op_events::list))
        .routes(routes!(op_events::get))
        .routes(routes!(op_events::replay))
        .routes(routes!(forwarding::deliveries))
        .routes(routes!(operator::audit_trail::audit_entries))
        .routes(routes!(forwarding::processing_status))
        .routes(routes!(operator::audit_chain::verify))
        .routes(routes!(op_out::deliveries::list))
        .routes(routes!(op_out::deliveries::bulk_retry))
        .routes(routes!(op_out::deliveries::get))
        .routes(routes!(op_out::deliveries::retry))
        .routes(routes!(op_out::events::list))
        .routes(routes!(op_out::events::get))
        .routes(routes!(op_out::webhooks::list))
        .routes(routes!(op_out::webhooks::get))
        .routes(routes!(op_out::webhooks::disable))
        .routes(routes!(op_out::webhooks::enable))
        .routes(routes!(
            operator::operational::create,
            operator::operational::list
        ))
        .routes(routes!(operator::operational::delete))
        .routes(routes!(
            operator::portal_sessions::create,
            operator::portal_sessions::revoke
        ))
        .split_for_parts();
    openapi::complete(&mut doc);
    (router, doc)
}

/// The public listener's router: the APIs, their OpenAPI document, the
/// console and the portal. `hide_operator`: the operator routes and the
/// console live on a private listener, so this one answers 404 there.
pub fn public_router(state: AppState, hide_operator: bool) -> Router {
    let api = layered(api_routes(), state.clone(), false);
    let pages = crate::web::router(state.clone(), api);
    layered(api_routes().merge(pages), state, hide_operator)
}

/// The API routes and the document that describes them.
fn api_routes() -> Router<AppState> {
    let (routes, doc) = public_routes();
    let document = axum::body::Bytes::from(openapi::render(&doc));
    routes.route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document) }
        }),
    )
}

fn layered(routes: Router<AppState>, state: AppState, hide_operator: bool) -> Router {
    let mut routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if hide_operator {
        // Around the fallbacks too: a wrong method must not tell either.
        routes = routes.layer(axum::middleware::from_fn(operator_hidden));
    }
    routes
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(body_deadline::layer))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client_addr::layer,
        ))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(axum::middleware::from_fn(route_metrics::layer))
        .with_state(state)
}

/// Whether a path belongs on the operator's side: the console and the
/// operator API, but not the providers' receive route nor the health check.
pub fn is_operator_path(path: &str) -> bool {
    path == "/console"
        || path.starts_with("/console/")
        || (path.starts_with("/api/v1/")
            && !path.starts_with("/api/v1/webhooks/")
            && path != "/api/v1/health")
}

async fn operator_hidden(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if is_operator_path(req.uri().path()) {
        return ApiError::NotFound.into_response();
    }
    next.run(req).await
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
