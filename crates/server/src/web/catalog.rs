//! The event-type catalog page, the same for operators and tenants: each
//! type, its description and its JSON Schema.

use super::ctx::Ctx;
use super::page::text;
use axum::response::Response;
use maud::html;

/// The event-type catalog: each type, its description and its schema
/// (the portal shows the same page).
pub async fn page(ctx: &Ctx, active: &str) -> Response {
    let items = match ctx.api.get("/v1/event-types").await {
        Ok(p) => p["items"].as_array().cloned().unwrap_or_default(),
        Err(e) => return ctx.fail(active, &e),
    };
    let body = html! {
        h1 { "Event types" }
        @if items.is_empty() { p class="muted" { "No event type is registered." } }
        @for t in &items {
            section class="card" aria-labelledby={ "t-" (t["name"].as_str().unwrap_or_default()) } {
                h2 id={ "t-" (t["name"].as_str().unwrap_or_default()) } { code { (text(&t["name"])) } }
                p { (text(&t["description"])) }
                details { summary { "Schema" } pre { (serde_json::to_string_pretty(&t["schema"]).unwrap_or_default()) } }
            }
        }
    };
    ctx.page("Event types", active, body)
}
