//! The ingress storage contract, on SQLite and PostgreSQL alike.

use chrono::{Duration, Utc};
use hookwarden_core::crypto::Sealed;
use hookwarden_core::ids;
use hookwarden_store::ingress::*;
use hookwarden_store::model::*;
use hookwarden_store::on_both;
use hookwarden_store::testing::{Backend, TestDb};
use hookwarden_store::Store;
use serde_json::json;
use std::sync::Arc;

on_both!(
    integrations_crud,
    concurrent_identical_deliveries_make_one_event,
    concurrent_distinct_deliveries_are_all_stored,
    replays_mixed_into_new_deliveries_are_answered_with_the_stored_event,
    jobs_retry_and_replay,
    listing_filters_sorts_and_pages,
    audit_chain_appends_and_history_is_append_only,
);

async fn store(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    hookwarden_store::testing::migrated_store(backend).await
}

fn sealed(tag: &str) -> Sealed {
    Sealed {
        key_id: "mk_test".into(),
        ciphertext: tag.as_bytes().to_vec(),
    }
}

fn integration(name: &str) -> Integration {
    let now = Utc::now();
    Integration {
        name: name.into(),
        scheme: "hmac-sha256".into(),
        signature_header: Some("x-acme-signature".into()),
        encoding: Some("hex".into()),
        prefix: None,
        tolerance_seconds: 300,
        target_url: "http://internal.svc/hooks".into(),
        allowed_cidrs: vec![],
        rate_limit_per_minute: Some(100),
        idempotency_header: None,
        secrets: sealed("s"),
        forwarding_secret: sealed("f"),
        created_at: now,
        updated_at: now,
        forward_raw_body: false,
    }
}

fn inbound(provider: &str, key: &str) -> NewInbound {
    NewInbound {
        id: ids::new_id("ie"),
        provider: provider.into(),
        dedup_key: key.into(),
        delivery_id: Some(key.into()),
        body_sha256: "00".into(),
        raw_body: br#"{"a":1}"#.to_vec(),
        headers: json!({"content-type": "application/json"}),
        source_ip: Some("203.0.113.9".into()),
        correlation_id: "corr-1".into(),
        received_at: Utc::now(),
        job_id: ids::new_id("job"),
    }
}

async fn raw(backend: Backend, url: &str, sql: &str) -> Result<u64, String> {
    hookwarden_store::testing::execute_raw(backend, url, sql).await
}

async fn integrations_crud(backend: Backend) {
    let (_db, s) = store(backend).await;
    // Every change moves the generation the replicas' caches poll.
    let mut generation = s.integration_generation().await.expect("generation");
    let mut moved = |g: i64, what: &str| {
        assert!(g > generation, "{what} moves the generation");
        generation = g;
    };
    assert!(s
        .create_integration(&integration("acme"))
        .await
        .expect("create"));
    moved(s.integration_generation().await.expect("g"), "create");
    assert!(
        !s.create_integration(&integration("acme"))
            .await
            .expect("again"),
        "names are unique"
    );
    let mut got = s
        .get_integration("acme")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.rate_limit_per_minute, Some(100));
    got.target_url = "http://other.svc/".into();
    got.forward_raw_body = true;
    assert!(s.update_integration(&got).await.expect("update"));
    moved(s.integration_generation().await.expect("g"), "update");
    assert!(
        s.get_integration("acme")
            .await
            .expect("get")
            .expect("found")
            .forward_raw_body
    );
    assert_eq!(
        s.get_integration("acme")
            .await
            .expect("get")
            .expect("found")
            .target_url,
        "http://other.svc/"
    );
    assert_eq!(s.list_integrations().await.expect("list").len(), 1);
    assert!(s.delete_integration("acme").await.expect("delete"));
    moved(s.integration_generation().await.expect("g"), "delete");
    assert!(s.get_integration("acme").await.expect("get").is_none());
}

async fn concurrent_identical_deliveries_make_one_event(backend: Backend) {
    let (_db, s) = store(backend).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.record_inbound(&inbound("acme", "delivery-1")).await
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        match t.await.expect("join").expect("record") {
            RecordOutcome::Created => created += 1,
            RecordOutcome::Duplicate { event_id } => {
                ids.insert(event_id);
            }
        }
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "every duplicate names the same event");
    // The same key from another provider is another event.
    assert_eq!(
        s.record_inbound(&inbound("globex", "delivery-1"))
            .await
            .expect("other"),
        RecordOutcome::Created
    );
    let status = s.processing_status(Utc::now()).await.expect("status");
    assert_eq!(status.by_status, vec![("pending".to_owned(), 2)]);
}

async fn jobs_retry_and_replay(backend: Backend) {
    let (_db, s) = store(backend).await;
    let e = inbound("acme", "d1");
    s.record_inbound(&e).await.expect("record");
    s.record_inbound(&inbound("globex", "d2"))
        .await
        .expect("record");
    let now = Utc::now();
    let excluded = ["globex".to_owned()];
    let claim = Claim {
        worker_id: "w1",
        now,
        lease_until: now + Duration::seconds(30),
        limit: 10,
        exclude_webhooks: &excluded,
    };
    let jobs = s.claim_jobs(&claim).await.expect("claim");
    assert_eq!(jobs.len(), 1, "the excluded provider's job is left");
    assert_eq!(jobs[0].event_id, e.id);
    assert!(
        s.claim_jobs(&claim).await.expect("claim again").is_empty(),
        "leased"
    );
    let result = AttemptResult {
        attempt_id: jobs[0].id.clone(),
        worker_id: "w1".into(),
        status: AttemptStatus::Failed,
        http_status: Some(503),
        duration_ms: 4,
        response_preview: None,
        error: None,
        completed_at: now,
        next: Some((ids::new_id("job"), now)),
    };
    assert!(!s
        .complete_job(&AttemptResult {
            worker_id: "w2".into(),
            ..result.clone()
        })
        .await
        .expect("other worker"));
    assert!(s.complete_job(&result).await.expect("complete"));
    let page = s
        .list_jobs(Some(&e.id), None, None, 10)
        .await
        .expect("jobs");
    assert_eq!(page.items.len(), 2);
    assert_eq!(
        (page.items[0].attempt, page.items[0].trigger.as_str()),
        (2, "retry")
    );
    let got = s.get_inbound(&e.id).await.expect("get").expect("found");
    assert_eq!(got.status, Some(AttemptStatus::Pending));
    assert_eq!(got.raw_body, e.raw_body);
    let replay = NewReplay {
        id: ids::new_id("rpl"),
        event_id: e.id.clone(),
        requested_by: "ops@example.com".into(),
        reason: "target was down".into(),
        request_id: "req-1".into(),
        job_id: ids::new_id("job"),
        created_at: now,
    };
    let job = s
        .replay(&replay)
        .await
        .expect("replay")
        .expect("event exists");
    assert_eq!((job.attempt, job.trigger.as_str()), (3, "replay"));
    let missing = NewReplay {
        event_id: "ie_missing".into(),
        id: ids::new_id("rpl"),
        job_id: ids::new_id("job"),
        ..replay
    };
    assert!(s.replay(&missing).await.expect("replay").is_none());
}

async fn listing_filters_sorts_and_pages(backend: Backend) {
    let (_db, s) = store(backend).await;
    let base = Utc::now() - Duration::hours(1);
    for i in 0..7 {
        let mut e = inbound(if i % 2 == 0 { "acme" } else { "globex" }, &format!("d{i}"));
        e.received_at = base + Duration::minutes(i);
        s.record_inbound(&e).await.expect("record");
    }
    let q = |provider: Option<&str>,
             descending: bool,
             after: Option<(chrono::DateTime<Utc>, String)>| EventQuery {
        provider: provider.map(str::to_owned),
        descending,
        after,
        limit: 3,
        ..Default::default()
    };
    let first = s.list_inbound(&q(None, false, None)).await.expect("list");
    assert_eq!(first.items.len(), 3);
    assert!(first
        .items
        .windows(2)
        .all(|w| w[0].received_at <= w[1].received_at));
    let last = first.items.last().expect("last");
    let second = s
        .list_inbound(&q(None, false, Some((last.received_at, last.id.clone()))))
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 3);
    assert!(second.items[0].received_at > last.received_at);
    let desc = s.list_inbound(&q(None, true, None)).await.expect("desc");
    assert!(desc
        .items
        .windows(2)
        .all(|w| w[0].received_at >= w[1].received_at));
    let acme = s
        .list_inbound(&EventQuery {
            limit: 100,
            ..q(Some("acme"), false, None)
        })
        .await
        .expect("acme");
    assert_eq!(acme.items.len(), 4);
    assert!(acme.next_cursor.is_none());
    let window = EventQuery {
        from: Some(base + Duration::minutes(2)),
        to: Some(base + Duration::minutes(4)),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        s.list_inbound(&window).await.expect("window").items.len(),
        2
    );
    let pending = EventQuery {
        status: Some(AttemptStatus::Pending),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        s.list_inbound(&pending).await.expect("pending").items.len(),
        7
    );
    let dead = EventQuery {
        status: Some(AttemptStatus::Dead),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.list_inbound(&dead).await.expect("dead").items.len(), 0);
}

async fn audit_chain_appends_and_history_is_append_only(backend: Backend) {
    let (db, s) = store(backend).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let entry = NewAudit {
                actor: "operator".into(),
                action: "integration.created".into(),
                target: format!("integration:{i}"),
                request_id: format!("req-{i}"),
                details: json!({"i": i}),
            };
            s.append_audit(&entry, Utc::now()).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    let chain = s.audit_chain().await.expect("chain");
    assert_eq!(chain.len(), 20);
    let verified = hookwarden_core::audit::verify_chain(
        chain
            .iter()
            .map(|r| (r.entry(), r.prev_hash.as_str(), r.hash.as_str())),
    );
    assert_eq!(
        verified,
        Ok(20),
        "concurrent appends make one unbroken chain"
    );
    let page = s.list_audit(None, 5).await.expect("page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next_cursor.as_deref(), Some("5"));

    // The database refuses to rewrite any of the history tables.
    s.record_inbound(&inbound("acme", "d1"))
        .await
        .expect("record");
    for sql in [
        "UPDATE audit_entries SET action = 'x' WHERE seq = 3",
        "DELETE FROM audit_entries WHERE seq = 3",
        "DELETE FROM processing_jobs",
        "UPDATE processing_jobs SET attempt = 9",
    ] {
        let err = raw(backend, &db.url, sql).await.expect_err(sql);
        assert!(
            err.contains("append-only") || err.contains("immutable"),
            "{sql}: {err}"
        );
    }
}

async fn concurrent_distinct_deliveries_are_all_stored(backend: Backend) {
    // On SQLite these share commits (group commit); every one must be answered
    // with its own outcome, and stored exactly once.
    let (_db, s) = store(backend).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.record_inbound(&inbound("acme", &format!("d-{i}"))).await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("join").expect("record"),
            RecordOutcome::Created
        );
    }
    let all = s
        .list_inbound(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 100);
    assert!(all.next_cursor.is_some());
    let status = s.processing_status(Utc::now()).await.expect("status");
    assert_eq!(status.by_status, vec![("pending".to_owned(), 200)]);
}

async fn replays_mixed_into_new_deliveries_are_answered_with_the_stored_event(backend: Backend) {
    // A replayed delivery arriving among new ones (so sharing their commits)
    // must get the stored event's id and no second event or job, while the
    // new ones, each sent several times at once, are stored once each.
    let (_db, s) = store(backend).await;
    let RecordOutcome::Created = s
        .record_inbound(&inbound("acme", "old"))
        .await
        .expect("first")
    else {
        panic!("the first delivery is new");
    };
    let old_id = s
        .list_inbound(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .items[0]
        .id
        .clone();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        for key in ["old", "n-1", "n-2", "n-3"] {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                (key, s.record_inbound(&inbound("acme", key)).await)
            }));
        }
    }
    let mut created = std::collections::HashMap::new();
    let mut answered = std::collections::HashMap::<&str, std::collections::HashSet<String>>::new();
    for t in tasks {
        let (key, outcome) = t.await.expect("join");
        match outcome.expect("record") {
            RecordOutcome::Created => *created.entry(key).or_insert(0) += 1,
            RecordOutcome::Duplicate { event_id } => {
                answered.entry(key).or_default().insert(event_id);
            }
        }
    }
    assert_eq!(created.get("old"), None, "a replay is never stored again");
    assert_eq!(
        answered
            .get("old")
            .map(|ids| ids.iter().cloned().collect::<Vec<_>>()),
        Some(vec![old_id]),
        "every replay names the stored event"
    );
    for key in ["n-1", "n-2", "n-3"] {
        assert_eq!(created.get(key), Some(&1), "{key} stored once");
        assert_eq!(
            answered[key].len(),
            1,
            "{key}: every repeat names one event"
        );
    }
    let all = s
        .list_inbound(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 4);
    for key in ["n-1", "n-2", "n-3"] {
        let stored = all
            .items
            .iter()
            .find(|e| e.dedup_key == key)
            .expect("stored");
        assert!(
            answered[key].contains(&stored.id),
            "{key}: repeats name the stored id"
        );
    }
    let status = s.processing_status(Utc::now()).await.expect("status");
    assert_eq!(
        status.by_status,
        vec![("pending".to_owned(), 4)],
        "one job per event"
    );
}
