//! What `hookwarden ops` shows of each answer in table form: the columns
//! of every list and the lines of every single item, by the API's field names.

use super::table::{self, clean, clean_block, col, Col, WIDE};
use serde_json::Value;

/// The error text is cut here in lists; `… ID` shows it whole.
const ERROR_WIDTH: usize = 40;

pub const INBOUND_EVENTS: &[Col] = &[
    col("ID", "id", WIDE),
    col("PROVIDER", "provider", WIDE),
    col("STATUS", "status", WIDE),
    col("RECEIVED", "createdAt", WIDE),
    col("DELIVERY ID", "deliveryId", 32),
    col("SOURCE IP", "sourceIp", 40),
];

pub const JOBS: &[Col] = &[
    col("ID", "id", WIDE),
    col("EVENT", "eventId", WIDE),
    col("TRY", "attempt", 6),
    col("STATUS", "status", WIDE),
    col("TRIGGER", "trigger", 10),
    col("HTTP", "httpStatus", 4),
    col("DUE", "dueAt", WIDE),
    col("COMPLETED", "completedAt", WIDE),
    col("ERROR", "error", ERROR_WIDTH),
];

pub const AUDIT: &[Col] = &[
    col("SEQ", "seq", 12),
    col("TIME", "createdAt", WIDE),
    col("ACTOR", "actor", 32),
    col("ACTION", "action", 40),
    col("TARGET", "target", 48),
    col("REQUEST ID", "requestId", WIDE),
];

pub const ATTEMPTS: &[Col] = &[
    col("ID", "id", WIDE),
    col("EVENT", "eventId", WIDE),
    col("WEBHOOK", "webhookId", WIDE),
    col("ACCOUNT", "accountId", 32),
    col("TRY", "attempt", 6),
    col("STATUS", "status", WIDE),
    col("HTTP", "httpStatus", 4),
    col("DUE", "dueAt", WIDE),
    col("COMPLETED", "completedAt", WIDE),
    col("ERROR", "error", ERROR_WIDTH),
];

/// The tries of one endpoint under an event (the event and endpoint are above them).
const FAN_OUT_ATTEMPTS: &[Col] = &[
    col("TRY", "attempt", 6),
    col("ID", "id", WIDE),
    col("STATUS", "status", WIDE),
    col("HTTP", "httpStatus", 4),
    col("DUE", "dueAt", WIDE),
    col("COMPLETED", "completedAt", WIDE),
    col("ERROR", "error", ERROR_WIDTH),
];

pub const OUTBOUND_EVENTS: &[Col] = &[
    col("ID", "id", WIDE),
    col("ACCOUNT", "accountId", 32),
    col("TYPE", "eventType", 40),
    col("PRODUCER", "producer", 32),
    col("CREATED", "createdAt", WIDE),
];

pub const WEBHOOKS: &[Col] = &[
    col("ID", "id", WIDE),
    col("ACCOUNT", "accountId", 32),
    col("URL", "url", 48),
    col("EVENT TYPES", "eventTypes", 24),
    col("DISABLED", "disabled", 8),
    col("PAUSED UNTIL", "pausedUntil", WIDE),
    col("UPDATED", "updatedAt", WIDE),
];

const ATTEMPT_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("event", "eventId"),
    ("webhook", "webhookId"),
    ("account", "accountId"),
    ("try", "attempt"),
    ("status", "status"),
    ("http status", "httpStatus"),
    ("duration ms", "durationMs"),
    ("error", "error"),
    ("response", "responsePreview"),
    ("due", "dueAt"),
    ("created", "createdAt"),
    ("completed", "completedAt"),
];

const WEBHOOK_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("account", "accountId"),
    ("url", "url"),
    ("description", "description"),
    ("event types", "eventTypes"),
    ("disabled", "disabled"),
    ("disabled reason", "disabledReason"),
    ("paused until", "pausedUntil"),
    ("rotation ends", "secretRotationEndsAt"),
    ("created", "createdAt"),
    ("updated", "updatedAt"),
];

/// One inbound event: its fields, kept headers, body and forwarding jobs.
pub fn inbound_event(v: &Value) -> String {
    let mut out = table::fields(
        v,
        &[
            ("id", "id"),
            ("provider", "provider"),
            ("delivery id", "deliveryId"),
            ("status", "status"),
            ("received", "createdAt"),
            ("source ip", "sourceIp"),
            ("correlation id", "correlationId"),
            ("body sha256", "bodySha256"),
        ],
    );
    if let Some(headers) = v["headers"].as_object().filter(|h| !h.is_empty()) {
        out.push_str("\nheaders:\n");
        for (name, value) in headers {
            out.push_str(&format!("  {}: {}\n", clean(name), table::cell(value, "")));
        }
    }
    match (v["rawBody"].as_str(), v["rawBodyBase64"].as_str()) {
        (Some(body), _) => out.push_str(&format!("\nbody:\n{}\n", clean_block(body))),
        (None, Some(b64)) => {
            out.push_str(&format!("\nbody (base64, not UTF-8):\n{}\n", clean(b64)))
        }
        _ => {}
    }
    out.push_str("\nforwarding jobs:\n");
    out.push_str(&table::render(items(&v["jobs"]), JOBS));
    out
}

/// A replay's answer: the new job.
pub fn replay(v: &Value) -> String {
    let mut out = table::fields(v, &[("replay", "replayId"), ("event", "eventId")]);
    out.push_str(&table::render(std::slice::from_ref(&v["job"]), JOBS));
    out
}

pub fn processing_status(v: &Value) -> String {
    table::fields(
        v,
        &[
            ("pending", "jobs.pending"),
            ("succeeded", "jobs.succeeded"),
            ("failed", "jobs.failed"),
            ("dead", "jobs.dead"),
            ("oldest pending (s)", "oldestPendingAgeSeconds"),
        ],
    )
}

pub fn attempt(v: &Value) -> String {
    table::fields(v, ATTEMPT_FIELDS)
}

pub fn webhook(v: &Value) -> String {
    table::fields(v, WEBHOOK_FIELDS)
}

/// One outbound event: its fields, payload and fan-out (each endpoint and its tries).
pub fn outbound_event(v: &Value) -> String {
    let mut out = table::fields(
        v,
        &[
            ("id", "id"),
            ("account", "accountId"),
            ("type", "eventType"),
            ("producer", "producer"),
            ("created", "createdAt"),
        ],
    );
    let payload = serde_json::to_string_pretty(&v["payload"]).unwrap_or_default();
    out.push_str(&format!("\npayload:\n{}\n", clean_block(&payload)));
    let fan_out = items(&v["fanOut"]);
    out.push_str(&format!("\nfan-out: {} endpoint(s)\n", fan_out.len()));
    for endpoint in fan_out {
        let url = match endpoint["url"].as_str() {
            Some(u) => clean(u),
            None => "(endpoint deleted)".to_owned(),
        };
        let disabled = if endpoint["disabled"].as_bool() == Some(true) {
            "  [disabled]"
        } else {
            ""
        };
        out.push_str(&format!(
            "\nwebhook {}  {url}{disabled}\n",
            table::cell(endpoint, "webhookId")
        ));
        out.push_str(&table::render(
            items(&endpoint["attempts"]),
            FAN_OUT_ATTEMPTS,
        ));
    }
    out
}

/// A bulk retry's answer.
pub fn bulk_retry(v: &Value) -> String {
    let mut out = format!(
        "matched {}, queued {}, skipped {} (endpoint deleted)\n",
        table::cell(v, "matched"),
        table::cell(v, "queued"),
        table::cell(v, "skipped")
    );
    if v["firstDueAt"].is_string() {
        out.push_str(&format!(
            "due from {} to {}\n",
            table::cell(v, "firstDueAt"),
            table::cell(v, "lastDueAt")
        ));
    }
    if v["more"].as_bool() == Some(true) {
        out.push_str(
            "more dead letters match: run the same command again to queue the next ones\n",
        );
    }
    out
}

/// The audit chain check: the head last and alone on its line (to record it).
pub fn audit_chain(v: &Value) -> (String, bool) {
    let valid = v["valid"].as_bool() == Some(true);
    let mut out = String::new();
    if valid {
        out.push_str(&format!(
            "audit trail intact: {} entries, {} keyed\n",
            table::cell(v, "entries"),
            table::cell(v, "keyed")
        ));
        if v["head"].is_string() {
            out.push_str(&format!("{}\n", table::cell(v, "head")));
        }
    } else {
        out.push_str(&format!(
            "audit trail broken: {}\n",
            table::cell(v, "problem")
        ));
    }
    (out, valid)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_outbound_event_shows_each_endpoint_and_its_tries() {
        let v = json!({
            "id": "evt_1", "accountId": "acct", "eventType": "invoice.paid", "producer": "billing",
            "createdAt": "2026-12-02T04:00:00.000Z", "payload": {"n": 1},
            "fanOut": [
                {"webhookId": "wh_1", "url": "https://r.example/hook", "disabled": true,
                 "attempts": [{"id": "dlv_1", "attempt": 1, "status": "dead", "httpStatus": 500,
                               "error": "HTTP 500", "dueAt": "t0", "completedAt": "t1"}]},
                {"webhookId": "wh_2", "url": null, "disabled": false, "attempts": []}
            ]
        });
        let out = outbound_event(&v);
        assert!(
            out.contains("webhook wh_1  https://r.example/hook  [disabled]"),
            "{out}"
        );
        assert!(
            out.contains("1    dlv_1  dead    500   t0   t1         HTTP 500"),
            "{out}"
        );
        assert!(
            out.contains("webhook wh_2  (endpoint deleted)\n(none)"),
            "{out}"
        );
        assert!(out.contains("fan-out: 2 endpoint(s)"), "{out}");
    }

    #[test]
    fn the_chain_verdict_puts_the_head_last_or_names_the_problem() {
        let (out, ok) = audit_chain(
            &json!({"valid": true, "head": "7:ab", "entries": 7, "keyed": 7, "problem": null}),
        );
        assert!(ok);
        assert!(out.ends_with("\n7:ab\n"), "{out}");
        let (out, ok) = audit_chain(
            &json!({"valid": false, "head": null, "entries": 3, "keyed": 3, "problem": "entry 2 altered"}),
        );
        assert!(!ok);
        assert_eq!(out, "audit trail broken: entry 2 altered\n");
    }

    #[test]
    fn a_bulk_retry_says_when_more_remain() {
        let out = bulk_retry(&json!({"matched": 3, "queued": 2, "skipped": 1,
            "firstDueAt": "a", "lastDueAt": "b", "more": true}));
        assert!(out.starts_with("matched 3, queued 2, skipped 1"), "{out}");
        assert!(out.contains("due from a to b"), "{out}");
        assert!(out.contains("run the same command again"), "{out}");
        let out = bulk_retry(&json!({"matched": 0, "queued": 0, "skipped": 0,
            "firstDueAt": null, "lastDueAt": null, "more": false}));
        assert_eq!(out, "matched 0, queued 0, skipped 0 (endpoint deleted)\n");
    }

    #[test]
    fn an_inbound_body_keeps_its_lines_but_not_escape_sequences() {
        let v = json!({"id": "evt", "rawBody": "{\n \"a\": \"\u{1b}]0;pwn\u{7}\"\n}", "headers": {"x-a": "1"}, "jobs": []});
        let out = inbound_event(&v);
        assert!(
            out.contains("body:\n{\n \"a\": \"\u{FFFD}]0;pwn\u{FFFD}\"\n}"),
            "{out}"
        );
        assert!(out.contains("  x-a: 1"), "{out}");
    }
}
