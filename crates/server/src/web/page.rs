//! The pages' frame and the small pieces every page uses: navigation,
//! forms that carry the CSRF token, alerts, status badges, times, pagers.
//! Everything goes through maud, which escapes every value it renders.

use super::api::Failure;
use super::guard::CSRF_FIELD;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hookwarden_store::model::{SessionKind, WebSession};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

const CONSOLE_NAV: &[(&str, &str)] = &[
    ("Overview", "/console"),
    ("Integrations", "/console/integrations"),
    ("Inbound events", "/console/inbound"),
    ("Accounts", "/console/accounts"),
    ("Dead letters", "/console/dead-letters"),
    ("Event types", "/console/event-types"),
    ("Audit", "/console/audit"),
    ("Sessions", "/console/sessions"),
];

const PORTAL_NAV: &[(&str, &str)] = &[
    ("Endpoints", "/portal"),
    ("Event catalog", "/portal/catalog"),
];

/// One page: its title, which navigation entry is current, and the session
/// (none on the sign-in page).
pub struct Frame<'a> {
    pub title: &'a str,
    pub active: &'a str,
    pub session: &'a WebSession,
}

fn shell(title: &str, nav: Markup, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · hookwarden" }
                    link rel="stylesheet" href="/assets/app.css";
                    script src="/assets/app.js" defer {}
                }
                body {
                    a class="skip" href="#main" { "Skip to content" }
                    (nav)
                    main id="main" tabindex="-1" { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A page with the navigation of its session's area.
pub fn render(frame: Frame<'_>, body: Markup) -> Html<String> {
    let (nav, home, area, sign_out) = match frame.session.kind {
        SessionKind::Operator => (CONSOLE_NAV, "/console", "Console", "/console/sign-out"),
        SessionKind::Portal => (PORTAL_NAV, "/portal", "Webhooks", "/portal/sign-out"),
    };
    let who = match frame.session.kind {
        SessionKind::Operator => frame.session.actor.clone(),
        SessionKind::Portal => format!(
            "account {}",
            frame.session.account_id.as_deref().unwrap_or_default()
        ),
    };
    let header = html! {
        header class="top" {
            a class="brand" href=(home) { "hookwarden " span { (area) } }
            nav aria-label="Main" {
                ul {
                    @for (label, href) in nav {
                        li {
                            @if *label == frame.active {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
            }
            div class="who" {
                span { (who) }
                form method="post" action=(sign_out) {
                    (csrf(frame.session))
                    button type="submit" class="link" { "Sign out" }
                }
            }
        }
    };
    shell(frame.title, header, body)
}

/// A page outside any session (sign-in, a refusal, an ended link).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    shell(
        title,
        html! { header class="top" { span class="brand" { "hookwarden" } } },
        body,
    )
}

/// A short page that says why something was not done.
pub fn notice_page(title: &str, message: &str) -> Html<String> {
    bare(
        title,
        html! {
            h1 { (title) }
            p role="alert" class="error" { (message) }
        },
    )
}

/// The hidden field every form of a session carries.
pub fn csrf(session: &WebSession) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

/// A one-button form: `confirm` asks first (our script; without it the
/// button still works).
pub fn button(
    session: &WebSession,
    action: &str,
    label: &str,
    class: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form method="post" action=(action) class="inline" {
            (csrf(session))
            @if let Some(question) = confirm {
                button type="submit" class=(class) data-confirm=(question) { (label) }
            } @else {
                button type="submit" class=(class) { (label) }
            }
        }
    }
}

/// An alert the screen reader announces.
pub fn alert(message: &str) -> Markup {
    html! { p role="alert" class="error" { (message) } }
}

/// A confirmation of what was just done.
pub fn done(message: &str) -> Markup {
    html! { p role="status" class="done" { (message) } }
}

/// A status as a coloured badge (the word is always written out).
pub fn badge(status: &str) -> Markup {
    let tone = match status {
        "delivered" | "accepted" | "succeeded" | "ok" | "verified" | "active" => "good",
        "failed" | "dead" | "refused" | "invalid" | "disabled" | "broken" => "bad",
        "pending" | "processing" | "paused" | "retrying" | "held" => "wait",
        _ => "plain",
    };
    html! { span class={ "badge " (tone) } { (status) } }
}

/// A time from the API (RFC 3339), shown as written, with its machine form.
pub fn time(v: &Value) -> Markup {
    match v.as_str() {
        Some(t) => {
            html! { time datetime=(t) { (t.replace('T', " ").trim_end_matches('Z')) " UTC" } }
        }
        None => html! { span class="muted" { "—" } },
    }
}

/// A string field of an API answer, or a dash.
pub fn text(v: &Value) -> Markup {
    match v {
        Value::String(s) if !s.is_empty() => html! { (s) },
        Value::Number(n) => html! { (n) },
        Value::Bool(b) => html! { (if *b { "yes" } else { "no" }) },
        _ => html! { span class="muted" { "—" } },
    }
}

/// A body as text: pretty-printed when it is JSON, else as it came. Read
/// as it was written (`plain_json`): serde_json's own reading shows an
/// object led by its raw-value key as the JSON text that key's string
/// holds, so a receiver's answer could dress itself up as another.
pub fn pretty(body: &str) -> String {
    hookwarden_core::plain_json::from_slice(body.as_bytes())
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// The "next page" link of a keyset-paginated list.
pub fn pager(base: &str, query: &[(&str, &str)], next: &Value) -> Markup {
    match next.as_str() {
        Some(cursor) => {
            let mut pairs: Vec<(&str, &str)> = query
                .iter()
                .filter(|(k, _)| *k != "cursor")
                .copied()
                .collect();
            pairs.push(("cursor", cursor));
            let href = format!("{base}{}", super::api::query(&pairs));
            html! { nav class="pager" aria-label="Pages" { a href=(href) rel="next" { "Next page →" } } }
        }
        None => html! {},
    }
}

/// What a page answers when the API refused what it asked.
pub fn failure(frame: Frame<'_>, f: &Failure) -> Response {
    let (status, title) = if f.not_found() {
        (StatusCode::NOT_FOUND, "Not found")
    } else {
        (f.status, "Not done")
    };
    let message = if f.not_found() {
        "There is nothing here, or it is not yours to see.".to_owned()
    } else {
        f.message.clone()
    };
    let body = html! { h1 { (title) } (alert(&message)) };
    (status, render(Frame { title, ..frame }, body)).into_response()
}

/// `?done=…` after an action redirected: which confirmation to show (a
/// code, never text from the request).
#[derive(serde::Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    pub done: String,
}

/// A JSON list of strings as one line (event types, say).
pub fn joined(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// A receiver's answer is shown as the JSON it is, or as it came: never
    /// as the other JSON a parse would read into it.
    #[test]
    fn a_body_is_shown_as_it_came_when_a_parse_would_show_another() {
        assert_eq!(super::pretty(r#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(super::pretty("not json"), "not json");
        let dressed = r#"{"$serde_json::private::RawValue":"{\"status\":\"ok\"}"}"#;
        assert_eq!(
            super::pretty(dressed),
            "{\n  \"$serde_json::private::RawValue\": \"{\\\"status\\\":\\\"ok\\\"}\"\n}"
        );
    }
}
