//! JSON Schemas per event type: written only by their owners (the operator
//! API, or a producer granted the type for every account), every change
//! audited, enforced at publish (HTTP and NATS) and again before delivery,
//! where a mismatch is a failed try retried on the schedule.

use crate::helpers::*;
use axum::http::StatusCode;
use futures_util::StreamExt;
use hookwarden_server::outbound::producers::ProducerGrant;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    schemas_are_enforced_at_publish_and_before_delivery,
    schema_mismatches_never_echo_payload_values,
    schemas_are_written_only_by_their_owners_and_every_change_is_audited,
    without_grants_only_the_operator_writes_schemas,
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
            retry_schedule: "1s,1s,1s",
            customize: Some(Box::new(move |raw| {
                raw.set("producers", grants);
            })),
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
    // serde_json's raw-value key would make the schema the JSON text its
    // string holds (here one accepting anything): refused, nothing stored.
    let (status, err, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": {"$serde_json::private::RawValue": "true"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("must not hold the key $serde_json::private::RawValue")),
        "{err}"
    );
    let (status, _, _) = app.get("/v1/event-types/invoice.paid", &billing).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no schema was stored");
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
    // A failed try with the reason, and the next one scheduled: a schema
    // changed by mistake (or by someone hostile) dead-letters nothing at once.
    let items = app.deliveries("acct_a", &id).await;
    assert!(
        items.iter().all(|i| i["status"] != "dead"),
        "not dead at once: {items:?}"
    );
    let failed = items
        .iter()
        .find(|i| i["status"] == "failed")
        .expect("a failed try");
    assert!(failed["error"].as_str().is_some(), "{failed}");
    assert!(
        items.iter().any(|i| i["status"] == "pending"),
        "retried on the schedule: {items:?}"
    );
    assert_eq!(rx.count(), 1, "only the schemaless event was delivered");
    // Once the schema is put right, the retry delivers the event.
    let (status, body, _) = app
        .operator(
            reqwest::Method::PUT,
            "/api/v1/event-types/invoice.paid",
            Some(json!({"schema": schema})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.deliver_until(Duration::from_secs(10), || rx.count() == 2)
        .await;
}

fn grant(name: &str, types: &[&str], accounts: &[&str]) -> ProducerGrant {
    ProducerGrant {
        name: name.into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        accounts: accounts.iter().map(|a| a.to_string()).collect(),
    }
}

fn producer_token(app: &TestApp, subject: &str, account: Option<&str>) -> String {
    let mut c = app.claims(account, "events:publish");
    c.sub = subject.into();
    app.sign(&c)
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String, Value)> {
    let (status, audit, _) = app
        .operator(reqwest::Method::GET, "/api/v1/audit-entries", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("event_type."))
        })
        .map(|e| {
            (
                e["action"].as_str().expect("action").to_owned(),
                e["actor"].as_str().expect("actor").to_owned(),
                e["details"].clone(),
            )
        })
        .collect()
}

async fn schemas_are_written_only_by_their_owners_and_every_change_is_audited(backend: Backend) {
    let grants = vec![
        grant("billing", &["invoice.*"], &[]),
        grant("crm", &["invoice.*"], &["acct_1"]),
        grant("platform", &["*"], &["*"]),
    ];
    let app = TestApp::with(
        backend,
        Options {
            customize: Some(Box::new(move |raw| {
                raw.set("producers", grants);
            })),
            ..Default::default()
        },
    )
    .await;
    let hostile = json!({"schema": {"type": "object", "required": ["never-sent"]}});
    // Granted the type for one account only: a schema would reach every
    // account's events, so it is refused.
    let crm = producer_token(&app, "crm", None);
    let (status, err, _) = app
        .put("/v1/event-types/invoice.paid", &crm, hostile.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["error"]["code"], "FORBIDDEN");
    let (status, _, _) = app.delete("/v1/event-types/invoice.paid", &crm).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The owner, with a token bound to one account: refused as well.
    let bound = producer_token(&app, "billing", Some("acct_1"));
    let (status, _, _) = app
        .put("/v1/event-types/invoice.paid", &bound, hostile.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A tenant token, and the operator route without the operator key.
    let (status, _, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &app.tenant("acct_1"),
            hostile.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = app
        .put("/api/v1/event-types/invoice.paid", &crm, hostile.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = app
        .get("/v1/event-types/invoice.paid", &app.tenant("acct_1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
    assert!(audit_actions(&app).await.is_empty());

    // The owners: the operator, and producers granted the type for all accounts.
    let schema = json!({"type": "object", "required": ["invoiceId"]});
    let (status, body, _) = app
        .operator(
            reqwest::Method::PUT,
            "/api/v1/event-types/invoice.paid",
            Some(json!({"schema": schema, "description": "paid"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["schema"], schema);
    let billing = producer_token(&app, "billing", None);
    let (status, body, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &billing,
            json!({"schema": {"type": "object"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let platform = producer_token(&app, "platform", None);
    let (status, _, _) = app
        .put(
            "/v1/event-types/user.created",
            &platform,
            json!({"schema": {"type": "object"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app.delete("/v1/event-types/invoice.paid", &billing).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = app
        .operator(
            reqwest::Method::DELETE,
            "/api/v1/event-types/user.created",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = app
        .operator(
            reqwest::Method::DELETE,
            "/api/v1/event-types/user.created",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut audited = audit_actions(&app).await;
    audited.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let who: Vec<(&str, &str)> = audited
        .iter()
        .map(|(action, actor, _)| (action.as_str(), actor.as_str()))
        .collect();
    assert_eq!(who.len(), 5, "{audited:?}");
    assert!(who.contains(&("event_type.schema_deleted", "producer:billing")));
    assert!(who
        .iter()
        .any(|(action, actor)| *action == "event_type.schema_deleted"
            && actor.starts_with("operator:")));
    assert!(who.iter().any(
        |(action, actor)| *action == "event_type.schema_set" && actor.starts_with("operator:")
    ));
    assert!(who.contains(&("event_type.schema_set", "producer:billing")));
    assert!(who.contains(&("event_type.schema_set", "producer:platform")));
    for (_, _, details) in &audited {
        let text = details.to_string();
        assert!(!text.contains("invoiceId"), "no schema body: {text}");
    }
    let billing_set = audited
        .iter()
        .find(|(a, who, _)| a == "event_type.schema_set" && who == "producer:billing")
        .expect("billing's change");
    assert_eq!(
        billing_set.2["schemaSha256"].as_str().map(str::len),
        Some(64),
        "{billing_set:?}"
    );
    assert!(billing_set.2["previousSchemaSha256"].is_string());
    app.stop().await;
}

async fn without_grants_only_the_operator_writes_schemas(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"schema": {"type": "object", "required": ["x"]}});
    let (status, err, _) = app
        .put(
            "/v1/event-types/invoice.paid",
            &app.producer(),
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    let (status, _, _) = app
        .delete("/v1/event-types/invoice.paid", &app.producer())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, stored, _) = app
        .operator(
            reqwest::Method::PUT,
            "/api/v1/event-types/invoice.paid",
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    // And it applies to every producer's publishes.
    let (status, _, _) = app
        .post(
            "/v1/events",
            &app.producer(),
            json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let audited = audit_actions(&app).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, "event_type.schema_set");
    assert!(audited[0].1.starts_with("operator:"));
    app.stop().await;
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
            customize: Some(Box::new(move |raw| {
                raw.set("producers", grants);
            })),
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
