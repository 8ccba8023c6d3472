//! The delivery worker: claims due attempts (at most the free share of the
//! in-flight budget, never for an endpoint already holding its fair share),
//! signs and sends each, and records the outcome with the next try in one
//! transaction. A crash leaves claimed work to be claimed again when its
//! lease expires: delivery is at least once.

use super::client::{DeliveryClient, Outcome};
use super::DeadLetterSink;
use crate::secrets::open_webhook_secret;
use crate::state::AppState;
use chrono::Utc;
use hookwarden_core::backoff::{bounded_retry_after, retry_delay};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::standard_webhooks::{sign_all, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use hookwarden_core::{ids, validate};
use hookwarden_store::model::{Attempt, AttemptResult, AttemptStatus, Claim, Webhook};
use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub struct Dispatcher {
    state: AppState,
    client: DeliveryClient,
    worker_id: String,
    permits: Arc<Semaphore>,
    /// Tries in flight per webhook, for the fairness cap.
    per_endpoint: Mutex<HashMap<String, usize>>,
    slot_freed: Notify,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl Dispatcher {
    pub fn new(
        state: AppState,
        client: DeliveryClient,
        dead_letters: Option<Arc<dyn DeadLetterSink>>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(state.settings.max_in_flight));
        Self {
            state,
            client,
            worker_id: ids::new_id("worker"),
            permits,
            per_endpoint: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
            dead_letters,
        }
    }

    /// Runs until `shutdown`, then waits (bounded) for tries in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = self.state.settings.poll_interval;
        tracing::info!(worker.id = %self.worker_id, "delivery worker started");
        while !shutdown.is_cancelled() {
            let started = match self.clone().claim_and_spawn().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error.message = %e, "claiming due deliveries failed; will retry");
                    0
                }
            };
            if started > 0 && self.permits.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.state.wake.notified() => {}
                _ = self.slot_freed.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Let tries in flight finish; anything cut off is retried after its lease.
        let all = self.state.settings.max_in_flight as u32;
        let grace = self.state.settings.delivery_timeout + Duration::from_secs(2);
        let _ = tokio::time::timeout(grace, self.permits.acquire_many(all)).await;
        tracing::info!(worker.id = %self.worker_id, "delivery worker stopped");
    }

    /// One step for tests and tools: claims what is due and delivers it all
    /// before returning the number of tries made.
    pub async fn run_once(self: &Arc<Self>) -> anyhow::Result<usize> {
        let claimed = self.claim().await?;
        let n = claimed.len();
        let tasks: Vec<_> = claimed
            .into_iter()
            .map(|(a, w, permit)| {
                let this = self.clone();
                tokio::spawn(async move {
                    this.deliver(a, w).await;
                    drop(permit);
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        Ok(n)
    }

    async fn claim_and_spawn(self: Arc<Self>) -> anyhow::Result<usize> {
        let claimed = self.claim().await?;
        let n = claimed.len();
        for (attempt, webhook, permit) in claimed {
            let this = self.clone();
            tokio::spawn(async move {
                this.deliver(attempt, webhook).await;
                drop(permit);
                this.slot_freed.notify_one();
            });
        }
        Ok(n)
    }

    /// Claims due attempts that fit the budget, each with its in-flight permit.
    async fn claim(&self) -> anyhow::Result<Vec<(Attempt, Option<Webhook>, OwnedSemaphorePermit)>> {
        let free = self.permits.available_permits();
        if free == 0 {
            return Ok(Vec::new());
        }
        let cap = self.state.settings.max_in_flight_per_endpoint;
        let exclude: Vec<String> = self
            .per_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(k, _)| k.clone())
            .collect();
        let now = Utc::now();
        let lease = chrono::Duration::from_std(self.state.settings.delivery_lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let claim = Claim {
            worker_id: &self.worker_id,
            now,
            lease_until: now + lease,
            limit: free as u32,
            exclude_webhooks: &exclude,
        };
        let attempts = self.state.store.claim_due(&claim).await?;
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = attempts.iter().map(|a| a.webhook_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let webhooks: HashMap<String, Webhook> = self
            .state
            .store
            .webhooks_by_ids(&ids)
            .await?
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        let mut out = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            match self.reserve(&attempt.webhook_id, cap) {
                Some(permit) => {
                    let webhook = webhooks.get(&attempt.webhook_id).cloned();
                    out.push((attempt, webhook, permit));
                }
                // Over the endpoint's share (or the budget): give it back now.
                None => {
                    self.state
                        .store
                        .release(&attempt.id, &self.worker_id)
                        .await?
                }
            }
        }
        metrics::gauge!(crate::metrics::IN_FLIGHT)
            .set((self.state.settings.max_in_flight - self.permits.available_permits()) as f64);
        Ok(out)
    }

    fn reserve(&self, webhook_id: &str, cap: usize) -> Option<OwnedSemaphorePermit> {
        let mut map = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(webhook_id.to_owned()).or_insert(0);
        if *count >= cap {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        *count += 1;
        // The counter is decremented by `finish` when the try ends.
        Some(permit)
    }

    fn finish(&self, webhook_id: &str) {
        let mut map = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(webhook_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(webhook_id);
            }
        }
    }

    /// Makes one try and records it.
    async fn deliver(&self, attempt: Attempt, webhook: Option<Webhook>) {
        let result = self.try_once(&attempt, webhook.as_ref()).await;
        self.finish(&attempt.webhook_id);
        let status = result.status;
        match self.state.store.complete_attempt(&result).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery.id = %attempt.id, "lease lost before the try was recorded; another worker owns it")
            }
            Err(e) => {
                tracing::error!(delivery.id = %attempt.id, error.message = %e, "recording a try failed; it will be retried after its lease")
            }
        }
        metrics::counter!(crate::metrics::DELIVERIES, "outcome" => status.as_str()).increment(1);
        metrics::histogram!(crate::metrics::DELIVERY_DURATION)
            .record(result.duration_ms as f64 / 1000.0);
        tracing::info!(
            delivery.id = %attempt.id, event.id = %attempt.event_id, webhook.id = %attempt.webhook_id,
            account.id = %attempt.account_id, attempt = attempt.attempt, outcome = status.as_str(),
            http.status = result.http_status, duration_ms = result.duration_ms, error = result.error.as_deref(),
            "delivery try finished"
        );
        if status == AttemptStatus::Dead {
            self.announce_dead_letter(&attempt, &result).await;
        }
    }

    async fn try_once(&self, attempt: &Attempt, webhook: Option<&Webhook>) -> AttemptResult {
        let now = Utc::now();
        let base = AttemptResult {
            attempt_id: attempt.id.clone(),
            worker_id: self.worker_id.clone(),
            status: AttemptStatus::Dead,
            http_status: None,
            duration_ms: 0,
            response_preview: None,
            error: None,
            completed_at: now,
            next: None,
        };
        let Some(webhook) = webhook else {
            return AttemptResult {
                error: Some("webhook deleted".into()),
                ..base
            };
        };
        // Validated at publish; validated again here, at the consume edge.
        if validate::payload(&attempt.payload_snapshot["data"]).is_err() {
            return AttemptResult {
                error: Some("payload failed validation before delivery".into()),
                ..base
            };
        }
        let secrets = match self.active_secrets(webhook, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "cannot open webhook secret");
                return self.failed(
                    attempt,
                    AttemptResult {
                        error: Some("signing secret unavailable".into()),
                        ..base
                    },
                    None,
                );
            }
        };
        let body = match serde_json::to_vec(&attempt.payload_snapshot) {
            Ok(b) => b,
            Err(_) => {
                return AttemptResult {
                    error: Some("payload could not be serialized".into()),
                    ..base
                }
            }
        };
        let timestamp = Utc::now().timestamp();
        let refs: Vec<&WebhookSecret> = secrets.iter().collect();
        let signature = sign_all(&refs, &attempt.event_id, timestamp, &body);
        drop(secrets);
        let headers = [
            (HEADER_ID, attempt.event_id.clone()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, signature),
        ];
        let outcome = self.client.send(&webhook.url, &headers, body).await;
        self.classify(attempt, webhook, outcome, base).await
    }

    /// The current secret, and the previous one while its grace period lasts.
    fn active_secrets(
        &self,
        w: &Webhook,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<WebhookSecret>, crate::secrets::OpenError> {
        let keyring = &self.state.keyring;
        let mut out = vec![open_webhook_secret(
            keyring,
            &w.account_id,
            &w.id,
            &w.secret,
        )?];
        if let Some((old, until)) = &w.old_secret {
            if *until > now {
                out.push(open_webhook_secret(keyring, &w.account_id, &w.id, old)?);
            }
        }
        Ok(out)
    }

    async fn classify(
        &self,
        attempt: &Attempt,
        webhook: &Webhook,
        o: Outcome,
        base: AttemptResult,
    ) -> AttemptResult {
        let result = AttemptResult {
            http_status: o.http_status.map(i32::from),
            duration_ms: o.duration.as_millis() as i64,
            response_preview: o.preview,
            error: o.error,
            completed_at: Utc::now(),
            ..base
        };
        match o.http_status {
            Some(s) if (200..300).contains(&s) => AttemptResult {
                status: AttemptStatus::Succeeded,
                ..result
            },
            Some(410) => {
                // Standard Webhooks: 410 Gone means "stop sending"; an update re-enables.
                if let Err(e) = self
                    .state
                    .store
                    .disable_webhook(&webhook.id, "endpoint answered 410 Gone", Utc::now())
                    .await
                {
                    tracing::error!(webhook.id = %webhook.id, error.message = %e, "disabling webhook failed");
                }
                tracing::warn!(webhook.id = %webhook.id, account.id = %webhook.account_id, "endpoint answered 410 Gone: disabled");
                AttemptResult {
                    status: AttemptStatus::Dead,
                    ..result
                }
            }
            Some(429 | 502 | 503 | 504) => {
                // The endpoint asks us to slow down: pause it, honouring Retry-After within bounds.
                let pause = o.retry_after.unwrap_or_else(|| bounded_retry_after(5));
                let until = Utc::now()
                    + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::seconds(5));
                if let Err(e) = self.state.store.throttle_webhook(&webhook.id, until).await {
                    tracing::error!(webhook.id = %webhook.id, error.message = %e, "throttling webhook failed");
                }
                self.failed(attempt, result, o.retry_after)
            }
            _ => self.failed(attempt, result, None),
        }
    }

    /// A failed try: schedule the next one, or make it a dead letter.
    fn failed(
        &self,
        attempt: &Attempt,
        result: AttemptResult,
        at_least: Option<Duration>,
    ) -> AttemptResult {
        let jitter: f64 = rand::thread_rng().gen();
        match retry_delay(
            &self.state.settings.retry_schedule,
            attempt.attempt.max(1) as usize,
            jitter,
        ) {
            Some(delay) => {
                let delay = at_least.map_or(delay, |min| delay.max(min));
                let due = result.completed_at
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(5));
                AttemptResult {
                    status: AttemptStatus::Failed,
                    next: Some((ids::attempt_id(), due)),
                    ..result
                }
            }
            None => AttemptResult {
                status: AttemptStatus::Dead,
                next: None,
                ..result
            },
        }
    }

    async fn announce_dead_letter(&self, attempt: &Attempt, result: &AttemptResult) {
        metrics::counter!(crate::metrics::DEAD_LETTERS).increment(1);
        let Some(sink) = &self.dead_letters else {
            return;
        };
        // No payload: it may carry personal data; the database keeps the snapshot.
        let notice = json!({
            "kind": "delivery",
            "attemptId": attempt.id,
            "eventId": attempt.event_id,
            "webhookId": attempt.webhook_id,
            "accountId": attempt.account_id,
            "attempt": attempt.attempt,
            "httpStatus": result.http_status,
            "error": result.error,
            "deadAt": result.completed_at.to_rfc3339(),
        });
        if let Err(e) = sink.publish(&notice).await {
            tracing::warn!(delivery.id = %attempt.id, error.message = %e, "publishing dead-letter notice failed; the database still records it");
        }
    }
}
