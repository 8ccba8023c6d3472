//! JSON Schemas per event type: registered by the producers that own the
//! type, enforced at publish (HTTP and NATS) and again before delivery.

use crate::helpers::*;
use axum::http::StatusCode;
use futures_util::StreamExt;
use hookwarden_server::producers::ProducerGrant;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    schemas_are_enforced_at_publish_and_before_delivery,
    schema_mismatches_never_echo_payload_values
);

async fn schemas_are_enforced_at_publish_and_before_delivery(backend: Backend) {
    let grants = vec![ProducerGrant {
        name: "billing".into(),
        event_types: vec!["invoice.*".into()],
        accounts: vec![],
    }];
    let app = TestApp::with(
        backend,
        Options {
            customize: Some(Box::new(move |raw| raw.producers = Some(grants))),
            ..Default::default()
        },
    )
    .await;
    let billing = {
        let mut c = app.claims(None, "events:publish");
        c.sub = "billing".into();
        app.sign(&c)
    };
    let schema = json!({
        "type": "object",
        "required": ["invoiceId", "amount"],
        "properties": {"invoiceId": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}},
        "additionalProperties": false
    });
    // Only a producer granted the type may register its schema; a bad schema is refused.
    let (status, _, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &app.tenant("acct_a"),
            json!({"schema": schema}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "tenants do not own event types"
    );
    let crm = {
        let mut c = app.claims(None, "events:publish");
        c.sub = "crm".into();
        app.sign(&c)
    };
    let (status, _, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &crm,
            json!({"schema": schema}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not granted to crm");
    let (status, err, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": {"type": "no-such-type"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": {"$ref": "http://169.254.169.254/schema"}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "remote references are never fetched: {err}"
    );
    let (status, body, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": schema, "description": "paid"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, list, _) = app.get("/v1/event-types", &app.tenant("acct_a")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "invoice.paid");

    // At publish.
    let rx = Receiver::start().await;
    let (id, _) = app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    let event =
        |payload| json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": payload});
    for bad in [
        json!({"invoiceId": "I-1"}),
        json!({"invoiceId": "I-1", "amount": -5}),
        json!({"invoiceId": 7, "amount": 5}),
        json!({"invoiceId": "I-1", "amount": 5, "extra": true}),
    ] {
        let (status, err, _) = app.post("/v1/events", &billing, event(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .expect("message")
                .contains("schema of invoice.paid"),
            "{err}"
        );
    }
    let (status, _, _) = app
        .post(
            "/v1/events",
            &billing,
            event(json!({"invoiceId": "I-1", "amount": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A type without a schema only needs a JSON object.
    let (status, _, _) = app
        .post(
            "/v1/events",
            &billing,
            json!({"accountId": "acct_a", "eventType": "invoice.voided", "payload": {"any": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Before delivery: the schema tightened after the event was accepted.
    let stricter = json!({"type": "object", "required": ["invoiceId", "amount", "currency"]});
    let (status, _, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": stricter}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.deliver_until(Duration::from_secs(10), || rx.count() == 1)
        .await;
    let _ = app.dispatcher.run_once().await;
    let items = app.deliveries("acct_a", &id).await;
    let dead = items
        .iter()
        .find(|i| i["status"] == "dead")
        .expect("a dead letter");
    assert!(
        dead["error"]
            .as_str()
            .expect("error")
            .contains("schema of invoice.paid"),
        "{dead}"
    );
    assert_eq!(rx.count(), 1, "only the schemaless event was delivered");
}

/// A payload value that fails a schema (a phone number) never reaches the
/// 400 answer, the NATS dead-letter reason, the stored delivery error or the
/// logs: only the place and the keyword that failed.
async fn schema_mismatches_never_echo_payload_values(backend: Backend) {
    crate::logs::capture();
    // Unique per run, so parallel tests cannot put it in the shared logs.
    let phone = format!("+1555{:07}", rand::random::<u32>() % 10_000_000);
    let nats = NatsTest::new().await;
    let grants = vec![ProducerGrant {
        name: "billing".into(),
        event_types: vec!["sms.*".into()],
        accounts: vec![],
    }];
    let app = TestApp::with(
        backend,
        Options {
            nats: nats.options(),
            customize: Some(Box::new(move |raw| raw.producers = Some(grants))),
            ..Default::default()
        },
    )
    .await;
    let billing = {
        let mut c = app.claims(None, "events:publish");
        c.sub = "billing".into();
        app.sign(&c)
    };
    let schema = |to: Value| json!({"schema": {"type": "object", "properties": {"to": to}}});
    let (status, body, _) = app
        .put(
            "/v1/event-types/sms.sent",
            &billing,
            schema(json!({"type": "string"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rx = Receiver::start().await;
    let (webhook, _) = app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    let event = json!({"accountId": "acct_a", "eventType": "sms.sent", "payload": {"to": phone}});
    let (status, body, _) = app.post("/v1/events", &billing, event.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The schema now refuses numbers: the accepted event fails its check before delivery.
    let (status, body, _) = app
        .put(
            "/v1/event-types/sms.sent",
            &billing,
            schema(json!({"type": "string", "pattern": "^[a-z]+$"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = "payload does not match the schema of sms.sent at /to: pattern";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        assert!(tokio::time::Instant::now() < deadline, "no failed try");
        let _ = app.dispatcher.run_once().await;
        let items = app.deliveries("acct_a", &webhook).await;
        if let Some(error) = items.iter().find_map(|i| i["error"].as_str()) {
            break error.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stored, expected);
    assert_eq!(rx.count(), 0);

    // Over HTTP: a 400 that names the place and keyword only.
    let (status, body, _) = app.post("/v1/events", &billing, event.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["message"], expected);
    assert!(!body.to_string().contains(&phone), "{body}");

    // Over NATS: the dead letter's reason (its `message` is the refused message itself).
    let mut dead = nats
        .client
        .subscribe(format!("{}.dispatch.deadletter", nats.prefix))
        .await
        .expect("subscribe");
    let js = async_nats::jetstream::new(nats.client.clone());
    js.publish(
        format!("{}.dispatch.billing", nats.prefix),
        event.to_string().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored by JetStream");
    let msg = tokio::time::timeout(Duration::from_secs(15), dead.next())
        .await
        .expect("a dead-letter notice in time")
        .expect("message");
    let notice: Value = serde_json::from_slice(&msg.payload).expect("notice is JSON");
    assert_eq!(notice["kind"], "intake");
    assert_eq!(notice["reason"], expected);

    // The NATS refusal was logged (so the capture works), without the value.
    let logs = crate::logs::captured();
    assert!(
        logs.contains("NATS event refused") && logs.contains(expected),
        "the refusal is logged"
    );
    assert!(!logs.contains(&phone), "a payload value reached the logs");
    app.stop().await;
    drop(nats);
}
