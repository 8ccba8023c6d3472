//! The operator console's pages, one module per area.

pub(crate) mod audit;
pub(crate) mod inbound;
pub(crate) mod integrations;
pub(crate) mod outbound;
pub(crate) mod overview;
pub(crate) mod sessions;
pub(crate) mod sign_in;

use super::Web;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<Web> {
    Router::new()
        .route(
            "/console/sign-in",
            get(sign_in::show)
                .post(sign_in::submit)
                .layer(DefaultBodyLimit::max(super::guard::MAX_OPEN_FORM)),
        )
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console", get(overview::show))
        .route("/console/integrations", get(integrations::list))
        .route(
            "/console/integrations/new",
            get(integrations::new_form).post(integrations::create),
        )
        .route(
            "/console/integrations/{name}",
            get(integrations::show).post(integrations::update),
        )
        .route(
            "/console/integrations/{name}/rotate",
            post(integrations::rotate),
        )
        .route(
            "/console/integrations/{name}/delete",
            post(integrations::delete),
        )
        .route("/console/inbound", get(inbound::list))
        .route("/console/inbound/{id}", get(inbound::show))
        .route("/console/inbound/{id}/replay", post(inbound::replay))
        .route("/console/accounts", get(outbound::accounts))
        .route("/console/webhooks/{id}", get(outbound::webhook))
        .route("/console/webhooks/{id}/disable", post(outbound::disable))
        .route("/console/webhooks/{id}/enable", post(outbound::enable))
        .route("/console/deliveries/{id}", get(outbound::delivery))
        .route("/console/deliveries/{id}/retry", post(outbound::retry))
        .route(
            "/console/dead-letters",
            get(outbound::dead_letters).post(outbound::bulk_retry),
        )
        .route("/console/event-types", get(outbound::event_types))
        .route("/console/audit", get(audit::show))
        .route("/console/sessions", get(sessions::list))
        .route(
            "/console/sessions/revoke-console",
            post(sessions::revoke_console),
        )
        .route(
            "/console/sessions/revoke-account",
            post(sessions::revoke_account),
        )
        .route("/console/sessions/{id}/revoke", post(sessions::revoke))
}
