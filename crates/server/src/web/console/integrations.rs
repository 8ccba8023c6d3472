//! The console's integrations: list, create (the forwarding secret shown
//! once), change, rotate the provider secret, delete after confirming.

use crate::web::api::{query, seg, Failure};
use crate::web::ctx::{Console, Ctx};
use crate::web::form::{without_nulls, Fields};
use crate::web::page::{self, text, time, Done};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::{json, Value};

const ACTIVE: &str = "Integrations";
const SCHEMES: &[&str] = &[
    "stripe",
    "github",
    "slack",
    "shopify",
    "standard-webhooks",
    "hmac-sha256",
    "token",
];

pub async fn list(Console(ctx): Console, Query(n): Query<Done>) -> Response {
    let page = match ctx.api.get("/api/v1/integrations").await {
        Ok(p) => p,
        Err(f) => return ctx.fail(ACTIVE, &f),
    };
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Integrations" }
        @if n.done == "deleted" { (page::done("The integration was deleted.")) }
        div class="actions" { a class="button" href="/console/integrations/new" { "New integration" } }
        @if items.is_empty() {
            p class="muted" { "No integration yet: create one to receive a provider's webhooks." }
        } @else {
            div class="table" { table {
                caption class="muted" { "Providers whose webhooks are verified here" }
                thead { tr { th { "Name" } th { "Scheme" } th { "Forwards to" } th { "Secrets" } th { "Last verified" } } }
                tbody { @for i in &items { tr {
                    td { a href={ "/console/integrations/" (seg(i["name"].as_str().unwrap_or_default())) } { (text(&i["name"])) } }
                    td { (text(&i["scheme"])) }
                    td class="id" { (text(&i["targetUrl"])) }
                    td { (text(&i["activeSecrets"])) }
                    td { (time(&i["lastVerifiedAt"])) }
                } } }
            } }
        }
    };
    ctx.page("Integrations", ACTIVE, body)
}

fn create_form(ctx: &Ctx, f: &Fields, error: Option<&str>) -> Markup {
    html! {
        h1 { "New integration" }
        @if let Some(e) = error { (page::alert(e)) }
        form method="post" action="/console/integrations/new" class="stack card" {
            (page::csrf(&ctx.session))
            label for="name" { "Name" span class="hint" { "Letters, digits and dashes; the receive URL is /api/v1/webhooks/<name>." } }
            input id="name" name="name" type="text" required value=(f.get("name"));
            label for="scheme" { "Scheme" span class="hint" { "How the provider signs its webhooks." } }
            select id="scheme" name="scheme" {
                @for s in SCHEMES {
                    option value=(s) selected[f.get("scheme") == *s] { (s) }
                }
            }
            label for="targetUrl" { "Forward to" span class="hint" { "The internal service that receives verified events." } }
            input id="targetUrl" name="targetUrl" type="url" required value=(f.get("targetUrl"));
            label for="secret" { "Provider secret" span class="hint" { "The signing secret the provider gave you." } }
            input id="secret" name="secret" type="password" autocomplete="off" required;
            (settings_fields(f))
            details {
                summary { "Generic HMAC options" }
                label for="signatureHeader" { "Signature header" }
                input id="signatureHeader" name="signatureHeader" type="text" value=(f.get("signatureHeader"));
                label for="prefix" { "Signature prefix" }
                input id="prefix" name="prefix" type="text" value=(f.get("prefix"));
                label for="encoding" { "Encoding" }
                select id="encoding" name="encoding" {
                    option value="" { "default" }
                    option value="hex" selected[f.get("encoding") == "hex"] { "hex" }
                    option value="base64" selected[f.get("encoding") == "base64"] { "base64" }
                }
                label for="idempotencyHeader" { "Idempotency header" }
                input id="idempotencyHeader" name="idempotencyHeader" type="text" value=(f.get("idempotencyHeader"));
            }
            div class="actions" { button type="submit" { "Create integration" } a href="/console/integrations" { "Cancel" } }
        }
    }
}

/// The settings both the create and the edit form carry.
fn settings_fields(f: &Fields) -> Markup {
    html! {
        label for="allowedCidrs" { "Allowed sources" span class="hint" { "CIDRs, comma-separated; empty: any source." } }
        input id="allowedCidrs" name="allowedCidrs" type="text" value=(f.get("allowedCidrs"));
        label for="toleranceSeconds" { "Timestamp tolerance (seconds)" span class="hint" { "Empty: the default." } }
        input id="toleranceSeconds" name="toleranceSeconds" type="number" min="1" value=(f.get("toleranceSeconds"));
        label for="rateLimitPerMinute" { "Rate limit per minute" span class="hint" { "Empty: the default (600)." } }
        input id="rateLimitPerMinute" name="rateLimitPerMinute" type="number" min="1" value=(f.get("rateLimitPerMinute"));
        label { input type="checkbox" name="forwardRawBody" checked[f.ticked("forwardRawBody")]; " Forward the raw body" }
    }
}

pub async fn new_form(Console(ctx): Console) -> Response {
    let body = create_form(
        &ctx,
        &Fields(vec![("scheme".into(), "stripe".into())]),
        None,
    );
    ctx.page("New integration", ACTIVE, body)
}

fn settings_body(f: &Fields) -> Value {
    let cidrs = f.list("allowedCidrs");
    json!({
        "allowedCidrs": if cidrs.is_empty() { Value::Null } else { json!(cidrs) },
        "toleranceSeconds": f.number_or_null("toleranceSeconds"),
        "rateLimitPerMinute": f.number_or_null("rateLimitPerMinute"),
        "forwardRawBody": f.ticked("forwardRawBody"),
    })
}

pub async fn create(Console(ctx): Console, Form(f): Form<Fields>) -> Response {
    let mut body = settings_body(&f);
    for k in [
        "name",
        "scheme",
        "targetUrl",
        "secret",
        "signatureHeader",
        "prefix",
        "encoding",
        "idempotencyHeader",
    ] {
        body[k] = f.string_or_null(k);
    }
    match ctx
        .api
        .post("/api/v1/integrations", without_nulls(body))
        .await
    {
        Ok(view) => {
            let name = view["name"].as_str().unwrap_or_default().to_owned();
            let body = html! {
                h1 { "Integration " (name) " created" }
                (page::done("Providers can now send webhooks to it."))
                div class="card" {
                    h2 { "Forwarding secret" }
                    p { "Your internal service checks forwarded requests with this secret. It is shown only now: copy it." }
                    p class="secret" data-testid="forwarding-secret" { (text(&view["forwardingSecret"])) }
                }
                p { "Receive URL: " code { "/api/v1/webhooks/" (name) } }
                p { a href={ "/console/integrations/" (seg(&name)) } { "Go to the integration" } }
            };
            (
                StatusCode::CREATED,
                ctx.page("Integration created", ACTIVE, body),
            )
                .into_response()
        }
        Err(e) if e.status.is_client_error() => {
            let body = create_form(&ctx, &f, Some(&e.message));
            (e.status, ctx.page("New integration", ACTIVE, body)).into_response()
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

fn as_fields(view: &Value) -> Fields {
    let mut f = Vec::new();
    let cidrs: Vec<&str> = view["allowedCidrs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    f.push(("allowedCidrs".to_owned(), cidrs.join(", ")));
    for k in ["toleranceSeconds", "rateLimitPerMinute"] {
        if let Some(n) = view[k].as_i64() {
            f.push((k.to_owned(), n.to_string()));
        }
    }
    if view["forwardRawBody"].as_bool() == Some(true) {
        f.push(("forwardRawBody".to_owned(), "on".to_owned()));
    }
    Fields(f)
}

fn detail(ctx: &Ctx, view: &Value, f: &Fields, notice: Option<Markup>) -> Markup {
    let name = view["name"].as_str().unwrap_or_default();
    let base = format!("/console/integrations/{}", seg(name));
    html! {
        h1 { "Integration " (name) }
        @if let Some(n) = notice { (n) }
        div class="card" { dl class="facts" {
            dt { "Scheme" } dd { (text(&view["scheme"])) }
            dt { "Receive URL" } dd { code { "/api/v1/webhooks/" (name) } }
            dt { "Forwards to" } dd class="id" { (text(&view["targetUrl"])) }
            dt { "Active provider secrets" } dd { (text(&view["activeSecrets"])) }
            dt { "Last verified" } dd { (time(&view["lastVerifiedAt"])) }
            dt { "Created" } dd { (time(&view["createdAt"])) }
            dt { "Changed" } dd { (time(&view["updatedAt"])) }
        } }
        p { a href={ "/console/inbound" (query(&[("provider", name)])) } { "Events from " (name) } }
        h2 { "Settings" }
        form method="post" action=(base) class="stack card" {
            (page::csrf(&ctx.session))
            label for="targetUrl" { "Forward to" }
            input id="targetUrl" name="targetUrl" type="url" required value=(view["targetUrl"].as_str().unwrap_or_default());
            (settings_fields(f))
            div class="actions" { button type="submit" { "Save changes" } }
        }
        h2 { "Rotate the provider secret" }
        form method="post" action={ (base) "/rotate" } class="stack card" {
            (page::csrf(&ctx.session))
            label for="newSecret" { "New provider secret" }
            input id="newSecret" name="secret" type="password" autocomplete="off" required;
            label { input type="checkbox" name="keepPrevious" checked; " Keep the previous secret verifying until it is retired" }
            div class="actions" { button type="submit" { "Rotate secret" } }
        }
        h2 { "Delete" }
        div class="card" {
            p { "Deleting stops verification at once: the provider's next webhooks are refused. Stored events stay." }
            (page::button(&ctx.session, &format!("{base}/delete"), "Delete integration", "danger", Some(&format!("Delete the integration {name}?"))))
        }
    }
}

async fn load(ctx: &Ctx, name: &str) -> Result<Value, Failure> {
    ctx.api
        .get(&format!("/api/v1/integrations/{}", seg(name)))
        .await
}

pub async fn show(
    Console(ctx): Console,
    Path(name): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let view = match load(&ctx, &name).await {
        Ok(v) => v,
        Err(f) => return ctx.fail(ACTIVE, &f),
    };
    let notice = match d.done.as_str() {
        "saved" => Some(page::done("Saved.")),
        "rotated" => Some(page::done("The provider secret was rotated.")),
        _ => None,
    };
    let body = detail(&ctx, &view, &as_fields(&view), notice);
    ctx.page(&format!("Integration {name}"), ACTIVE, body)
}

pub async fn update(
    Console(ctx): Console,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let mut body = settings_body(&f);
    body["targetUrl"] = f.string_or_null("targetUrl");
    let path = format!("/api/v1/integrations/{}", seg(&name));
    match ctx
        .api
        .call(axum::http::Method::PATCH, &path, Some(body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/console/integrations/{}?done=saved", seg(&name)))
            .into_response(),
        Err(e) if e.status.is_client_error() && !e.not_found() => {
            refused_change(&ctx, &name, &f, &e).await
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

/// The detail page again, with what was typed and why it was refused.
async fn refused_change(ctx: &Ctx, name: &str, f: &Fields, e: &Failure) -> Response {
    match load(ctx, name).await {
        Ok(view) => {
            let body = detail(ctx, &view, f, Some(page::alert(&e.message)));
            (
                e.status,
                ctx.page(&format!("Integration {name}"), ACTIVE, body),
            )
                .into_response()
        }
        Err(f) => ctx.fail(ACTIVE, &f),
    }
}

pub async fn rotate(
    Console(ctx): Console,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let body = json!({ "secret": f.get("secret"), "keepPrevious": f.ticked("keepPrevious") });
    let path = format!("/api/v1/integrations/{}/rotate-secret", seg(&name));
    match ctx.api.post(&path, body).await {
        Ok(_) => Redirect::to(&format!(
            "/console/integrations/{}?done=rotated",
            seg(&name)
        ))
        .into_response(),
        Err(e) if e.status.is_client_error() && !e.not_found() => {
            let view = load(&ctx, &name).await.unwrap_or_default();
            refused_change(&ctx, &name, &as_fields(&view), &e).await
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

pub async fn delete(Console(ctx): Console, Path(name): Path<String>) -> Response {
    let path = format!("/api/v1/integrations/{}", seg(&name));
    match ctx.api.call(axum::http::Method::DELETE, &path, None).await {
        Ok(_) => Redirect::to("/console/integrations?done=deleted").into_response(),
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}
