//! The console's audit trail: entries with filters, newest first, and on
//! request the result of verifying the whole chain.

use super::inbound::instant;
use crate::web::api::query;
use crate::web::ctx::Console;
use crate::web::page::{self, badge, text, time};
use axum::extract::Query;
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

const ACTIVE: &str = "Audit";

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    verify: String,
}

pub async fn show(Console(ctx): Console, Query(f): Query<Filters>) -> Response {
    let (from, to) = (instant(&f.from), instant(&f.to));
    let params = [
        ("actor", f.actor.as_str()),
        ("action", f.action.as_str()),
        ("target", f.target.as_str()),
        ("from", from.as_str()),
        ("to", to.as_str()),
        ("sort", "-createdAt"),
        ("cursor", f.cursor.as_str()),
        ("limit", "50"),
    ];
    let (items, next, error) = match ctx
        .api
        .get(&format!("/api/v1/audit-entries{}", query(&params)))
        .await
    {
        Ok(p) => (
            p["items"].as_array().cloned().unwrap_or_default(),
            p["nextCursor"].clone(),
            None,
        ),
        Err(e) if e.status.is_client_error() => (Vec::new(), Value::Null, Some(e.message)),
        Err(e) => return ctx.fail(ACTIVE, &e),
    };
    // Verifying reads the whole chain: only when asked.
    let chain = if f.verify.is_empty() {
        None
    } else {
        Some(ctx.api.get("/api/v1/audit-chain").await)
    };
    let shown = [
        ("actor", f.actor.as_str()),
        ("action", f.action.as_str()),
        ("target", f.target.as_str()),
        ("from", f.from.as_str()),
        ("to", f.to.as_str()),
    ];
    let body = html! {
        h1 { "Audit trail" }
        div class="card" {
            @match &chain {
                None => {
                    form method="get" action="/console/audit" {
                        input type="hidden" name="verify" value="1";
                        p { "Every entry is chained to the one before it, so that no entry can be changed or removed unseen." }
                        button type="submit" class="secondary" { "Verify the chain" }
                    }
                }
                Some(Ok(r)) => {
                    p data-testid="chain-result" {
                        @if r["valid"].as_bool() == Some(true) { (badge("verified")) " The chain is intact: " }
                        @else { (badge("broken")) " The chain does not verify: " }
                        (text(&r["entries"])) " entries, " (text(&r["keyed"])) " keyed."
                    }
                    @if let Some(p) = r["problem"].as_str() { (page::alert(p)) }
                    @if let Some(h) = r["head"].as_str() { p class="muted" { "Head: " code { (h) } } }
                }
                Some(Err(e)) => { (page::alert(&e.message)) }
            }
        }
        form method="get" action="/console/audit" class="filters" role="search" {
            label { "Actor" input type="search" name="actor" value=(f.actor); }
            label { "Action (or prefix.*)" input type="search" name="action" value=(f.action); }
            label { "Target" input type="search" name="target" value=(f.target); }
            label { "From (UTC)" input type="datetime-local" name="from" value=(f.from); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(f.to); }
            button type="submit" { "Filter" }
        }
        @if let Some(e) = &error { (page::alert(e)) }
        @if items.is_empty() && error.is_none() { p class="muted" { "No entry matches." } }
        @if !items.is_empty() {
            div class="table" { table {
                thead { tr { th { "#" } th { "When" } th { "Actor" } th { "Action" } th { "Target" } th { "Details" } } }
                tbody { @for a in &items { tr {
                    td { (text(&a["seq"])) }
                    td { (time(&a["createdAt"])) }
                    td class="id" { (text(&a["actor"])) }
                    td { code { (text(&a["action"])) } }
                    td class="id" { (text(&a["target"])) }
                    td class="id" { (a["details"].to_string()) }
                } } }
            } }
        }
        (page::pager("/console/audit", &shown, &next))
    };
    ctx.page("Audit", ACTIVE, body)
}
