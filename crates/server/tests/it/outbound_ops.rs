//! The outbound side of the operator API (#18): deliveries searched across
//! accounts, an event's fan-out, retry of one try and paced bulk retry of dead
//! letters, endpoint disable/enable, the audit chain verified over HTTP; and
//! the tenant's own event page and `eventId` filter.

use crate::helpers::*;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both!(
    operator_searches_deliveries_across_accounts_and_reads_fan_out,
    bulk_retry_requeues_each_dead_letter_once_paced,
    operator_disables_and_enables_an_endpoint,
    tenants_read_their_own_events_and_filter_deliveries_by_event,
    the_audit_chain_is_verified_over_the_api,
);

const WAIT: Duration = Duration::from_secs(20);

fn why() -> Value {
    json!({"requestedBy": "alice", "reason": "endpoint fixed after the outage"})
}

/// Publishes to an endpoint that always fails and steps the worker until
/// every try of the given events is dead (three tries each in tests).
async fn dead_letters(
    app: &TestApp,
    account: &str,
    rx: &Receiver,
    events: usize,
) -> (String, Vec<String>) {
    let (webhook, _) = app
        .create_webhook(account, &rx.url(&format!("/{account}")), &["*"])
        .await;
    let mut ids = Vec::new();
    for n in 0..events {
        ids.push(app.publish(account, "invoice.paid", json!({"n": n})).await);
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let items = app.deliveries(account, &webhook).await;
        if items.iter().filter(|i| i["status"] == "dead").count() == events {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters not reached: {items:?}"
        );
        if app.dispatcher.run_once().await.expect("step") == 0
            && app.advance_to_next_delivery(WAIT).await.is_zero()
        {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    (webhook, ids)
}

async fn op_get(app: &TestApp, path: &str) -> Value {
    let (status, body, _) = app.operator(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

fn items(body: &Value) -> Vec<Value> {
    body["items"].as_array().expect("items").clone()
}

/// Every action in the audit trail, oldest first.
async fn audit_actions(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/api/v1/audit-entries?limit=100".to_owned();
    loop {
        let page = op_get(app, &path).await;
        all.extend(items(&page));
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit-entries?limit=100&cursor={c}"),
            None => return all,
        }
    }
}

async fn operator_searches_deliveries_across_accounts_and_reads_fan_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(500));
    let (wa, events_a) = dead_letters(&app, "acct_a", &rx, 2).await;
    let (wb, events_b) = dead_letters(&app, "acct_b", &rx, 1).await;

    // Across accounts, then narrowed by each filter.
    let all = items(&op_get(&app, "/api/v1/outbound/deliveries?limit=100").await);
    assert_eq!(all.len(), 9, "three tries of three events");
    let dead = items(&op_get(&app, "/api/v1/outbound/deliveries?status=dead").await);
    assert_eq!(dead.len(), 3);
    let b = items(
        &op_get(
            &app,
            "/api/v1/outbound/deliveries?accountId=acct_b&status=dead",
        )
        .await,
    );
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["webhookId"], wb.as_str());
    assert_eq!(b[0]["eventId"], events_b[0].as_str());
    let of_event = items(
        &op_get(
            &app,
            &format!("/api/v1/outbound/deliveries?eventId={}", events_a[0]),
        )
        .await,
    );
    assert_eq!(of_event.len(), 3);
    assert!(of_event.iter().all(|t| t["webhookId"] == wa.as_str()));
    let by_hook = items(
        &op_get(
            &app,
            &format!("/api/v1/outbound/deliveries?webhookId={wa}&limit=100"),
        )
        .await,
    );
    assert_eq!(by_hook.len(), 6);
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = items(
        &op_get(
            &app,
            &format!("/api/v1/outbound/deliveries?from={}", urlencode(&future)),
        )
        .await,
    );
    assert!(later.is_empty());
    let until_now = items(
        &op_get(
            &app,
            &format!(
                "/api/v1/outbound/deliveries?to={}&limit=100",
                urlencode(&future)
            ),
        )
        .await,
    );
    assert_eq!(until_now.len(), 9);

    // Paging: two at a time, newest first, no overlap.
    let first = op_get(&app, "/api/v1/outbound/deliveries?limit=2").await;
    let cursor = first["nextCursor"].as_str().expect("cursor");
    let second = op_get(
        &app,
        &format!("/api/v1/outbound/deliveries?limit=2&cursor={cursor}"),
    )
    .await;
    assert!(items(&second)[0]["id"].as_str() < items(&first)[1]["id"].as_str());

    // Bad input is a documented 400; no key is a 401.
    for bad in [
        "/api/v1/outbound/deliveries?status=lost",
        "/api/v1/outbound/deliveries?from=yesterday",
        "/api/v1/outbound/deliveries?cursor=att_nope",
        "/api/v1/outbound/deliveries?limit=0",
        "/api/v1/outbound/deliveries?color=red",
    ] {
        let (status, body, _) = app.operator(Method::GET, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    }
    let (status, _, _) = app.get("/api/v1/outbound/deliveries", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // One try, by id, whatever its account.
    let one = op_get(
        &app,
        &format!(
            "/api/v1/outbound/deliveries/{}",
            b[0]["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(one["accountId"], "acct_b");
    assert_eq!(one["httpStatus"], 500);
    let (status, body, _) = app
        .operator(
            Method::GET,
            &format!("/api/v1/outbound/deliveries/att_{}", "0".repeat(32)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Events across accounts, and one event's fan-out.
    let events = items(&op_get(&app, "/api/v1/outbound/events").await);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["id"], events_b[0].as_str(), "newest first");
    let a_events = items(
        &op_get(
            &app,
            "/api/v1/outbound/events?accountId=acct_a&eventType=invoice.paid",
        )
        .await,
    );
    assert_eq!(a_events.len(), 2);
    assert!(
        items(&op_get(&app, "/api/v1/outbound/events?eventType=user.created").await).is_empty()
    );
    let detail = op_get(&app, &format!("/api/v1/outbound/events/{}", events_a[1])).await;
    assert_eq!(detail["accountId"], "acct_a");
    assert!(detail["producer"].is_string());
    assert_eq!(detail["payload"], json!({"n": 1}));
    let fan_out = detail["fanOut"].as_array().expect("fanOut");
    assert_eq!(fan_out.len(), 1);
    assert_eq!(fan_out[0]["webhookId"], wa.as_str());
    assert_eq!(fan_out[0]["url"], rx.url("/acct_a").as_str());
    let statuses: Vec<&str> = fan_out[0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["dead", "failed", "failed"]);
    let (status, _, _) = app
        .operator(
            Method::GET,
            &format!("/api/v1/outbound/events/evt_{}", "0".repeat(32)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The operator's single retry: audited with who and why.
    rx.set_default(Reply::Status(204));
    let dead_id = b[0]["id"].as_str().expect("id");
    let (status, body, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/deliveries/{dead_id}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a reason is required: {body}"
    );
    let (status, retry, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/deliveries/{dead_id}/retry"),
            Some(why()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry["status"], "pending");
    assert_eq!(retry["attempt"], 4);
    let before = rx.count();
    app.deliver_until(WAIT, || rx.count() == before + 1).await;
    let audit = audit_actions(&app).await;
    let entry = audit
        .iter()
        .find(|e| e["action"] == "delivery.retry_requested")
        .expect("audited");
    assert_eq!(entry["details"]["requestedBy"], "alice");
    assert_eq!(entry["details"]["accountId"], "acct_b");
}

async fn bulk_retry_requeues_each_dead_letter_once_paced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(500));
    let (wa, _) = dead_letters(&app, "acct_a", &rx, 3).await;
    dead_letters(&app, "acct_b", &rx, 1).await;
    rx.set_default(Reply::Status(204));
    let failed_tries = rx.count();

    // A filter and a reason are required; bounds are checked.
    for (body, why_bad) in [
        (json!({"requestedBy": "alice", "reason": "x"}), "no filter"),
        (json!({"accountId": "acct_a"}), "no reason"),
        (
            json!({"requestedBy": "alice", "reason": "x", "accountId": "acct_a", "perSecond": 0}),
            "perSecond",
        ),
        (
            json!({"requestedBy": "alice", "reason": "x", "accountId": "acct_a", "limit": 5000}),
            "limit",
        ),
        (
            json!({"requestedBy": "alice", "reason": "x", "accountId": "acct_a", "status": "failed"}),
            "unknown field",
        ),
    ] {
        let (status, body, _) = app
            .operator(
                Method::POST,
                "/api/v1/outbound/deliveries/retry",
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why_bad}: {body}");
    }

    // Two per call at two per second: a second apart, more to come.
    let request = json!({"requestedBy": "alice", "reason": "outage over", "webhookId": wa, "perSecond": 2, "limit": 2});
    let (status, first, _) = app
        .operator(
            Method::POST,
            "/api/v1/outbound/deliveries/retry",
            Some(request.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(
        (
            first["matched"].as_u64(),
            first["queued"].as_u64(),
            first["more"].as_bool()
        ),
        (Some(2), Some(2), Some(true))
    );
    let time =
        |v: &Value| DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("rfc3339");
    let gap = time(&first["lastDueAt"]) - time(&first["firstDueAt"]);
    assert_eq!(gap.num_milliseconds(), 500, "paced at perSecond");
    // The next call takes the rest; those re-queued are not selected again.
    let (_, second, _) = app
        .operator(
            Method::POST,
            "/api/v1/outbound/deliveries/retry",
            Some(request.clone()),
        )
        .await;
    assert_eq!(
        (
            second["matched"].as_u64(),
            second["queued"].as_u64(),
            second["more"].as_bool()
        ),
        (Some(1), Some(1), Some(false))
    );
    let (_, third, _) = app
        .operator(
            Method::POST,
            "/api/v1/outbound/deliveries/retry",
            Some(request),
        )
        .await;
    assert_eq!(third["matched"], 0, "{third}");
    // Each dead letter of that endpoint delivered exactly once; the other account's untouched.
    app.deliver_until(WAIT, || rx.count() == failed_tries + 3)
        .await;
    app.clock.advance(Duration::from_millis(300));
    app.dispatcher.run_once().await.expect("step");
    assert_eq!(rx.count(), failed_tries + 3);
    let b_dead = items(
        &op_get(
            &app,
            "/api/v1/outbound/deliveries?accountId=acct_b&status=dead",
        )
        .await,
    );
    assert_eq!(b_dead.len(), 1);
    let succeeded = items(
        &op_get(
            &app,
            &format!("/api/v1/outbound/deliveries?webhookId={wa}&status=succeeded"),
        )
        .await,
    );
    assert_eq!(succeeded.len(), 3);

    // A deleted endpoint's dead letters are skipped, and said so.
    let (status, _, _) = app
        .delete(
            &format!(
                "/v1/webhooks/{}",
                b_dead[0]["webhookId"].as_str().expect("id")
            ),
            &app.tenant("acct_b"),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, gone, _) = app
        .operator(
            Method::POST,
            "/api/v1/outbound/deliveries/retry",
            Some(json!({"requestedBy": "alice", "reason": "x", "accountId": "acct_b"})),
        )
        .await;
    assert_eq!(
        (
            gone["matched"].as_u64(),
            gone["queued"].as_u64(),
            gone["skipped"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{gone}"
    );

    let audit = audit_actions(&app).await;
    let bulk: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "delivery.bulk_retry_requested")
        .collect();
    assert_eq!(bulk.len(), 4);
    assert_eq!(bulk[0]["details"]["queued"], 2);
    assert_eq!(bulk[0]["details"]["filter"]["webhookId"], wa.as_str());
}

async fn operator_disables_and_enables_an_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let (id, _) = app
        .create_webhook(
            "acct_a",
            &format!("{}?token=s3cret", rx.url("/hook")),
            &["*"],
        )
        .await;
    // The operator sees the endpoint without its query (the customer's token).
    let seen = op_get(&app, &format!("/api/v1/outbound/webhooks/{id}")).await;
    assert_eq!(seen["url"], format!("{}?…", rx.url("/hook")).as_str());
    assert!(!seen.to_string().contains("s3cret"));
    app.publish("acct_a", "t", json!({"n": 1})).await;

    let (status, body, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/webhooks/{id}/disable"),
            Some(json!({"requestedBy": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, view, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/webhooks/{id}/disable"),
            Some(json!({"requestedBy": "bob", "reason": "customer asked"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["disabled"], true);
    assert_eq!(view["accountId"], "acct_a");
    assert!(view["disabledReason"]
        .as_str()
        .expect("reason")
        .contains("customer asked"));
    assert!(view.get("secret").is_none());
    // The tenant sees it; no try is made; the queued one waits.
    let (_, tenant_view, _) = app
        .get(&format!("/v1/webhooks/{id}"), &app.tenant("acct_a"))
        .await;
    assert_eq!(tenant_view["disabled"], true);
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
    assert_eq!(rx.count(), 0);
    // Listed with its account; one account's list holds only its own.
    let listed = items(&op_get(&app, "/api/v1/outbound/webhooks?accountId=acct_a").await);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["disabled"], true);
    assert!(items(&op_get(&app, "/api/v1/outbound/webhooks?accountId=acct_z").await).is_empty());

    // The tenant's updates leave an operator's disable in place, and the
    // tenant cannot lift it.
    let tenant = app.tenant("acct_a");
    let path = format!("/v1/webhooks/{id}");
    let patch = |body: Value| app.call(Method::PATCH, &path, Some(&tenant), Some(body));
    let (status, kept, _) = patch(json!({"description": "renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(
        kept["disabled"], true,
        "an update does not undo the operator's disable"
    );
    let (status, still, _) = patch(json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert!(
        still["disabledReason"]
            .as_str()
            .expect("reason")
            .contains("customer asked"),
        "the tenant's own disable does not overwrite the operator's: {still}"
    );
    let (status, refused, _) = patch(json!({"disabled": false})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .expect("message")
        .contains("operator"));

    let (status, view, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/webhooks/{id}/enable"),
            Some(why()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["disabled"], false);
    assert!(view["disabledReason"].is_null());
    app.deliver_until(WAIT, || rx.count() == 1).await;

    // The tenant disables its own endpoint and enables it again.
    let (status, off, _) = patch(json!({"disabled": true})).await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(
        (off["disabled"].as_bool(), off["disabledReason"].as_str()),
        (Some(true), Some("disabled by the tenant"))
    );
    app.publish("acct_a", "t", json!({"n": 2})).await;
    assert_eq!(
        app.dispatcher.run_once().await.expect("step"),
        0,
        "nothing queued for a disabled endpoint"
    );
    let (status, on, _) = patch(json!({"disabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(on["disabled"], false);

    for action in ["disable", "enable"] {
        let (status, _, _) = app
            .operator(
                Method::POST,
                &format!("/api/v1/outbound/webhooks/wh_{}/{action}", "0".repeat(32)),
                Some(why()),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let audit = audit_actions(&app).await;
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e["target"] == format!("webhook:{id}").as_str())
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    let operator_actions: Vec<&str> = actions
        .iter()
        .copied()
        .filter(|a| *a != "webhook.updated")
        .collect();
    assert_eq!(
        operator_actions,
        ["webhook.created", "webhook.disabled", "webhook.enabled"],
        "{actions:?}"
    );
}

async fn tenants_read_their_own_events_and_filter_deliveries_by_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let (id, _) = app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    let first = app.publish("acct_a", "invoice.paid", json!({"n": 1})).await;
    let second = app.publish("acct_a", "invoice.paid", json!({"n": 2})).await;
    app.deliver_until(WAIT, || rx.count() == 2).await;

    let (status, event, _) = app
        .get(&format!("/v1/events/{first}"), &app.tenant("acct_a"))
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["payload"], json!({"n": 1}));
    assert_eq!(event["eventType"], "invoice.paid");
    assert!(
        event.get("producer").is_none(),
        "internal producers stay internal"
    );
    assert_eq!(event["fanOut"][0]["webhookId"], id.as_str());
    assert_eq!(event["fanOut"][0]["attempts"][0]["status"], "succeeded");
    // Another account's event is not found, exactly as a missing one.
    let (status, other, _) = app
        .get(&format!("/v1/events/{first}"), &app.tenant("acct_b"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
    let (status, missing, _) = app
        .get(
            &format!("/v1/events/evt_{}", "0".repeat(32)),
            &app.tenant("acct_b"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other["error"]["message"], missing["error"]["message"]);
    // A token without webhooks:read may not read events.
    let publisher = app.sign(&app.claims(Some("acct_a"), "webhooks:write"));
    let (status, _, _) = app.get(&format!("/v1/events/{first}"), &publisher).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, page, _) = app
        .get(
            &format!("/v1/webhooks/{id}/deliveries?eventId={second}"),
            &app.tenant("acct_a"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let tries = items(&page);
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0]["eventId"], second.as_str());
}

async fn the_audit_chain_is_verified_over_the_api(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_webhook("acct_a", "https://example.com/hook", &["*"])
        .await;
    let report = op_get(&app, "/api/v1/audit-chain").await;
    assert_eq!(report["valid"], true, "{report}");
    let head = report["head"].as_str().expect("head").to_owned();
    assert!(report["entries"].as_u64().expect("entries") >= 1);
    let held = op_get(
        &app,
        &format!("/api/v1/audit-chain?head={}", urlencode(&head)),
    )
    .await;
    assert_eq!(held["valid"], true, "{held}");
    // A head the chain never held: invalid, with the problem named.
    let (seq, hash) = head.split_once(':').expect("SEQ:HASH");
    let forged = format!("{}:{hash}", seq.parse::<i64>().expect("seq") + 1000);
    let verdict = op_get(
        &app,
        &format!("/api/v1/audit-chain?head={}", urlencode(&forged)),
    )
    .await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert!(verdict["problem"]
        .as_str()
        .expect("problem")
        .contains("head"));
    let (status, body, _) = app
        .operator(Method::GET, "/api/v1/audit-chain?head=nonsense", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = app.get("/api/v1/audit-chain", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
