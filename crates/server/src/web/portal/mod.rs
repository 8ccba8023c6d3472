//! The tenant portal: one account's endpoints, their secrets, delivery log
//! and test events, and the event catalog. Entered through a single-use
//! link the platform's backend mints (`POST /api/v1/portal-sessions`); the
//! session sees exactly that account, and every call it makes goes through
//! the tenant API as that account, so another account's ids answer 404.

pub(crate) mod endpoints;
pub(crate) mod enter;

use super::page;
use super::Web;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<Web> {
    Router::new()
        .route(
            "/portal/enter",
            get(enter::open)
                .post(enter::enter)
                .layer(DefaultBodyLimit::max(super::guard::MAX_OPEN_FORM)),
        )
        .route("/portal/sign-out", post(enter::sign_out))
        .route("/portal", get(endpoints::list))
        .route("/portal/catalog", get(endpoints::catalog))
        .route(
            "/portal/endpoints/new",
            get(endpoints::new_form).post(endpoints::create),
        )
        .route(
            "/portal/endpoints/{id}",
            get(endpoints::show).post(endpoints::update),
        )
        .route("/portal/endpoints/{id}/secret", post(endpoints::reveal))
        .route("/portal/endpoints/{id}/rotate", post(endpoints::rotate))
        .route("/portal/endpoints/{id}/delete", post(endpoints::delete))
        .route("/portal/endpoints/{id}/test", post(endpoints::test))
        .route("/portal/deliveries/{id}/retry", post(endpoints::retry))
}

/// What a request without a live portal session sees: the link was used,
/// has expired or was revoked; only the platform can mint a new one. 410,
/// not 401: it is not a failed authentication to count against the client.
pub fn ended() -> Response {
    (
        StatusCode::GONE,
        page::notice_page(
            "This page has expired",
            "Your session has ended. Open the webhooks page again from your account to get a new link.",
        ),
    )
        .into_response()
}
