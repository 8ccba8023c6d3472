//! The console's inbound events: the list with the API's filters and a
//! search by event id or provider delivery id, one event's page (headers
//! kept, raw body as text, verification, forwarding tries as a timeline),
//! and replay with a required reason.

use crate::web::api::{query, seg, Listing};
use crate::web::ctx::{Console, Ctx};
use crate::web::form::Fields;
use crate::web::page::{self, badge, pretty, text, time, Done};
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

const ACTIVE: &str = "Inbound events";

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

/// A `datetime-local` value (no zone: UTC here) as RFC 3339; other text
/// is passed on for the API to refuse by name.
pub fn instant(v: &str) -> String {
    if v.len() == 16 && v.as_bytes().get(10) == Some(&b'T') {
        format!("{v}:00Z")
    } else {
        v.to_owned()
    }
}

pub async fn list(Console(ctx): Console, Query(f): Query<Filters>) -> Response {
    let q = f.q.trim();
    // An event id goes straight to its page.
    if q.starts_with("ie_")
        && ctx
            .api
            .get(&format!("/api/v1/events/{}", seg(q)))
            .await
            .is_ok()
    {
        return Redirect::to(&format!("/console/inbound/{}", seg(q))).into_response();
    }
    let (from, to) = (instant(&f.from), instant(&f.to));
    let params = [
        ("provider", f.provider.as_str()),
        ("status", f.status.as_str()),
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("deliveryId", q),
        ("cursor", f.cursor.as_str()),
        // Most recent first: an operator looks for what just arrived.
        ("sort", "-createdAt"),
        ("limit", "50"),
    ];
    let Listing { items, next, error } = match ctx
        .api
        .list(&format!("/api/v1/events{}", query(&params)))
        .await
    {
        Ok(l) => l,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let shown = [
        ("provider", f.provider.as_str()),
        ("status", f.status.as_str()),
        ("from", f.from.as_str()),
        ("to", f.to.as_str()),
        ("q", q),
    ];
    let body = html! {
        h1 { "Inbound events" }
        form method="get" action="/console/inbound" class="filters" role="search" {
            label { "Event or delivery id" input type="search" name="q" value=(q) placeholder="ie_… or the provider's id"; }
            label { "Provider" input type="text" name="provider" value=(f.provider); }
            label { "Forwarding" select name="status" {
                option value="" { "any" }
                @for s in ["pending", "succeeded", "failed", "dead"] { option value=(s) selected[f.status == s] { (s) } }
            } }
            label { "From (UTC)" input type="datetime-local" name="from" value=(f.from); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(f.to); }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (page::alert(e)) }
        @if items.is_empty() && error.is_none() {
            p class="muted" { "No event matches." }
        } @else if !items.is_empty() {
            div class="table" { table {
                thead { tr { th { "Event" } th { "Provider" } th { "Delivery id" } th { "Forwarding" } th { "Received" } th { "Source" } } }
                tbody { @for e in &items { tr {
                    td class="id" { a href={ "/console/inbound/" (seg(e["id"].as_str().unwrap_or_default())) } { (text(&e["id"])) } }
                    td { (text(&e["provider"])) }
                    td class="id" { (text(&e["deliveryId"])) }
                    td { @if let Some(s) = e["status"].as_str() { (badge(s)) } @else { (text(&Value::Null)) } }
                    td { (time(&e["createdAt"])) }
                    td { (text(&e["sourceIp"])) }
                } } }
            } }
        }
        (page::pager("/console/inbound", &shown, &next))
    };
    ctx.page("Inbound events", ACTIVE, body)
}

fn headers(v: &Value) -> Markup {
    let pairs: Vec<(String, String)> = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|p| match p {
                Value::Array(kv) if kv.len() == 2 => Some((
                    kv[0].as_str().unwrap_or_default().to_owned(),
                    kv[1].as_str().unwrap_or_default().to_owned(),
                )),
                Value::Object(o) => Some((
                    o.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    o.get("value")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    html! {
        @if pairs.is_empty() { p class="muted" { "No header kept." } } @else {
            div class="table" { table {
                thead { tr { th { "Header" } th { "Value" } } }
                tbody { @for (k, v) in &pairs { tr { td class="id" { (k) } td class="id" { (v) } } } }
            } }
        }
    }
}

/// Forwarding tries, oldest first, as a timeline.
pub fn timeline(jobs: &[Value]) -> Markup {
    html! {
        @if jobs.is_empty() { p class="muted" { "No forwarding try yet." } } @else {
            ol class="timeline" data-testid="forwarding-timeline" {
                @for j in jobs { li {
                    (badge(j["status"].as_str().unwrap_or("unknown")))
                    " try " (text(&j["attempt"])) " · " (text(&j["trigger"])) " · due " (time(&j["dueAt"]))
                    @if !j["completedAt"].is_null() { " · done " (time(&j["completedAt"])) }
                    @if let Some(s) = j["httpStatus"].as_i64() { " · HTTP " (s) }
                    @if let Some(ms) = j["durationMs"].as_i64() { " · " (ms) " ms" }
                    @if let Some(e) = j["error"].as_str() { div class="muted" { (e) } }
                    @if let Some(p) = j["responsePreview"].as_str() { pre { (p) } }
                } }
            }
        }
    }
}

fn event_page(ctx: &Ctx, e: &Value, notice: Option<Markup>, reason: &str) -> Markup {
    let id = e["id"].as_str().unwrap_or_default();
    let mut jobs = e["jobs"].as_array().cloned().unwrap_or_default();
    jobs.sort_by(|a, b| a["createdAt"].as_str().cmp(&b["createdAt"].as_str()));
    let body = match (e["rawBody"].as_str(), e["rawBodyBase64"].as_str()) {
        (Some(text), _) => pretty(text),
        (None, Some(b64)) => format!("(not UTF-8; base64)\n{b64}"),
        _ => String::new(),
    };
    html! {
        h1 { "Inbound event " span class="id" { (id) } }
        @if let Some(n) = notice { (n) }
        div class="card" { dl class="facts" {
            dt { "Provider" } dd { a href={ "/console/integrations/" (seg(e["provider"].as_str().unwrap_or_default())) } { (text(&e["provider"])) } }
            dt { "Verification" } dd { (badge("verified")) " the signature was checked before the event was stored" }
            dt { "Delivery id" } dd class="id" { (text(&e["deliveryId"])) }
            dt { "Forwarding" } dd { @if let Some(s) = e["status"].as_str() { (badge(s)) } @else { (text(&Value::Null)) } }
            dt { "Received" } dd { (time(&e["createdAt"])) }
            dt { "Source" } dd { (text(&e["sourceIp"])) }
            dt { "Correlation id" } dd class="id" { (text(&e["correlationId"])) }
            dt { "Body SHA-256" } dd class="id" { (text(&e["bodySha256"])) }
        } }
        h2 { "Body" }
        pre data-testid="event-body" { (body) }
        h2 { "Headers kept" }
        (headers(&e["headers"]))
        h2 { "Forwarding tries" }
        (timeline(&jobs))
        h2 { "Replay" }
        form method="post" action={ "/console/inbound/" (seg(id)) "/replay" } class="stack card" {
            (page::csrf(&ctx.session))
            label for="reason" { "Reason" span class="hint" { "Required; kept in the audit trail with your name." } }
            input id="reason" name="reason" type="text" required maxlength="500" value=(reason);
            div class="actions" { button type="submit" { "Replay event" } }
        }
    }
}

pub async fn show(
    Console(ctx): Console,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let e = match ctx.api.get(&format!("/api/v1/events/{}", seg(&id))).await {
        Ok(e) => e,
        Err(f) => return ctx.fail(ACTIVE, &f),
    };
    let notice = (d.done == "replayed")
        .then(|| page::done("Replay queued: a new forwarding try was added."));
    let body = event_page(&ctx, &e, notice, "");
    ctx.page(&format!("Inbound event {id}"), ACTIVE, body)
}

pub async fn replay(
    Console(ctx): Console,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let body = json!({ "requestedBy": ctx.session.actor, "reason": f.get("reason") });
    match ctx
        .api
        .post(&format!("/api/v1/events/{}/replay", seg(&id)), body)
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/console/inbound/{}?done=replayed", seg(&id))).into_response()
        }
        Err(e) if e.status.is_client_error() && !e.not_found() => {
            match ctx.api.get(&format!("/api/v1/events/{}", seg(&id))).await {
                Ok(ev) => {
                    let page =
                        event_page(&ctx, &ev, Some(page::alert(&e.message)), f.get("reason"));
                    (e.status, ctx.page("Replay refused", ACTIVE, page)).into_response()
                }
                Err(f) => ctx.fail(ACTIVE, &f),
            }
        }
        Err(e) => ctx.fail(ACTIVE, &e),
    }
}
