//! The ingress storage contract, on SQLite and PostgreSQL alike.

mod fixtures;
use fixtures::{inbound, integration};

use chrono::{Duration, Utc};
use hookwarden_core::audit::{self, ChainError, ChainKey, Head, Verified};
use hookwarden_core::crypto::{Keyring, MasterKey, RowIdentity};
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
    listing_finds_events_by_delivery_id,
    audit_chain_appends_and_history_is_append_only,
    audit_listing_filters_pages_and_sorts,
    a_keyed_audit_chain_resists_a_rewrite_behind_the_store,
    removed_newest_audit_entries_are_found_against_a_recorded_head,
);

async fn store(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    hookwarden_store::testing::migrated_store(backend).await
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
    // The backlog: the pending jobs (the retry, the replay, the other
    // provider's) and the dead, as the counts of every job have them.
    let later = Utc::now();
    let none: [String; 0] = [];
    let claimed = s
        .claim_jobs(&Claim {
            worker_id: "w3",
            now: later,
            lease_until: later + Duration::seconds(30),
            limit: 1,
            exclude_webhooks: &none,
        })
        .await
        .expect("claim");
    assert!(s
        .complete_job(&AttemptResult {
            attempt_id: claimed[0].id.clone(),
            worker_id: "w3".into(),
            status: AttemptStatus::Dead,
            completed_at: later,
            next: None,
            ..result
        })
        .await
        .expect("dead"));
    let backlog = s.forwarding_backlog(later).await.expect("backlog");
    let status = s.processing_status(later).await.expect("status");
    let count = |name: &str| {
        status
            .by_status
            .iter()
            .find(|(s, _)| s == name)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!((backlog.pending, backlog.dead), (2, 1));
    assert_eq!((count("pending"), count("dead")), (2, 1));
    assert_eq!(
        backlog.oldest_pending_age_seconds,
        status.oldest_pending_age_seconds
    );
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

async fn listing_finds_events_by_delivery_id(backend: Backend) {
    let (_db, s) = store(backend).await;
    let base = Utc::now() - Duration::hours(1);
    // Two providers may send the same delivery id: it is unique per provider
    // at most (and not even that: it is unsigned, the dedup key decides).
    let mut stored = Vec::new();
    for (i, (provider, key, delivery)) in [
        ("acme", "k1", Some("dlv-1")),
        ("globex", "k2", Some("dlv-1")),
        ("acme", "k3", Some("dlv-2")),
        ("acme", "k4", None),
        ("acme", "k5", Some("dlv-1")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = inbound(provider, key);
        e.delivery_id = delivery.map(str::to_owned);
        e.received_at = base + Duration::minutes(i as i64);
        s.record_inbound(&e).await.expect("record");
        stored.push(e.id);
    }
    let by = |delivery: &str, provider: Option<&str>| EventQuery {
        delivery_id: Some(delivery.into()),
        provider: provider.map(str::to_owned),
        limit: 100,
        ..Default::default()
    };
    let pick = |at: &[usize]| at.iter().map(|&i| stored[i].clone()).collect::<Vec<_>>();
    let ids =
        |page: &Page<InboundEvent>| page.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>();

    let all = s
        .list_inbound(&by("dlv-1", None))
        .await
        .expect("any provider");
    assert_eq!(ids(&all), pick(&[0, 1, 4]), "oldest first");
    assert!(all
        .items
        .iter()
        .all(|e| e.delivery_id.as_deref() == Some("dlv-1")));
    let acme = s
        .list_inbound(&by("dlv-1", Some("acme")))
        .await
        .expect("acme");
    assert_eq!(ids(&acme), pick(&[0, 4]));
    let newest = s
        .list_inbound(&EventQuery {
            descending: true,
            ..by("dlv-1", None)
        })
        .await
        .expect("newest first");
    assert_eq!(ids(&newest), pick(&[4, 1, 0]));

    // Pages of one, following the cursor, with the other filters combined.
    let mut q = EventQuery {
        limit: 1,
        status: Some(AttemptStatus::Pending),
        from: Some(base),
        ..by("dlv-1", None)
    };
    let mut walked = Vec::new();
    loop {
        let page = s.list_inbound(&q).await.expect("page");
        walked.extend(ids(&page));
        let Some(last) = page.items.last().filter(|_| page.next_cursor.is_some()) else {
            break;
        };
        q.after = Some((last.received_at, last.id.clone()));
    }
    assert_eq!(walked, pick(&[0, 1, 4]));
    let window = EventQuery {
        to: Some(base + Duration::minutes(2)),
        ..by("dlv-1", None)
    };
    assert_eq!(
        ids(&s.list_inbound(&window).await.expect("window")),
        pick(&[0, 1])
    );

    // No match: an empty page, not an error.
    for q in [
        by("dlv-3", None),
        by("dlv-2", Some("globex")),
        by("DLV-1", None),
        by("k1", None),
        EventQuery {
            status: Some(AttemptStatus::Dead),
            ..by("dlv-1", None)
        },
    ] {
        let page = s.list_inbound(&q).await.expect("no match");
        assert!(page.items.is_empty(), "{q:?}");
        assert!(page.next_cursor.is_none(), "{q:?}");
    }
}

async fn audit_chain_appends_and_history_is_append_only(backend: Backend) {
    let (db, s, ring) = keyed_trail(backend, 0, 0).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(&audit_entry(i), Utc::now()).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("append");
    }
    let chain = s.audit_chain().await.expect("chain");
    assert_eq!(chain.len(), 20);
    let verified = verify_trail(s.as_ref(), &ring, None)
        .await
        .map(|v| (v.entries, v.keyed));
    assert_eq!(
        verified,
        Ok((20, 20)),
        "concurrent appends make one unbroken keyed chain"
    );
    let page = s
        .list_audit(&AuditQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("page");
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

const CHAIN_KEY_ROW: RowIdentity<'static> = RowIdentity {
    table: "audit_chain_key",
    account_id: "operator",
    row_id: AUDIT_KEY_ROW,
};

fn audit_entry(i: usize) -> NewAudit {
    NewAudit {
        actor: "operator".into(),
        action: "integration.created".into(),
        target: format!("integration:{i}"),
        request_id: format!("req-{i}"),
        details: json!({"i": i}),
    }
}

/// Every page of `q` (from its first), checked to be at most `q.limit` long
/// with a cursor exactly when another page follows; the seqs in order.
async fn all_audit_pages(s: &dyn Store, q: &AuditQuery) -> Vec<i64> {
    let mut q = q.clone();
    let mut seqs = Vec::new();
    loop {
        let page = s.list_audit(&q).await.expect("page");
        assert!(page.items.len() <= q.limit as usize);
        seqs.extend(page.items.iter().map(|a| a.seq));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(page.items.len(), q.limit as usize, "{q:?}");
                q.after_seq = Some(c.parse().expect("a seq"));
            }
            None => return seqs,
        }
    }
}

async fn audit_listing_filters_pages_and_sorts(backend: Backend) {
    let (_db, s, _ring) = keyed_trail(backend, 0, 0).await;
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
        .expect("t0")
        .with_timezone(&Utc);
    let actors = [
        "operator:ab12cd34/console",
        "tenant:acct_1:portal",
        "system",
    ];
    // `integrations.x` and `integration` must stay outside `integration.*`.
    let actions = [
        "integration.created",
        "integration.secret_rotated",
        "webhook.created",
        "integrations.x",
        "integration",
    ];
    let mut entries = Vec::new();
    for i in 0..30usize {
        // Entry 21 was stamped before entry 20 but appended after it (its
        // writer waited for the append lock): time order is not seq order.
        let at = match i {
            20 => t0 + Duration::minutes(21),
            21 => t0 + Duration::minutes(20) + Duration::milliseconds(500),
            _ => t0 + Duration::minutes(i as i64),
        };
        let entry = NewAudit {
            actor: actors[i % 3].into(),
            action: actions[i % 5].into(),
            target: format!("integration:t{}", i % 4),
            request_id: format!("req-{i}"),
            details: json!({"i": i}),
        };
        let r = s.append_audit(&entry, at).await.expect("append");
        entries.push((r, at));
    }
    // What a query should select, by entry and its time since t0.
    type Pick = fn(&AuditRecord, Duration) -> bool;
    let expect = |pick: Pick, desc: bool| {
        let mut seqs: Vec<i64> = entries
            .iter()
            .filter(|(r, at)| pick(r, *at - t0))
            .map(|(r, _)| r.seq)
            .collect();
        if desc {
            seqs.reverse();
        }
        seqs
    };
    let at = |m: i64, ms: i64| t0 + Duration::minutes(m) + Duration::milliseconds(ms);
    let half_ms = Duration::microseconds(500);
    let cases: Vec<(AuditQuery, Pick)> = vec![
        (AuditQuery::default(), |_, _| true),
        (
            AuditQuery {
                actor: Some("tenant:acct_1:portal".into()),
                ..Default::default()
            },
            |r, _| r.actor == "tenant:acct_1:portal",
        ),
        (
            AuditQuery {
                action: Some("integration".into()),
                ..Default::default()
            },
            |r, _| r.action == "integration",
        ),
        (
            AuditQuery {
                action_prefix: Some("integration.".into()),
                ..Default::default()
            },
            |r, _| r.action.starts_with("integration."),
        ),
        (
            AuditQuery {
                target: Some("integration:t1".into()),
                ..Default::default()
            },
            |r, _| r.target == "integration:t1",
        ),
        (
            AuditQuery {
                from: Some(at(20, 500)),
                ..Default::default()
            },
            |_, t| t >= Duration::minutes(20) + Duration::milliseconds(500),
        ),
        (
            AuditQuery {
                to: Some(at(20, 500)),
                ..Default::default()
            },
            |_, t| t < Duration::minutes(20) + Duration::milliseconds(500),
        ),
        (
            // Between two milliseconds: entry 21 (at .500) is before it.
            AuditQuery {
                from: Some(at(20, 500) + half_ms),
                to: Some(at(26, 0) + half_ms),
                ..Default::default()
            },
            |_, t| {
                t > Duration::minutes(20) + Duration::milliseconds(500)
                    && t <= Duration::minutes(26)
            },
        ),
        (
            AuditQuery {
                actor: Some("operator:ab12cd34/console".into()),
                action_prefix: Some("integration.".into()),
                from: Some(at(1, 0)),
                to: Some(at(29, 0)),
                ..Default::default()
            },
            |r, t| {
                r.actor == "operator:ab12cd34/console"
                    && r.action.starts_with("integration.")
                    && t >= Duration::minutes(1)
                    && t < Duration::minutes(29)
            },
        ),
        (
            AuditQuery {
                actor: Some("tenant:acct_1:portal".into()),
                target: Some("integration:t1".into()),
                action: Some("integration.created".into()),
                ..Default::default()
            },
            |r, _| {
                r.actor == "tenant:acct_1:portal"
                    && r.target == "integration:t1"
                    && r.action == "integration.created"
            },
        ),
        (
            AuditQuery {
                actor: Some("nobody".into()),
                ..Default::default()
            },
            |_, _| false,
        ),
    ];
    for (query, pick) in cases {
        assert!(
            !expect(pick, false).is_empty() || query.actor.as_deref() == Some("nobody"),
            "a case that selects nothing proves little: {query:?}"
        );
        for descending in [false, true] {
            for limit in [2, 3, 100] {
                let q = AuditQuery {
                    descending,
                    limit,
                    ..query.clone()
                };
                assert_eq!(
                    all_audit_pages(s.as_ref(), &q).await,
                    expect(pick, descending),
                    "{q:?}"
                );
            }
        }
    }
    // A cursor continues past its seq in the page's order.
    let newest = AuditQuery {
        descending: true,
        after_seq: Some(10),
        limit: 3,
        ..Default::default()
    };
    let page = s.list_audit(&newest).await.expect("page");
    assert_eq!(
        page.items.iter().map(|a| a.seq).collect::<Vec<_>>(),
        [9, 8, 7]
    );
    assert_eq!(page.next_cursor.as_deref(), Some("7"));
}

/// A trail whose first `unkeyed` entries an older hookwarden wrote (plain
/// v1 links), keyed then as start-up keys it, with `keyed` entries after.
async fn keyed_trail(
    backend: Backend,
    unkeyed: usize,
    keyed: usize,
) -> (TestDb, Arc<dyn Store>, Keyring) {
    let (db, s) = store(backend).await;
    // A key that never keys: the links of a hookwarden without chain keys.
    s.set_audit_key(ChainKey::generate(i64::MAX));
    for i in 0..unkeyed {
        s.append_audit(&audit_entry(i), Utc::now())
            .await
            .expect("append");
    }
    let ring = Keyring::new(MasterKey::generate(), vec![]);
    let seal = |next: i64| ring.seal(CHAIN_KEY_ROW, &ChainKey::generate(next).to_bytes());
    let sealed = s.init_audit_key(&seal, Utc::now()).await.expect("init");
    let again = s
        .init_audit_key(&|_| panic!("the key is made once"), Utc::now())
        .await
        .expect("init again");
    assert_eq!(again, sealed);
    assert_eq!(s.audit_key().await.expect("read"), Some(sealed.clone()));
    let key = ChainKey::from_bytes(&ring.open(CHAIN_KEY_ROW, &sealed).expect("open")).expect("key");
    assert_eq!(key.keyed_from(), unkeyed as i64 + 1);
    s.set_audit_key(key);
    for i in 0..keyed {
        s.append_audit(&audit_entry(unkeyed + i), Utc::now())
            .await
            .expect("append");
    }
    (db, s, ring)
}

/// `hookwarden audit verify`'s check: the stored key opened with the master key.
async fn verify_trail(
    s: &dyn Store,
    ring: &Keyring,
    head: Option<&Head>,
) -> Result<Verified, ChainError> {
    let key = s.audit_key().await.expect("read key").map(|sealed| {
        ChainKey::from_bytes(&ring.open(CHAIN_KEY_ROW, &sealed).expect("open")).expect("key")
    });
    let chain = s.audit_chain().await.expect("chain");
    audit::verify_chain(
        key.as_ref(),
        chain
            .iter()
            .map(|r| (r.entry(), r.prev_hash.as_str(), r.hash.as_str())),
        head,
    )
}

/// SQL run as the database owner would run it: the append-only guards off.
async fn unguarded(backend: Backend, url: &str, sql: &str) {
    let sql = match backend {
        Backend::Sqlite => format!(
            "DROP TRIGGER IF EXISTS audit_entries_no_update; DROP TRIGGER IF EXISTS audit_entries_no_delete; \
             DROP TRIGGER IF EXISTS audit_chain_key_kept; {sql}"
        ),
        Backend::Postgres => format!(
            "ALTER TABLE audit_entries DISABLE TRIGGER USER; ALTER TABLE audit_chain_key DISABLE TRIGGER USER; {sql}; \
             ALTER TABLE audit_entries ENABLE TRIGGER USER; ALTER TABLE audit_chain_key ENABLE TRIGGER USER;"
        ),
    };
    raw(backend, url, &sql).await.expect("the owner's SQL runs");
}

type Relink = fn(&str, &audit::Entry<'_>) -> String;

/// SHA-256 over the fields, as someone would chain them who never read ours.
fn plain_sha256(prev: &str, e: &audit::Entry<'_>) -> String {
    use sha2::Digest;
    let text = [
        prev,
        &e.seq.to_string(),
        e.id,
        e.actor,
        e.action,
        e.target,
        e.request_id,
        e.details,
        e.created_at,
    ]
    .concat();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The attack: edit entry `k` in the database, then relink it and every
/// later entry with `relink`, so that each stored link follows its content.
async fn rewrite_from(backend: Backend, url: &str, s: &dyn Store, k: i64, relink: Relink) {
    let mut chain = s.audit_chain().await.expect("chain");
    let mut prev = chain
        .iter()
        .find(|r| r.seq == k - 1)
        .map_or(audit::GENESIS.to_owned(), |r| r.hash.clone());
    let mut sql = Vec::new();
    for r in chain.iter_mut().filter(|r| r.seq >= k) {
        if r.seq == k {
            r.actor = "someone-else".into();
        }
        r.prev_hash = prev.clone();
        r.hash = relink(&prev, &r.entry());
        prev = r.hash.clone();
        sql.push(format!(
            "UPDATE audit_entries SET actor = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
            r.actor, r.prev_hash, r.hash, r.seq
        ));
    }
    unguarded(backend, url, &sql.join("; ")).await;
    let stored = s.audit_chain().await.expect("chain");
    assert_eq!(
        stored[k as usize - 1].actor,
        "someone-else",
        "the edit is stored"
    );
}

async fn a_keyed_audit_chain_resists_a_rewrite_behind_the_store(backend: Backend) {
    // Entries 1-3 from before the key, 4-8 keyed.
    // Where each relinking breaks when an unkeyed entry is edited: a v1
    // relink holds until the first keyed entry, which covers the old ones.
    let relinks: [(&str, Relink, i64); 2] =
        [("v1", audit::entry_hash, 4), ("sha256", plain_sha256, 2)];
    for (name, relink, unkeyed_breaks_at) in relinks {
        // A keyed entry edited, it and its successors relinked.
        let (db, s, ring) = keyed_trail(backend, 3, 5).await;
        let before = verify_trail(s.as_ref(), &ring, None).await.expect("intact");
        assert_eq!((before.entries, before.keyed), (8, 5));
        rewrite_from(backend, &db.url, s.as_ref(), 6, relink).await;
        assert_eq!(
            verify_trail(s.as_ref(), &ring, None).await,
            Err(ChainError::Tampered { seq: 6 }),
            "{name}: a keyed entry rewritten"
        );
        // An entry from before the key: the first keyed entry covers it.
        let (db, s, ring) = keyed_trail(backend, 3, 5).await;
        rewrite_from(backend, &db.url, s.as_ref(), 2, relink).await;
        assert_eq!(
            verify_trail(s.as_ref(), &ring, None).await,
            Err(ChainError::Tampered {
                seq: unkeyed_breaks_at
            }),
            "{name}: an unkeyed entry rewritten"
        );
    }

    // The limit, stated in the docs: with the key row removed as well, a
    // trail rewritten whole in the old format passes alone (with no entry
    // keyed, which `audit verify` warns about), and fails against a head
    // recorded outside the database.
    let (db, s, ring) = keyed_trail(backend, 0, 4).await;
    let recorded = verify_trail(s.as_ref(), &ring, None)
        .await
        .expect("intact")
        .head;
    unguarded(backend, &db.url, "DELETE FROM audit_chain_key").await;
    rewrite_from(backend, &db.url, s.as_ref(), 1, audit::entry_hash).await;
    let alone = verify_trail(s.as_ref(), &ring, None)
        .await
        .expect("passes alone");
    assert_eq!((alone.entries, alone.keyed), (4, 0));
    assert_ne!(alone.head, recorded);
    assert_eq!(
        verify_trail(s.as_ref(), &ring, Some(&recorded)).await,
        Err(ChainError::HeadDiffers { seq: 4 })
    );
    // The key row is refused a plain DELETE (the service role cannot remove it).
    let (db, _s, _ring) = keyed_trail(backend, 0, 1).await;
    let err = raw(backend, &db.url, "DELETE FROM audit_chain_key")
        .await
        .expect_err("refused");
    assert!(err.contains("append-only"), "{err}");
}

async fn removed_newest_audit_entries_are_found_against_a_recorded_head(backend: Backend) {
    let (db, s, ring) = keyed_trail(backend, 0, 6).await;
    let recorded = verify_trail(s.as_ref(), &ring, None)
        .await
        .expect("intact")
        .head;
    assert_eq!(recorded.seq, 6);
    assert_eq!(
        s.audit_head().await.expect("head"),
        Some((recorded.seq, recorded.hash.clone())),
        "the head the metric and the log show"
    );
    unguarded(backend, &db.url, "DELETE FROM audit_entries WHERE seq >= 5").await;
    let now = verify_trail(s.as_ref(), &ring, None)
        .await
        .expect("a shorter chain holds together");
    assert_eq!(now.head.seq, 4, "but its head is not the recorded one");
    assert_eq!(
        verify_trail(s.as_ref(), &ring, Some(&recorded)).await,
        Err(ChainError::HeadMissing { seq: 6, last: 4 })
    );
    // An older recorded head is still held.
    let older: Head = format!("4:{}", now.head.hash).parse().expect("head");
    assert!(verify_trail(s.as_ref(), &ring, Some(&older)).await.is_ok());

    // Removing every keyed entry and more is seen without a head: the key
    // was made when entries 1-3 existed.
    let (db, s, ring) = keyed_trail(backend, 3, 2).await;
    unguarded(backend, &db.url, "DELETE FROM audit_entries WHERE seq >= 3").await;
    assert_eq!(
        verify_trail(s.as_ref(), &ring, None).await,
        Err(ChainError::Truncated {
            last: 2,
            expected: 3
        })
    );
}
