//! Producers scoped per service: grants enforced over HTTP and NATS; what is
//! refused over NATS is dead-lettered with the reason, never dropped.

use crate::helpers::*;
use axum::http::StatusCode;
use futures_util::StreamExt;
use hookwarden_server::outbound::producers::ProducerGrant;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

fn grants() -> Vec<ProducerGrant> {
    vec![
        ProducerGrant {
            name: "billing".into(),
            event_types: vec!["invoice.*".into()],
            accounts: vec![],
        },
        ProducerGrant {
            name: "crm".into(),
            event_types: vec!["user.created".into()],
            accounts: vec!["acct_1".into()],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_producers_publish_only_what_they_are_granted() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(|raw| {
                raw.set("producers", grants());
            })),
            ..Default::default()
        },
    )
    .await;
    let token = |subject: &str| {
        let mut c = app.claims(None, "events:publish");
        c.sub = subject.into();
        app.sign(&c)
    };
    let publish =
        |account: &str, ty: &str| json!({"accountId": account, "eventType": ty, "payload": {}});
    for (who, account, ty, expected) in [
        ("billing", "acct_9", "invoice.paid", StatusCode::ACCEPTED),
        // `invoice.*` as webhook subscriptions read it: any depth, not `invoicex.`.
        (
            "billing",
            "acct_9",
            "invoice.refund.created",
            StatusCode::ACCEPTED,
        ),
        ("billing", "acct_9", "invoicex.paid", StatusCode::FORBIDDEN),
        ("billing", "acct_9", "invoice", StatusCode::FORBIDDEN),
        ("billing", "acct_9", "user.created", StatusCode::FORBIDDEN),
        ("crm", "acct_1", "user.created", StatusCode::ACCEPTED),
        ("crm", "acct_2", "user.created", StatusCode::FORBIDDEN),
        ("stranger", "acct_1", "invoice.paid", StatusCode::FORBIDDEN),
    ] {
        let (status, body, _) = app
            .post("/v1/events", &token(who), publish(account, ty))
            .await;
        assert_eq!(status, expected, "{who} {account} {ty}: {body}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "FORBIDDEN");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_producers_are_named_by_subject_and_checked_against_their_grant() {
    let nats = NatsTest::new().await;
    let (client, prefix) = (nats.client.clone(), nats.prefix.clone());
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            nats: nats.options(),
            customize: Some(Box::new(|raw| {
                raw.set("producers", grants());
            })),
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    app.create_webhook("acct_1", &rx.url("/h"), &["*"]).await;
    let mut dead = client
        .subscribe(format!("{prefix}.dispatch.deadletter"))
        .await
        .expect("subscribe");
    let js = async_nats::jetstream::new(client.clone());
    let send = |subject: String, ty: &str, id: &str| {
        let msg = json!({"accountId": "acct_1", "eventType": ty, "payload": {}, "id": id});
        let js = js.clone();
        async move {
            js.publish(subject, msg.to_string().into())
                .await
                .expect("publish")
                .await
                .expect("stored")
        }
    };
    send(
        format!("{prefix}.dispatch.billing"),
        "invoice.paid",
        "evt_g_ok",
    )
    .await;
    send(
        format!("{prefix}.dispatch.billing"),
        "user.created",
        "evt_g_denied",
    )
    .await;
    send(
        format!("{prefix}.dispatch"),
        "invoice.paid",
        "evt_g_unscoped",
    )
    .await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(15), dead.next())
            .await
            .expect("dead letter")
            .expect("message");
        let notice: Value = serde_json::from_slice(&msg.payload).expect("json");
        reasons.push(format!("{} {}", notice["subject"], notice["reason"]));
    }
    reasons.sort();
    assert!(
        reasons[0].ends_with("dispatch\" \"producer \\\"nats\\\" has no grant\""),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("dispatch.billing") && reasons[1].contains("may not publish"),
        "{reasons:?}"
    );
    app.deliver_until(Duration::from_secs(15), || rx.count() == 1)
        .await;
    // The receiver gets hookwarden's own event id, not the producer's.
    let webhook_id = rx.received()[0].headers["webhook-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(webhook_id.starts_with("evt_") && webhook_id != "evt_g_ok");
    app.stop().await;
}

on_both!(publish_ids_are_scoped_to_producer_and_account);

/// A publish id is unique per (producer, account): another producer cannot
/// pre-claim it, nor learn from 409 against 202 whether it is taken.
async fn publish_ids_are_scoped_to_producer_and_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (rx1, rx2) = (Receiver::start().await, Receiver::start().await);
    let (wh1, _) = app.create_webhook("acct_1", &rx1.url("/h"), &["*"]).await;
    app.create_webhook("acct_2", &rx2.url("/h"), &["*"]).await;
    let token = |subject: &str| {
        let mut c = app.claims(None, "events:publish");
        c.sub = subject.into();
        app.sign(&c)
    };
    let (a, b) = (token("producer_a"), token("producer_b"));
    let event = |account: &str, payload: Value| json!({"accountId": account, "eventType": "invoice.paid", "payload": payload, "id": "evt_1"});
    let publish = |token: String, body: Value| {
        let app = &app;
        async move {
            let (status, body, _) = app.post("/v1/events", &token, body).await;
            (status, body)
        }
    };
    let (status, a1) = publish(a.clone(), event("acct_1", json!({"from": "a"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a1}");
    // Producer B, same id, same account: its own event, not 409, not A's.
    let (status, b1) = publish(b.clone(), event("acct_1", json!({"from": "b"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b1}");
    assert_eq!(b1["duplicate"], false);
    assert_ne!(b1["eventId"], a1["eventId"]);
    // B's id with A's very content: still B's own event.
    let (status, b_same) = publish(b.clone(), event("acct_2", json!({"from": "a"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b_same}");
    assert_eq!(b_same["duplicate"], false);
    // A, same id, another account: separate.
    let (status, a2) = publish(a.clone(), event("acct_2", json!({"from": "a"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{a2}");
    assert_eq!(a2["duplicate"], false);
    assert_ne!(a2["eventId"], a1["eventId"]);
    assert_ne!(a2["eventId"], b_same["eventId"]);
    // A again for account 1: the same event; altered: 409 as before.
    let (status, again) = publish(a.clone(), event("acct_1", json!({"from": "a"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["eventId"], a1["eventId"]);
    let (status, err) = publish(a.clone(), event("acct_1", json!({"altered": true}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");

    // Two distinct events reach account 1's receiver, each under its own
    // webhook-id; account 2's receiver gets its two.
    app.deliver_until(Duration::from_secs(15), || {
        rx1.count() == 2 && rx2.count() == 2
    })
    .await;
    app.clock.advance(Duration::from_millis(200));
    let _ = app.dispatcher.run_once().await;
    let ids = |rx: &Receiver| {
        let mut ids: Vec<String> = rx
            .received()
            .iter()
            .map(|r| r.headers["webhook-id"].to_str().expect("ascii").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut want1 = vec![
        a1["eventId"].as_str().expect("id").to_owned(),
        b1["eventId"].as_str().expect("id").to_owned(),
    ];
    want1.sort();
    assert_eq!(ids(&rx1), want1);
    let mut want2 = vec![
        a2["eventId"].as_str().expect("id").to_owned(),
        b_same["eventId"].as_str().expect("id").to_owned(),
    ];
    want2.sort();
    assert_eq!(ids(&rx2), want2);
    let bodies: Vec<Value> = rx1
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .collect();
    assert!(bodies.iter().any(|b| b["data"] == json!({"from": "a"})));
    assert!(bodies.iter().any(|b| b["data"] == json!({"from": "b"})));
    assert_eq!(app.deliveries("acct_1", &wh1).await.len(), 2);
    app.stop().await;
}
