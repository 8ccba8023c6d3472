//! Entering the portal: the single-use link becomes a session scoped to its
//! account; signing out ends it.

use crate::web::ctx::Portal;
use crate::web::page;
use crate::web::session;
use crate::web::Web;
use axum::extract::{Query, State};
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

pub async fn enter(
    State(web): State<Web>,
    axum::Extension(request_id): axum::Extension<crate::http::request_id::RequestId>,
    Query(link): Query<Link>,
) -> Response {
    let now = web.app.clock.now();
    // Our tokens are 43 URL-safe characters: anything else costs no lookup.
    let well_formed = link.token.len() == 43
        && link
            .token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
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
    // A page of our own, not a redirect: the next request is then made by
    // this site, so the browser sends the SameSite=Strict cookie with it
    // even when the link was opened from another site.
    let body = html! {
        meta http-equiv="refresh" content="0; url=/portal";
        h1 { "Opening your webhooks…" }
        p { a href="/portal" { "Continue" } }
    };
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&web, SessionKind::Portal, &token, s.expires_at, now),
        )],
        page::bare("Opening", body),
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
