//! The console's outbound side: accounts and their webhooks, a webhook's
//! health and deliveries, one delivery with its request body and response
//! preview, retry, dead letters across accounts with bulk retry, and the
//! event types with their schemas.

use super::inbound::instant;
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

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    account: String,
    #[serde(default)]
    webhook: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    done: String,
}

pub async fn accounts(Console(ctx): Console, Query(f): Query<Filters>) -> Response {
    const ACTIVE: &str = "Accounts";
    let params = [
        ("accountId", f.account.as_str()),
        ("cursor", f.cursor.as_str()),
        ("limit", "100"),
    ];
    let Listing { items, next, error } = match ctx
        .api
        .list(&format!("/api/v1/outbound/webhooks{}", query(&params)))
        .await
    {
        Ok(l) => l,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let now = ctx.web.app.clock.now();
    let body = html! {
        h1 { "Accounts and their webhooks" }
        form method="get" action="/console/accounts" class="filters" role="search" {
            label { "Account id" input type="search" name="account" value=(f.account); }
            button type="submit" { "Show" }
        }
        @if let Some(e) = &error { (page::alert(e)) }
        @if items.is_empty() && error.is_none() { p class="muted" { "No webhook." } }
        @if !items.is_empty() {
            div class="table" { table {
                thead { tr { th { "Account" } th { "Webhook" } th { "URL (no query)" } th { "Event types" } th { "State" } } }
                tbody { @for w in &items { tr {
                    td class="id" { a href={ "/console/accounts" (query(&[("account", w["accountId"].as_str().unwrap_or_default())])) } { (text(&w["accountId"])) } }
                    td class="id" { a href={ "/console/webhooks/" (seg(w["id"].as_str().unwrap_or_default())) } { (text(&w["id"])) } }
                    td class="id" { (text(&w["url"])) }
                    td { (page::joined(&w["eventTypes"])) }
                    td { (state(w, now)) }
                } } }
            } }
        }
        (page::pager("/console/accounts", &[("account", f.account.as_str())], &next))
    };
    ctx.page("Accounts", ACTIVE, body)
}

/// A webhook's state in one word (and when a pause ends).
pub fn state(w: &Value, _now: chrono::DateTime<chrono::Utc>) -> Markup {
    if w["disabled"].as_bool() == Some(true) {
        html! { (badge("disabled")) @if let Some(r) = w["disabledReason"].as_str() { " " span class="muted" { (r) } } }
    } else if !w["pausedUntil"].is_null() {
        html! { (badge("paused")) " until " (time(&w["pausedUntil"])) }
    } else {
        badge("active")
    }
}

/// A list of delivery tries (one endpoint's or the dead letters).
pub fn deliveries_table(
    items: &[Value],
    link: impl Fn(&Value) -> String,
    with_account: bool,
) -> Markup {
    html! {
        div class="table" { table {
            thead { tr {
                th { "Try" } @if with_account { th { "Account" } th { "Webhook" } }
                th { "Event" } th { "Status" } th { "HTTP" } th { "Due" } th { "Done" } th { "Error" }
            } }
            tbody { @for d in items { tr {
                td class="id" { a href=(link(d)) { (text(&d["id"])) } " #" (text(&d["attempt"])) }
                @if with_account {
                    td class="id" { (text(&d["accountId"])) }
                    td class="id" { a href={ "/console/webhooks/" (seg(d["webhookId"].as_str().unwrap_or_default())) } { (text(&d["webhookId"])) } }
                }
                td class="id" { (text(&d["eventId"])) }
                td { (badge(d["status"].as_str().unwrap_or("unknown"))) }
                td { (text(&d["httpStatus"])) }
                td { (time(&d["dueAt"])) }
                td { (time(&d["completedAt"])) }
                td { (text(&d["error"])) }
            } } }
        } }
    }
}

pub fn status_filter(action: &str, current: &str, hidden: &[(&str, &str)]) -> Markup {
    html! {
        form method="get" action=(action) class="filters" {
            @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
            label { "Status" select name="status" {
                option value="" { "any" }
                @for s in ["pending", "succeeded", "failed", "dead"] { option value=(s) selected[current == s] { (s) } }
            } }
            button type="submit" { "Filter" }
        }
    }
}

pub async fn webhook(
    Console(ctx): Console,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> Response {
    const ACTIVE: &str = "Accounts";
    let w = match ctx
        .api
        .get(&format!("/api/v1/outbound/webhooks/{}", seg(&id)))
        .await
    {
        Ok(w) => w,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let params = [
        ("webhookId", id.as_str()),
        ("status", f.status.as_str()),
        ("cursor", f.cursor.as_str()),
        ("limit", "50"),
    ];
    let page_ = ctx
        .api
        .get(&format!("/api/v1/outbound/deliveries{}", query(&params)))
        .await;
    let (items, next) = match page_ {
        Ok(p) => (
            p["items"].as_array().cloned().unwrap_or_default(),
            p["nextCursor"].clone(),
        ),
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let last = items.iter().find(|d| !d["completedAt"].is_null());
    let now = ctx.web.app.clock.now();
    let base = format!("/console/webhooks/{}", seg(&id));
    let disabled = w["disabled"].as_bool() == Some(true);
    let body = html! {
        h1 { "Webhook " span class="id" { (id) } }
        @match f.done.as_str() {
            "retried" => (page::done("Retry queued.")),
            "disabled" => (page::done("Deliveries to this endpoint are stopped.")),
            "enabled" => (page::done("Deliveries to this endpoint resume.")),
            _ => {}
        }
        div class="card" { dl class="facts" {
            dt { "Account" } dd class="id" { (text(&w["accountId"])) }
            dt { "URL (no query)" } dd class="id" { (text(&w["url"])) }
            dt { "Description" } dd { (text(&w["description"])) }
            dt { "Event types" } dd { (page::joined(&w["eventTypes"])) }
            dt { "Health" } dd { (state(&w, now)) }
            dt { "Last status" } dd { @if let Some(d) = last { (badge(d["status"].as_str().unwrap_or("unknown"))) " " (text(&d["httpStatus"])) " at " (time(&d["completedAt"])) } @else { span class="muted" { "no try finished yet" } } }
            dt { "Secret rotation ends" } dd { (time(&w["secretRotationEndsAt"])) }
            dt { "Created" } dd { (time(&w["createdAt"])) }
        } }
        form method="post" action={ (base) (if disabled { "/enable" } else { "/disable" }) } class="stack card" {
            (page::csrf(&ctx.session))
            label for="reason" { (if disabled { "Enable deliveries: reason" } else { "Stop deliveries: reason" }) }
            input id="reason" name="reason" type="text" required maxlength="500";
            div class="actions" { button type="submit" class=(if disabled { "secondary" } else { "danger" }) { (if disabled { "Enable endpoint" } else { "Disable endpoint" }) } }
        }
        h2 { "Deliveries" }
        (status_filter(&base, &f.status, &[]))
        @if items.is_empty() { p class="muted" { "No delivery matches." } } @else {
            (deliveries_table(&items, |d| format!("/console/deliveries/{}", seg(d["id"].as_str().unwrap_or_default())), false))
        }
        (page::pager(&base, &[("status", f.status.as_str())], &next))
    };
    ctx.page(&format!("Webhook {id}"), ACTIVE, body)
}

pub async fn set_enabled(ctx: &Ctx, id: &str, enable: bool, reason: &str) -> Response {
    let verb = if enable { "enable" } else { "disable" };
    let body = json!({ "requestedBy": ctx.session.actor, "reason": reason });
    match ctx
        .api
        .post(
            &format!("/api/v1/outbound/webhooks/{}/{verb}", seg(id)),
            body,
        )
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/console/webhooks/{}?done={verb}d", seg(id))).into_response()
        }
        Err(e) => ctx.fail("Accounts", &e),
    }
}

pub async fn disable(
    Console(ctx): Console,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    set_enabled(&ctx, &id, false, f.get("reason")).await
}

pub async fn enable(
    Console(ctx): Console,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    set_enabled(&ctx, &id, true, f.get("reason")).await
}

pub async fn delivery(
    Console(ctx): Console,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    const ACTIVE: &str = "Accounts";
    let a = match ctx
        .api
        .get(&format!("/api/v1/outbound/deliveries/{}", seg(&id)))
        .await
    {
        Ok(a) => a,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let event = ctx
        .api
        .get(&format!(
            "/api/v1/outbound/events/{}",
            seg(a["eventId"].as_str().unwrap_or_default())
        ))
        .await
        .unwrap_or_default();
    let payload = serde_json::to_string_pretty(&event["payload"]).unwrap_or_default();
    let body = html! {
        h1 { "Delivery " span class="id" { (id) } }
        @if d.done == "retried" { (page::done("Retry queued: a new try is due now.")) }
        div class="card" { dl class="facts" {
            dt { "Webhook" } dd class="id" { a href={ "/console/webhooks/" (seg(a["webhookId"].as_str().unwrap_or_default())) } { (text(&a["webhookId"])) } }
            dt { "Account" } dd class="id" { (text(&a["accountId"])) }
            dt { "Event" } dd class="id" { (text(&a["eventId"])) " · " (text(&event["eventType"])) }
            dt { "Try" } dd { (text(&a["attempt"])) }
            dt { "Status" } dd { (badge(a["status"].as_str().unwrap_or("unknown"))) }
            dt { "HTTP status" } dd { (text(&a["httpStatus"])) }
            dt { "Duration" } dd { @if let Some(ms) = a["durationMs"].as_i64() { (ms) " ms" } @else { (text(&Value::Null)) } }
            dt { "Due" } dd { (time(&a["dueAt"])) }
            dt { "Done" } dd { (time(&a["completedAt"])) }
            dt { "Error" } dd { (text(&a["error"])) }
        } }
        h2 { "Request body" }
        pre data-testid="request-body" { (payload) }
        h2 { "Response preview" }
        @if let Some(p) = a["responsePreview"].as_str() { pre { (pretty(p)) } } @else { p class="muted" { "None." } }
        form method="post" action={ "/console/deliveries/" (seg(&id)) "/retry" } class="stack card" {
            (page::csrf(&ctx.session))
            label for="reason" { "Retry: reason" }
            input id="reason" name="reason" type="text" required maxlength="500";
            div class="actions" { button type="submit" { "Retry delivery" } }
        }
    };
    ctx.page(&format!("Delivery {id}"), ACTIVE, body)
}

pub async fn retry(
    Console(ctx): Console,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let body = json!({ "requestedBy": ctx.session.actor, "reason": f.get("reason") });
    match ctx
        .api
        .post(
            &format!("/api/v1/outbound/deliveries/{}/retry", seg(&id)),
            body,
        )
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/console/deliveries/{}?done=retried", seg(&id))).into_response()
        }
        Err(e) => ctx.fail("Accounts", &e),
    }
}

pub async fn dead_letters(Console(ctx): Console, Query(f): Query<Filters>) -> Response {
    const ACTIVE: &str = "Dead letters";
    let (from, to) = (instant(&f.from), instant(&f.to));
    let params = [
        ("status", "dead"),
        ("accountId", f.account.as_str()),
        ("webhookId", f.webhook.as_str()),
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("cursor", f.cursor.as_str()),
        ("limit", "50"),
    ];
    let Listing { items, next, error } = match ctx
        .api
        .list(&format!("/api/v1/outbound/deliveries{}", query(&params)))
        .await
    {
        Ok(l) => l,
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    let shown = [
        ("account", f.account.as_str()),
        ("webhook", f.webhook.as_str()),
        ("from", f.from.as_str()),
        ("to", f.to.as_str()),
    ];
    let body = html! {
        h1 { "Dead letters" }
        @if f.done == "retried" { (page::done("Retries queued (see the report in the audit trail).")) }
        form method="get" action="/console/dead-letters" class="filters" role="search" {
            label { "Account id" input type="search" name="account" value=(f.account); }
            label { "Webhook id" input type="search" name="webhook" value=(f.webhook); }
            label { "From (UTC)" input type="datetime-local" name="from" value=(f.from); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(f.to); }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (page::alert(e)) }
        @if items.is_empty() && error.is_none() { p class="muted" { "No dead letter: every event reached its endpoint or is still being tried." } }
        @if !items.is_empty() {
            (deliveries_table(&items, |d| format!("/console/deliveries/{}", seg(d["id"].as_str().unwrap_or_default())), true))
            (page::pager("/console/dead-letters", &shown, &next))
            h2 { "Retry every dead letter that matches these filters" }
            form method="post" action="/console/dead-letters" class="stack card" {
                (page::csrf(&ctx.session))
                @for (k, v) in &shown { input type="hidden" name=(k) value=(v); }
                label for="reason" { "Reason" span class="hint" { "Kept in the audit trail with your name. Retries are paced." } }
                input id="reason" name="reason" type="text" required maxlength="500";
                div class="actions" { button type="submit" data-confirm="Retry every matching dead letter?" { "Retry all matching" } }
            }
        }
    };
    ctx.page("Dead letters", ACTIVE, body)
}

pub async fn bulk_retry(Console(ctx): Console, Form(f): Form<Fields>) -> Response {
    let mut body = json!({ "requestedBy": ctx.session.actor, "reason": f.get("reason") });
    for (field, key) in [("account", "accountId"), ("webhook", "webhookId")] {
        if !f.get(field).is_empty() {
            body[key] = json!(f.get(field));
        }
    }
    for field in ["from", "to"] {
        if !f.get(field).is_empty() {
            body[field] = json!(instant(f.get(field)));
        }
    }
    match ctx
        .api
        .post("/api/v1/outbound/deliveries/retry", body)
        .await
    {
        Ok(report) => {
            let body = html! {
                h1 { "Dead letters retried" }
                (page::done(&format!("{} matched, {} queued, {} skipped.", report["matched"], report["queued"], report["skipped"])))
                @if report["more"].as_bool() == Some(true) { p { "More match than one call retries: run it again once these are done." } }
                p { a href="/console/dead-letters" { "Back to the dead letters" } }
            };
            ctx.page("Dead letters retried", "Dead letters", body)
        }
        Err(e) => ctx.fail("Dead letters", &e),
    }
}

pub async fn event_types(Console(ctx): Console) -> Response {
    const ACTIVE: &str = "Event types";
    crate::web::catalog::page(&ctx, ACTIVE).await
}
