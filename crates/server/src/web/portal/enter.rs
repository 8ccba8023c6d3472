//! Entering the portal: the single-use link becomes a session scoped to its
//! account; signing out ends it.

use crate::web::ctx::Portal;
use crate::web::page;
use crate::web::session;
use crate::web::Web;
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use hookwarden_store::model::SessionKind;
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Link {
    #[serde(default)]
    token: String,
}

/// `GET /portal/enter?token=…`: a page whose form (sent by our script at
/// once, or by the button) redeems the link. A GET changes nothing: link
/// scanners and previews that fetch it neither spend the link nor get a
/// session, and another site cannot sign a browser into an account (the
/// POST must come from this site).
pub async fn open(Query(link): Query<Link>) -> Response {
    if !session::well_formed(&link.token) {
        return super::ended();
    }
    let body = html! {
        h1 { "Your webhooks" }
        form method="post" action="/portal/enter" data-auto-submit {
            input type="hidden" name="token" value=(link.token);
            p { "Opening your webhooks…" }
            button type="submit" { "Open" }
        }
    };
    page::bare("Your webhooks", body).into_response()
}

/// `POST /portal/enter`: the single-use link becomes a session.
pub async fn enter(
    State(web): State<Web>,
    axum::Extension(request_id): axum::Extension<crate::http::request_id::RequestId>,
    Form(link): Form<Link>,
) -> Response {
    let now = web.app.clock.now();
    if !session::well_formed(&link.token) {
        return super::ended();
    }
    let redeemed = match web
        .app
        .store
        .redeem_portal_link(&session::digest(&link.token), now)
        .await
    {
        Ok(Some(l)) => l,
        Ok(None) => return super::ended(),
        Err(e) => {
            tracing::error!(error.message = %e, "redeeming a portal link failed");
            return page::notice_page("Try again", "The database did not answer; try again.")
                .into_response();
        }
    };
    let expires = redeemed.created_at + chrono::Duration::seconds(redeemed.session_ttl_seconds);
    let actor = format!("portal:{}", redeemed.account_id);
    let (token, s) = match session::start(
        &web,
        SessionKind::Portal,
        Some(redeemed.account_id.clone()),
        actor.clone(),
        expires,
    )
    .await
    {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error.message = %e, "storing a portal session failed");
            return page::notice_page("Try again", "The database did not answer; try again.")
                .into_response();
        }
    };
    crate::shared::audit::record(
        web.app.store.as_ref(),
        &actor,
        "portal.enter",
        &format!("session:{}", &s.id_hash[..12]),
        &request_id.0,
        serde_json::json!({ "expiresAt": crate::shared::rfc3339(s.expires_at) }),
    )
    .await;
    // Answered to a form of this site: the redirect is a same-site
    // navigation, which carries the SameSite=Strict cookie.
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&web, SessionKind::Portal, &token, s.expires_at, now),
        )],
        Redirect::to("/portal"),
    )
        .into_response()
}

pub async fn sign_out(Portal(ctx): Portal) -> Response {
    session::end(&ctx.web, &ctx.session, &ctx.request_id, "portal.sign_out").await;
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(&ctx.web, SessionKind::Portal),
        )],
        Redirect::to("/portal"),
    )
        .into_response()
}
