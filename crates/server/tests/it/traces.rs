//! Traces (#17): a W3C `traceparent` received with an event (over HTTP or
//! NATS) or an inbound webhook continues into what is stored, every try or
//! forwarding, and the request sent out; the spans reach an OTLP/HTTP
//! receiver (a plain HTTP server here, reading the JSON as a collector
//! would) with their parents and attributes, and never a secret, a payload
//! value or a receiver's path. Without an endpoint nothing is exported and
//! the caller's `traceparent` is passed on unchanged.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    a_published_event_s_trace_runs_through_every_try_to_the_receiver,
    an_inbound_webhook_s_trace_runs_through_its_forwarding_and_forgeries_make_no_span,
    a_nats_message_s_trace_continues_into_its_deliveries,
    without_an_endpoint_the_caller_s_traceparent_is_passed_on_unchanged,
);

const WAIT: Duration = Duration::from_secs(20);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";
const SECRET_PAYLOAD: &str = "4242-secret-payload";
const SECRET_QUERY: &str = "sekrit-query-token";
/// A trace no span of ours may carry.
const FORGED_TRACE: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// A test app whose spans go to `collector`.
async fn traced(backend: Backend, collector: &Receiver, worker: bool) -> TestApp {
    let endpoint = collector.url("");
    TestApp::with(
        backend,
        Options {
            worker,
            customize: Some(Box::new(move |raw| {
                raw.set("otlp_endpoint", endpoint.as_str());
            })),
            ..Default::default()
        },
    )
    .await
}

/// Every span the collector received, each request checked as OTLP/HTTP
/// JSON on `/v1/traces`.
fn spans(collector: &Receiver) -> Vec<Value> {
    let mut all = Vec::new();
    for r in collector.received() {
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let body: Value = serde_json::from_slice(&r.body).expect("OTLP JSON");
        for resource in body["resourceSpans"].as_array().expect("resourceSpans") {
            let service = &resource["resource"]["attributes"][0];
            assert_eq!(service["key"], "service.name");
            assert_eq!(service["value"]["stringValue"], "hookwarden");
            for scope in resource["scopeSpans"].as_array().expect("scopeSpans") {
                all.extend(scope["spans"].as_array().expect("spans").iter().cloned());
            }
        }
    }
    all
}

/// Waits until the collector holds spans named `name`, `n` of them at least.
async fn wait_for_spans(collector: &Receiver, name: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = spans(collector);
        if all.iter().filter(|s| s["name"] == name).count() >= n {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} spans named {name}; got {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named<'a>(all: &'a [Value], name: &str) -> Vec<&'a Value> {
    all.iter().filter(|s| s["name"] == name).collect()
}

/// An attribute's value, as text whatever its type.
fn attr(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["intValue"].as_str().map(str::to_owned))
                .unwrap_or_else(|| v["boolValue"].to_string())
        })
}

/// The (trace id, span id) of a `traceparent` a receiver got.
fn received_context(r: &Received) -> (String, String) {
    let tp = r
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent header");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[3], "01");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Nothing a tenant or a provider sent, and no secret, is in any span.
fn assert_nothing_leaks(collector: &Receiver, secrets: &[&str]) {
    for r in collector.received() {
        let text = String::from_utf8_lossy(&r.body);
        for s in secrets.iter().chain([&SECRET_PAYLOAD, &SECRET_QUERY]) {
            assert!(!text.contains(s), "a span holds {s:?}: {text}");
        }
    }
}

async fn a_published_event_s_trace_runs_through_every_try_to_the_receiver(backend: Backend) {
    let collector = Receiver::start().await;
    let app = traced(backend, &collector, false).await;
    let rx = Receiver::start().await;
    rx.push(Reply::Status(503));
    let (webhook, secret) = app
        .create_webhook(
            "acct_a",
            &rx.url(&format!("/hook?token={SECRET_QUERY}")),
            &["*"],
        )
        .await;
    // The trace context is hookwarden's to send: not a custom header.
    let (status, refused, _) = app
        .put(
            &format!("/v1/webhooks/{webhook}"),
            &app.tenant("acct_a"),
            json!({"headers": [{"name": "traceparent", "value": traceparent(TRACE, "1111111111111111")}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    // One stored before the name was refused is not sent: the receiver
    // gets hookwarden's `traceparent` alone.
    let stale = format!(
        "UPDATE webhook_configs SET headers = '[{{\"name\":\"traceparent\",\"value\":\"{}\"}},\
         {{\"name\":\"x-kept\",\"value\":\"yes\"}}]' WHERE id = '{webhook}'",
        traceparent(FORGED_TRACE, "1111111111111111")
    );
    hookwarden_store::testing::execute_raw(backend, &app.database_url, &stale)
        .await
        .expect("a header stored before the rule");

    let resp = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(app.producer())
        .header("traceparent", traceparent(TRACE, PRODUCER_SPAN))
        .json(&json!({"accountId": "acct_a", "eventType": "invoice.paid",
            "payload": {"card": SECRET_PAYLOAD}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 202);
    let event: Value = resp.json().await.expect("json");
    let event_id = event["eventId"].as_str().expect("eventId").to_owned();
    // The first try fails, the retry succeeds.
    app.deliver_until(WAIT, || rx.count() == 2).await;

    let all = wait_for_spans(&collector, "deliver webhook", 2).await;
    let publish = named(&all, "POST /v1/events");
    assert_eq!(publish.len(), 1, "{all:#?}");
    let publish = publish[0];
    assert_eq!(publish["traceId"], TRACE);
    assert_eq!(publish["parentSpanId"], PRODUCER_SPAN);
    assert_eq!(publish["kind"], 2);
    assert_eq!(
        attr(publish, "hookwarden.event.id").as_deref(),
        Some(event_id.as_str())
    );
    assert_eq!(
        attr(publish, "http.response.status_code").as_deref(),
        Some("202")
    );
    let publish_span = publish["spanId"].as_str().expect("span id");
    assert_ne!(publish_span, PRODUCER_SPAN);

    // Each try: a client span under the publication's, whose id the
    // receiver got in its `traceparent`.
    let tries = named(&all, "deliver webhook");
    assert_eq!(tries.len(), 2);
    let got: Vec<(String, String)> = rx.received().iter().map(received_context).collect();
    for (n, (trace, span)) in got.iter().enumerate() {
        assert_eq!(trace, TRACE);
        let try_span = tries
            .iter()
            .find(|s| s["spanId"] == span.as_str())
            .unwrap_or_else(|| panic!("try {n}'s span {span} was exported: {all:#?}"));
        assert_eq!(try_span["traceId"], TRACE);
        assert_eq!(try_span["parentSpanId"], publish_span);
        assert_eq!(try_span["kind"], 3);
        assert_eq!(
            attr(try_span, "hookwarden.webhook.id").as_deref(),
            Some(webhook.as_str())
        );
        assert_eq!(
            attr(try_span, "hookwarden.event.id").as_deref(),
            Some(event_id.as_str())
        );
        assert_eq!(
            attr(try_span, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            attr(try_span, "hookwarden.attempt"),
            Some((n + 1).to_string())
        );
    }
    assert_ne!(got[0].1, got[1].1, "each try has its own span");
    for r in rx.received() {
        assert_eq!(r.headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(
            r.headers.get("x-kept").and_then(|v| v.to_str().ok()),
            Some("yes")
        );
    }
    let failed = tries
        .iter()
        .find(|s| s["spanId"] == got[0].1.as_str())
        .expect("the first try");
    assert_eq!(failed["status"]["code"], 2);
    assert_eq!(
        attr(failed, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(attr(failed, "error.type").as_deref(), Some("http_5xx"));
    let delivered = tries
        .iter()
        .find(|s| s["spanId"] == got[1].1.as_str())
        .expect("the retry");
    assert_eq!(delivered["status"]["code"], 0);
    assert_eq!(
        attr(delivered, "hookwarden.outcome").as_deref(),
        Some("succeeded")
    );
    // The signature still verifies with the trace header beside it.
    assert_eq!(reference_verify(&secret, &rx.received()), vec!["ok"; 2]);
    assert_nothing_leaks(&collector, &[&secret]);

    // An event published without a `traceparent` starts a trace of its own.
    app.publish("acct_a", "invoice.paid", json!({"n": 2})).await;
    app.deliver_until(WAIT, || rx.count() == 3).await;
    let (trace, _) = received_context(&rx.received()[2]);
    assert_ne!(trace, TRACE);
    let all = wait_for_spans(&collector, "deliver webhook", 3).await;
    let root = named(&all, "POST /v1/events")
        .into_iter()
        .find(|s| s["traceId"] == trace.as_str())
        .expect("the new trace's publication");
    assert!(root.get("parentSpanId").is_none(), "{root}");
}

async fn an_inbound_webhook_s_trace_runs_through_its_forwarding_and_forgeries_make_no_span(
    backend: Backend,
) {
    let collector = Receiver::start().await;
    let app = traced(backend, &collector, false).await;
    let target = Receiver::start().await;
    let token = "tok-secret-0123456789";
    app.integration(json!({"name": "acme", "scheme": "token", "secret": token,
        "signatureHeader": "x-token", "targetUrl": target.url("/in")}))
        .await;
    // A forgery carrying a trace of its own: refused, and no span of it.
    let (status, _) = app
        .inbound(
            "acme",
            &[
                ("x-token", "wrong".into()),
                ("traceparent", traceparent(FORGED_TRACE, PRODUCER_SPAN)),
            ],
            br#"{"n":0}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body = format!(r#"{{"card":"{SECRET_PAYLOAD}"}}"#);
    let (status, accepted) = app
        .inbound(
            "acme",
            &[
                ("x-token", token.into()),
                ("traceparent", traceparent(TRACE, PRODUCER_SPAN)),
            ],
            body.as_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let event_id = accepted["eventId"].as_str().expect("eventId").to_owned();
    app.forward_until(WAIT, || target.count() == 1).await;

    let all = wait_for_spans(&collector, "forward inbound event", 1).await;
    let receive = named(&all, "POST /api/v1/webhooks/{provider}");
    assert_eq!(receive.len(), 1, "only the verified request: {all:#?}");
    let receive = receive[0];
    assert_eq!(receive["traceId"], TRACE);
    assert_eq!(receive["parentSpanId"], PRODUCER_SPAN);
    assert_eq!(
        attr(receive, "hookwarden.integration").as_deref(),
        Some("acme")
    );
    assert_eq!(
        attr(receive, "hookwarden.inbound_event.id").as_deref(),
        Some(event_id.as_str())
    );
    let forward = named(&all, "forward inbound event")[0];
    assert_eq!(forward["traceId"], TRACE);
    assert_eq!(forward["parentSpanId"], receive["spanId"]);
    let (trace, span) = received_context(&target.received()[0]);
    assert_eq!(trace, TRACE);
    assert_eq!(forward["spanId"], span.as_str());
    assert!(
        all.iter().all(|s| s["traceId"] != FORGED_TRACE),
        "a forgery made a span: {all:#?}"
    );
    assert_nothing_leaks(&collector, &[token]);
}

async fn a_nats_message_s_trace_continues_into_its_deliveries(backend: Backend) {
    let nats = NatsTest::new().await;
    let collector = Receiver::start().await;
    let endpoint = collector.url("");
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            customize: Some(Box::new(move |raw| {
                raw.set("otlp_endpoint", endpoint.as_str());
            })),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let js = async_nats::jetstream::new(nats.client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", traceparent(TRACE, PRODUCER_SPAN).as_str());
    let msg = json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": {"card": SECRET_PAYLOAD}});
    js.publish_with_headers(
        format!("{}.dispatch", nats.prefix),
        headers,
        msg.to_string().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored by JetStream");
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let all = wait_for_spans(&collector, "deliver webhook", 1).await;
    let consumed = named(&all, "process webhook.dispatch");
    assert_eq!(consumed.len(), 1, "{all:#?}");
    assert_eq!(consumed[0]["traceId"], TRACE);
    assert_eq!(consumed[0]["parentSpanId"], PRODUCER_SPAN);
    assert_eq!(consumed[0]["kind"], 5);
    let delivery = named(&all, "deliver webhook")[0];
    assert_eq!(delivery["parentSpanId"], consumed[0]["spanId"]);
    let (trace, span) = received_context(&rx.received()[0]);
    assert_eq!(trace, TRACE);
    assert_eq!(delivery["spanId"], span.as_str());
    assert_nothing_leaks(&collector, &[]);
}

async fn without_an_endpoint_the_caller_s_traceparent_is_passed_on_unchanged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let sent = traceparent(TRACE, PRODUCER_SPAN);
    for tp in [Some(sent.as_str()), Some("00-garbage"), None] {
        let mut req = app
            .http
            .post(app.url("/v1/events"))
            .bearer_auth(app.producer())
            .json(&json!({"accountId": "acct_a", "eventType": "t", "payload": {}}));
        if let Some(tp) = tp {
            req = req.header("traceparent", tp);
        }
        assert_eq!(req.send().await.expect("publish").status().as_u16(), 202);
    }
    app.deliver_until(WAIT, || rx.count() == 3).await;
    let mut got: Vec<Option<String>> = rx
        .received()
        .iter()
        .map(|r| {
            r.headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    got.sort();
    // The valid one as it came; a malformed one, or none, is not invented.
    assert_eq!(got, vec![None, None, Some(sent)]);
}
