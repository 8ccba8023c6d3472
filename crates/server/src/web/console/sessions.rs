//! Who is signed in: live console and portal sessions, each revocable, and
//! every portal session of an account at once.

use crate::web::ctx::Console;
use crate::web::form::Fields;
use crate::web::page::{self, Done};
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use hookwarden_store::model::SessionKind;
use maud::html;

const ACTIVE: &str = "Sessions";

pub async fn list(Console(ctx): Console, Query(d): Query<Done>) -> Response {
    let now = ctx.web.app.clock.now();
    let sessions = match ctx.web.app.store.list_web_sessions(None, now, 200).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error.message = %e, "listing sessions failed");
            return ctx.page(
                "Sessions",
                ACTIVE,
                page::alert("The database did not answer; try again."),
            );
        }
    };
    let body = html! {
        h1 { "Sessions" }
        @if d.done == "revoked" { (page::done("Revoked.")) }
        p class="muted" { "Console sessions last " (humantime(ctx.web.app.settings.console_session_ttl)) "; portal sessions as long as their link asked." }
        div class="table" { table {
            thead { tr { th { "Session" } th { "Kind" } th { "Who" } th { "Started" } th { "Ends" } th { span class="sr-only" { "Action" } } } }
            tbody { @for s in &sessions { tr {
                td class="id" { (&s.id_hash[..12]) @if s.id_hash == ctx.session.id_hash { " (you)" } }
                td { (match s.kind { SessionKind::Operator => "console", SessionKind::Portal => "portal" }) }
                td class="id" { (s.actor) }
                td { (crate::shared::rfc3339(s.created_at)) }
                td { (crate::shared::rfc3339(s.expires_at)) }
                td { (page::button(&ctx.session, &format!("/console/sessions/{}/revoke", s.id_hash), &format!("Revoke {}", &s.id_hash[..8]), "secondary", Some("Revoke this session?"))) }
            } } }
        } }
        h2 { "End every portal session of an account" }
        form method="post" action="/console/sessions/revoke-account" class="stack card" {
            (page::csrf(&ctx.session))
            label for="account" { "Account id" }
            input id="account" name="account" type="text" required;
            p class="muted" { "Its portal links not opened yet stop working too." }
            div class="actions" { button type="submit" class="danger" data-confirm="End every portal session of this account?" { "Revoke the account's portal sessions" } }
        }
        h2 { "End every console session" }
        div class="card" {
            p { "Every operator signed in to the console, you too, must sign in again (after a key was changed, say). A session also ends by itself once its key is no longer configured." }
            (page::button(&ctx.session, "/console/sessions/revoke-console", "End every console session", "danger", Some("Sign every operator out, you too?")))
        }
    };
    ctx.page("Sessions", ACTIVE, body)
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else {
        format!("{} min", s.div_ceil(60))
    }
}

/// Revokes one live session, named by its digest (a digest opens nothing:
/// the page never holds a token).
pub async fn revoke(Console(ctx): Console, Path(id_hash): Path<String>) -> Response {
    let now = ctx.web.app.clock.now();
    let is_digest = id_hash.len() == 64 && id_hash.bytes().all(|b| b.is_ascii_hexdigit());
    let found = if is_digest {
        ctx.web
            .app
            .store
            .get_web_session(&id_hash, now)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let Some(s) = found else {
        return ctx.fail(
            ACTIVE,
            &crate::web::api::Failure {
                status: axum::http::StatusCode::NOT_FOUND,
                message: String::new(),
            },
        );
    };
    let prefix = &s.id_hash[..12];
    if let Err(e) = ctx.web.app.store.revoke_web_session(&s.id_hash, now).await {
        tracing::error!(error.message = %e, "revoking a session failed");
    }
    crate::shared::audit::record(
        ctx.web.app.store.as_ref(),
        &ctx.session.actor,
        "session.revoke",
        &format!("session:{prefix}"),
        &ctx.request_id,
        serde_json::json!({ "of": s.actor }),
    )
    .await;
    if s.id_hash == ctx.session.id_hash {
        return Redirect::to("/console/sign-in").into_response();
    }
    Redirect::to("/console/sessions?done=revoked").into_response()
}

/// Ends every console session, the caller's too (a key thought leaked).
pub async fn revoke_console(Console(ctx): Console) -> Response {
    let now = ctx.web.app.clock.now();
    let n = ctx
        .web
        .app
        .store
        .revoke_web_sessions(SessionKind::Operator, None, now)
        .await
        .unwrap_or(0);
    crate::shared::audit::record(
        ctx.web.app.store.as_ref(),
        &ctx.session.actor,
        "session.revoke_console",
        "console",
        &ctx.request_id,
        serde_json::json!({ "revoked": n }),
    )
    .await;
    Redirect::to("/console/sign-in").into_response()
}

pub async fn revoke_account(Console(ctx): Console, Form(f): Form<Fields>) -> Response {
    let now = ctx.web.app.clock.now();
    let account = f.get("account");
    let n = ctx
        .web
        .app
        .store
        .revoke_web_sessions(SessionKind::Portal, Some(account), now)
        .await
        .unwrap_or(0);
    crate::shared::audit::record(
        ctx.web.app.store.as_ref(),
        &ctx.session.actor,
        "session.revoke_account",
        &format!("account:{account}"),
        &ctx.request_id,
        serde_json::json!({ "revoked": n }),
    )
    .await;
    Redirect::to("/console/sessions?done=revoked").into_response()
}
