//! JSON Schemas per event type: registered by the producers that own the
//! type, enforced at publish (HTTP and NATS) and again before delivery.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_server::producers::ProducerGrant;
use hookwarden_store::on_both;
use serde_json::json;
use std::time::Duration;

on_both!(schemas_are_enforced_at_publish_and_before_delivery);

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
