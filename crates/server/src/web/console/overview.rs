//! The console's overview: what is happening now (backlogs, the oldest
//! waiting try) and over the last hour or day (charts drawn here as SVG).

use crate::shared::activity::{self, Window as Span};
use crate::web::chart::{draw, Line};
use crate::web::ctx::Console;
use crate::web::ctx::Ctx;
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
    // Not the API's processing status: that counts every job ever made.
    let inbound = ctx.web.app.store.forwarding_backlog(now).await.ok();
    let states = ctx.web.app.store.webhook_states(now).await.ok();
    let dead = dead_letters(&ctx).await;
    let body = html! {
        h1 { "Overview" }
        h2 { "Now" }
        div class="stats" {
            @if let Some(q) = &queue {
                (stat("outbound tries waiting", q.pending.to_string()))
                (stat("outbound tries due now", q.due.to_string()))
                (stat("oldest due try waiting", age(q.oldest_due_age_seconds)))
            }
            @if let Some((paused, disabled)) = states {
                (stat("endpoints paused", paused.to_string()))
                (stat("endpoints disabled", disabled.to_string()))
            }
            @if let Some(n) = dead {
                a class="stat" href="/console/dead-letters" { b { (n) } span { "dead letters waiting" } }
            }
            @if let Some(i) = &inbound {
                (stat("inbound forwards waiting", i.pending.to_string()))
                (stat("inbound forwards dead", i.dead.to_string()))
                (stat("oldest waiting forward", age(i.oldest_pending_age_seconds)))
            }
        }
        nav class="actions" aria-label="Chart window" {
            @if day { a href="/console" { "Last hour" } " · " strong { "Last day" } }
            @else { strong { "Last hour" } " · " a href="/console?window=day" { "Last day" } }
        }
        (charts(&ctx, day).await)
    };
    ctx.page("Overview", ACTIVE, body)
}

/// The activity charts of the last hour (per minute) or day (per ten
/// minutes), from the counts every replica adds up in the database.
async fn charts(ctx: &Ctx, day: bool) -> Markup {
    let span = if day { Span::Day } else { Span::Hour };
    let now = ctx.web.app.clock.now();
    let chart = match activity::series(ctx.web.app.store.as_ref(), now, span).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error.message = %e, "reading the activity counts failed");
            return crate::web::page::alert("The activity counts could not be read; try again.");
        }
    };
    let p = &chart.points;
    let per = if day { "per 10 min" } else { "per min" };
    let col =
        |f: fn(&activity::Point) -> u64| p.iter().map(|x| Some(f(x) as f64)).collect::<Vec<_>>();
    let ms = |f: fn(&activity::Point) -> Option<u64>| {
        p.iter().map(|x| f(x).map(|v| v as f64)).collect::<Vec<_>>()
    };
    let (first, last) = match (p.first(), p.last()) {
        (Some(a), Some(b)) => (
            a.at.format("%H:%M").to_string(),
            b.at.format("%H:%M UTC").to_string(),
        ),
        _ => (String::new(), String::new()),
    };
    html! {
        div class="grid charts" {
            (draw("Inbound webhooks", per, &[
                Line { label: "accepted", values: col(|x| x.accepted) },
                Line { label: "duplicate", values: col(|x| x.duplicate) },
                Line { label: "refused", values: col(|x| x.refused) },
            ], &first, &last))
            (draw("Outbound deliveries", per, &[
                Line { label: "delivered", values: col(|x| x.delivered) },
                Line { label: "failed", values: col(|x| x.failed) },
                Line { label: "dead", values: col(|x| x.dead) },
            ], &first, &last))
            (draw("Delivery latency", "ms", &[
                Line { label: "p50", values: ms(|x| x.latency_p50_ms) },
                Line { label: "p99", values: ms(|x| x.latency_p99_ms) },
            ], &first, &last))
        }
    }
}

/// Dead letters nobody has retried yet, counted up to a bound (a page of
/// the dead-letter index, not a count of the whole table).
async fn dead_letters(ctx: &Ctx) -> Option<String> {
    const BOUND: u32 = 1000;
    let filter = hookwarden_store::search::AttemptFilter {
        status: Some(hookwarden_store::model::AttemptStatus::Dead),
        latest_only: true,
        ..Default::default()
    };
    let page = ctx
        .web
        .app
        .store
        .search_attempts(&filter, None, BOUND)
        .await
        .ok()?;
    Some(if page.next_cursor.is_some() {
        format!("{BOUND}+")
    } else {
        page.items.len().to_string()
    })
}
