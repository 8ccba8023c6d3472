//! The delivery worker: claims due attempts (at most the free share of the
//! in-flight budget, never for an endpoint already holding its fair share),
//! signs and sends each, and records the outcome with the next try in one
//! transaction, once the in-flight slot is given back. A crash leaves
//! claimed work to be claimed again when its lease expires: delivery is at
//! least once.

use super::breaker;
use crate::outbound::schemas::SchemaCache;
use crate::shared::activity::{Activity, Count};
use crate::shared::client::{DeliveryClient, Outcome};
use crate::shared::clock::Clock;
use crate::shared::operational::{self, Operational};
use crate::shared::pump::{Pump, PumpConfig, Queue};
use crate::shared::retry::DeadLetterSink;
use crate::shared::secrets::{open_webhook_secret, webhook_headers};
use crate::shared::state::AppState;
use crate::shared::traces::{Kind, Traces};
use async_trait::async_trait;
use chrono::Utc;
use hookwarden_core::backoff::bounded_retry_after;
use hookwarden_core::crypto::Keyring;
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::standard_webhooks::{sign_all, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use hookwarden_core::validate;
use hookwarden_store::model::{Attempt, AttemptResult, AttemptStatus, Claim, Slot, Webhook};
use hookwarden_store::Store;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Writes of one try's outcome before it is left to its lease.
const RECORD_WRITES: usize = 3;

/// The outcome with its texts made storable (they may come from anywhere).
fn storable_outcome(result: AttemptResult) -> AttemptResult {
    AttemptResult {
        response_preview: result
            .response_preview
            .as_deref()
            .map(crate::shared::retry::storable_text),
        error: result
            .error
            .as_deref()
            .map(crate::shared::retry::storable_text),
        ..result
    }
}

/// The outcome without any text from outside: what is written when the
/// outcome as observed could not be.
fn generic_outcome(result: AttemptResult) -> AttemptResult {
    AttemptResult {
        response_preview: None,
        error: Some(UNRECORDABLE.into()),
        ..result
    }
}

/// When the attempt's event was published: the `timestamp` of the snapshot
/// every try of the event carries (the event's creation, in milliseconds).
/// A snapshot without one falls back to the try's creation, which is the
/// event's for a first try and the scheduling of a retry otherwise.
fn published_at(attempt: &Attempt) -> chrono::DateTime<Utc> {
    attempt.payload_snapshot["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(attempt.created_at, |t| t.with_timezone(&Utc))
}

/// The longest a try waits in flight for its endpoint's send slot.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// What one more failed try means for its endpoint.
enum Verdict {
    /// Carry on: retry on the schedule.
    Carry,
    /// The breaker opened: pause the endpoint this long.
    Pause(Duration),
    /// It has failed every try too long: disable it (the reason).
    Disable(String),
}

/// The error of a try whose observed outcome could not be written.
pub const UNRECORDABLE: &str = "the try's outcome could not be recorded as observed";

/// What the delivery worker uses of the application, and nothing else: a
/// worker cannot reach the limiter, the operator's settings or the inbound
/// side by accident, and a test can see at a glance what it must provide.
#[derive(Clone)]
pub struct Deliveries {
    pub store: Arc<dyn Store>,
    /// Opens endpoints' signing secrets.
    pub keyring: Arc<Keyring>,
    /// Payloads are checked again against their type's schema before a try.
    pub schemas: SchemaCache,
    pub clock: Clock,
    /// Counts tries and delivery latencies for the console's charts.
    pub activity: Arc<Activity>,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub delivery_lease: Duration,
    /// An endpoint failing every try this long is disabled.
    pub disable_after: Duration,
    /// Tells the platform about endpoints and dead letters.
    pub operational: Arc<Operational>,
    /// A span per try, under the event's trace.
    pub traces: Traces,
}

impl From<&AppState> for Deliveries {
    fn from(state: &AppState) -> Self {
        Self {
            store: Arc::clone(&state.store),
            keyring: Arc::clone(&state.keyring),
            schemas: state.schemas.clone(),
            clock: state.clock.clone(),
            activity: Arc::clone(&state.activity),
            retry_schedule: state.settings.retry_schedule.clone(),
            delivery_timeout: state.settings.delivery_timeout,
            delivery_lease: state.settings.delivery_lease,
            disable_after: state.settings.disable_after,
            operational: Arc::clone(&state.operational),
            traces: state.traces.clone(),
        }
    }
}

/// The outbound delivery queue: due attempts, one lane per webhook.
pub struct DeliveryQueue {
    state: Deliveries,
    client: DeliveryClient,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

/// The delivery worker: the pump over the delivery queue.
pub type Dispatcher = Pump<DeliveryQueue>;

impl DeliveryQueue {
    pub fn new(
        state: Deliveries,
        client: DeliveryClient,
        dead_letters: Option<Arc<dyn DeadLetterSink>>,
    ) -> Self {
        Self {
            state,
            client,
            dead_letters,
        }
    }

    pub fn pump_config(settings: &crate::config::Settings, clock: Clock) -> PumpConfig {
        PumpConfig {
            name: "delivery",
            max_in_flight: settings.max_in_flight,
            per_lane: settings.max_in_flight_per_endpoint,
            poll_interval: settings.poll_interval,
            drain: settings.delivery_timeout + Duration::from_secs(2),
            lease: settings.delivery_lease,
            clock,
        }
    }
}

#[async_trait]
impl Queue for DeliveryQueue {
    type Item = (Attempt, Option<Webhook>);

    fn lane(item: &Self::Item) -> String {
        item.0.webhook_id.clone()
    }

    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        exclude: &[String],
    ) -> anyhow::Result<Vec<Self::Item>> {
        let now = self.state.clock.now();
        let lease = chrono::Duration::from_std(self.state.delivery_lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let claim = Claim {
            worker_id,
            now,
            lease_until: now + lease,
            limit,
            exclude_webhooks: exclude,
        };
        Ok(self.state.store.claim_due_with_webhooks(&claim).await?)
    }

    async fn release(&self, worker_id: &str, items: Vec<Self::Item>) -> anyhow::Result<()> {
        let ids: Vec<String> = items.into_iter().map(|(a, _)| a.id).collect();
        Ok(self.state.store.release(&ids, worker_id).await?)
    }

    /// `None`: the try was not made (its lease ran short); nothing to record.
    type Done = Option<(Attempt, AttemptResult)>;

    async fn process(
        &self,
        worker_id: &str,
        (attempt, webhook): Self::Item,
        lease_ends: Instant,
    ) -> Self::Done {
        let result = self
            .try_once(worker_id, &attempt, webhook.as_ref(), lease_ends)
            .await?;
        Some((attempt, result))
    }

    async fn record(&self, _worker_id: &str, done: Self::Done) {
        if let Some((attempt, result)) = done {
            self.record_try(attempt, result).await
        }
    }
}

impl DeliveryQueue {
    /// Records one try (with the next one), then tells metrics, logs and
    /// the dead-letter subject.
    async fn record_try(&self, attempt: Attempt, result: AttemptResult) {
        let result = self.write_outcome(&attempt, result).await;
        let status = result.status;
        metrics::counter!(crate::shared::metrics::DELIVERIES, "outcome" => status.as_str())
            .increment(1);
        self.count_activity(&attempt, &result);
        if matches!(status, AttemptStatus::Failed | AttemptStatus::Dead) {
            let reason =
                crate::shared::metrics::failure_reason(result.http_status, result.error.as_deref());
            metrics::counter!(crate::shared::metrics::DELIVERY_FAILURES, "reason" => reason)
                .increment(1);
        }
        metrics::histogram!(crate::shared::metrics::DELIVERY_DURATION)
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

    /// Counts the try for the console's charts (in memory; flushed apart),
    /// and for a delivery its latency from the event's publication.
    fn count_activity(&self, attempt: &Attempt, result: &AttemptResult) {
        let activity = &self.state.activity;
        match result.status {
            AttemptStatus::Succeeded => {
                activity.count(Count::Delivered);
                let latency = (result.completed_at - published_at(attempt)).num_milliseconds();
                activity.latency(u64::try_from(latency).unwrap_or(0));
            }
            AttemptStatus::Failed => activity.count(Count::Failed),
            AttemptStatus::Dead => activity.count(Count::Dead),
            AttemptStatus::Pending => {}
        }
    }

    /// Writes a try's outcome, and answers what was written. A failed write
    /// is never left to repeat the try after every lease: it is written
    /// again after a pause (a blip), with its texts made storable, and
    /// last with them replaced by a generic reason. The status decided is
    /// kept throughout: a try the receiver accepted stays succeeded (it has
    /// the event), a failed one keeps its next try on the schedule. Only if
    /// even that write fails (the database refuses every write) is the try
    /// left to its lease, as after a crash.
    async fn write_outcome(&self, attempt: &Attempt, result: AttemptResult) -> AttemptResult {
        let mut current = result;
        for write in 1..=RECORD_WRITES {
            match self.state.store.complete_attempt(&current).await {
                Ok(true) => return current,
                Ok(false) => {
                    tracing::warn!(delivery.id = %attempt.id, "lease lost before the try was recorded; another worker owns it");
                    return current;
                }
                Err(e) if write == RECORD_WRITES => {
                    tracing::error!(delivery.id = %attempt.id, error.message = %e, writes = write,
                        "recording a try failed with a generic outcome too; it will be retried after its lease");
                    return current;
                }
                Err(e) => {
                    tracing::warn!(delivery.id = %attempt.id, error.message = %e, writes = write,
                        "recording a try failed; writing it again");
                    current = if write + 1 == RECORD_WRITES {
                        generic_outcome(current)
                    } else {
                        storable_outcome(current)
                    };
                    tokio::time::sleep(Duration::from_millis(100 * write as u64)).await;
                }
            }
        }
        current
    }

    /// One try, or `None` if it was not made because it could outlive its
    /// lease (the attempt is then left to be claimed again).
    async fn try_once(
        &self,
        worker_id: &str,
        attempt: &Attempt,
        webhook: Option<&Webhook>,
        lease_ends: Instant,
    ) -> Option<AttemptResult> {
        let now = self.state.clock.now();
        let base = AttemptResult {
            attempt_id: attempt.id.clone(),
            worker_id: worker_id.to_owned(),
            status: AttemptStatus::Dead,
            http_status: None,
            duration_ms: 0,
            response_preview: None,
            error: None,
            completed_at: now,
            next: None,
        };
        let Some(webhook) = webhook else {
            return Some(AttemptResult {
                error: Some("webhook deleted".into()),
                ..base
            });
        };
        // Validated at publish; validated again here, at the consume edge.
        if validate::payload(&attempt.payload_snapshot["data"]).is_err() {
            return Some(AttemptResult {
                error: Some("payload failed validation before delivery".into()),
                ..base
            });
        }
        let event_type = attempt.payload_snapshot["type"]
            .as_str()
            .unwrap_or_default();
        match self
            .state
            .schemas
            .check(
                self.state.store.as_ref(),
                event_type,
                &attempt.payload_snapshot["data"],
            )
            .await
        {
            Ok(Ok(())) => {}
            // The type's schema changed since the event was accepted: a
            // failed try with the reason, retried on the schedule (a schema
            // written by mistake, or by someone hostile, is fixed in time),
            // a dead letter only when the schedule runs out.
            Ok(Err(reason)) => {
                return Some(self.failed(
                    attempt,
                    AttemptResult {
                        error: Some(crate::shared::retry::storable_text(&reason)),
                        ..base
                    },
                    None,
                ))
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "schema check failed; the try is retried");
                return Some(self.failed(
                    attempt,
                    AttemptResult {
                        error: Some("schema check unavailable".into()),
                        ..base
                    },
                    None,
                ));
            }
        }
        let secrets = match self.active_secrets(webhook, now) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "cannot open webhook secret");
                return Some(self.failed(
                    attempt,
                    AttemptResult {
                        error: Some("signing secret unavailable".into()),
                        ..base
                    },
                    None,
                ));
            }
        };
        let body = match serde_json::to_vec(&attempt.payload_snapshot) {
            Ok(b) => b,
            Err(_) => {
                return Some(AttemptResult {
                    error: Some("payload could not be serialized".into()),
                    ..base
                })
            }
        };
        // Signed after any wait for a send slot: the timestamp is when it goes.
        if let Some(rate) = webhook.controls.rate_limit_per_second {
            if !self
                .take_slot(worker_id, attempt, webhook, rate, lease_ends)
                .await
            {
                return None;
            }
        }
        let timestamp = self.state.clock.now().timestamp();
        let refs: Vec<&WebhookSecret> = secrets.iter().collect();
        let signature = sign_all(&refs, &attempt.event_id, timestamp, &body);
        drop(secrets);
        let custom = match webhook_headers(&self.state.keyring, webhook) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "cannot open the webhook's custom headers");
                return Some(self.failed(
                    attempt,
                    AttemptResult {
                        error: Some("custom headers unavailable".into()),
                        ..base
                    },
                    None,
                ));
            }
        };
        // The owner's headers first; the signature's own names cannot be
        // among them (refused when set).
        let mut headers: Vec<(&str, String)> = custom
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_string()))
            .collect();
        headers.extend([
            (HEADER_ID, attempt.event_id.clone()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_SIGNATURE, signature),
        ]);
        // The try can take the whole timeout: start it only if it ends
        // inside the lease, or another worker could send the same event at
        // the same time (a worker that waited long for the database, say).
        if !crate::shared::pump::fits_in_lease(
            self.state.clock.instant(),
            self.state.delivery_timeout,
            lease_ends,
        ) {
            tracing::warn!(delivery.id = %attempt.id, "the lease ran short before sending; the try is left to be claimed again");
            return None;
        }
        // The receiver continues the event's trace under this try's span.
        let mut span = self.state.traces.start_under(
            "deliver webhook",
            Kind::Client,
            attempt.trace_parent.as_deref(),
        );
        headers.extend(span.header());
        span.set("hookwarden.delivery.id", attempt.id.as_str());
        span.set("hookwarden.event.id", attempt.event_id.as_str());
        span.set("hookwarden.event.type", event_type);
        span.set("hookwarden.webhook.id", webhook.id.as_str());
        span.set("hookwarden.account.id", attempt.account_id.as_str());
        span.set("hookwarden.attempt", attempt.attempt);
        let outcome = self.client.send(&webhook.url, &headers, body).await;
        let result = self.classify(attempt, webhook, outcome, base).await;
        span.end_try(&webhook.url, &result);
        Some(result)
    }

    /// The current secret, and the previous one while its grace period lasts.
    fn active_secrets(
        &self,
        w: &Webhook,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<WebhookSecret>, crate::shared::secrets::OpenError> {
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
        let result = crate::shared::retry::observed(base, &o, self.state.clock.now());
        match o.http_status {
            Some(s) if (200..300).contains(&s) => {
                if !webhook.health.is_clear() {
                    self.recovered(webhook).await;
                }
                AttemptResult {
                    status: AttemptStatus::Succeeded,
                    ..result
                }
            }
            Some(410) => {
                // Standard Webhooks: 410 Gone means "stop sending"; an update re-enables.
                if let Err(e) = self
                    .state
                    .store
                    .disable_webhook(
                        &webhook.id,
                        "endpoint answered 410 Gone",
                        self.state.clock.now(),
                    )
                    .await
                {
                    tracing::error!(webhook.id = %webhook.id, error.message = %e, "disabling webhook failed");
                }
                tracing::warn!(webhook.id = %webhook.id, account.id = %webhook.account_id, "endpoint answered 410 Gone: disabled");
                self.tell(
                    webhook,
                    operational::ENDPOINT_DISABLED,
                    json!({"accountId": webhook.account_id, "webhookId": webhook.id, "reason": "endpoint answered 410 Gone"}),
                )
                .await;
                AttemptResult {
                    status: AttemptStatus::Dead,
                    ..result
                }
            }
            Some(429 | 502 | 503 | 504) => {
                // The endpoint asks us to slow down: pause it, honouring
                // Retry-After within bounds (or the breaker's pause, if longer:
                // one pause, one write).
                let asked = o.retry_after.unwrap_or_else(|| bounded_retry_after(5));
                match self.count_failure(webhook).await {
                    Verdict::Disable(reason) => self.disable(webhook, &reason, result).await,
                    Verdict::Pause(p) => {
                        self.pause(webhook, p.max(asked), "endpoint asked to slow down")
                            .await;
                        self.failed(attempt, result, o.retry_after)
                    }
                    Verdict::Carry => {
                        self.pause(webhook, asked, "endpoint asked to slow down")
                            .await;
                        self.failed(attempt, result, o.retry_after)
                    }
                }
            }
            _ => match self.count_failure(webhook).await {
                Verdict::Disable(reason) => self.disable(webhook, &reason, result).await,
                Verdict::Pause(p) => {
                    self.pause(webhook, p, "endpoint failed tries in a row")
                        .await;
                    self.failed(attempt, result, None)
                }
                Verdict::Carry => self.failed(attempt, result, None),
            },
        }
    }

    /// One more failed try, counted in the database with every replica's:
    /// the breaker's pause when it opens, or the end when the endpoint has
    /// failed every try for `disable_after`.
    async fn count_failure(&self, webhook: &Webhook) -> Verdict {
        let now = self.state.clock.now();
        let failure = match self
            .state
            .store
            .webhook_failed(&webhook.id, now, breaker::THRESHOLD)
            .await
        {
            Ok(Some(f)) => f,
            // Deleted meanwhile: nothing to count.
            Ok(None) => return Verdict::Carry,
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "counting the endpoint's failure failed");
                return Verdict::Carry;
            }
        };
        if breaker::to_disable(failure.failing_since, now, self.state.disable_after) {
            return Verdict::Disable(breaker::disabled_reason(failure.failing_since));
        }
        if !failure.opened {
            return Verdict::Carry;
        }
        metrics::counter!(crate::shared::metrics::BREAKER_PAUSES).increment(1);
        let pause = breaker::pause(failure.pauses, &self.state.retry_schedule);
        let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
        self.tell(
            webhook,
            operational::ENDPOINT_PAUSED,
            json!({"accountId": webhook.account_id, "webhookId": webhook.id,
                   "pausedUntil": crate::shared::rfc3339(until), "pauses": failure.pauses,
                   "failingSince": crate::shared::rfc3339(failure.failing_since)}),
        )
        .await;
        Verdict::Pause(pause)
    }

    /// An operational event about `webhook`, unless it is an operational
    /// endpoint itself.
    async fn tell(&self, webhook: &Webhook, kind: &'static str, data: serde_json::Value) {
        if !Operational::is_own(&webhook.account_id) {
            self.state.operational.emit(kind, data).await;
        }
    }

    /// A success after failures: the endpoint's health starts over.
    async fn recovered(&self, webhook: &Webhook) {
        match self.state.store.webhook_succeeded(&webhook.id).await {
            Ok(pauses) if pauses > 0 => {
                tracing::info!(webhook.id = %webhook.id, account.id = %webhook.account_id, "endpoint recovered");
                self.tell(
                    webhook,
                    operational::ENDPOINT_RECOVERED,
                    json!({"accountId": webhook.account_id, "webhookId": webhook.id, "pauses": pauses}),
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "clearing the endpoint's failures failed");
            }
        }
    }

    /// The endpoint has failed every try for too long: disabled, its pending
    /// tries dead letters with the reason, and this try the last one.
    async fn disable(
        &self,
        webhook: &Webhook,
        reason: &str,
        result: AttemptResult,
    ) -> AttemptResult {
        match self
            .state
            .store
            .disable_failing_webhook(&webhook.id, reason, self.state.clock.now())
            .await
        {
            Ok(true) => {
                metrics::counter!(crate::shared::metrics::ENDPOINTS_DISABLED).increment(1);
                tracing::warn!(webhook.id = %webhook.id, account.id = %webhook.account_id, "endpoint failed every try for HOOKWARDEN_DISABLE_AFTER: disabled");
                self.tell(
                    webhook,
                    operational::ENDPOINT_DISABLED,
                    json!({"accountId": webhook.account_id, "webhookId": webhook.id, "reason": reason}),
                )
                .await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(webhook.id = %webhook.id, error.message = %e, "disabling the failing endpoint failed");
            }
        }
        AttemptResult {
            status: AttemptStatus::Dead,
            next: None,
            ..result
        }
    }

    /// Waits for the rate-limited endpoint's next send slot, reserved in the
    /// database so that every replica shares the one rate. A slot more than
    /// `SLOT_WAIT` away is not waited for in flight (that would hold the
    /// budget other endpoints share): the endpoint is held back until then
    /// (claims skip it; its tries keep their due times) and this try is
    /// given back: false.
    async fn take_slot(
        &self,
        worker_id: &str,
        attempt: &Attempt,
        webhook: &Webhook,
        rate: u32,
        lease_ends: Instant,
    ) -> bool {
        let now = self.state.clock.now();
        let room = lease_ends
            .saturating_duration_since(self.state.clock.instant())
            .saturating_sub(self.state.delivery_timeout + Duration::from_secs(2))
            .min(SLOT_WAIT);
        let latest = now + chrono::Duration::from_std(room).unwrap_or_default();
        let interval = chrono::Duration::microseconds(1_000_000 / i64::from(rate.max(1)));
        match self
            .state
            .store
            .reserve_send_slot(&webhook.id, now, interval, latest)
            .await
        {
            Ok(Slot::At(at)) => {
                if let Ok(wait) = (at - now).to_std() {
                    tokio::time::sleep(wait).await;
                }
                true
            }
            Ok(Slot::Busy(until)) => {
                if let Err(e) = self.state.store.hold_back_webhook(&webhook.id, until).await {
                    tracing::warn!(webhook.id = %webhook.id, error.message = %e, "holding back a rate-limited endpoint failed");
                }
                if let Err(e) = self
                    .state
                    .store
                    .release(std::slice::from_ref(&attempt.id), worker_id)
                    .await
                {
                    tracing::warn!(delivery.id = %attempt.id, error.message = %e, "giving back a try over the rate limit failed; it waits for its lease");
                }
                false
            }
            Err(e) => {
                // The limit is a courtesy to the receiver; a database that
                // cannot reserve a slot will not record the try either.
                tracing::warn!(webhook.id = %webhook.id, error.message = %e, "reserving a send slot failed; sending without it");
                true
            }
        }
    }

    /// Pauses the endpoint: its pending tries are due at the end of the
    /// pause at the earliest, and claims skip it until then.
    async fn pause(&self, webhook: &Webhook, pause: Duration, why: &'static str) {
        let until = self.state.clock.now()
            + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::seconds(5));
        if let Err(e) = self.state.store.throttle_webhook(&webhook.id, until).await {
            tracing::error!(webhook.id = %webhook.id, error.message = %e, "pausing the endpoint failed");
            return;
        }
        tracing::warn!(webhook.id = %webhook.id, account.id = %webhook.account_id, pause_ms = pause.as_millis() as u64, reason = why, "endpoint paused");
    }

    /// A failed try: schedule the next one, or make it a dead letter.
    fn failed(
        &self,
        attempt: &Attempt,
        result: AttemptResult,
        at_least: Option<Duration>,
    ) -> AttemptResult {
        let (status, next) = crate::shared::retry::after_failure(
            &self.state.retry_schedule,
            attempt.attempt,
            at_least,
            result.completed_at,
        );
        AttemptResult {
            status,
            next,
            ..result
        }
    }

    async fn announce_dead_letter(&self, attempt: &Attempt, result: &AttemptResult) {
        metrics::counter!(crate::shared::metrics::DEAD_LETTERS).increment(1);
        // No payload: it may carry personal data; the database keeps the snapshot.
        // On a task of its own: telling the platform is a write of its own
        // that the delivery path does not wait for.
        if !Operational::is_own(&attempt.account_id) {
            let operational = Arc::clone(&self.state.operational);
            let data = json!({
                        "accountId": attempt.account_id,
                        "webhookId": attempt.webhook_id,
                        "eventId": attempt.event_id,
                        "deliveryId": attempt.id,
                        "attempt": attempt.attempt,
                        "httpStatus": result.http_status,
                        "error": result.error,
            });
            tokio::spawn(async move {
                operational.emit(operational::DELIVERY_DEAD, data).await;
            });
        }
        let Some(sink) = &self.dead_letters else {
            return;
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: AttemptStatus) -> AttemptResult {
        AttemptResult {
            attempt_id: "att_1".into(),
            worker_id: "w".into(),
            status,
            http_status: Some(200),
            duration_ms: 7,
            response_preview: Some("a\0b".into()),
            error: Some("c\0d".into()),
            completed_at: Utc::now(),
            next: None,
        }
    }

    #[test]
    fn latency_counts_from_the_event_s_publication() {
        let created = Utc::now();
        let published = created - chrono::Duration::minutes(3);
        let mut attempt = Attempt {
            id: "att_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
            account_id: "acct".into(),
            attempt: 2,
            status: AttemptStatus::Pending,
            due_at: created,
            payload_snapshot: json!({"type": "t", "timestamp": crate::shared::rfc3339(published), "data": {}}),
            trace_parent: None,
            http_status: None,
            duration_ms: None,
            response_preview: None,
            error: None,
            created_at: created,
            completed_at: None,
        };
        assert_eq!(
            published_at(&attempt).timestamp_millis(),
            published.timestamp_millis()
        );
        attempt.payload_snapshot = json!({"type": "t", "data": {}});
        assert_eq!(published_at(&attempt), created);
    }

    #[test]
    fn fallback_outcomes_keep_the_status_and_drop_what_could_not_be_stored() {
        let s = storable_outcome(result(AttemptStatus::Succeeded));
        assert_eq!(s.status, AttemptStatus::Succeeded);
        assert_eq!(s.response_preview.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(s.error.as_deref(), Some("c\u{fffd}d"));
        let g = generic_outcome(result(AttemptStatus::Failed));
        assert_eq!(
            (g.status, g.http_status, g.duration_ms),
            (AttemptStatus::Failed, Some(200), 7)
        );
        assert_eq!(g.response_preview, None);
        assert_eq!(g.error.as_deref(), Some(UNRECORDABLE));
    }
}
