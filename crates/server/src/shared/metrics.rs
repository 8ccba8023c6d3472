//! The Prometheus recorder (process-wide), the names of our metrics and the
//! help text of each, and the bounded label values some of them carry.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const DELIVERIES: &str = "hookwarden_deliveries_total";
pub const DELIVERY_FAILURES: &str = "hookwarden_delivery_failures_total";
pub const DELIVERY_DURATION: &str = "hookwarden_delivery_duration_seconds";
pub const IN_FLIGHT: &str = "hookwarden_deliveries_in_flight";
pub const TRIES_STARTED: &str = "hookwarden_tries_started_total";
pub const QUEUE_PENDING: &str = "hookwarden_delivery_queue_pending";
pub const QUEUE_DUE: &str = "hookwarden_delivery_queue_due";
pub const QUEUE_OLDEST_DUE: &str = "hookwarden_delivery_queue_oldest_due_seconds";
pub const DEAD_LETTERS: &str = "hookwarden_dead_letters_total";
/// Endpoints paused by the breaker after failing tries in a row.
pub const BREAKER_PAUSES: &str = "hookwarden_endpoint_pauses_total";
/// Endpoints disabled after failing every try for `HOOKWARDEN_DISABLE_AFTER`.
pub const ENDPOINTS_DISABLED: &str = "hookwarden_endpoints_disabled_total";
/// The seq of the audit chain's newest entry (its hash is logged as `audit.head`).
pub const AUDIT_HEAD_SEQ: &str = "hookwarden_audit_head_seq";
pub const EVENTS_PUBLISHED: &str = "hookwarden_events_published_total";
pub const INBOUND: &str = "hookwarden_inbound_total";
pub const FORWARDS: &str = "hookwarden_forwards_total";
pub const FORWARD_FAILURES: &str = "hookwarden_forward_failures_total";
pub const FORWARD_QUEUE_PENDING: &str = "hookwarden_forward_queue_pending";
pub const FORWARD_QUEUE_OLDEST_DUE: &str = "hookwarden_forward_queue_oldest_due_seconds";
pub const HTTP_RESPONSES: &str = "hookwarden_http_responses_total";
pub const REFUSED_EARLY: &str = "hookwarden_refused_early_total";
pub const RATE_LIMIT_KEYS_FULL: &str = "hookwarden_rate_limit_keys_full_total";
pub const REFUSALS_UNAGGREGATED: &str = "hookwarden_refusals_unaggregated_total";
pub const LOG_LINES_DROPPED: &str = "hookwarden_log_lines_dropped_total";
pub const FORWARDING_HEADERS_IGNORED: &str = "hookwarden_forwarding_headers_ignored_total";
pub const JWKS_LOADS: &str = "hookwarden_jwks_loads_total";
pub const ACTIVITY_DROPPED: &str = "hookwarden_activity_dropped_total";
/// Rows deleted by retention, by table.
pub const PRUNED_ROWS: &str = "hookwarden_pruned_rows_total";
/// Age of the oldest row kept, by table.
pub const OLDEST_KEPT: &str = "hookwarden_oldest_row_age_seconds";
/// Spans posted to the OTLP endpoint.
pub const SPANS_EXPORTED: &str = "hookwarden_spans_exported_total";
/// Spans dropped, by reason.
pub const SPANS_DROPPED: &str = "hookwarden_spans_dropped_total";

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric hookwarden records, with its `# HELP` text. A metric
/// missing here renders without help; a test fails on that.
const HELP: &[(Kind, &str, &str)] = &[
    (Kind::Counter, DELIVERIES, "Outbound delivery tries, by outcome (succeeded, failed: a retry follows, dead: the last try failed)."),
    (Kind::Counter, DELIVERY_FAILURES, "Outbound delivery tries that failed, by reason class (timeout, connect, reset, dns, tls, refused, http_4xx, http_429, http_5xx, http_other, deleted, invalid_payload, internal, other)."),
    (Kind::Histogram, DELIVERY_DURATION, "Duration of outbound delivery tries, in seconds."),
    (Kind::Gauge, IN_FLIGHT, "Tries being sent now, by queue (delivery, forwarding)."),
    (Kind::Counter, TRIES_STARTED, "Tries started, by queue and how the worker got them (claimed from the database, or handed over as the event was stored)."),
    (Kind::Gauge, QUEUE_PENDING, "Outbound deliveries waiting for a try (due or scheduled), read at scrape time."),
    (Kind::Gauge, QUEUE_DUE, "Outbound deliveries whose try is due now, read at scrape time."),
    (Kind::Gauge, QUEUE_OLDEST_DUE, "How long the oldest due outbound delivery has waited, in seconds."),
    (Kind::Counter, DEAD_LETTERS, "Outbound deliveries that gave up (dead letters)."),
    (Kind::Counter, BREAKER_PAUSES, "Endpoints paused by the breaker after failing tries in a row."),
    (Kind::Counter, ENDPOINTS_DISABLED, "Endpoints disabled after failing every try for HOOKWARDEN_DISABLE_AFTER (their pending tries became dead letters)."),
    (Kind::Counter, EVENTS_PUBLISHED, "Events published, by source (http, nats) and whether the id was a duplicate."),
    (Kind::Counter, INBOUND, "Inbound webhooks received, by integration and outcome (accepted, duplicate, or the refusal reason)."),
    (Kind::Counter, FORWARDS, "Forwarding tries of inbound events, by outcome."),
    (Kind::Counter, FORWARD_FAILURES, "Forwarding tries that failed, by reason class (as for deliveries)."),
    (Kind::Gauge, FORWARD_QUEUE_PENDING, "Inbound events waiting to be forwarded (due or scheduled), read at scrape time."),
    (Kind::Gauge, FORWARD_QUEUE_OLDEST_DUE, "How long the oldest due forwarding job has waited, in seconds."),
    (Kind::Counter, HTTP_RESPONSES, "HTTP answers, by method, route template (\"unmatched\" for no route) and status."),
    (Kind::Counter, REFUSED_EARLY, "Requests refused before any work, by reason (failed_auth: the client address is over its failed-authentication limit)."),
    (Kind::Counter, RATE_LIMIT_KEYS_FULL, "Rate-limit checks let through uncounted because the in-memory limiter holds its maximum of keys this minute."),
    (Kind::Counter, REFUSALS_UNAGGREGATED, "Inbound refusals counted under the source prefix * because too many distinct aggregates were pending."),
    (Kind::Counter, FORWARDING_HEADERS_IGNORED, "Requests carrying X-Forwarded-For or Forwarded while HOOKWARDEN_TRUSTED_PROXIES is unset (the headers are ignored)."),
    (Kind::Gauge, AUDIT_HEAD_SEQ, "Sequence number of the audit chain's newest entry (its hash is logged as audit.head)."),
    (Kind::Counter, JWKS_LOADS, "Token key sets loaded, by source (file, url), trigger (changed: the file changed; startup: the URL's first fetch; retry: the URL fetched again while no key set has loaded from it; periodic; unknown_kid: a token named a key id no key has) and outcome (loaded, failed: the previous keys, if any, stay)."),
    (Kind::Counter, ACTIVITY_DROPPED, "Activity counts (the console's charts) dropped because the database did not take them for about an hour."),
    (Kind::Counter, PRUNED_ROWS, "Rows deleted by retention (HOOKWARDEN_RETENTION), by table (events, delivery_attempts, inbound_events, processing_jobs)."),
    (Kind::Gauge, OLDEST_KEPT, "Age in seconds of the oldest row kept, by table (events, inbound_events), read after each pruning run."),
    (Kind::Counter, SPANS_EXPORTED, "Spans the OTLP endpoint (HOOKWARDEN_OTLP_ENDPOINT) accepted."),
    (Kind::Counter, SPANS_DROPPED, "Spans dropped, by reason (queue_full: made faster than the endpoint took them; export_failed: the endpoint refused or did not answer)."),
    (Kind::Counter, LOG_LINES_DROPPED, "Log lines dropped because stdout was closed, failing or not read fast enough."),
];

/// Installs the recorder once per process and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours
            // simply renders nothing, which tests would notice.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    for (kind, name, help) in HELP {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// The reason class of a failed try, for a metric label: a fixed, small
/// set, never the URL, host or the receiver's words. Derived from the HTTP
/// status, else from the outgoing client's error text (its wording is
/// ours: `dispatch::client` and the workers write it).
pub fn failure_reason(http_status: Option<i32>, error: Option<&str>) -> &'static str {
    if let Some(status) = http_status {
        return match status {
            429 => "http_429",
            400..=499 => "http_4xx",
            500..=599 => "http_5xx",
            _ => "http_other",
        };
    }
    let Some(error) = error else {
        return "other";
    };
    let e = error.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| e.contains(w));
    if e.starts_with("destination refused") {
        "refused"
    } else if has(&["timed out", "timeout"]) {
        "timeout"
    } else if has(&["tls", "certificate"]) {
        "tls"
    } else if has(&["dns", "resolve", "name not found", "no address"]) {
        "dns"
    } else if has(&["reset", "closed by the receiver"]) {
        "reset"
    } else if has(&["connect", "refused"]) {
        "connect"
    } else if has(&["deleted", "not found"]) {
        // The webhook, integration or event went away before the try.
        "deleted"
    } else if has(&["validation", "schema"]) {
        "invalid_payload"
    } else if has(&["unavailable", "serialized"]) {
        "internal"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_a_small_fixed_set() {
        let cases = [
            (Some(503), None, "http_5xx"),
            (Some(404), None, "http_4xx"),
            (Some(429), None, "http_429"),
            (Some(302), None, "http_other"),
            (None, Some("timed out after 2000ms"), "timeout"),
            (None, Some("TLS handshake failed: unknown issuer"), "tls"),
            (None, Some("connection failed"), "connect"),
            (None, Some("connection refused"), "connect"),
            (None, Some("connection reset by peer"), "reset"),
            (None, Some("DNS name not found"), "dns"),
            (
                None,
                Some("destination refused: destination is not allowed or not reachable"),
                "refused",
            ),
            (None, Some("webhook deleted"), "deleted"),
            (None, Some("integration deleted"), "deleted"),
            (None, Some("event not found"), "deleted"),
            (
                None,
                Some("payload failed validation before delivery"),
                "invalid_payload",
            ),
            (None, Some("signing secret unavailable"), "internal"),
            (
                None,
                Some("request failed: https://secret.example/x?token=1"),
                "other",
            ),
            (None, None, "other"),
        ];
        for (status, error, want) in cases {
            assert_eq!(failure_reason(status, error), want, "{status:?} {error:?}");
        }
    }

    #[test]
    fn every_metric_has_help() {
        for (_, name, help) in HELP {
            assert!(name.starts_with("hookwarden_"), "{name}");
            assert!(!help.is_empty(), "{name}");
        }
    }
}
