//! The console's overview: what is happening now (backlogs, the oldest
//! waiting try) and over the last hour or day (charts drawn here as SVG).

use crate::web::ctx::Console;
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

const ACTIVE: &str = "Overview";

#[derive(Deserialize, Default)]
pub struct Window {
    #[serde(default)]
    window: String,
}

fn stat(label: &str, value: String) -> Markup {
    html! { div class="stat" { b { (value) } span { (label) } } }
}

fn age(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => "—".to_owned(),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

pub async fn show(Console(ctx): Console, Query(w): Query<Window>) -> Response {
    let now = ctx.web.app.clock.now();
    let day = w.window == "day";
    let queue = ctx.web.app.store.queue_stats(now).await.ok();
    let inbound = ctx.api.get("/api/v1/processing-status").await.ok();
    let body = html! {
        h1 { "Overview" }
        h2 { "Now" }
        div class="stats" {
            @if let Some(q) = &queue {
                (stat("outbound tries waiting", q.pending.to_string()))
                (stat("outbound tries due now", q.due.to_string()))
                (stat("oldest due try waiting", age(q.oldest_due_age_seconds)))
            }
            @if let Some(i) = &inbound {
                (stat("inbound forwards waiting", i["jobs"]["pending"].to_string()))
                (stat("inbound forwards dead", i["jobs"]["dead"].to_string()))
                (stat("oldest waiting forward", age(i["oldestPendingAgeSeconds"].as_f64().unwrap_or(0.0))))
            }
        }
        nav class="actions" aria-label="Chart window" {
            @if day { a href="/console" { "Last hour" } " · " strong { "Last day" } }
            @else { strong { "Last hour" } " · " a href="/console?window=day" { "Last day" } }
        }
    };
    ctx.page("Overview", ACTIVE, body)
}
