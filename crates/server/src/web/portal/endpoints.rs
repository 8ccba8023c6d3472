//! The portal's endpoints: list, add, change, delete; the signing secret
//! shown on request and rotated; the delivery log with status filters and
//! retry; a test event; the event catalog. The API does every check (URL
//! rules, SSRF refusals, limits): its refusals show as form errors.

use crate::web::api::{query, seg, Failure};
use crate::web::console::outbound::{state, status_filter};
use crate::web::ctx::{Ctx, Portal};
use crate::web::form::Fields;
use crate::web::page::{self, badge, text, time, Done};
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

const ACTIVE: &str = "Endpoints";

pub async fn list(Portal(ctx): Portal, Query(d): Query<Done>) -> Response {
    let items = match ctx.api.get("/v1/webhooks?limit=100").await {
        Ok(p) => p["items"].as_array().cloned().unwrap_or_default(),
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let now = ctx.web.app.clock.now();
    let body = html! {
        h1 { "Endpoints" }
        @if d.done == "deleted" { (page::done("The endpoint was deleted.")) }
        p { "Where we send your events. Each request is signed (Standard Webhooks): check the signature with the endpoint's secret." }
        div class="actions" { a class="button" href="/portal/endpoints/new" { "Add endpoint" } }
        @if items.is_empty() { p class="muted" { "No endpoint yet." } } @else {
            div class="table" { table {
                thead { tr { th { "URL" } th { "Description" } th { "Event types" } th { "State" } } }
                tbody { @for w in &items { tr {
                    td class="id" { a href={ "/portal/endpoints/" (seg(w["id"].as_str().unwrap_or_default())) } { (text(&w["url"])) } }
                    td { (text(&w["description"])) }
                    td { (page::joined(&w["eventTypes"])) }
                    td { (state(w, now)) }
                } } }
            } }
        }
    };
    ctx.page("Endpoints", ACTIVE, body)
}

async fn catalog_names(ctx: &Ctx) -> Vec<String> {
    ctx.api
        .get("/v1/event-types")
        .await
        .ok()
        .and_then(|p| p["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// The endpoint form (add and change): URL, description, event types
/// picked from the catalog, `*`, or typed patterns.
fn endpoint_form(ctx: &Ctx, action: &str, f: &Fields, catalog: &[String], submit: &str) -> Markup {
    let picked = f.all("eventTypes");
    let others: Vec<&String> = picked
        .iter()
        .filter(|t| *t != "*" && !catalog.contains(t))
        .collect();
    let typed = if f.get("otherTypes").is_empty() {
        others
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        f.get("otherTypes").to_owned()
    };
    html! {
        form method="post" action=(action) class="stack card" {
            (page::csrf(&ctx.session))
            label for="url" { "Endpoint URL" span class="hint" { "https:// and reachable from the internet." } }
            input id="url" name="url" type="url" required value=(f.get("url"));
            label for="description" { "Description" }
            input id="description" name="description" type="text" maxlength="500" value=(f.get("description"));
            fieldset {
                legend { "Event types" }
                label { input type="checkbox" name="eventTypes" value="*" checked[picked.iter().any(|t| t == "*")]; " All event types" }
                @for t in catalog {
                    label { input type="checkbox" name="eventTypes" value=(t) checked[picked.contains(t)]; " " code { (t) } }
                }
            }
            label for="otherTypes" { "Other types or patterns" span class="hint" { "Comma-separated, e.g. invoice.* (optional)." } }
            input id="otherTypes" name="otherTypes" type="text" value=(typed);
            div class="actions" { button type="submit" { (submit) } }
        }
    }
}

fn event_types(f: &Fields) -> Vec<String> {
    let mut all = f.all("eventTypes");
    for t in f.list("otherTypes") {
        if !all.contains(&t) {
            all.push(t);
        }
    }
    all
}

pub async fn new_form(Portal(ctx): Portal) -> Response {
    let catalog = catalog_names(&ctx).await;
    let body = html! {
        h1 { "Add endpoint" }
        (endpoint_form(&ctx, "/portal/endpoints/new", &Fields::default(), &catalog, "Add endpoint"))
    };
    ctx.page("Add endpoint", ACTIVE, body)
}

/// A page that shows a signing secret: only after an explicit request
/// (create, reveal, rotate), never cached.
fn secret_page(ctx: &Ctx, id: &str, title: &str, message: &str, secret: &Value) -> Response {
    let body = html! {
        h1 { (title) }
        (page::done(message))
        div class="card" {
            h2 { "Signing secret" }
            p class="secret" data-testid="signing-secret" { (text(secret)) }
            p class="muted" { "Keep it like a password. Anyone with it can sign requests as us." }
        }
        p { a href={ "/portal/endpoints/" (seg(id)) } { "Back to the endpoint" } }
    };
    let mut resp = ctx.page(title, ACTIVE, body);
    *resp.status_mut() = StatusCode::OK;
    resp
}

pub async fn create(Portal(ctx): Portal, Form(f): Form<Fields>) -> Response {
    let body = json!({ "url": f.get("url"), "eventTypes": event_types(&f), "description": f.get("description") });
    match ctx.api.post("/v1/webhooks", body).await {
        // The secret stays hidden until asked for (an audited reveal).
        Ok(w) => Redirect::to(&format!(
            "/portal/endpoints/{}?done=added",
            seg(w["id"].as_str().unwrap_or_default())
        ))
        .into_response(),
        Err(e) if e.status.is_client_error() => {
            let catalog = catalog_names(&ctx).await;
            let body = html! {
                h1 { "Add endpoint" }
                (page::alert(&e.message))
                (endpoint_form(&ctx, "/portal/endpoints/new", &f, &catalog, "Add endpoint"))
            };
            (e.status, ctx.page("Add endpoint", ACTIVE, body)).into_response()
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

#[derive(Deserialize, Default)]
pub struct LogFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    done: String,
}

fn as_fields(w: &Value) -> Fields {
    let mut f = vec![
        (
            "url".to_owned(),
            w["url"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            "description".to_owned(),
            w["description"].as_str().unwrap_or_default().to_owned(),
        ),
    ];
    for t in w["eventTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        f.push(("eventTypes".to_owned(), t.to_owned()));
    }
    Fields(f)
}

async fn endpoint_page(
    ctx: &Ctx,
    id: &str,
    w: &Value,
    f: &Fields,
    l: &LogFilter,
    notice: Option<Markup>,
) -> Response {
    let params = [
        ("status", l.status.as_str()),
        ("cursor", l.cursor.as_str()),
        ("limit", "50"),
    ];
    let log = ctx
        .api
        .get(&format!(
            "/v1/webhooks/{}/deliveries{}",
            seg(id),
            query(&params)
        ))
        .await;
    let (items, next) = match log {
        Ok(p) => (
            p["items"].as_array().cloned().unwrap_or_default(),
            p["nextCursor"].clone(),
        ),
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let catalog = catalog_names(ctx).await;
    let now = ctx.web.app.clock.now();
    let base = format!("/portal/endpoints/{}", seg(id));
    let disabled = w["disabled"].as_bool() == Some(true);
    let body = html! {
        h1 { "Endpoint" }
        @if let Some(n) = notice { (n) }
        div class="card" { dl class="facts" {
            dt { "URL" } dd class="id" { (text(&w["url"])) }
            dt { "Id" } dd class="id" { (id) }
            dt { "Description" } dd { (text(&w["description"])) }
            dt { "State" } dd { (state(w, now)) }
            dt { "Signing" } dd { (signing(w)) }
            dt { "Secret rotation ends" } dd { (time(&w["secretRotationEndsAt"])) }
            @if w["failingSince"].is_string() {
                dt { "Failing since" } dd { (time(&w["failingSince"])) }
            }
            @if let Some(rate) = w["rateLimitPerSecond"].as_u64() {
                dt { "Rate limit" } dd { (rate) " per second" }
            }
            @if w["filter"].is_object() {
                dt { "Filter" } dd class="id" { (w["filter"].to_string()) }
            }
            @if let Some(headers) = w["headers"].as_array() {
                dt { "Headers" } dd class="id" { (header_names(headers)) }
            }
            dt { "Created" } dd { (time(&w["createdAt"])) }
        } }
        div class="actions" {
            (page::button(&ctx.session, &format!("{base}/test"), "Send test event", "", None))
            (page::button(&ctx.session, &format!("{base}/secret"), "Reveal signing secret", "secondary", None))
            (page::button(&ctx.session, &format!("{base}/rotate"), "Rotate secret", "secondary", Some("Rotate the signing secret? The old one keeps signing for a while.")))
            form method="post" action=(base) class="inline" {
                (page::csrf(&ctx.session))
                input type="hidden" name="toggle" value=(if disabled { "enable" } else { "disable" });
                button type="submit" class="secondary" { (if disabled { "Enable endpoint" } else { "Disable endpoint" }) }
            }
            (page::button(&ctx.session, &format!("{base}/delete"), "Delete endpoint", "danger", Some("Delete this endpoint? Its deliveries stop.")))
        }
        h2 { "Delivery log" }
        (status_filter(&base, &l.status, &[]))
        @if items.is_empty() { p class="muted" { "No delivery matches." } } @else {
            div class="table" { table {
                thead { tr { th { "Event" } th { "Try" } th { "Status" } th { "HTTP" } th { "When" } th { "Response" } th { span class="sr-only" { "Action" } } } }
                tbody { @for d in &items { tr data-testid="delivery" {
                    td class="id" { (text(&d["eventId"])) }
                    td { (text(&d["attempt"])) }
                    td { (badge(d["status"].as_str().unwrap_or("unknown"))) }
                    td { (text(&d["httpStatus"])) }
                    td { (time(if d["completedAt"].is_null() { &d["dueAt"] } else { &d["completedAt"] })) }
                    td { @if let Some(p) = d["responsePreview"].as_str() { code { (p.chars().take(120).collect::<String>()) } } @else { (text(&d["error"])) } }
                    td { @if matches!(d["status"].as_str(), Some("failed" | "dead" | "succeeded")) {
                        form method="post" action={ "/portal/deliveries/" (seg(d["id"].as_str().unwrap_or_default())) "/retry" } class="inline" {
                            (page::csrf(&ctx.session))
                            input type="hidden" name="endpoint" value=(id);
                            button type="submit" class="link" aria-label={ "Retry the delivery of " (d["eventId"].as_str().unwrap_or_default()) } { "Retry" }
                        }
                    } }
                } } }
            } }
        }
        (page::pager(&base, &[("status", l.status.as_str())], &next))
        h2 { "Change" }
        (endpoint_form(ctx, &base, f, &catalog, "Save changes"))
    };
    ctx.page("Endpoint", ACTIVE, body)
}

async fn load(ctx: &Ctx, id: &str) -> Result<Value, Failure> {
    ctx.api.get(&format!("/v1/webhooks/{}", seg(id))).await
}

/// How deliveries to it are signed, and the public key of an Ed25519 one.
fn signing(w: &Value) -> Markup {
    match w["publicKey"].as_str() {
        Some(key) => html! { "v1a (Ed25519), public key " span class="id" { (key) } },
        None => html! { "v1 (HMAC-SHA256)" },
    }
}

/// The custom headers' names, a secret one marked (its value never shown).
fn header_names(headers: &[Value]) -> String {
    headers
        .iter()
        .filter_map(|h| {
            let name = h["name"].as_str()?;
            Some(if h["secret"].as_bool() == Some(true) {
                format!("{name} (secret)")
            } else {
                name.to_owned()
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn show(
    Portal(ctx): Portal,
    Path(id): Path<String>,
    Query(l): Query<LogFilter>,
) -> Response {
    let w = match load(&ctx, &id).await {
        Ok(w) => w,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let notice = match l.done.as_str() {
        "saved" => Some(page::done("Saved.")),
        "added" => Some(page::done(
            "Endpoint added: we send your events there from now on. Reveal its signing secret to check our signatures.",
        )),
        "rotated" => Some(page::done(
            "Secret rotated: requests carry both signatures until the old secret's grace ends. Reveal the new one to check them.",
        )),
        "test" => Some(page::done(
            "Test event sent: it appears in the delivery log below.",
        )),
        "test-succeeded" => Some(page::done("Test event sent: your endpoint accepted it.")),
        "test-failed" => Some(page::done(
            "Test event sent: your endpoint did not accept it. Its answer is in the delivery log below; it is tried again on the schedule.",
        )),
        "retried" => Some(page::done("Retry queued.")),
        _ => None,
    };
    endpoint_page(&ctx, &id, &w, &as_fields(&w), &l, notice).await
}

pub async fn update(
    Portal(ctx): Portal,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let path = format!("/v1/webhooks/{}", seg(&id));
    let body = match f.get("toggle") {
        "enable" => json!({ "disabled": false }),
        "disable" => json!({ "disabled": true }),
        _ => {
            json!({ "url": f.get("url"), "eventTypes": event_types(&f), "description": f.get("description") })
        }
    };
    match ctx.api.call(Method::PATCH, &path, Some(body)).await {
        Ok(_) => Redirect::to(&format!(
            "{}?done=saved",
            path.replace("/v1/webhooks", "/portal/endpoints")
        ))
        .into_response(),
        Err(e) => refused(&ctx, &id, Some(&f), &e).await,
    }
}

pub async fn reveal(Portal(ctx): Portal, Path(id): Path<String>) -> Response {
    match ctx
        .api
        .get(&format!("/v1/webhooks/{}/secret", seg(&id)))
        .await
    {
        Ok(s) => secret_page(
            &ctx,
            &id,
            "Signing secret",
            "Shown at your request; this was recorded.",
            &s["key"],
        ),
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

pub async fn rotate(Portal(ctx): Portal, Path(id): Path<String>) -> Response {
    let path = format!("/v1/webhooks/{}", seg(&id));
    match ctx
        .api
        .call(Method::PATCH, &path, Some(json!({ "rotateSecret": true })))
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/portal/endpoints/{}?done=rotated", seg(&id))).into_response()
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

pub async fn delete(Portal(ctx): Portal, Path(id): Path<String>) -> Response {
    match ctx
        .api
        .call(Method::DELETE, &format!("/v1/webhooks/{}", seg(&id)), None)
        .await
    {
        Ok(_) => Redirect::to("/portal?done=deleted").into_response(),
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

pub async fn test(Portal(ctx): Portal, Path(id): Path<String>) -> Response {
    match ctx
        .api
        .post(&format!("/v1/webhooks/{}/test", seg(&id)), json!({}))
        .await
    {
        // The API waited for the try: say how it went.
        Ok(sent) => {
            let done = match sent["delivery"]["status"].as_str() {
                Some("succeeded") => "test-succeeded",
                Some("failed" | "dead") => "test-failed",
                _ => "test",
            };
            Redirect::to(&format!("/portal/endpoints/{}?done={done}", seg(&id))).into_response()
        }
        Err(e) => refused(&ctx, &id, None, &e).await,
    }
}

pub async fn retry(Portal(ctx): Portal, Path(id): Path<String>, Form(f): Form<Fields>) -> Response {
    match ctx
        .api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{}/retry", seg(&id)),
            None,
        )
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/portal/endpoints/{}?done=retried",
            seg(f.get("endpoint"))
        ))
        .into_response(),
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}

pub async fn catalog(Portal(ctx): Portal) -> Response {
    crate::web::catalog::page(&ctx, "Event catalog").await
}

/// The endpoint's page again with the API's refusal (and what was typed,
/// when a form was refused); a missing endpoint or a server error is the
/// failure page.
async fn refused(ctx: &Ctx, id: &str, typed: Option<&Fields>, e: &Failure) -> Response {
    if !e.status.is_client_error() || e.not_found() {
        return ctx.fail(ACTIVE, e);
    }
    match load(ctx, id).await {
        Ok(w) => {
            let fields = typed.map_or_else(|| as_fields(&w), |f| Fields(f.0.clone()));
            let alert = Some(page::alert(&e.message));
            let mut resp = endpoint_page(ctx, id, &w, &fields, &LogFilter::default(), alert).await;
            *resp.status_mut() = e.status;
            resp
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}
