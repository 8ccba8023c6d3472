//! Entering the portal: the single-use link becomes a session scoped to its
//! account; signing out ends it.

use crate::web::ctx::Portal;
use crate::web::page;
use crate::web::session::{self, Signed};
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

/// `GET /portal/enter?token=…`: a page whose form redeems the link. A GET
/// changes nothing, so link scanners and previews spend nothing. The form
/// is sent at once by our script only when the link was followed from one
/// of the platform's own pages (`HOOKWARDEN_PORTAL_FRAME_ANCESTORS`, by the
/// `Referer` the browser sent) and no portal session is open in this
/// browser; otherwise a person must press the button, having read that
/// the link signs them in to whichever account it was made for. So another
/// site cannot silently sign a browser in to an account of its choosing.
pub async fn open(
    State(web): State<Web>,
    headers: axum::http::HeaderMap,
    signed: Option<axum::Extension<Signed>>,
    Query(link): Query<Link>,
) -> Response {
    if !session::well_formed(&link.token) {
        return super::ended();
    }
    let current = signed.and_then(|axum::Extension(Signed(s))| s.account_id);
    let from_platform = headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| u.origin().ascii_serialization())
        .is_some_and(|o| web.app.settings.portal_frame_ancestors.contains(&o));
    let at_once = from_platform && current.is_none();
    let body = html! {
        h1 { "Your webhooks" }
        @if at_once {
            form method="post" action="/portal/enter" data-auto-submit {
                input type="hidden" name="token" value=(link.token);
                p { "Opening your webhooks…" }
                button type="submit" { "Open" }
            }
        } @else {
            form method="post" action="/portal/enter" class="card" {
                input type="hidden" name="token" value=(link.token);
                p { "This link opens the webhook settings of the account it was made for." }
                @if let Some(account) = &current {
                    p { "You are signed in to account " strong { (account) } " here; opening the link ends that session." }
                }
                p class="muted" { "If you did not ask for it from your account's pages, do not open it." }
                button type="submit" { "Open the webhook settings" }
            }
        }
    };
    page::bare("Your webhooks", body).into_response()
}

/// `POST /portal/enter`: the single-use link becomes a session (spent and
/// started in one transaction). A client that sends many links that open
/// nothing is refused like a failed authentication.
pub async fn enter(
    State(web): State<Web>,
    axum::Extension(request_id): axum::Extension<crate::http::request_id::RequestId>,
    client: Option<axum::Extension<crate::http::client_addr::ClientAddr>>,
    Form(link): Form<Link>,
) -> Response {
    let now = web.app.clock.now();
    let client = client.map(|axum::Extension(c)| c.0);
    if let Some(ip) = client {
        if web
            .app
            .refusals
            .blocked(super::super::guard::SCOPE, ip)
            .is_some()
        {
            return super::ended();
        }
    }
    if !session::well_formed(&link.token) {
        return super::ended();
    }
    let (token, csrf) = (session::new_token(), session::new_token());
    let opened = web
        .app
        .store
        .open_portal_link(
            &session::digest(&link.token),
            &session::digest(&token),
            &csrf,
            now,
        )
        .await;
    let s = match opened {
        Ok(Some(s)) => s,
        Ok(None) => {
            if let Some(ip) = client {
                web.app.refusals.failed(super::super::guard::SCOPE, ip);
            }
            return super::ended();
        }
        Err(e) => {
            tracing::error!(error.message = %e, "opening a portal link failed");
            return page::notice_page("Try again", "The database did not answer; try again.")
                .into_response();
        }
    };
    crate::shared::audit::record(
        web.app.store.as_ref(),
        &s.actor,
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
