//! Operational webhooks: hookwarden's own events to the platform, signed
//! under the operational endpoint's own secret, delivered by the same
//! dispatcher, never carrying a secret or a payload; and the reserved
//! account no tenant can use.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    the_platform_hears_of_paused_recovered_and_dead_endpoints_signed_with_its_own_secret,
    the_platform_hears_of_an_integration_failing_verification_and_of_the_audit_head,
    the_operational_account_is_no_tenant_s_and_nothing_is_stored_without_listeners,
    operational_webhooks_from_the_configuration_file_are_applied_at_start,
);

const WAIT: Duration = Duration::from_secs(20);

async fn operational(app: &TestApp, url: &str, types: Value) -> (String, String) {
    let (status, created, _) = app
        .operator(
            Method::POST,
            "/api/v1/operational-webhooks",
            Some(json!({"url": url, "eventTypes": types})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["id"].as_str().expect("id").to_owned(),
        created["secret"].as_str().expect("secret").to_owned(),
    )
}

/// The events the platform's endpoint received, by type.
fn events(rx: &Receiver) -> Vec<Value> {
    rx.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect()
}

/// `n` requests to acme with forged signatures, each refused.
async fn forge(app: &TestApp, n: u32) {
    for n in 0..n {
        let (status, _) = app
            .inbound(
                "acme",
                &[("x-acme-signature", format!("{:064x}", n))],
                br#"{"forged":true}"#,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

fn of_type<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["type"] == kind).collect()
}

async fn the_platform_hears_of_paused_recovered_and_dead_endpoints_signed_with_its_own_secret(
    backend: Backend,
) {
    let app = TestApp::with(
        backend,
        Options {
            retry_schedule: "100ms",
            max_in_flight_per_endpoint: Some(5),
            ..Default::default()
        },
    )
    .await;
    let platform = Receiver::start().await;
    let (ops_id, ops_secret) = operational(&app, &platform.url("/ops"), json!(["*"])).await;
    let tenant_rx = Receiver::start().await;
    tenant_rx.set_default(Reply::Status(500));
    let (id, tenant_secret) = app
        .create_webhook("acct_a", &tenant_rx.url("/h"), &["*"])
        .await;
    for n in 0..5 {
        app.publish(
            "acct_a",
            "t",
            json!({"card": "4242-secret-payload", "n": n}),
        )
        .await;
    }
    // Five failures pause it; their retries fail too: dead letters.
    app.deliver_until(WAIT, || {
        let all = events(&platform);
        !of_type(&all, "endpoint.paused").is_empty() && of_type(&all, "delivery.dead").len() == 5
    })
    .await;
    // Back: the next success tells the platform it recovered.
    tenant_rx.set_default(Reply::Status(200));
    app.publish("acct_a", "t", json!({"n": 9})).await;
    app.deliver_until(WAIT, || {
        !of_type(&events(&platform), "endpoint.recovered").is_empty()
    })
    .await;

    let all = events(&platform);
    let paused = of_type(&all, "endpoint.paused")[0];
    assert_eq!(paused["data"]["accountId"], "acct_a");
    assert_eq!(paused["data"]["webhookId"], id.as_str());
    assert!(paused["data"]["pausedUntil"].is_string());
    let dead = of_type(&all, "delivery.dead")[0];
    assert_eq!(dead["data"]["webhookId"], id.as_str());
    assert_eq!(dead["data"]["httpStatus"], 500);
    assert!(dead["data"]["eventId"].is_string());
    let recovered = of_type(&all, "endpoint.recovered")[0];
    assert_eq!(recovered["data"]["webhookId"], id.as_str());
    // Signed under the operational endpoint's own secret, verified by the
    // reference library; never a tenant's secret or payload.
    let got = platform.received();
    assert!(reference_verify(&ops_secret, &got)
        .iter()
        .all(|v| v == "ok"));
    let text = format!("{:?}", got);
    assert!(!text.contains("4242-secret-payload"), "no payload");
    assert!(!text.contains(&tenant_secret[6..]), "no secret");
    // Its tries are listed like any other.
    let (status, tries, _) = app
        .operator(
            Method::GET,
            &format!("/api/v1/outbound/deliveries?webhookId={ops_id}&limit=100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tries}");
    assert_eq!(tries["items"].as_array().expect("items").len(), got.len());

    // Deleted: nothing more is sent to it (nor stored).
    let (status, _, _) = app
        .operator(
            Method::DELETE,
            &format!("/api/v1/operational-webhooks/{ops_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed, _) = app
        .operator(Method::GET, "/api/v1/operational-webhooks", None)
        .await;
    assert_eq!(listed["items"], json!([]));
    app.stop().await;
}

async fn the_platform_hears_of_an_integration_failing_verification_and_of_the_audit_head(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let platform = Receiver::start().await;
    let (_, secret) = operational(
        &app,
        &platform.url("/ops"),
        json!(["integration.verification_failing", "audit.head"]),
    )
    .await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256",
        "secret": "acme-provider-secret-value", "signatureHeader": "x-acme-signature",
        "targetUrl": target.url("/acme")}))
        .await;
    // Eleven forged requests in a minute: over the threshold (10). Split
    // over two minutes they are under it in each (which made this flaky).
    early_in_a_minute(10).await;
    forge(&app, 11).await;
    app.state.refusals.flush(&app.state, true).await;
    let mut watch = hookwarden_server::shared::audit::HeadWatch::default();
    watch
        .look(app.state.store.as_ref(), &app.state.operational)
        .await;
    // (The app's own head watcher may have sent an earlier head too.)
    let current_head = app.state.store.audit_head().await.expect("head");
    let seq = current_head.expect("entries").0;
    app.deliver_until(WAIT, || {
        let all = events(&platform);
        !of_type(&all, "integration.verification_failing").is_empty()
            && of_type(&all, "audit.head")
                .iter()
                .any(|h| h["data"]["seq"] == seq)
    })
    .await;
    let all = events(&platform);
    let failing = of_type(&all, "integration.verification_failing");
    assert_eq!(failing.len(), 1, "{all:?}");
    assert_eq!(failing[0]["data"]["integration"], "acme");
    assert_eq!(failing[0]["data"]["refusals"], 11);
    assert!(failing[0]["data"]["reasons"].is_object());
    let head = of_type(&all, "audit.head");
    let last = head
        .iter()
        .find(|h| h["data"]["seq"] == seq)
        .expect("the head");
    assert!(last["data"]["head"]
        .as_str()
        .expect("head")
        .starts_with(&format!("{seq}:")));
    assert!(reference_verify(&secret, &platform.received())
        .iter()
        .all(|v| v == "ok"));
    assert!(!format!("{all:?}").contains("acme-provider-secret-value"));
    // The head again, unchanged: nothing new.
    watch
        .look(app.state.store.as_ref(), &app.state.operational)
        .await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
    app.stop().await;
}

/// Refusals spread over two replicas on one database, each under the
/// threshold, are over it together: the replica whose flush crosses it
/// tells the platform, once, with the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_spread_over_replicas_are_counted_together() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.replica(Backend::Postgres).await;
    let platform = Receiver::start().await;
    operational(
        &a,
        &platform.url("/ops"),
        json!(["integration.verification_failing"]),
    )
    .await;
    let target = Receiver::start().await;
    a.integration(json!({"name": "acme", "scheme": "hmac-sha256",
        "secret": "acme-provider-secret-value", "signatureHeader": "x-acme-signature",
        "targetUrl": target.url("/acme")}))
        .await;
    early_in_a_minute(10).await;
    // Six forgeries at each replica: 12 in all, over the threshold (10).
    for app in [&a, &b] {
        forge(app, 6).await;
    }
    // The listener was added through the other replica: this one sees it
    // within `LOOK_EVERY` (5 s); here at once, whatever it looked at
    // before (its audit head watcher may have looked before the listener
    // existed, which made this test flaky).
    b.state.operational.changed();
    a.state.refusals.flush(&a.state, true).await;
    b.state.refusals.flush(&b.state, true).await;
    a.deliver_until(WAIT, || {
        !of_type(&events(&platform), "integration.verification_failing").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = a.dispatcher.run_once().await;
    let all = events(&platform);
    let failing = of_type(&all, "integration.verification_failing");
    assert_eq!(failing.len(), 1, "{all:?}");
    assert_eq!(failing[0]["data"]["refusals"], 12);
    b.stop().await;
    a.stop().await;
}

async fn the_operational_account_is_no_tenant_s_and_nothing_is_stored_without_listeners(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let reserved = "hookwarden/operational";
    let token = app.sign(&app.claims(Some(reserved), "webhooks:read webhooks:write"));
    let (status, body, _) = app.get("/v1/webhooks", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body, _) = app
        .post(
            "/v1/events",
            &app.producer(),
            json!({"accountId": reserved, "eventType": "delivery.dead", "payload": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Bad operational subscriptions are refused.
    for bad in [json!(["invoice.paid"]), json!([])] {
        let (status, body, _) = app
            .operator(
                Method::POST,
                "/api/v1/operational-webhooks",
                Some(json!({"url": "https://example.com/ops", "eventTypes": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // No operational webhook: a dead letter stores no operational event.
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(410));
    app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    app.publish("acct_a", "t", json!({})).await;
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let (_, listed, _) = app
        .operator(Method::GET, "/api/v1/outbound/events?limit=100", None)
        .await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "only the tenant's event: {listed}");
    app.stop().await;
}

async fn operational_webhooks_from_the_configuration_file_are_applied_at_start(backend: Backend) {
    let platform = Receiver::start().await;
    let url = platform.url("/ops");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
    let entry = json!([{"url": url, "secret": secret, "eventTypes": ["audit.head"]}]);
    let app = TestApp::with(
        backend,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.set("operational_webhooks", entry);
            })),
            ..Default::default()
        },
    )
    .await;
    let (status, listed, _) = app
        .operator(Method::GET, "/api/v1/operational-webhooks", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["eventTypes"], json!(["audit.head"]));
    assert!(!listed.to_string().contains(&secret[6..]), "never shown");
    let mut watch = hookwarden_server::shared::audit::HeadWatch::default();
    watch
        .look(app.state.store.as_ref(), &app.state.operational)
        .await;
    app.deliver_until(WAIT, || platform.count() >= 1).await;
    assert!(reference_verify(&secret, &platform.received())
        .iter()
        .all(|v| v == "ok"));
    app.stop().await;
}
