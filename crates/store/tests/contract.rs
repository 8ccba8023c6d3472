//! The storage contract, run identically against SQLite and PostgreSQL.

mod fixtures;
use fixtures::{inbound, integration, sealed};

use chrono::{Duration, Utc};
use hookwarden_core::crypto::Sealed;
use hookwarden_core::ids;
use hookwarden_store::ingress::{Integration, RecordOutcome};
use hookwarden_store::model::*;
use hookwarden_store::sealed::SealedColumn;
use hookwarden_store::search::{AttemptFilter, EventFilter};
use hookwarden_store::testing::{Backend, TestDb};
use hookwarden_store::{connect, on_both, Store, StoreError};
use serde_json::json;
use std::sync::Arc;

on_both!(
    webhook_crud_and_isolation,
    eleventh_webhook_is_refused_by_the_database,
    publish_fans_out_and_is_idempotent,
    client_ids_are_scoped_to_producer_and_account,
    client_ids_survive_the_migration_that_scoped_them,
    concurrent_claims_never_share_an_attempt,
    a_try_that_cannot_be_read_is_left_out_of_its_claim,
    a_payload_holding_the_raw_value_key_reads_back_as_stored,
    a_payload_filter_holding_the_raw_value_key_filters_as_stored,
    complete_schedules_next_and_history_is_append_only,
    one_try_finished_twice_at_once_is_recorded_once,
    a_stale_outcome_beside_the_lease_holders_does_not_hide_it,
    retry_now_reuses_or_creates_pending,
    rotation_keeps_old_secret,
    event_types_upsert_list_delete,
    concurrent_publishes_and_results_share_commits_correctly,
    a_paused_endpoint_s_tries_wait_out_the_pause,
    the_webhook_cap_is_read_from_the_database_setting,
    a_duplicate_webhook_is_refused_by_the_database,
    prefix_subscriptions_fan_out,
    searches_across_accounts_find_tries_and_events,
    disable_and_enable_report_whether_the_webhook_exists,
    reseal_is_compare_and_swap,
    sealed_not_under_respects_the_key_and_the_limit,
    count_not_under_counts_every_sealed_column,
    a_released_job_is_claimed_again_and_a_stale_worker_cannot_release_it,
    webhooks_by_ids_ignores_unknown_ids_and_crosses_accounts,
    activity_adds_sum_and_are_read_since_and_pruned,
    publish_to_webhook_queues_one_try_for_that_webhook_only,
    tries_due_long_ago_are_claimed_past_the_floor,
    a_queue_due_only_later_keeps_no_floor_above_now,
    an_endpoint_s_health_is_counted_in_the_database,
    a_failing_endpoint_disabled_leaves_no_try_pending_and_hurried_retries_are_due,
    retention_prunes_only_finished_history_past_the_bound_and_nothing_else_can,
    a_trace_is_carried_by_the_event_its_tries_their_retries_and_inbound_events,
    first_tries_go_leased_to_a_worker_with_room_and_no_claim_finds_them,
);

/// One endpoint's tries, as the tenant lists them.
trait ListAttempts {
    async fn list_attempts(
        &self,
        account_id: &str,
        webhook_id: &str,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Attempt>, StoreError>;
}

impl ListAttempts for dyn Store {
    async fn list_attempts(
        &self,
        account_id: &str,
        webhook_id: &str,
        status: Option<AttemptStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Attempt>, StoreError> {
        let filter = AttemptFilter {
            account_id: Some(account_id),
            webhook_id: Some(webhook_id),
            status,
            ..Default::default()
        };
        self.search_attempts(&filter, before, limit).await
    }
}

async fn store(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    hookwarden_store::testing::migrated_store(backend).await
}

fn new_webhook(account: &str, types: &[&str]) -> Webhook {
    let now = Utc::now();
    let id = ids::webhook_id();
    Webhook {
        // A URL of its own: the same URL and types twice is a duplicate.
        url: format!("https://example.com/hook/{id}"),
        id,
        account_id: account.into(),
        description: String::new(),
        event_types: types.iter().map(|s| s.to_string()).collect(),
        secret: sealed("s1"),
        old_secret: None,
        disabled: false,
        disabled_reason: None,
        held_by_operator: false,
        throttled_until: None,
        health: Default::default(),
        controls: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

fn event(account: &str, ty: &str) -> NewEvent {
    NewEvent {
        id: ids::event_id(),
        client_id: Some(ids::new_id("client")),
        account_id: account.into(),
        event_type: ty.into(),
        payload: json!({"to": "+15550001111", "n": 1}),
        producer: "test".into(),
        created_at: Utc::now(),
        trace_parent: None,
    }
}

async fn raw_execute(backend: Backend, url: &str, sql: &str) -> Result<u64, String> {
    hookwarden_store::testing::execute_raw(backend, url, sql).await
}

async fn webhook_crud_and_isolation(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("create");
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.url, w.url);
    assert_eq!(got.secret, w.secret);
    // Another account sees nothing, changes nothing, deletes nothing.
    assert!(s.get_webhook("acct_b", &w.id).await.expect("get").is_none());
    let upd = WebhookUpdate {
        url: Some("https://evil.example/".into()),
        updated_at: Utc::now(),
        ..Default::default()
    };
    assert!(s
        .update_webhook("acct_b", &w.id, &upd)
        .await
        .expect("update")
        .is_none());
    assert!(!s
        .delete_webhook("acct_b", &w.id, Utc::now())
        .await
        .expect("delete"));
    assert_eq!(
        s.list_webhooks(Some("acct_b"), None, 10)
            .await
            .expect("list")
            .items
            .len(),
        0
    );
    let updated = s
        .update_webhook("acct_a", &w.id, &upd)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(updated.url, "https://evil.example/");
    assert!(s
        .delete_webhook("acct_a", &w.id, Utc::now())
        .await
        .expect("delete"));
    assert!(s.get_webhook("acct_a", &w.id).await.expect("get").is_none());
}

async fn eleventh_webhook_is_refused_by_the_database(backend: Backend) {
    let (_db, s) = store(backend).await;
    // Concurrent inserts: the trigger must still allow exactly ten.
    let mut tasks = Vec::new();
    for _ in 0..14 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_webhook(&new_webhook("acct_a", &["*"])).await
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => ok += 1,
            Err(StoreError::WebhookLimit) => limited += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, limited), (10, 4));
    // Other accounts are not affected; pages walk all ten.
    s.create_webhook(&new_webhook("acct_b", &["*"]))
        .await
        .expect("other account");
    let first = s
        .list_webhooks(Some("acct_a"), None, 4)
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 4);
    let mut seen = first.items.len();
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let page = s
            .list_webhooks(Some("acct_a"), Some(&c), 4)
            .await
            .expect("page");
        seen += page.items.len();
        cursor = page.next_cursor;
    }
    assert_eq!(seen, 10);
}

async fn publish_fans_out_and_is_idempotent(backend: Backend) {
    let (_db, s) = store(backend).await;
    let (w1, w2) = (
        new_webhook("acct_a", &["*"]),
        new_webhook("acct_a", &["invoice.paid"]),
    );
    s.create_webhook(&w1).await.expect("w1");
    s.create_webhook(&w2).await.expect("w2");
    s.create_webhook(&new_webhook("acct_a", &["other"]))
        .await
        .expect("w3");
    s.create_webhook(&new_webhook("acct_b", &["*"]))
        .await
        .expect("other account");
    let e = event("acct_a", "invoice.paid");
    // The subscribed webhooks are named: the lanes a worker is woken for.
    let PublishOutcome::Created { mut webhooks, .. } = s.publish_event(&e).await.expect("publish")
    else {
        panic!("the first publish creates the event")
    };
    webhooks.sort();
    let mut want = vec![w1.id.clone(), w2.id.clone()];
    want.sort();
    assert_eq!(webhooks, want);
    // Published again (intake gives every publish a fresh internal id): the
    // stored event answers.
    let again = NewEvent {
        id: ids::event_id(),
        ..e.clone()
    };
    assert_eq!(
        s.publish_event(&again).await.expect("again"),
        PublishOutcome::Existing {
            event_id: e.id.clone(),
            deliveries: 2
        }
    );
    let mut other = again.clone();
    other.payload = json!({"different": true});
    assert_eq!(
        s.publish_event(&other).await.expect("conflict"),
        PublishOutcome::Conflict
    );
    let stats = s.queue_stats(Utc::now()).await.expect("stats");
    assert_eq!((stats.pending, stats.due), (2, 2));
    // The worker's claim brings each attempt's webhook along, and the
    // snapshot delivered is the event as published.
    let now = Utc::now();
    let claimed = s
        .claim_due_with_webhooks(&Claim {
            worker_id: "w-f",
            now,
            lease_until: now + Duration::seconds(30),
            limit: 10,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    for (a, w) in &claimed {
        let w = w.as_ref().expect("webhook found");
        assert_eq!((&w.id, w.account_id.as_str()), (&a.webhook_id, "acct_a"));
        assert_eq!(a.payload_snapshot["data"], e.payload);
        assert_eq!(a.payload_snapshot["type"], "invoice.paid");
    }
}

/// A client id is an idempotency key of one producer for one account: other
/// producers and accounts can neither collide with it nor learn of it.
async fn client_ids_are_scoped_to_producer_and_account(backend: Backend) {
    let (_db, s) = store(backend).await;
    let (w1, w2) = (new_webhook("acct_1", &["*"]), new_webhook("acct_2", &["*"]));
    s.create_webhook(&w1).await.expect("w1");
    s.create_webhook(&w2).await.expect("w2");
    let publish = |producer: &str, account: &str, payload: serde_json::Value| NewEvent {
        id: ids::event_id(),
        client_id: Some("evt_predictable_1".into()),
        account_id: account.into(),
        event_type: "invoice.paid".into(),
        payload,
        producer: producer.into(),
        created_at: Utc::now(),
        trace_parent: None,
    };
    let a1 = publish("producer_a", "acct_1", json!({"from": "a"}));
    assert!(matches!(
        s.publish_event(&a1).await.expect("a1"),
        PublishOutcome::Created { .. }
    ));
    // Another producer, same account, same id, other content: a separate
    // event, not a conflict (which would tell it the id is taken).
    let b1 = publish("producer_b", "acct_1", json!({"from": "b"}));
    assert!(matches!(
        s.publish_event(&b1).await.expect("b1"),
        PublishOutcome::Created { .. }
    ));
    // The same producer for another account: separate too.
    let a2 = publish("producer_a", "acct_2", json!({"from": "a"}));
    assert!(matches!(
        s.publish_event(&a2).await.expect("a2"),
        PublishOutcome::Created { .. }
    ));
    // The same producer and account again: the same event, or a conflict.
    assert_eq!(
        s.publish_event(&publish("producer_a", "acct_1", json!({"from": "a"})))
            .await
            .expect("a1 again"),
        PublishOutcome::Existing {
            event_id: a1.id.clone(),
            deliveries: 1
        }
    );
    assert_eq!(
        s.publish_event(&publish("producer_b", "acct_1", json!({"from": "b"})))
            .await
            .expect("b1 again"),
        PublishOutcome::Existing {
            event_id: b1.id.clone(),
            deliveries: 1
        }
    );
    assert_eq!(
        s.publish_event(&publish("producer_a", "acct_1", json!({"altered": true})))
            .await
            .expect("a1 altered"),
        PublishOutcome::Conflict
    );
    // Events without a client id never meet one another.
    for _ in 0..2 {
        let mut anonymous = publish("producer_a", "acct_1", json!({}));
        anonymous.client_id = None;
        assert!(matches!(
            s.publish_event(&anonymous).await.expect("anonymous"),
            PublishOutcome::Created { .. }
        ));
    }
    // Four distinct events were delivered to acct_1 (a1, b1 and the two
    // anonymous ones) and one to acct_2, each with its own internal id
    // (the receivers' webhook-id).
    let now = Utc::now();
    let claimed = claim(&s, "w-scope", now, 30, 100).await;
    let mut to_1: Vec<String> = claimed
        .iter()
        .filter(|a| a.webhook_id == w1.id)
        .map(|a| a.event_id.clone())
        .collect();
    to_1.sort();
    to_1.dedup();
    assert_eq!(to_1.len(), 4, "{to_1:?}");
    assert!(to_1.contains(&a1.id) && to_1.contains(&b1.id));
    let to_2: Vec<&str> = claimed
        .iter()
        .filter(|a| a.webhook_id == w2.id)
        .map(|a| a.event_id.as_str())
        .collect();
    assert_eq!(to_2, vec![a2.id.as_str()]);
}

/// Events stored before client ids were scoped keep their id (tries already
/// queued keep their webhook-id), and re-publishing one is still recognized.
async fn client_ids_survive_the_migration_that_scoped_them(backend: Backend) {
    let db = TestDb::empty(backend).await;
    // Migrations 0001 to 0007 only, from a copy of their files.
    let dir = std::env::temp_dir().join(format!("hw_migrations_{}", ids::new_id("m")));
    std::fs::create_dir_all(&dir).expect("dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    });
    for f in std::fs::read_dir(&source).expect("migrations") {
        let f = f.expect("entry");
        let name = f.file_name().to_string_lossy().into_owned();
        if name.as_str() < "0008" {
            std::fs::copy(f.path(), dir.join(&name)).expect("copy");
        }
    }
    let older = sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .expect("older migrations");
    let old_event =
        "INSERT INTO events (id, account_id, event_type, payload, producer, created_at) \
                     VALUES ('evt_before_1', 'acct_m', 't', '{\"n\": 1}', 'producer_a', ";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .expect("sqlite");
            older.run(&pool).await.expect("0001-0007");
            sqlx::query(&format!("{old_event}0)"))
                .execute(&pool)
                .await
                .expect("old event");
            pool.close().await;
        }
        Backend::Postgres => {
            use std::str::FromStr;
            let opts = sqlx::postgres::PgConnectOptions::from_str(&db.url)
                .expect("url")
                .options([("search_path", "hook")]);
            let pool = sqlx::PgPool::connect_with(opts).await.expect("postgres");
            sqlx::query("CREATE SCHEMA IF NOT EXISTS hook")
                .execute(&pool)
                .await
                .expect("schema");
            older.run(&pool).await.expect("0001-0007");
            sqlx::query(&format!("{old_event}now())"))
                .execute(&pool)
                .await
                .expect("old event");
            pool.close().await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let s = connect(&db.url).await.expect("connect");
    s.migrate().await.expect("0008 over existing data");
    let again = |payload| NewEvent {
        id: ids::event_id(),
        client_id: Some("evt_before_1".into()),
        account_id: "acct_m".into(),
        event_type: "t".into(),
        payload,
        producer: "producer_a".into(),
        created_at: Utc::now(),
        trace_parent: None,
    };
    assert_eq!(
        s.publish_event(&again(json!({"n": 1})))
            .await
            .expect("again"),
        PublishOutcome::Existing {
            event_id: "evt_before_1".into(),
            deliveries: 0
        }
    );
    assert_eq!(
        s.publish_event(&again(json!({"n": 2})))
            .await
            .expect("altered"),
        PublishOutcome::Conflict
    );
    let mut elsewhere = again(json!({"n": 1}));
    elsewhere.producer = "producer_b".into();
    assert!(matches!(
        s.publish_event(&elsewhere).await.expect("other producer"),
        PublishOutcome::Created { .. }
    ));
}

async fn concurrent_claims_never_share_an_attempt(backend: Backend) {
    let (_db, s) = store(backend).await;
    for i in 0..5 {
        let mut w = new_webhook("acct_a", &["*"]);
        w.account_id = format!("acct_{i}");
        s.create_webhook(&w).await.expect("webhook");
        for _ in 0..20 {
            s.publish_event(&event(&w.account_id, "t"))
                .await
                .expect("publish");
        }
    }
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("worker-{worker}");
            let mut mine = Vec::new();
            loop {
                let now = Utc::now();
                let claim = Claim {
                    worker_id: &id,
                    now,
                    lease_until: now + Duration::seconds(60),
                    limit: 7,
                    exclude_webhooks: &[],
                };
                let got = s.claim_due(&claim).await.expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|a| a.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, 100, "every attempt claimed");
    assert_eq!(all.len(), 100, "no attempt claimed twice");
    // Leased rows are not claimable until the lease expires.
    let now = Utc::now();
    let again = s
        .claim_due(&Claim {
            worker_id: "w9",
            now,
            lease_until: now + Duration::seconds(60),
            limit: 100,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim");
    assert!(again.is_empty());
    let later = now + Duration::seconds(61);
    let expired = s
        .claim_due(&Claim {
            worker_id: "w9",
            now: later,
            lease_until: later + Duration::seconds(60),
            limit: 100,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim");
    assert_eq!(
        expired.len(),
        100,
        "expired leases are claimable again (crash recovery)"
    );
}

async fn complete_schedules_next_and_history_is_append_only(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let other = new_webhook("acct_a", &["*"]);
    s.create_webhook(&other).await.expect("webhook 2");
    s.publish_event(&event("acct_a", "t"))
        .await
        .expect("publish");
    let now = Utc::now();
    let excluded = [other.id.clone()];
    let claimed = s
        .claim_due(&Claim {
            worker_id: "w1",
            now,
            lease_until: now + Duration::seconds(30),
            limit: 10,
            exclude_webhooks: &excluded,
        })
        .await
        .expect("claim");
    assert_eq!(
        claimed.len(),
        1,
        "excluded webhook's attempt is not claimed"
    );
    let a = &claimed[0];
    assert_eq!(a.webhook_id, w.id);
    let next_id = ids::attempt_id();
    let result = AttemptResult {
        attempt_id: a.id.clone(),
        worker_id: "w1".into(),
        status: AttemptStatus::Failed,
        http_status: Some(500),
        duration_ms: 12,
        response_preview: Some("boom".into()),
        error: None,
        completed_at: now,
        next: Some((next_id.clone(), now + Duration::seconds(5))),
    };
    // A worker that lost the lease cannot complete it.
    assert!(!s
        .complete_attempt(&AttemptResult {
            worker_id: "w2".into(),
            ..result.clone()
        })
        .await
        .expect("complete"));
    assert!(s.complete_attempt(&result).await.expect("complete"));
    assert!(
        !s.complete_attempt(&result).await.expect("twice"),
        "a finished attempt cannot be finished again"
    );
    let page = s
        .list_attempts("acct_a", &w.id, None, None, 10)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].id, next_id);
    assert_eq!(page.items[0].attempt, 2);
    assert_eq!(page.items[0].status, AttemptStatus::Pending);
    assert_eq!(page.items[1].status, AttemptStatus::Failed);
    assert_eq!(page.items[1].payload_snapshot["data"]["to"], "+15550001111");
    let failed = s
        .list_attempts("acct_a", &w.id, Some(AttemptStatus::Failed), None, 10)
        .await
        .expect("filter");
    assert_eq!(failed.items.len(), 1);
    assert!(s
        .list_attempts("acct_b", &w.id, None, None, 10)
        .await
        .expect("other")
        .items
        .is_empty());

    // The database itself refuses to rewrite or erase history.
    let update = format!(
        "UPDATE delivery_attempts SET http_status = 200 WHERE id = '{}'",
        a.id
    );
    let err = raw_execute(backend, &db.url, &update)
        .await
        .expect_err("update refused");
    assert!(err.contains("immutable"), "{err}");
    let delete = format!("DELETE FROM delivery_attempts WHERE id = '{}'", a.id);
    let err = raw_execute(backend, &db.url, &delete)
        .await
        .expect_err("delete refused");
    assert!(err.contains("append-only"), "{err}");
    let reassign =
        format!("UPDATE delivery_attempts SET account_id = 'acct_x' WHERE id = '{next_id}'");
    assert!(
        raw_execute(backend, &db.url, &reassign).await.is_err(),
        "a pending row keeps its identity"
    );
    let rewrite = format!(
        "UPDATE delivery_attempts SET payload_snapshot = '{{\"data\":{{}}}}' WHERE id = '{next_id}'"
    );
    assert!(
        raw_execute(backend, &db.url, &rewrite).await.is_err(),
        "a pending row keeps the body it will send"
    );
    let revive = format!(
        "UPDATE delivery_attempts SET status = 'pending' WHERE id = '{}'",
        a.id
    );
    assert!(
        raw_execute(backend, &db.url, &revive).await.is_err(),
        "a finished try cannot be made pending again"
    );
}

/// Two outcomes of one try submitted together (they may share a batch):
/// one is recorded, with its own next try or none, never a mix of the two.
async fn one_try_finished_twice_at_once_is_recorded_once(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    for round in 0..4 {
        s.publish_event(&event("acct_a", "t"))
            .await
            .expect("publish");
        let now = Utc::now();
        let claimed = claim(&s, "w1", now, 30, 10).await;
        let a = claimed
            .iter()
            .find(|a| a.attempt == 1)
            .expect("the new first try");
        let succeeded = succeeded(&a.id, "w1", now);
        let failed = AttemptResult {
            status: AttemptStatus::Failed,
            http_status: Some(500),
            next: Some((ids::attempt_id(), now + Duration::hours(1))),
            ..succeeded.clone()
        };
        // Either order first, as callers race.
        let (x, y) = if round % 2 == 0 {
            (&succeeded, &failed)
        } else {
            (&failed, &succeeded)
        };
        let (rx, ry) = tokio::join!(s.complete_attempt(x), s.complete_attempt(y));
        let (rx, ry) = (rx.expect("complete"), ry.expect("complete"));
        assert!(rx ^ ry, "exactly one is recorded (round {round})");
        let won = if rx { x } else { y };
        let tries = tries_of(&s, &a.event_id).await;
        let first = tries.iter().find(|t| t.id == a.id).expect("the try");
        assert_eq!(first.status, won.status, "round {round}");
        assert_eq!(
            tries.len(),
            if won.next.is_some() { 2 } else { 1 },
            "a next try only for the outcome recorded (round {round})"
        );
    }
}

/// A worker that lost its lease and the one that holds it now finish the
/// same try together (a batch may carry both, the stale one first): the
/// holder's outcome is recorded, the stale one's is not, and only the
/// holder's next try exists.
async fn a_stale_outcome_beside_the_lease_holders_does_not_hide_it(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    for round in 0..3 {
        s.publish_event(&event("acct_a", "t"))
            .await
            .expect("publish");
        let now = Utc::now();
        let first = claim(&s, "stale", now, 1, 10).await;
        let a = first.iter().find(|a| a.attempt == 1).expect("first try");
        // The lease ran out: another worker claims the try.
        let later = now + Duration::seconds(5);
        let again = claim(&s, "holder", later, 30, 10).await;
        assert!(
            again.iter().any(|b| b.id == a.id),
            "claimed again (round {round})"
        );
        let stale = AttemptResult {
            status: AttemptStatus::Failed,
            http_status: Some(500),
            next: Some((ids::attempt_id(), later + Duration::hours(1))),
            ..succeeded(&a.id, "stale", later)
        };
        let holder = succeeded(&a.id, "holder", later);
        let (rs, rh) = tokio::join!(s.complete_attempt(&stale), s.complete_attempt(&holder));
        assert!(
            !rs.expect("stale"),
            "the stale outcome is refused (round {round})"
        );
        assert!(
            rh.expect("holder"),
            "the holder's is recorded (round {round})"
        );
        let tries = tries_of(&s, &a.event_id).await;
        assert_eq!(tries.len(), 1, "no next try from the stale outcome");
        assert_eq!(tries[0].status, AttemptStatus::Succeeded);
    }
}

/// Every try of one event, as the API's search lists them.
async fn tries_of(s: &Arc<dyn Store>, event_id: &str) -> Vec<Attempt> {
    s.search_attempts(
        &AttemptFilter {
            event_id: Some(event_id),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .expect("tries")
    .items
}

async fn retry_now_reuses_or_creates_pending(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    s.publish_event(&event("acct_a", "t"))
        .await
        .expect("publish");
    let now = Utc::now();
    let a = s
        .claim_due(&Claim {
            worker_id: "w1",
            now,
            lease_until: now + Duration::seconds(30),
            limit: 10,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim")
        .remove(0);
    let dead = AttemptResult {
        attempt_id: a.id.clone(),
        worker_id: "w1".into(),
        status: AttemptStatus::Dead,
        http_status: Some(500),
        duration_ms: 3,
        response_preview: None,
        error: None,
        completed_at: now,
        next: None,
    };
    assert!(s.complete_attempt(&dead).await.expect("complete"));
    assert!(s
        .retry_now("acct_b", &a.id, &ids::attempt_id(), now, now, false)
        .await
        .expect("other")
        .is_none());
    let retry = s
        .retry_now("acct_a", &a.id, &ids::attempt_id(), now, now, false)
        .await
        .expect("retry")
        .expect("scheduled");
    assert_eq!(retry.attempt, 2);
    assert_eq!(retry.status, AttemptStatus::Pending);
    let again = s
        .retry_now("acct_a", &a.id, &ids::attempt_id(), now, now, false)
        .await
        .expect("retry")
        .expect("scheduled");
    assert_eq!(
        again.id, retry.id,
        "a pending retry is reused, not duplicated"
    );
    assert!(s
        .delete_webhook("acct_a", &w.id, now)
        .await
        .expect("delete"));
    assert!(s
        .retry_now("acct_a", &a.id, &ids::attempt_id(), now, now, false)
        .await
        .expect("retry")
        .is_none());
    let page = s
        .list_attempts("acct_a", &w.id, Some(AttemptStatus::Dead), None, 10)
        .await
        .expect("list");
    assert_eq!(
        page.items.len(),
        2,
        "deleting the webhook dead-letters its pending attempt"
    );
}

async fn rotation_keeps_old_secret(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    s.disable_webhook(&w.id, "410 Gone", Utc::now())
        .await
        .expect("disable");
    assert!(
        s.get_webhook("acct_a", &w.id)
            .await
            .expect("get")
            .expect("found")
            .disabled
    );
    let until = Utc::now() + Duration::hours(24);
    let upd = WebhookUpdate {
        rotate: Some((sealed("s2"), until)),
        enable: true,
        updated_at: Utc::now(),
        ..Default::default()
    };
    let got = s
        .update_webhook("acct_a", &w.id, &upd)
        .await
        .expect("update")
        .expect("found");
    assert_eq!(got.secret, sealed("s2"));
    let (old, old_until) = got.old_secret.expect("old secret kept");
    assert_eq!(old, sealed("s1"));
    assert_eq!(old_until.timestamp_millis(), until.timestamp_millis());
    assert!(!got.disabled, "an update re-enables the endpoint");
}

#[tokio::test]
async fn postgres_honours_sslmode() {
    let db = TestDb::postgres().await;
    // The local server offers TLS: `require` encrypts without verifying the name.
    let require = format!("{}?sslmode=require", db.url);
    let store = connect(&require)
        .await
        .expect("sslmode=require connects over TLS");
    store.ping().await.expect("ping");
    // `verify-full` checks the certificate against the system roots; the local
    // server's self-signed certificate must be refused, not silently accepted.
    let verify = format!("{}?sslmode=verify-full", db.url);
    assert!(
        connect(&verify).await.is_err(),
        "an untrusted certificate is refused under verify-full"
    );
}

async fn event_types_upsert_list_delete(backend: Backend) {
    let (_db, s) = store(backend).await;
    let t0 = Utc::now() - Duration::hours(1);
    let mut et = EventType {
        name: "invoice.paid".into(),
        schema: json!({"type": "object", "required": ["amount"]}),
        description: "an invoice was paid".into(),
        created_at: t0,
        updated_at: t0,
    };
    let first = s.put_event_type(&et).await.expect("put");
    assert_eq!(first.schema, et.schema);
    et.schema = json!({"type": "object"});
    et.created_at = Utc::now();
    et.updated_at = Utc::now();
    let second = s.put_event_type(&et).await.expect("replace");
    assert_eq!(second.schema, json!({"type": "object"}));
    assert_eq!(
        second.created_at.timestamp_millis(),
        t0.timestamp_millis(),
        "creation time kept"
    );
    assert_eq!(s.list_event_types().await.expect("list").len(), 1);
    assert!(s
        .get_event_type("invoice.paid")
        .await
        .expect("get")
        .is_some());
    assert!(s.delete_event_type("invoice.paid").await.expect("delete"));
    assert!(s
        .get_event_type("invoice.paid")
        .await
        .expect("get")
        .is_none());
}

/// Publishes and recorded tries go through group commit: many at once, with
/// repeats and a conflict among them, each still gets its own right answer.
async fn concurrent_publishes_and_results_share_commits_correctly(backend: Backend) {
    let (_db, s) = store(backend).await;
    s.create_webhook(&new_webhook("acct_g", &["*"]))
        .await
        .expect("webhook");
    let events: Vec<NewEvent> = (0..100).map(|_| event("acct_g", "t")).collect();
    let mut tasks = Vec::new();
    // Every event three times at once; the third copy of event 0 differs.
    for copy in 0..3 {
        for (i, e) in events.iter().enumerate() {
            let (s, mut e) = (s.clone(), e.clone());
            // Each publish gets an internal id of its own, as at intake.
            e.id = ids::event_id();
            if copy == 2 && i == 0 {
                e.payload = json!({"different": true});
            }
            tasks.push(tokio::spawn(async move {
                (i, copy, s.publish_event(&e).await.expect("publish"))
            }));
        }
    }
    let mut created = std::collections::HashMap::new();
    let mut conflicts = 0;
    for t in tasks {
        let (i, copy, outcome) = t.await.expect("join");
        match outcome {
            PublishOutcome::Created { webhooks, .. } => {
                assert_eq!(webhooks.len(), 1);
                assert!(created.insert(i, copy).is_none(), "event {i} created twice");
            }
            PublishOutcome::Existing { deliveries, .. } => assert_eq!(deliveries, 1),
            PublishOutcome::Conflict => {
                assert_eq!(i, 0, "only the altered copy conflicts");
                conflicts += 1;
            }
        }
    }
    assert_eq!(created.len(), 100, "each event created exactly once");
    // The altered copy conflicts with the stored original; if it won the
    // race and was stored first, both original copies conflict with it.
    let expected = if created[&0] == 2 { 2 } else { 1 };
    assert_eq!(
        conflicts, expected,
        "event 0 was first stored from copy {}",
        created[&0]
    );
    // Claim them all and record every result at once: half succeed, half fail.
    let now = Utc::now();
    let claimed = claim(&s, "w-g", now, 60, 200).await;
    assert_eq!(claimed.len(), 100);
    let mut tasks = Vec::new();
    for (n, a) in claimed.into_iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let failed = n % 2 == 1;
            let result = AttemptResult {
                attempt_id: a.id.clone(),
                // A tenth of the results come from a worker that lost its lease.
                worker_id: if n % 10 == 9 {
                    "w-other".into()
                } else {
                    "w-g".into()
                },
                status: if failed {
                    AttemptStatus::Failed
                } else {
                    AttemptStatus::Succeeded
                },
                http_status: Some(if failed { 500 } else { 200 }),
                duration_ms: 3,
                response_preview: None,
                error: None,
                completed_at: Utc::now(),
                next: failed.then(|| (ids::attempt_id(), Utc::now() + Duration::hours(1))),
            };
            (n, s.complete_attempt(&result).await.expect("complete"))
        }));
    }
    for t in tasks {
        let (n, recorded) = t.await.expect("join");
        assert_eq!(
            recorded,
            n % 10 != 9,
            "result {n}: recorded only with the lease"
        );
    }
    let stats = s.queue_stats(Utc::now()).await.expect("stats");
    // Pending: the 10 whose result was refused, plus the next try of each
    // recorded failure (odd n, except the 10 refused): 10 + 40.
    assert_eq!(stats.pending, 50);
    // The 10 refused are still leased by w-g: only w-g can give them back,
    // all in one call, and then anyone may claim them.
    let leased: Vec<String> = {
        let later = Utc::now() + Duration::seconds(61);
        let again = claim(&s, "w-peek", later, 30, 100).await;
        again.into_iter().map(|a| a.id).collect()
    };
    assert_eq!(leased.len(), 10, "the refused results' attempts, due now");
    s.release(&leased, "w-someone-else").await.expect("release");
    let now = Utc::now() + Duration::seconds(61);
    let blocked = claim(&s, "w-x", now, 60, 100).await;
    assert!(blocked.is_empty(), "another worker cannot release a lease");
    s.release(&leased, "w-peek").await.expect("release");
    let freed = claim(&s, "w-x", now, 60, 100).await;
    assert_eq!(freed.len(), 10, "released together, claimable at once");
}

async fn a_paused_endpoint_s_tries_wait_out_the_pause(backend: Backend) {
    let (_db, s) = store(backend).await;
    let (paused, other) = (new_webhook("acct_a", &["*"]), new_webhook("acct_b", &["*"]));
    s.create_webhook(&paused).await.expect("paused");
    s.create_webhook(&other).await.expect("other");
    for _ in 0..3 {
        s.publish_event(&event("acct_a", "t")).await.expect("a");
    }
    s.publish_event(&event("acct_b", "t")).await.expect("b");
    let until = Utc::now() + Duration::seconds(30);
    s.throttle_webhook(&paused.id, until).await.expect("pause");
    // Published while paused: born due at the end of the pause.
    s.publish_event(&event("acct_a", "t"))
        .await
        .expect("during");
    let due = |a: &Attempt| a.due_at.timestamp_millis();
    let pending = |w: &Webhook| {
        let (s, w) = (s.clone(), w.clone());
        async move {
            s.list_attempts(
                &w.account_id,
                &w.id,
                Some(AttemptStatus::Pending),
                None,
                100,
            )
            .await
            .expect("list")
            .items
        }
    };
    let rows = pending(&paused).await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|a| due(a) == until.timestamp_millis()),
        "every pending try of the paused endpoint is due when the pause ends"
    );
    assert!(pending(&other)
        .await
        .iter()
        .all(|a| due(a) < until.timestamp_millis()));
    // Claims before the end take the other endpoint's try only.
    let now = Utc::now();
    let got = claim(&s, "w-1", now, 60, 100).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].webhook_id, other.id);
    let later = claim(&s, "w-1", until + Duration::seconds(1), 60, 100).await;
    assert_eq!(later.len(), 4, "due again once the pause is over");
    // A shorter pause never shortens a longer one.
    s.throttle_webhook(&paused.id, now).await.expect("shorter");
    let w = s
        .get_webhook("acct_a", &paused.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        w.throttled_until.map(|t| t.timestamp_millis()),
        Some(until.timestamp_millis())
    );
}

/// A try whose stored row cannot be read (here a snapshot holding a number
/// past what any reader holds, which no way in accepts, written by hand)
/// is claimed, named in the log and left out: the tries claimed with it go
/// on, where before the whole claim failed, every time.
async fn a_try_that_cannot_be_read_is_left_out_of_its_claim(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let e = event("acct_a", "t");
    s.publish_event(&e).await.expect("publish");
    let now = now_sql(backend);
    let insert = format!(
        "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
           due_at, payload_snapshot, created_at) VALUES ('att_unreadable', '{}', '{}', 'acct_a', 2, \
           'pending', {now}, '{{\"n\":1e400}}', {now})",
        e.id,
        w.id,
    );
    raw_execute(backend, &db.url, &insert)
        .await
        .expect("written by hand");
    let claimed = claim(&s, "w1", Utc::now() + Duration::seconds(2), 30, 10).await;
    assert_eq!(
        claimed.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1],
        "the readable try is claimed"
    );
    // The unreadable one was claimed too (it holds the lease), not skipped
    // by the query.
    let held = "UPDATE delivery_attempts SET lease_until = lease_until \
                WHERE id = 'att_unreadable' AND claimed_by = 'w1'";
    assert_eq!(raw_execute(backend, &db.url, held).await, Ok(1));
}

/// A payload holding serde_json's raw-value key, stored before every way
/// in refused it (written here by hand, as no way in accepts it now), reads
/// back as it was stored: its event and its claimed try's snapshot.
/// serde_json's own reading gave other JSON or none: reading the event
/// failed, and so did every claim the try was due in.
async fn a_payload_holding_the_raw_value_key_reads_back_as_stored(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let e = event("acct_a", "t");
    s.publish_event(&e).await.expect("publish");
    // PostgreSQL's jsonb orders keys shortest first: a longer key beside it
    // keeps the reserved key first on both backends.
    let long = "z".repeat(40);
    let held = format!(r#"{{"$serde_json::private::RawValue":"[1,2]","{long}":1}}"#);
    let now = now_sql(backend);
    for sql in [
        format!("UPDATE events SET payload = '{held}' WHERE id = '{}'", e.id),
        // A try's snapshot is immutable: a second try holds it.
        format!(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
               due_at, payload_snapshot, created_at) VALUES ('att_held', '{}', '{}', 'acct_a', 2, \
               'pending', {now}, '{held}', {now})",
            e.id, w.id
        ),
    ] {
        assert_eq!(raw_execute(backend, &db.url, &sql).await, Ok(1), "{sql}");
    }
    let mut expected = serde_json::Map::new();
    expected.insert("$serde_json::private::RawValue".into(), json!("[1,2]"));
    expected.insert(long, json!(1));
    let expected = serde_json::Value::Object(expected);
    let stored = s
        .get_event(None, &e.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored.payload, expected);
    let claimed = claim(&s, "w1", Utc::now() + Duration::seconds(2), 30, 10).await;
    assert_eq!(claimed.len(), 2, "both claimed, none left out");
    let held = claimed
        .iter()
        .find(|a| a.id == "att_held")
        .expect("held try");
    assert_eq!(held.payload_snapshot, expected);
}

/// A webhook's payload filter holding serde_json's raw-value key, stored
/// before every way in refused it (written here by hand), filters as it was
/// stored. Read with serde_json's own `Value`, the object was taken for the
/// JSON text its string holds: other values than stored, or (as here) no
/// filter at all, and a filter that does not read filters nothing: the
/// webhook got every event of its types.
async fn a_payload_filter_holding_the_raw_value_key_filters_as_stored(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    // serde_json's reading takes the key's string for JSON text: this one
    // is none, so the whole filter failed to read.
    let filter =
        r#"{"pointer":"/tier","oneOf":[{"$serde_json::private::RawValue":"no JSON"},"gold"]}"#;
    let sql = format!(
        "UPDATE webhook_configs SET payload_filter = '{filter}' WHERE id = '{}'",
        w.id
    );
    assert_eq!(raw_execute(backend, &db.url, &sql).await, Ok(1), "{sql}");
    for tier in ["silver", "gold"] {
        let mut e = event("acct_a", "t");
        e.payload = json!({ "tier": tier });
        s.publish_event(&e).await.expect("publish");
    }
    let claimed = claim(&s, "w1", Utc::now() + Duration::seconds(2), 30, 10).await;
    let tiers: Vec<_> = claimed
        .iter()
        .map(|a| a.payload_snapshot["data"]["tier"].clone())
        .collect();
    assert_eq!(tiers, [json!("gold")], "only the matching event has a try");
}

/// The current time as a stored time, in SQL of `backend` (rows written by hand).
fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER) * 1000",
        Backend::Postgres => "now()",
    }
}

/// Claims up to `limit` attempts due at `now` for `worker`, leased `secs` seconds.
async fn claim(
    s: &Arc<dyn Store>,
    worker: &str,
    now: chrono::DateTime<Utc>,
    secs: i64,
    limit: u32,
) -> Vec<Attempt> {
    s.claim_due(&Claim {
        worker_id: worker,
        now,
        lease_until: now + Duration::seconds(secs),
        limit,
        exclude_webhooks: &[],
    })
    .await
    .expect("claim")
}

async fn the_webhook_cap_is_read_from_the_database_setting(backend: Backend) {
    let (_db, s) = store(backend).await;
    s.set_max_webhooks_per_account(3).await.expect("set cap");
    // Concurrent inserts still stop exactly at the cap.
    let mut tasks = Vec::new();
    for _ in 0..7 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_webhook(&new_webhook("acct_a", &["*"])).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => ok += 1,
            Err(StoreError::WebhookLimit) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 3);
    // Raised: two more, then refused again.
    s.set_max_webhooks_per_account(5).await.expect("raise cap");
    for _ in 0..2 {
        s.create_webhook(&new_webhook("acct_a", &["*"]))
            .await
            .expect("under the raised cap");
    }
    assert!(matches!(
        s.create_webhook(&new_webhook("acct_a", &["*"])).await,
        Err(StoreError::WebhookLimit)
    ));
}

async fn a_duplicate_webhook_is_refused_by_the_database(backend: Backend) {
    let (_db, s) = store(backend).await;
    let first = new_webhook("acct_a", &["invoice.paid", "invoice.void"]);
    // Concurrent copies (types in another order): exactly one is stored.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        let mut w = new_webhook("acct_a", &["invoice.void", "invoice.paid"]);
        w.url = first.url.clone();
        if i % 2 == 0 {
            w.event_types.reverse();
        }
        tasks.push(tokio::spawn(async move { s.create_webhook(&w).await }));
    }
    let (mut ok, mut duplicate) = (0, 0);
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => ok += 1,
            Err(StoreError::WebhookDuplicate) => duplicate += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, duplicate), (1, 5));
    // Fewer types, or another account, is no duplicate.
    let mut fewer = new_webhook("acct_a", &["invoice.paid"]);
    fewer.url = first.url.clone();
    s.create_webhook(&fewer).await.expect("other types");
    let mut elsewhere = new_webhook("acct_b", &["invoice.paid", "invoice.void"]);
    elsewhere.url = first.url.clone();
    s.create_webhook(&elsewhere).await.expect("other account");
    // An update cannot make a duplicate either; other updates pass.
    let upd = WebhookUpdate {
        event_types: Some(vec!["invoice.void".into(), "invoice.paid".into()]),
        updated_at: Utc::now(),
        ..Default::default()
    };
    assert!(matches!(
        s.update_webhook("acct_a", &fewer.id, &upd).await,
        Err(StoreError::WebhookDuplicate)
    ));
    let upd = WebhookUpdate {
        description: Some("renamed".into()),
        updated_at: Utc::now(),
        ..Default::default()
    };
    s.update_webhook("acct_a", &fewer.id, &upd)
        .await
        .expect("update")
        .expect("found");
}

async fn prefix_subscriptions_fan_out(backend: Backend) {
    let (_db, s) = store(backend).await;
    let all = new_webhook("acct_a", &["*"]);
    let invoices = new_webhook("acct_a", &["invoice.*"]);
    let refunds = new_webhook("acct_a", &["invoice.refund.*", "payment.settled"]);
    for w in [&all, &invoices, &refunds] {
        s.create_webhook(w).await.expect("create");
    }
    let cases = [
        ("invoice.paid", vec![&all, &invoices]),
        ("invoice.refund.created", vec![&all, &invoices, &refunds]),
        ("payment.settled", vec![&all, &refunds]),
        ("invoice", vec![&all]),
        ("invoicex.paid", vec![&all]),
    ];
    // Published together, so PostgreSQL's batched fan-out is exercised too.
    let mut tasks = Vec::new();
    for (ty, _) in &cases {
        let s = s.clone();
        let e = event("acct_a", ty);
        tasks.push(tokio::spawn(async move { s.publish_event(&e).await }));
    }
    for ((ty, want), t) in cases.iter().zip(tasks) {
        let PublishOutcome::Created { mut webhooks, .. } = t.await.expect("join").expect("publish")
        else {
            panic!("{ty}: created")
        };
        webhooks.sort();
        let mut want: Vec<String> = want.iter().map(|w| w.id.clone()).collect();
        want.sort();
        assert_eq!(webhooks, want, "{ty}");
    }
}

/// Claims every due try and finishes each as dead (one try per pair).
async fn kill_everything_due(s: &Arc<dyn Store>) -> Vec<Attempt> {
    let now = Utc::now();
    let claimed = s
        .claim_due(&Claim {
            worker_id: "w1",
            now,
            lease_until: now + Duration::seconds(30),
            limit: 100,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim");
    for a in &claimed {
        let dead = AttemptResult {
            attempt_id: a.id.clone(),
            worker_id: "w1".into(),
            status: AttemptStatus::Dead,
            http_status: Some(500),
            duration_ms: 1,
            response_preview: None,
            error: Some("HTTP 500".into()),
            completed_at: now,
            next: None,
        };
        assert!(s.complete_attempt(&dead).await.expect("complete"));
    }
    claimed
}

async fn searches_across_accounts_find_tries_and_events(backend: Backend) {
    let (_db, s) = store(backend).await;
    let wa = new_webhook("acct_a", &["*"]);
    let wb = new_webhook("acct_b", &["*"]);
    s.create_webhook(&wa).await.expect("a");
    s.create_webhook(&wb).await.expect("b");
    let start = Utc::now() - Duration::milliseconds(5);
    let ea = event("acct_a", "invoice.paid");
    let eb = event("acct_b", "invoice.sent");
    s.publish_event(&ea).await.expect("publish a");
    s.publish_event(&eb).await.expect("publish b");
    let dead = kill_everything_due(&s).await;
    assert_eq!(dead.len(), 2);

    // Every account (the operator's view), newest first, paged.
    let all = AttemptFilter::default();
    let first = s.search_attempts(&all, None, 1).await.expect("page 1");
    assert_eq!(first.items.len(), 1);
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = s
        .search_attempts(&all, Some(&cursor), 1)
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 1);
    assert!(second.items[0].id < first.items[0].id);
    assert!(second.next_cursor.is_none());

    // By account, event, endpoint, status.
    let by = |f: AttemptFilter<'static>| {
        let s = s.clone();
        async move { s.search_attempts(&f, None, 10).await.expect("search").items }
    };
    let acct_b = by(AttemptFilter {
        account_id: Some("acct_b"),
        ..Default::default()
    })
    .await;
    assert_eq!(acct_b.len(), 1);
    assert_eq!(acct_b[0].event_id, eb.id);
    let ev = Box::leak(ea.id.clone().into_boxed_str());
    assert_eq!(
        by(AttemptFilter {
            event_id: Some(ev),
            ..Default::default()
        })
        .await[0]
            .webhook_id,
        wa.id
    );
    assert!(by(AttemptFilter {
        event_id: Some(ev),
        account_id: Some("acct_b"),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(by(AttemptFilter {
        status: Some(AttemptStatus::Succeeded),
        ..Default::default()
    })
    .await
    .is_empty());

    // Time bounds are id bounds.
    let later = Utc::now() + Duration::seconds(1);
    assert!(by(AttemptFilter {
        from: Some(later),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        by(AttemptFilter {
            from: Some(start),
            to: Some(later),
            ..Default::default()
        })
        .await
        .len(),
        2
    );

    // Dead letters nobody retried: a retry takes the pair out.
    let dead_letters = AttemptFilter {
        status: Some(AttemptStatus::Dead),
        latest_only: true,
        ..Default::default()
    };
    assert_eq!(by(dead_letters.clone()).await.len(), 2);
    let now = Utc::now();
    let due = now + Duration::seconds(60);
    let retried = s
        .retry_now(
            &dead[0].account_id,
            &dead[0].id,
            &ids::attempt_id(),
            now,
            due,
            false,
        )
        .await
        .expect("retry")
        .expect("scheduled");
    assert_eq!(retried.due_at.timestamp_millis(), due.timestamp_millis());
    // A second bulk retry that selected the same dead letter before the
    // first re-queued it does not queue it again.
    assert!(s
        .retry_now(
            &dead[0].account_id,
            &dead[0].id,
            &ids::attempt_id(),
            now,
            due,
            true,
        )
        .await
        .expect("retry")
        .is_none());
    assert_eq!(by(dead_letters).await.len(), 1);

    // One try: the operator sees any account's, a tenant only its own.
    let id = &dead[0].id;
    assert!(s.get_attempt(None, id).await.expect("get").is_some());
    let owner = dead[0].account_id.as_str();
    let other = if owner == "acct_a" {
        "acct_b"
    } else {
        "acct_a"
    };
    assert!(s.get_attempt(Some(owner), id).await.expect("get").is_some());
    assert!(s.get_attempt(Some(other), id).await.expect("get").is_none());

    // Events, scoped the same way, filtered by account and type.
    let got = s
        .get_event(None, &ea.id)
        .await
        .expect("event")
        .expect("found");
    assert_eq!(got.payload, ea.payload);
    assert_eq!(got.event_type, "invoice.paid");
    assert!(s
        .get_event(Some("acct_b"), &ea.id)
        .await
        .expect("event")
        .is_none());
    let events = s
        .search_events(&EventFilter::default(), None, 10)
        .await
        .expect("events");
    assert_eq!(events.items.len(), 2);
    assert_eq!(events.items[0].id, eb.id, "newest first");
    let typed = s
        .search_events(
            &EventFilter {
                event_type: Some("invoice.paid"),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("typed");
    assert_eq!(typed.items.len(), 1);
    assert!(s
        .search_events(
            &EventFilter {
                account_id: Some("acct_c"),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .expect("none")
        .items
        .is_empty());

    // Webhooks of every account.
    let hooks = s.list_webhooks(None, None, 10).await.expect("all");
    assert_eq!(hooks.items.len(), 2);
}

async fn disable_and_enable_report_whether_the_webhook_exists(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let now = Utc::now();
    s.publish_event(&event("acct_a", "t"))
        .await
        .expect("publish");
    assert!(s
        .disable_webhook(&w.id, "operator", now)
        .await
        .expect("disable"));
    // Published while disabled: not queued for it at all.
    s.publish_event(&event("acct_a", "t"))
        .await
        .expect("publish");
    let claim = |s: Arc<dyn Store>| async move {
        let now = Utc::now();
        s.claim_due(&Claim {
            worker_id: "w1",
            now,
            lease_until: now + Duration::seconds(30),
            limit: 10,
            exclude_webhooks: &[],
        })
        .await
        .expect("claim")
        .len()
    };
    assert_eq!(
        claim(s.clone()).await,
        0,
        "a disabled endpoint's tries wait"
    );
    assert!(s.enable_webhook(&w.id, now).await.expect("enable"));
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert!(!got.disabled && got.disabled_reason.is_none());
    assert_eq!(claim(s.clone()).await, 1, "enabled, they go");
    assert!(!s
        .disable_webhook("wh_nope", "x", now)
        .await
        .expect("missing"));
    assert!(!s.enable_webhook("wh_nope", now).await.expect("missing"));
    assert!(!s.hold_webhook("wh_nope", "x", now).await.expect("missing"));

    // The operator's hold: a 410, the tenant's own disable and the tenant's
    // updates leave it (and its reason) as they are; only enabling lifts it.
    assert!(s
        .hold_webhook(&w.id, "disabled by the operator: abuse", now)
        .await
        .expect("hold"));
    assert!(!s
        .disable_webhook(&w.id, "endpoint answered 410 Gone", now)
        .await
        .expect("410"));
    let update = WebhookUpdate {
        description: Some("renamed".into()),
        enable: true,
        updated_at: now,
        ..Default::default()
    };
    let got = s
        .update_webhook("acct_a", &w.id, &update)
        .await
        .expect("update")
        .expect("found");
    assert!(got.disabled && got.held_by_operator);
    assert_eq!(
        got.disabled_reason.as_deref(),
        Some("disabled by the operator: abuse")
    );
    assert!(s.enable_webhook(&w.id, now).await.expect("enable"));
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert!(!got.disabled && !got.held_by_operator);
}

/// A sealed value under master key `key_id`.
fn sealed_under(key_id: &str, tag: &str) -> Sealed {
    Sealed {
        key_id: key_id.into(),
        ciphertext: tag.as_bytes().to_vec(),
    }
}

async fn secret_of(s: &Arc<dyn Store>, account: &str, id: &str) -> Sealed {
    s.get_webhook(account, id)
        .await
        .expect("get")
        .expect("found")
        .secret
}

async fn reseal_is_compare_and_swap(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    let other = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    s.create_webhook(&other).await.expect("other webhook");
    let new = sealed_under("mk_new", "s1 under the new key");

    // A stale `old` (another ciphertext, or the right bytes under another
    // key) swaps nothing: a concurrent rotation wins.
    for stale in [sealed("rotated meanwhile"), sealed_under("mk_other", "s1")] {
        assert!(!s
            .reseal(SealedColumn::WebhookSecret, &w.id, &stale, &new)
            .await
            .expect("stale reseal"));
        assert_eq!(secret_of(&s, "acct_a", &w.id).await, sealed("s1"));
    }
    // Unknown rows and empty columns are not swapped either.
    assert!(!s
        .reseal(
            SealedColumn::WebhookSecret,
            "wh_missing",
            &sealed("s1"),
            &new
        )
        .await
        .expect("unknown id"));
    assert!(!s
        .reseal(SealedColumn::WebhookOldSecret, &w.id, &sealed("s1"), &new)
        .await
        .expect("no old secret"));

    // The current value swaps, on that row only, and only once.
    assert!(s
        .reseal(SealedColumn::WebhookSecret, &w.id, &sealed("s1"), &new)
        .await
        .expect("reseal"));
    assert_eq!(secret_of(&s, "acct_a", &w.id).await, new);
    assert_eq!(secret_of(&s, "acct_a", &other.id).await, sealed("s1"));
    assert!(!s
        .reseal(
            SealedColumn::WebhookSecret,
            &w.id,
            &sealed("s1"),
            &sealed_under("mk_third", "x")
        )
        .await
        .expect("second reseal from the stale value"));
    assert_eq!(secret_of(&s, "acct_a", &w.id).await, new);
}

async fn sealed_not_under_respects_the_key_and_the_limit(backend: Backend) {
    let (_db, s) = store(backend).await;
    let mut old_key = Vec::new();
    for account in ["acct_a", "acct_b", "acct_a"] {
        let w = new_webhook(account, &["*"]);
        s.create_webhook(&w).await.expect("webhook");
        old_key.push((w.id, account.to_owned()));
    }
    let mut current = new_webhook("acct_c", &["*"]);
    current.secret = sealed_under("mk_new", "s-new");
    s.create_webhook(&current).await.expect("current webhook");
    old_key.sort();

    let rows = s
        .sealed_not_under(SealedColumn::WebhookSecret, "mk_new", 10)
        .await
        .expect("not under mk_new");
    let mut got: Vec<_> = rows
        .iter()
        .map(|r| (r.id.clone(), r.account_id.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got, old_key,
        "every row under another key, none under mk_new"
    );
    assert!(rows
        .iter()
        .all(|r| r.column == SealedColumn::WebhookSecret && r.sealed == sealed("s1")));

    // The limit bounds the batch.
    let two = s
        .sealed_not_under(SealedColumn::WebhookSecret, "mk_new", 2)
        .await
        .expect("limited");
    assert_eq!(two.len(), 2);
    assert!(two
        .iter()
        .all(|r| old_key.iter().any(|(id, _)| *id == r.id)));

    // Under the other key, only the one row sealed under mk_new is left.
    let rest = s
        .sealed_not_under(SealedColumn::WebhookSecret, "mk_test", 10)
        .await
        .expect("not under mk_test");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, current.id);
    assert_eq!(rest[0].sealed, current.secret);

    // An empty column (no old secrets) yields nothing; a resealed row drops out.
    assert!(s
        .sealed_not_under(SealedColumn::WebhookOldSecret, "mk_new", 10)
        .await
        .expect("old secrets")
        .is_empty());
    assert!(s
        .reseal(
            SealedColumn::WebhookSecret,
            &old_key[0].0,
            &sealed("s1"),
            &sealed_under("mk_new", "s1'")
        )
        .await
        .expect("reseal"));
    assert_eq!(
        s.sealed_not_under(SealedColumn::WebhookSecret, "mk_new", 10)
            .await
            .expect("after reseal")
            .len(),
        2
    );

    // Integration rows are keyed by name and belong to no account.
    s.create_integration(&integration("acme"))
        .await
        .expect("integration");
    let rows = s
        .sealed_not_under(SealedColumn::IntegrationForwardingSecret, "mk_new", 10)
        .await
        .expect("forwarding secrets");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].id.as_str(), rows[0].account_id.as_str()),
        ("acme", "")
    );
    assert_eq!(rows[0].sealed, sealed("f"));
}

async fn count_not_under_counts_every_sealed_column(backend: Backend) {
    let (_db, s) = store(backend).await;
    assert_eq!(s.count_not_under("mk_new").await.expect("empty"), 0);
    // WebhookSecret and, once rotated, WebhookOldSecret.
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let upd = WebhookUpdate {
        rotate: Some((sealed("s2"), Utc::now() + Duration::hours(1))),
        updated_at: Utc::now(),
        ..Default::default()
    };
    s.update_webhook("acct_a", &w.id, &upd)
        .await
        .expect("rotate")
        .expect("found");
    assert_eq!(s.count_not_under("mk_new").await.expect("webhook"), 2);
    // IntegrationSecrets and IntegrationForwardingSecret.
    s.create_integration(&integration("acme"))
        .await
        .expect("integration");
    assert_eq!(s.count_not_under("mk_new").await.expect("integration"), 4);
    // AuditChainKey.
    s.init_audit_key(&|_| sealed("chain key"), Utc::now())
        .await
        .expect("audit key");
    assert_eq!(s.count_not_under("mk_new").await.expect("audit key"), 5);
    assert_eq!(s.count_not_under("mk_test").await.expect("current"), 0);

    // Resealing moves a value from one count to the other.
    assert!(s
        .reseal(
            SealedColumn::AuditChainKey,
            &s.sealed_not_under(SealedColumn::AuditChainKey, "mk_new", 1)
                .await
                .expect("audit row")[0]
                .id,
            &sealed("chain key"),
            &sealed_under("mk_new", "chain key'")
        )
        .await
        .expect("reseal"));
    assert_eq!(s.count_not_under("mk_new").await.expect("after"), 4);
    assert_eq!(s.count_not_under("mk_test").await.expect("after"), 1);
}

async fn a_released_job_is_claimed_again_and_a_stale_worker_cannot_release_it(backend: Backend) {
    let (_db, s) = store(backend).await;
    s.record_inbound(&inbound("acme", "d1"))
        .await
        .expect("record");
    let now = Utc::now();
    let claim = |worker_id| Claim {
        worker_id,
        now,
        lease_until: now + Duration::seconds(30),
        limit: 10,
        exclude_webhooks: &[],
    };
    let jobs = s.claim_jobs(&claim("w1")).await.expect("claim");
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].id.clone();
    assert!(s.claim_jobs(&claim("w2")).await.expect("leased").is_empty());

    // Another worker cannot give back what it does not hold.
    s.release_job(&job, "w2").await.expect("foreign release");
    assert!(s
        .claim_jobs(&claim("w2"))
        .await
        .expect("still leased")
        .is_empty());

    // The holder's release makes it claimable at once, by anyone.
    s.release_job(&job, "w1").await.expect("release");
    let again = s.claim_jobs(&claim("w2")).await.expect("claim again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, job);

    // The first worker is now stale: its release and its result are ignored.
    s.release_job(&job, "w1").await.expect("stale release");
    assert!(s
        .claim_jobs(&claim("w3"))
        .await
        .expect("held by w2")
        .is_empty());
    let result = AttemptResult {
        attempt_id: job.clone(),
        worker_id: "w1".into(),
        status: AttemptStatus::Succeeded,
        http_status: Some(200),
        duration_ms: 3,
        response_preview: None,
        error: None,
        completed_at: now,
        next: None,
    };
    assert!(!s.complete_job(&result).await.expect("stale complete"));
    assert!(s
        .complete_job(&AttemptResult {
            worker_id: "w2".into(),
            ..result
        })
        .await
        .expect("complete"));

    // A finished job is not given back.
    s.release_job(&job, "w2").await.expect("release finished");
    assert!(s
        .claim_jobs(&claim("w3"))
        .await
        .expect("finished")
        .is_empty());
}

async fn webhooks_by_ids_ignores_unknown_ids_and_crosses_accounts(backend: Backend) {
    let (_db, s) = store(backend).await;
    let a = new_webhook("acct_a", &["*"]);
    let b = new_webhook("acct_b", &["*"]);
    let unasked = new_webhook("acct_a", &["*"]);
    for w in [&a, &b, &unasked] {
        s.create_webhook(w).await.expect("webhook");
    }
    assert!(s.webhooks_by_ids(&[]).await.expect("no ids").is_empty());
    let ids = vec![a.id.clone(), "wh_missing".to_owned(), b.id.clone()];
    let mut got: Vec<_> = s
        .webhooks_by_ids(&ids)
        .await
        .expect("by ids")
        .into_iter()
        .map(|w| (w.id, w.account_id, w.secret))
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = vec![
        (a.id.clone(), "acct_a".to_owned(), sealed("s1")),
        (b.id.clone(), "acct_b".to_owned(), sealed("s1")),
    ];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);
    assert!(s
        .webhooks_by_ids(&["wh_missing".to_owned()])
        .await
        .expect("unknown only")
        .is_empty());
}

/// A minute's start, `m` minutes after a fixed hour.
fn minute(m: i64) -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0)
        .single()
        .expect("time")
        + Duration::minutes(m)
}

fn delta(m: i64, series: &str, value: i64) -> ActivityDelta {
    ActivityDelta {
        minute: minute(m),
        series: series.to_owned(),
        value,
    }
}

/// Activity rows are sums: each add (a replica's flush) adds to the rows,
/// deltas for one row in one batch are summed, `activity_since` reads from
/// a minute on in order, and pruning removes only older minutes.
async fn activity_adds_sum_and_are_read_since_and_pruned(backend: Backend) {
    let (_db, s) = store(backend).await;
    s.add_activity(&[]).await.expect("nothing to add");
    assert!(s
        .activity_since(minute(-10))
        .await
        .expect("empty")
        .is_empty());
    s.add_activity(&[
        delta(1, "inbound.accepted", 3),
        delta(0, "inbound.accepted", 2),
        delta(1, "latency.le.250", 1),
        delta(1, "latency.le.250", 4),
    ])
    .await
    .expect("first replica's flush");
    // A second replica (or a later flush) adds to the same rows, and is
    // told each row's sum over both.
    let mut sums = s
        .add_activity(&[
            delta(1, "inbound.accepted", 10),
            delta(2, "outbound.dead", 1),
        ])
        .await
        .expect("second flush");
    sums.sort_by(|a, b| (a.minute, &a.series).cmp(&(b.minute, &b.series)));
    assert_eq!(
        sums,
        vec![
            delta(1, "inbound.accepted", 13),
            delta(2, "outbound.dead", 1)
        ]
    );
    assert_eq!(
        s.activity_since(minute(0)).await.expect("since 0"),
        vec![
            delta(0, "inbound.accepted", 2),
            delta(1, "inbound.accepted", 13),
            delta(1, "latency.le.250", 5),
            delta(2, "outbound.dead", 1),
        ]
    );
    assert_eq!(
        s.activity_since(minute(1) + Duration::seconds(1))
            .await
            .expect("since after 1"),
        vec![delta(2, "outbound.dead", 1)],
        "since is a lower bound on the minute"
    );
    // Concurrent flushes of overlapping rows lose nothing.
    let adds: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.add_activity(&[
                    delta(2, "outbound.dead", 1),
                    delta(1, "inbound.accepted", 1),
                ])
                .await
            })
        })
        .collect();
    for add in adds {
        add.await.expect("task").expect("concurrent flush");
    }
    let rows = s.activity_since(minute(1)).await.expect("after concurrent");
    assert_eq!(rows[0], delta(1, "inbound.accepted", 21));
    assert_eq!(rows[2], delta(2, "outbound.dead", 9));

    assert_eq!(s.prune_activity(minute(1)).await.expect("prune"), 1);
    assert_eq!(s.prune_activity(minute(1)).await.expect("prune again"), 0);
    let left = s.activity_since(minute(-10)).await.expect("left");
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|d| d.minute >= minute(1)));
}

/// The tenant's test event: one try for the one webhook named, whatever it
/// subscribes to; none for the account's other webhooks; nothing stored for
/// another account's webhook, a missing one or a disabled one.
async fn publish_to_webhook_queues_one_try_for_that_webhook_only(backend: Backend) {
    let (_db, s) = store(backend).await;
    let target = new_webhook("acct_a", &["invoice.paid"]);
    let sibling = new_webhook("acct_a", &["*"]);
    let foreign = new_webhook("acct_b", &["*"]);
    for w in [&target, &sibling, &foreign] {
        s.create_webhook(w).await.expect("webhook");
    }
    let test_event = |account: &str| NewEvent {
        client_id: None,
        payload: json!({"webhookId": target.id}),
        ..event(account, "webhook.test")
    };
    let e = test_event("acct_a");
    let DirectOutcome::Queued { attempt_id } =
        s.publish_to_webhook(&e, &target.id).await.expect("publish")
    else {
        panic!("the account's enabled webhook gets the event")
    };
    let tries = s
        .list_attempts("acct_a", &target.id, None, None, 10)
        .await
        .expect("list")
        .items;
    assert_eq!(tries.len(), 1);
    let a = &tries[0];
    assert_eq!(
        (a.id.as_str(), a.event_id.as_str()),
        (attempt_id.as_str(), e.id.as_str())
    );
    assert_eq!((a.attempt, a.status), (1, AttemptStatus::Pending));
    assert_eq!(a.payload_snapshot["type"], "webhook.test");
    assert_eq!(a.payload_snapshot["data"], e.payload);
    assert_eq!(
        s.get_event(Some("acct_a"), &e.id)
            .await
            .expect("event")
            .map(|got| got.event_type),
        Some("webhook.test".to_string())
    );
    // No fan-out: the sibling subscribed to everything gets nothing.
    for w in [&sibling, &foreign] {
        let none = s
            .list_attempts(&w.account_id, &w.id, None, None, 10)
            .await
            .expect("list");
        assert!(none.items.is_empty(), "{} got a try", w.id);
    }
    let stats = s.queue_stats(Utc::now()).await.expect("stats");
    assert_eq!(stats.pending, 1);
    let claimed = claim(&s, "w-t", Utc::now(), 30, 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, attempt_id);

    // Another account's webhook, or none: nothing stored.
    for (account, id) in [("acct_b", target.id.as_str()), ("acct_a", "wh_nope")] {
        let e = test_event(account);
        assert_eq!(
            s.publish_to_webhook(&e, id).await.expect("refused"),
            DirectOutcome::NoWebhook
        );
        assert!(s.get_event(None, &e.id).await.expect("get").is_none());
    }
    // Paused: due when the pause ends, like any first try.
    let until = Utc::now() + Duration::seconds(30);
    s.throttle_webhook(&sibling.id, until).await.expect("pause");
    let DirectOutcome::Queued { attempt_id } = s
        .publish_to_webhook(&test_event("acct_a"), &sibling.id)
        .await
        .expect("paused")
    else {
        panic!("a paused webhook still gets the event")
    };
    let a = s
        .get_attempt(Some("acct_a"), &attempt_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(a.due_at.timestamp_millis(), until.timestamp_millis());
    // Disabled by the tenant (or a 410), or held by the operator: refused.
    let now = Utc::now();
    assert!(s
        .disable_webhook(&target.id, "tenant", now)
        .await
        .expect("disable"));
    assert!(s
        .hold_webhook(&sibling.id, "operator", now)
        .await
        .expect("hold"));
    for w in [&target, &sibling] {
        let e = test_event("acct_a");
        assert_eq!(
            s.publish_to_webhook(&e, &w.id).await.expect("disabled"),
            DirectOutcome::Disabled
        );
        assert!(s.get_event(None, &e.id).await.expect("get").is_none());
    }
}

/// PostgreSQL's claims start at a floor (`postgres/floor.rs`), below which
/// no try may hide: one due an hour ago is claimed at once when this store
/// wrote it, and within the floor's refresh (a second) when another replica
/// did (here, plain SQL the store never saw).
async fn tries_due_long_ago_are_claimed_past_the_floor(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_f", &["invoice.paid"]);
    s.create_webhook(&w).await.expect("webhook");
    let now = Utc::now();
    assert!(claim(&s, "w1", now, 30, 10).await.is_empty(), "nothing yet");
    let mut e = event("acct_f", "invoice.paid");
    e.created_at = now - Duration::hours(1);
    s.publish_event(&e).await.expect("publish");
    let mine = claim(&s, "w1", now, 30, 10).await;
    assert_eq!(mine.len(), 1, "this store's own try, due an hour ago");

    // A day earlier still: below the floor this store holds now.
    let day_ms = Duration::days(1).num_milliseconds();
    another_replicas_try(backend, &db.url, &e.id, "att_elsewhere", -day_ms).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = claim(&s, "w2", now, 30, 10).await;
        if got.iter().any(|a| a.id == "att_elsewhere") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "another replica's try below the floor was never claimed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// When every pending try is due later (backoffs, a pause), the floor stays
/// at now: another replica's try due now is claimed at once, not after the
/// next refresh.
async fn a_queue_due_only_later_keeps_no_floor_above_now(backend: Backend) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_l", &["invoice.paid"]);
    s.create_webhook(&w).await.expect("webhook");
    let mut e = event("acct_l", "invoice.paid");
    e.created_at = Utc::now() + Duration::hours(1);
    s.publish_event(&e).await.expect("publish");
    // The floor read (by this first claim of a new store) while only that
    // later try is pending. No sleep before it: the try below is due at
    // the test's start, and the floor sits 2 s below this claim's time.
    assert!(claim(&s, "w1", Utc::now(), 30, 10).await.is_empty());

    let hour_ms = Duration::hours(1).num_milliseconds();
    another_replicas_try(backend, &db.url, &e.id, "att_now", -hour_ms).await;
    let got = claim(&s, "w2", Utc::now(), 30, 10).await;
    assert_eq!(
        got.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["att_now"],
        "another replica's try due now, claimed at once"
    );
}

/// A second try (`id`) of `event_id`'s first, due `shift_ms` from it,
/// written behind the store's back as another replica would.
async fn another_replicas_try(
    backend: Backend,
    url: &str,
    event_id: &str,
    id: &str,
    shift_ms: i64,
) {
    let due = match backend {
        Backend::Postgres => format!("due_at + interval '{shift_ms} milliseconds'"),
        Backend::Sqlite => format!("due_at + {shift_ms}"),
    };
    let copy = format!(
        "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
         payload_snapshot, created_at) SELECT '{id}', event_id, webhook_id, account_id, 2, 'pending', \
         {due}, payload_snapshot, created_at FROM delivery_attempts WHERE event_id = '{event_id}' AND attempt = 1"
    );
    raw_execute(backend, url, &copy).await.expect("insert");
}

/// The breaker's count: concurrent failures counted once each, the
/// breaker opening at the threshold, the first failure's time kept, a
/// success starting over (answering the pauses it had).
async fn an_endpoint_s_health_is_counted_in_the_database(backend: Backend) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("create");
    let t0 = Utc::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (s, id) = (s.clone(), w.id.clone());
        tasks.push(tokio::spawn(async move {
            s.webhook_failed(&id, t0 + Duration::seconds(i), 5).await
        }));
    }
    for t in tasks {
        let f = t.await.expect("join").expect("failed").expect("found");
        assert!(!f.opened, "four failures do not open it");
    }
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.health.failures_in_a_row, 4, "each counted once");
    let since = got.health.failing_since.expect("failing");
    let fifth = s
        .webhook_failed(&w.id, t0 + Duration::seconds(10), 5)
        .await
        .expect("failed")
        .expect("found");
    assert!(fifth.opened);
    assert_eq!(fifth.pauses, 1);
    assert_eq!(
        fifth.failing_since, since,
        "the first failure's time is kept"
    );
    assert!(since <= t0 + Duration::seconds(3));
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.health.failures_in_a_row, 0, "counting starts over");
    assert!(!got.health.is_clear());
    assert_eq!(s.webhook_succeeded(&w.id).await.expect("ok"), 1);
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert!(got.health.is_clear(), "{:?}", got.health);
    assert_eq!(s.webhook_succeeded(&w.id).await.expect("ok"), 0);
    assert!(s
        .webhook_failed("wh_missing", t0, 5)
        .await
        .expect("failed")
        .is_none());
    // Enabling an endpoint forgets its failures.
    s.webhook_failed(&w.id, t0, 5).await.expect("failed");
    assert!(s.enable_webhook(&w.id, t0).await.expect("enable"));
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert!(got.health.is_clear());
}

async fn a_failing_endpoint_disabled_leaves_no_try_pending_and_hurried_retries_are_due(
    backend: Backend,
) {
    let (_db, s) = store(backend).await;
    let (w, other) = (new_webhook("acct_a", &["*"]), new_webhook("acct_b", &["*"]));
    s.create_webhook(&w).await.expect("create");
    s.create_webhook(&other).await.expect("create");
    for _ in 0..3 {
        s.publish_event(&event("acct_a", "t"))
            .await
            .expect("publish");
    }
    s.publish_event(&event("acct_b", "t"))
        .await
        .expect("publish");
    // One try fails: its retry is due in an hour.
    let now = Utc::now();
    let got = claim(&s, "w1", now + Duration::seconds(1), 30, 1).await;
    let failed = got.iter().find(|a| a.webhook_id == w.id).cloned();
    let failed = match failed {
        Some(a) => a,
        None => claim(&s, "w1", now + Duration::seconds(1), 30, 10)
            .await
            .into_iter()
            .find(|a| a.webhook_id == w.id)
            .expect("a try of w"),
    };
    let retry_due = now + Duration::hours(1);
    assert!(s
        .complete_attempt(&AttemptResult {
            attempt_id: failed.id.clone(),
            worker_id: "w1".into(),
            status: AttemptStatus::Failed,
            http_status: Some(500),
            duration_ms: 3,
            response_preview: None,
            error: Some("HTTP 500".into()),
            completed_at: now,
            next: Some((ids::attempt_id(), retry_due)),
        })
        .await
        .expect("complete"));
    // Recovering brings the retry forward (not first tries, not another
    // endpoint's), and a time after it brings nothing.
    assert_eq!(
        s.hurry_retries(&w.id, now + Duration::minutes(5), now)
            .await
            .expect("hurry"),
        0
    );
    assert_eq!(
        s.hurry_retries(
            &w.id,
            now - Duration::minutes(5),
            now + Duration::seconds(2)
        )
        .await
        .expect("hurry"),
        1
    );
    let pending = s
        .list_attempts("acct_a", &w.id, Some(AttemptStatus::Pending), None, 10)
        .await
        .expect("list")
        .items;
    let retry = pending.iter().find(|a| a.attempt == 2).expect("the retry");
    assert!(retry.due_at <= now + Duration::seconds(2));

    // Disabled for failing: every pending try of that endpoint is dead with
    // the reason, the other endpoint's untouched; once only.
    let reason = "every try failed";
    assert!(s
        .disable_failing_webhook(&w.id, reason, now)
        .await
        .expect("disable"));
    assert!(!s
        .disable_failing_webhook(&w.id, reason, now)
        .await
        .expect("again"));
    let left = s
        .list_attempts("acct_a", &w.id, Some(AttemptStatus::Pending), None, 10)
        .await
        .expect("list")
        .items;
    assert!(left.is_empty(), "{left:?}");
    let dead = s
        .list_attempts("acct_a", &w.id, Some(AttemptStatus::Dead), None, 10)
        .await
        .expect("list")
        .items;
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|a| a.error.as_deref() == Some(reason)));
    let others = s
        .list_attempts("acct_b", &other.id, Some(AttemptStatus::Pending), None, 10)
        .await
        .expect("list")
        .items;
    assert_eq!(others.len(), 1);
    let got = s
        .get_webhook("acct_a", &w.id)
        .await
        .expect("get")
        .expect("found");
    assert!(got.disabled);
    assert_eq!(got.disabled_reason.as_deref(), Some(reason));
    // Never over the operator's hold.
    assert!(s.hold_webhook(&other.id, "held", now).await.expect("hold"));
    assert!(!s
        .disable_failing_webhook(&other.id, reason, now)
        .await
        .expect("held"));
    let got = s
        .get_webhook("acct_b", &other.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.disabled_reason.as_deref(), Some("held"));
}

/// Retention: old finished events go with their tries, in batches; an
/// event with a pending try, or a try made after the bound, stays; inbound
/// events go with their jobs; and outside the pruning path a DELETE is still
/// refused, as is pruning newer rows.
async fn retention_prunes_only_finished_history_past_the_bound_and_nothing_else_can(
    backend: Backend,
) {
    let (db, s) = store(backend).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("create");
    let mut events = Vec::new();
    for _ in 0..5 {
        let e = event("acct_a", "t");
        s.publish_event(&e).await.expect("publish");
        events.push(e.id);
    }
    let now = Utc::now();
    // Four tries finish; one stays pending.
    let claimed = claim(&s, "w1", now + Duration::seconds(1), 30, 4).await;
    assert_eq!(claimed.len(), 4);
    for a in &claimed {
        assert!(s
            .complete_attempt(&succeeded(&a.id, "w1", now))
            .await
            .expect("complete"));
    }
    let pending_event = events
        .iter()
        .find(|e| !claimed.iter().any(|a| &a.event_id == *e))
        .expect("the pending one")
        .clone();
    // Two integrations: one whose scheme signs a timestamp, one whose
    // deduplication key is all that stops a replay.
    s.create_integration(&Integration {
        scheme: "stripe".into(),
        ..integration("stamped")
    })
    .await
    .expect("integration");
    s.create_integration(&integration("acme"))
        .await
        .expect("integration");
    s.record_inbound(&inbound("stamped", "k-old"))
        .await
        .expect("inbound");
    let keyed = inbound("acme", "k-kept");
    s.record_inbound(&keyed).await.expect("inbound");

    // Nothing is older than a bound in the past.
    let none = s
        .prune_events(now - Duration::hours(1), None, 100)
        .await
        .expect("prune");
    assert_eq!((none.events, none.tries), (0, 0));
    // Past the bound: in batches of two, a cursor past each, the finished
    // ones go and the pending one is walked past.
    let later = Utc::now() + Duration::seconds(2);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let prune_all = |s: Arc<dyn Store>| async move {
        let (mut events, mut tries, mut batches) = (0, 0, 0);
        let mut after: Option<String> = None;
        loop {
            let b = s
                .prune_events(later, after.as_deref(), 2)
                .await
                .expect("prune");
            events += b.events;
            tries += b.tries;
            batches += 1;
            match b.last {
                Some(last) => after = Some(last),
                None => return (events, tries, batches),
            }
        }
    };
    assert_eq!(
        prune_all(s.clone()).await,
        (4, 4, 4),
        "3 batches and the end"
    );
    assert_eq!(
        prune_all(s.clone()).await,
        (0, 0, 2),
        "the kept one, walked once"
    );
    for id in &events {
        let kept = s.get_event(None, id).await.expect("get").is_some();
        assert_eq!(kept, *id == pending_event, "{id}");
    }
    let (oldest, inbound_oldest) = s.oldest_kept().await.expect("oldest");
    assert!(oldest.is_some() && inbound_oldest.is_some());
    // The forwarding job is pending: the inbound event stays too; once
    // finished, it goes with its job.
    assert_eq!(s.prune_inbound(later, 10).await.expect("prune"), (0, 0));
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.extend(
            s.claim_jobs(&Claim {
                worker_id: "f1",
                now: Utc::now() + Duration::seconds(1),
                lease_until: Utc::now() + Duration::seconds(30),
                limit: 10,
                exclude_webhooks: &[],
            })
            .await
            .expect("claim jobs"),
        );
        if jobs.len() == 2 {
            break;
        }
    }
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        assert!(s
            .complete_job(&succeeded(&job.id, "f1", now))
            .await
            .expect("complete job"));
    }
    assert_eq!(s.prune_inbound(later, 10).await.expect("prune"), (2, 2));
    assert!(s.oldest_kept().await.expect("oldest").1.is_none());
    assert_eq!(s.prune_inbound(later, 10).await.expect("prune"), (0, 0));
    // acme's scheme signs no timestamp: its key outlives its event, and
    // the same request again is the duplicate of the event it was. The
    // timestamped scheme keeps no key (its tolerance refuses old requests).
    assert_eq!(
        s.record_inbound(&inbound("acme", "k-kept"))
            .await
            .expect("again"),
        RecordOutcome::Duplicate {
            event_id: keyed.id.clone()
        }
    );
    assert_eq!(
        s.record_inbound(&inbound("stamped", "k-old"))
            .await
            .expect("again"),
        RecordOutcome::Created
    );
    // Nor can that key be forgotten outside retention.
    let forget = "DELETE FROM inbound_pruned";
    let err = raw_execute(backend, &db.url, forget)
        .await
        .expect_err("refused");
    assert!(err.contains("append-only"), "{err}");

    // Outside the pruning path history still cannot be deleted, and the
    // gate opened to a time before a row does not let it go.
    let delete = format!("DELETE FROM events WHERE id = '{pending_event}'");
    assert!(
        raw_execute(backend, &db.url, &delete).await.is_err(),
        "referenced"
    );
    let tries = format!("DELETE FROM delivery_attempts WHERE event_id = '{pending_event}'");
    let err = raw_execute(backend, &db.url, &tries)
        .await
        .expect_err("refused");
    assert!(err.contains("append-only"), "{err}");
    let gated = match backend {
        Backend::Postgres => format!(
            "BEGIN; SELECT set_config('hookwarden.prune_before', '2000-01-01T00:00:00Z', true); {tries}; COMMIT;"
        ),
        Backend::Sqlite => format!(
            "BEGIN; UPDATE prune_gate SET before = 946684800000; {tries}; COMMIT;"
        ),
    };
    let err = raw_execute(backend, &db.url, &gated)
        .await
        .expect_err("newer than the gate");
    assert!(err.contains("append-only"), "{err}");
}

/// A try (or a forwarding job) `worker` made that the receiver took.
fn succeeded(id: &str, worker: &str, at: chrono::DateTime<Utc>) -> AttemptResult {
    AttemptResult {
        attempt_id: id.into(),
        worker_id: worker.into(),
        status: AttemptStatus::Succeeded,
        http_status: Some(200),
        duration_ms: 1,
        response_preview: None,
        error: None,
        completed_at: at,
        next: None,
    }
}

/// #17: the `traceparent` stored with an event reaches every try of it (the
/// first, the next after a failure, one retried by hand), and an inbound
/// event keeps its own; an event without one has none anywhere.
async fn a_trace_is_carried_by_the_event_its_tries_their_retries_and_inbound_events(
    backend: Backend,
) {
    let (_db, s) = store(backend).await;
    let w = new_webhook("acct_t", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = NewEvent {
        trace_parent: Some(parent.into()),
        ..event("acct_t", "t")
    };
    s.publish_event(&traced).await.expect("publish");
    s.publish_event(&event("acct_t", "t"))
        .await
        .expect("publish untraced");
    let stored = s
        .get_event(Some("acct_t"), &traced.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.trace_parent.as_deref(), Some(parent));
    let now = Utc::now();
    let claimed = claim(&s, "w1", now, 30, 10).await;
    assert_eq!(claimed.len(), 2);
    let first = claimed
        .iter()
        .find(|a| a.event_id == traced.id)
        .expect("the traced event's try");
    assert_eq!(first.trace_parent.as_deref(), Some(parent));
    let other = claimed
        .iter()
        .find(|a| a.event_id != traced.id)
        .expect("the other try");
    assert_eq!(other.trace_parent, None);
    // A failure's next try carries it.
    let next_id = ids::attempt_id();
    assert!(s
        .complete_attempt(&AttemptResult {
            attempt_id: first.id.clone(),
            worker_id: "w1".into(),
            status: AttemptStatus::Failed,
            http_status: Some(503),
            duration_ms: 3,
            response_preview: None,
            error: None,
            completed_at: now,
            next: Some((next_id.clone(), now)),
        })
        .await
        .expect("complete"));
    let next = s
        .get_attempt(Some("acct_t"), &next_id)
        .await
        .expect("get")
        .expect("next try");
    assert_eq!(next.trace_parent.as_deref(), Some(parent));
    // A try retried by hand after it died carries it too.
    let claimed = claim(&s, "w1", now + Duration::seconds(1), 30, 10).await;
    assert_eq!(claimed.len(), 1);
    assert!(s
        .complete_attempt(&AttemptResult {
            attempt_id: claimed[0].id.clone(),
            worker_id: "w1".into(),
            status: AttemptStatus::Dead,
            http_status: Some(503),
            duration_ms: 3,
            response_preview: None,
            error: None,
            completed_at: now,
            next: None,
        })
        .await
        .expect("dead"));
    let retried = s
        .retry_now(
            "acct_t",
            &claimed[0].id,
            &ids::attempt_id(),
            now,
            now,
            false,
        )
        .await
        .expect("retry")
        .expect("retried");
    assert_eq!(retried.trace_parent.as_deref(), Some(parent));
    // An inbound event keeps its own.
    let received = hookwarden_store::ingress::NewInbound {
        trace_parent: Some(parent.into()),
        ..inbound("acme", "traced")
    };
    s.record_inbound(&received).await.expect("inbound");
    let kept = s
        .get_inbound(&received.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(kept.trace_parent.as_deref(), Some(parent));
}

/// PostgreSQL: pruning inbound events waits for an insert in flight (here
/// a transaction holding the lock an insert holds) and keeps new inserts
/// waiting until it commits, so no insert can check `inbound_pruned`
/// before the pruning's keys are there and then find the event's row gone
/// (the replay race the lock closes; SQLite's one writer serializes them).
#[tokio::test]
async fn pruning_inbound_events_waits_for_inserts_in_flight() {
    use sqlx::Connection;
    let (db, s) = store(Backend::Postgres).await;
    let mut insert = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE hook.inbound_events IN ROW EXCLUSIVE MODE")
        .execute(&mut insert)
        .await
        .expect("an insert's lock");
    let pruning = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.prune_inbound(Utc::now(), 10).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !pruning.is_finished(),
        "pruning did not wait for the insert"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut insert)
        .await
        .expect("commit");
    let pruned = tokio::time::timeout(std::time::Duration::from_secs(5), pruning)
        .await
        .expect("pruning goes on once the insert is done")
        .expect("task")
        .expect("prune");
    assert_eq!(pruned, (0, 0));
}

/// A worker with room for the lanes it is told, noting what it gets.
#[derive(Default)]
struct Worker {
    room: std::sync::Mutex<Vec<String>>,
    started: Arc<std::sync::Mutex<Vec<(String, Attempt, Webhook)>>>,
    reserved: std::sync::atomic::AtomicUsize,
    given_back: Arc<std::sync::atomic::AtomicUsize>,
    /// The endpoints offered a place, and those told a claim is owed.
    offered: std::sync::Mutex<Vec<String>>,
    for_claim: std::sync::Mutex<Vec<String>>,
}

struct Slot {
    owner: String,
    started: Arc<std::sync::Mutex<Vec<(String, Attempt, Webhook)>>>,
    given_back: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl hookwarden_store::births::Births for Worker {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now()
    }

    fn stored_for_claim(&self, webhook_ids: &[String]) {
        self.for_claim
            .lock()
            .expect("for claim")
            .extend_from_slice(webhook_ids);
    }

    fn reserve(
        &self,
        webhook_id: &str,
        _paused_until: Option<chrono::DateTime<Utc>>,
    ) -> Option<Box<dyn hookwarden_store::births::Place>> {
        self.offered
            .lock()
            .expect("offered")
            .push(webhook_id.into());
        if !self
            .room
            .lock()
            .expect("room")
            .iter()
            .any(|w| w == webhook_id)
        {
            return None;
        }
        let n = self
            .reserved
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Box::new(Slot {
            owner: format!("born.{n}"),
            started: Arc::clone(&self.started),
            given_back: Some(Arc::clone(&self.given_back)),
        }))
    }
}

impl hookwarden_store::births::Place for Slot {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_until(&self) -> chrono::DateTime<Utc> {
        Utc::now() + Duration::seconds(30)
    }

    fn start(mut self: Box<Self>, attempt: Attempt, webhook: Webhook) {
        self.given_back = None;
        let owner = self.owner.clone();
        self.started
            .lock()
            .expect("started")
            .push((owner, attempt, webhook));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = self.given_back.take() {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// #16: a first try whose endpoint has room in the worker is stored leased
/// to it and handed over once committed, whole (its webhook with it); a
/// claim does not find it, and the worker's outcome is recorded under the
/// lease. Endpoints without room, and paused ones, are left to claims; a
/// duplicate publish hands nothing over and gives its places back.
async fn first_tries_go_leased_to_a_worker_with_room_and_no_claim_finds_them(backend: Backend) {
    let (_db, s) = store(backend).await;
    let (roomy, full, paused) = (
        new_webhook("acct_a", &["*"]),
        new_webhook("acct_a", &["*"]),
        new_webhook("acct_a", &["*"]),
    );
    for w in [&roomy, &full, &paused] {
        s.create_webhook(w).await.expect("webhook");
    }
    let later = Utc::now() + Duration::minutes(5);
    s.throttle_webhook(&paused.id, later).await.expect("pause");
    let worker = Arc::new(Worker::default());
    worker
        .room
        .lock()
        .expect("room")
        .extend([roomy.id.clone(), paused.id.clone()]);
    s.hand_births_to(Some(worker.clone()));
    let e = event("acct_a", "t");
    let PublishOutcome::Created { webhooks, handed } = s.publish_event(&e).await.expect("publish")
    else {
        panic!("created")
    };
    assert_eq!(webhooks.len(), 3);
    assert_eq!(
        handed,
        std::slice::from_ref(&roomy.id),
        "only the endpoint with room, due now"
    );
    assert_eq!(
        waiting(&webhooks, &handed).len(),
        2,
        "the others' lanes are woken"
    );
    let offered = worker.offered.lock().expect("offered").clone();
    assert!(
        !offered.contains(&paused.id),
        "a try due only after a pause is not offered"
    );
    assert_eq!(
        worker.for_claim.lock().expect("for claim").clone(),
        std::slice::from_ref(&full.id),
        "the worker hears of the try due now that waits for a claim"
    );
    let (owner, attempt, webhook) = worker.started.lock().expect("started")[0].clone();
    assert_eq!(
        (attempt.attempt, attempt.status),
        (1, AttemptStatus::Pending)
    );
    assert_eq!(
        (attempt.event_id.as_str(), attempt.webhook_id.as_str()),
        (e.id.as_str(), roomy.id.as_str())
    );
    assert_eq!(attempt.payload_snapshot["data"], e.payload);
    assert_eq!(
        (webhook.id.as_str(), webhook.url.as_str()),
        (roomy.id.as_str(), roomy.url.as_str())
    );
    assert_eq!(
        webhook.secret, roomy.secret,
        "the webhook whole, as a claim brings it"
    );
    // A claim finds only the try left to it: the handed one is leased.
    let now = Utc::now();
    let claimed = claim(&s, "w-claim", now, 30, 10).await;
    assert_eq!(
        claimed
            .iter()
            .map(|a| a.webhook_id.as_str())
            .collect::<Vec<_>>(),
        [full.id.as_str()]
    );
    // The outcome is recorded under the lease it was born with, not another's.
    assert!(!s
        .complete_attempt(&succeeded(&attempt.id, "w-claim", now))
        .await
        .expect("not its lease"));
    assert!(s
        .complete_attempt(&succeeded(&attempt.id, &owner, now))
        .await
        .expect("complete"));
    // The same event again: nothing is handed over, any place is given back.
    let again = NewEvent {
        id: ids::event_id(),
        ..e.clone()
    };
    assert!(matches!(
        s.publish_event(&again).await.expect("again"),
        PublishOutcome::Existing { .. }
    ));
    let reserved = worker.reserved.load(std::sync::atomic::Ordering::SeqCst);
    let given_back = worker.given_back.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(worker.started.lock().expect("started").len(), 1);
    assert_eq!(
        reserved,
        1 + given_back,
        "every place started or given back"
    );
    // Without a worker, every try waits for a claim.
    s.hand_births_to(None);
    let PublishOutcome::Created { handed, .. } = s
        .publish_event(&event("acct_a", "t"))
        .await
        .expect("publish")
    else {
        panic!("created")
    };
    assert!(handed.is_empty());
}

/// A worker that, while a batch asks it for a place, has the webhook
/// disabled behind the batch's back (between the batch's read of the
/// webhooks and its insert).
struct Meddler {
    url: String,
    inner: Worker,
}

impl hookwarden_store::births::Births for Meddler {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now()
    }

    fn stored_for_claim(&self, webhook_ids: &[String]) {
        self.inner.stored_for_claim(webhook_ids);
    }

    fn reserve(
        &self,
        webhook_id: &str,
        paused_until: Option<chrono::DateTime<Utc>>,
    ) -> Option<Box<dyn hookwarden_store::births::Place>> {
        let (url, id) = (self.url.clone(), webhook_id.to_owned());
        std::thread::spawn(move || {
            use sqlx::Connection;
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                sqlx::query("UPDATE hook.webhook_configs SET disabled = TRUE WHERE id = $1")
                    .bind(&id)
                    .execute(&mut c)
                    .await
                    .expect("disable");
            });
        })
        .join()
        .expect("meddling");
        self.inner.reserve(webhook_id, paused_until)
    }
}

/// #16, on PostgreSQL (whose batch reads the webhooks in a statement of
/// their own): a webhook disabled after the batch read it and before its
/// insert gets no try handed to the worker; the try is stored unleased for
/// a claim, which reads the webhook again, and the place is given back.
#[tokio::test]
async fn a_webhook_disabled_while_its_try_is_stored_gets_none_handed_over() {
    let (db, s) = store(Backend::Postgres).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    let meddler = Arc::new(Meddler {
        url: db.url.clone(),
        inner: Worker::default(),
    });
    meddler.inner.room.lock().expect("room").push(w.id.clone());
    s.hand_births_to(Some(meddler.clone()));
    let PublishOutcome::Created { webhooks, handed } = s
        .publish_event(&event("acct_a", "t"))
        .await
        .expect("publish")
    else {
        panic!("created")
    };
    assert_eq!(webhooks, std::slice::from_ref(&w.id));
    assert!(handed.is_empty(), "nothing handed for a disabled webhook");
    assert!(meddler.inner.started.lock().expect("started").is_empty());
    assert_eq!(
        meddler
            .inner
            .given_back
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the place was given back"
    );
    assert_eq!(
        meddler.inner.for_claim.lock().expect("for claim").clone(),
        std::slice::from_ref(&w.id),
        "the try waits for a claim"
    );
    let stats = s.queue_stats(Utc::now()).await.expect("stats");
    assert_eq!(stats.pending, 1, "stored all the same, unleased");
}

/// A publish whose insert fails (PostgreSQL's text refuses a NUL byte,
/// here in a `traceparent` no caller would pass) fails alone, with or without a worker to hand tries to: the
/// publish writer goes on and the next event is stored.
#[tokio::test]
async fn a_failed_publish_insert_leaves_the_writer_running() {
    let (_db, s) = store(Backend::Postgres).await;
    let w = new_webhook("acct_a", &["*"]);
    s.create_webhook(&w).await.expect("webhook");
    for worker in [None, Some(Arc::new(Worker::default()))] {
        if let Some(worker) = &worker {
            worker.room.lock().expect("room").push(w.id.clone());
        }
        s.hand_births_to(worker.map(|w| w as Arc<dyn hookwarden_store::births::Births>));
        let bad = NewEvent {
            trace_parent: Some("00-\u{0}".into()),
            ..event("acct_a", "t")
        };
        assert!(
            s.publish_event(&bad).await.is_err(),
            "refused by the database"
        );
        assert!(matches!(
            s.publish_event(&event("acct_a", "t")).await,
            Ok(PublishOutcome::Created { .. })
        ));
    }
}

/// PostgreSQL: statistics that record the tries' pages but no row (what a
/// VACUUM or ANALYZE leaves when it finds only dead rows) make every plan
/// on the table count on one row, however many it holds: the claim and the
/// recording of tries then read it whole. The store's own check analyzes
/// such a table once it holds 1,000 rows more than its statistics say, and
/// the outcome's lookup is a primary-key lookup again.
#[tokio::test]
async fn statistics_that_say_the_tries_table_is_empty_are_refreshed() {
    use sqlx::Connection;
    let (db, _s) = store(Backend::Postgres).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    async fn stats(c: &mut sqlx::PgConnection) -> sqlx::Result<(i32, f32)> {
        sqlx::query_as(
            "SELECT relpages, reltuples FROM pg_class WHERE oid = 'hook.delivery_attempts'::regclass",
        )
        .fetch_one(c)
        .await
    }
    analyze_after_a_rolled_back_insert(&mut admin).await;
    let (pages, rows) = stats(&mut admin).await.expect("stats");
    assert!(pages > 0 && rows == 0.0, "pages {pages}, rows {rows}");
    // 2,000 tries stored afterwards, their count sent to the statistics
    // collector at once (it would within a second or so anyway).
    store_tries(&mut admin).await;
    // The store's check runs every 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let (_, rows) = stats(&mut admin).await.expect("stats");
        if rows >= 1000.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store did not analyze the table (rows {rows})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN UPDATE hook.delivery_attempts SET status = 'succeeded' \
         WHERE id = 'att_s_00007' AND claimed_by = 'w' AND (status || '') = 'pending'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("plan");
    assert!(
        plan.iter().any(|l| l.contains("delivery_attempts_pkey")),
        "a lookup by id is a primary-key lookup again: {plan:?}"
    );
    // Nothing left to do: the next check analyzes nothing.
    let again = refresh_stale(&mut admin).await;
    assert!(again.is_empty(), "{again:?}");
}

/// The tries of a rolled-back insert leave a page of dead rows; ANALYZE
/// then records that page and only the live rows (none on an empty table).
async fn analyze_after_a_rolled_back_insert(c: &mut sqlx::PgConnection) {
    sqlx::raw_sql(
        "BEGIN; \
         INSERT INTO hook.events (id, account_id, event_type, payload, producer, created_at) \
           SELECT 'evt_gone_' || i, 'acct_s', 't', '{}', 'p', now() FROM generate_series(1, 10) i; \
         INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
           due_at, payload_snapshot, created_at) \
           SELECT 'att_gone_' || i, 'evt_gone_' || i, 'wh_s', 'acct_s', 1, 'pending', now(), '{}', now() \
           FROM generate_series(1, 10) i; \
         ROLLBACK; \
         ANALYZE hook.delivery_attempts;",
    )
    .execute(c)
    .await
    .expect("stale statistics");
}

/// One check, as a replica makes it: the tables it analyzed.
async fn refresh_stale(c: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT hook.refresh_stale_statistics()")
        .fetch_all(c)
        .await
        .expect("check")
}

/// 2,000 events with a try each, stored with SQL, their count sent to the
/// statistics collector at once (it would within a second or so anyway).
async fn store_tries(c: &mut sqlx::PgConnection) {
    sqlx::raw_sql(
        "INSERT INTO hook.events (id, account_id, event_type, payload, producer, created_at) \
           SELECT 'evt_s_' || i, 'acct_s', 't', '{}', 'p', now() FROM generate_series(1, 2000) i; \
         INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
           due_at, payload_snapshot, created_at) \
           SELECT 'att_s_' || lpad(i::text, 5, '0'), 'evt_s_' || i, 'wh_s', 'acct_s', 1, 'pending', \
             now(), '{}', now() \
           FROM generate_series(1, 2000) i;",
    )
    .execute(&mut *c)
    .await
    .expect("tries");
    sqlx::raw_sql("SELECT pg_stat_force_next_flush()")
        .execute(&mut *c)
        .await
        .expect("flush");
}

/// PostgreSQL: statistics taken while the tries' table had no page at all
/// (0 pages, 0 rows) are stale too once it holds rows: a plan kept from
/// then survives its growth. The check analyzes it; one that holds fewer
/// than 1,000 rows, or never analyzed, is left alone.
#[tokio::test]
async fn statistics_taken_while_the_tries_table_had_no_page_are_refreshed() {
    use sqlx::Connection;
    // The store's own check stopped, so that only this test's calls check.
    let (db, s) = store(Backend::Postgres).await;
    drop(s);
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("ANALYZE hook.delivery_attempts")
        .execute(&mut admin)
        .await
        .expect("analyze while empty");
    assert!(refresh_stale(&mut admin).await.is_empty());
    store_tries(&mut admin).await;
    assert_eq!(
        refresh_stale(&mut admin).await,
        vec!["delivery_attempts".to_owned()],
        "the tries' table, analyzed while empty; the events' table, never analyzed, is left alone"
    );
    assert!(refresh_stale(&mut admin).await.is_empty());
}

/// PostgreSQL: a statement of the unsynced pool (claims, releases, tries'
/// outcomes) still running after 60 s is cancelled: one planned from
/// statistics that lied would otherwise run on, for hours on a large
/// table, after they were mended. Here the outcome waits on a row lock
/// that is never let go; it fails instead of waiting for ever (after two
/// timeouts: the batch's, then the try's own retry), and the try stays
/// pending for a later claim.
#[tokio::test]
async fn an_outcome_still_running_after_the_statement_timeout_is_cancelled() {
    let (db, s) = store(Backend::Postgres).await;
    let (a, mut holder) = a_claimed_try_locked_elsewhere(&db, &s, 120).await;
    let started = std::time::Instant::now();
    let recorded = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        s.complete_attempt(&succeeded(&a.id, "w1", Utc::now())),
    )
    .await
    .expect("the outcome did not wait for ever");
    assert!(
        recorded.is_err(),
        "cancelled, not recorded: {recorded:?} after {:?}",
        started.elapsed()
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    assert_eq!(status_of(&s, &a).await, AttemptStatus::Pending);
}

/// PostgreSQL: when the store's check mends a table's statistics, it also
/// cancels the statements of its own unsynced pool running at that moment
/// (they were planned from the statistics that lied, and would run on to
/// their 60-s timeout), and the outcome, retried, is recorded once it can
/// be. Here the outcome waits on a row lock held elsewhere; it is cancelled
/// within the check's period, long before its timeout.
#[tokio::test]
async fn statements_running_when_the_check_mends_statistics_are_cancelled() {
    use sqlx::Connection;
    let (db, s) = store(Backend::Postgres).await;
    let (a, mut holder) = a_claimed_try_locked_elsewhere(&db, &s, 300).await;
    let recording = tokio::spawn({
        let (s, id) = (s.clone(), a.id.clone());
        async move { s.complete_attempt(&succeeded(&id, "w1", Utc::now())).await }
    });
    // The outcome's statement, waiting on the lock, as the store names it.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let waiting = "SELECT pid, query_start FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'hookwarden-unsynced-%' \
           AND state = 'active' AND wait_event_type = 'Lock'";
    let started = std::time::Instant::now();
    let (pid, since): (i32, chrono::DateTime<Utc>) = loop {
        if let Some(row) = sqlx::query_as(waiting)
            .fetch_optional(&mut admin)
            .await
            .expect("activity")
        {
            break row;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the outcome never waited on the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Statistics that lie (a rolled-back insert, then ANALYZE: pages and
    // one row), then 2,000 tries stored: the next check mends them.
    analyze_after_a_rolled_back_insert(&mut admin).await;
    store_tries(&mut admin).await;
    // Cancelled: that statement is no longer the one waiting (the retry,
    // try by try, waits anew), well before the 60-s timeout.
    loop {
        let now: Option<(i32, chrono::DateTime<Utc>)> = sqlx::query_as(waiting)
            .fetch_optional(&mut admin)
            .await
            .expect("activity");
        if now != Some((pid, since)) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "the waiting outcome was not cancelled by the check"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "cancelled by the check, not by the statement timeout: {:?}",
        started.elapsed()
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    tokio::time::timeout(std::time::Duration::from_secs(30), recording)
        .await
        .expect("recorded once the lock went")
        .expect("task")
        .expect("recorded");
    assert_eq!(status_of(&s, &a).await, AttemptStatus::Succeeded);
}

/// The stored status of try `a`, read through the store.
async fn status_of(s: &Arc<dyn Store>, a: &Attempt) -> AttemptStatus {
    tries_of(s, &a.event_id)
        .await
        .into_iter()
        .find(|t| t.id == a.id)
        .expect("the try")
        .status
}

/// One try, published and claimed by "w1" (leased `secs` seconds), its row
/// locked by a transaction of another connection, which is returned.
async fn a_claimed_try_locked_elsewhere(
    db: &TestDb,
    s: &Arc<dyn Store>,
    secs: i64,
) -> (Attempt, sqlx::PgConnection) {
    use sqlx::Connection;
    s.create_webhook(&new_webhook("acct_t", &["*"]))
        .await
        .expect("webhook");
    s.publish_event(&event("acct_t", "t"))
        .await
        .expect("publish");
    let a = claim(s, "w1", Utc::now(), secs, 10)
        .await
        .pop()
        .expect("a try");
    let mut holder = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql(&format!(
        "BEGIN; SELECT 1 FROM hook.delivery_attempts WHERE id = '{}' FOR UPDATE",
        a.id
    ))
    .execute(&mut holder)
    .await
    .expect("lock");
    (a, holder)
}
