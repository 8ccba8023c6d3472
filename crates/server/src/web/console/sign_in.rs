//! Signing in to the console with an operator key (or the operator's client
//! certificate, where one is configured) and signing out. Attempts are
//! rate-limited per client; a refused key answers 401, which the public
//! listener also counts against the client like any failed authentication.

use crate::auth::operator::{client_certificate_ok, matching_key};
use crate::http::client_addr::ClientAddr;
use crate::http::request_id::RequestId;
use crate::web::ctx::Console;
use crate::web::page;
use crate::web::session::{self, Signed};
use crate::web::Web;
use axum::extract::{Form, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use hookwarden_store::model::SessionKind;
use maud::html;
use serde::Deserialize;

/// Sign-in attempts per client per minute.
const ATTEMPTS_PER_MINUTE: u32 = 10;

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    key: String,
    /// `certificate`: sign in with the client certificate alone.
    #[serde(default)]
    method: String,
}

fn form(web: &Web, parts_cert: bool, message: Option<&str>) -> maud::Markup {
    let cert = web.app.settings.operator_client_identity.is_some() && parts_cert;
    html! {
        h1 { "Sign in" }
        @if let Some(m) = message { (page::alert(m)) }
        form method="post" action="/console/sign-in" class="stack card" {
            label for="key" { "Operator key"
                span class="hint" { "One of HOOKWARDEN_MANAGEMENT_API_KEYS." } }
            input id="key" name="key" type="password" autocomplete="current-password" required autofocus;
            div class="actions" { button type="submit" { "Sign in" } }
        }
        @if cert {
            form method="post" action="/console/sign-in" class="card" {
                input type="hidden" name="method" value="certificate";
                p { "Your browser presented the operator's client certificate." }
                button type="submit" class="secondary" { "Sign in with your certificate" }
            }
        }
    }
}

pub async fn show(State(web): State<Web>, parts: Parts) -> Response {
    if matches!(parts.extensions.get::<Signed>(), Some(Signed(s)) if s.kind == SessionKind::Operator)
    {
        return Redirect::to("/console").into_response();
    }
    let cert = has_certificate(&web, &parts);
    page::bare("Sign in", form(&web, cert, None)).into_response()
}

fn has_certificate(web: &Web, parts: &Parts) -> bool {
    web.app.settings.operator_client_identity.is_some()
        && client_certificate_ok(&web.app.settings, parts)
}

pub async fn submit(
    State(web): State<Web>,
    Extension(request_id): Extension<RequestId>,
    parts: Parts,
    Form(input): Form<SignIn>,
) -> Response {
    let client = parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    // Per client as every limit counts one: an IPv6 /64 is one client.
    let limit_key = parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| hookwarden_core::client_addr::limit_key(c.0))
        .unwrap_or_default();
    if let Err(limited) = web
        .app
        .limiter
        .check(&format!("console-sign-in:{limit_key}"), ATTEMPTS_PER_MINUTE)
        .await
    {
        let secs = limited.0.as_secs().max(1);
        let body = form(
            &web,
            false,
            Some(&format!("Too many attempts; try again in {secs} s.")),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            page::bare("Sign in", body),
        )
            .into_response();
    }
    let cert = has_certificate(&web, &parts);
    let settings = &web.app.settings;
    // Where a client certificate is required, it is required for every way in.
    let key_id = if !client_certificate_ok(settings, &parts) {
        None
    } else if input.method == "certificate" && cert {
        Some("certificate".to_owned())
    } else {
        matching_key(settings, &input.key)
    };
    let Some(key_id) = key_id else {
        let body = form(&web, cert, Some("That key was not accepted."));
        return (StatusCode::UNAUTHORIZED, page::bare("Sign in", body)).into_response();
    };
    let actor = format!("operator:{key_id}");
    let now = web.app.clock.now();
    let expires = now + settings.console_session_ttl;
    let (token, s) =
        match session::start(&web, SessionKind::Operator, None, actor.clone(), expires).await {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error.message = %e, "storing a console session failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    page::notice_page("Not signed in", "The database did not answer; try again."),
                )
                    .into_response();
            }
        };
    crate::shared::audit::record(
        web.app.store.as_ref(),
        &actor,
        "console.sign_in",
        &format!("session:{}", &s.id_hash[..12]),
        &request_id.0,
        serde_json::json!({ "client": client, "expiresAt": crate::shared::rfc3339(s.expires_at) }),
    )
    .await;
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&web, SessionKind::Operator, &token, s.expires_at, now),
        )],
        Redirect::to("/console"),
    )
        .into_response()
}

pub async fn sign_out(Console(ctx): Console) -> Response {
    session::end(&ctx.web, &ctx.session, &ctx.request_id, "console.sign_out").await;
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(&ctx.web, SessionKind::Operator),
        )],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}
