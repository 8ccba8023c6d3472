//! The forwarding queue: each inbound event's pending job is claimed (one
//! worker per job through the database, one handler per event through the
//! Redis lock when configured), normalized, signed with the integration's own
//! forwarding secret — never the provider's — and sent to its target.

use super::integrations::{forwarding_policy, open_forwarding_secret};
use crate::shared::client::{DeliveryClient, SystemLookup};
use crate::shared::clock::Clock;
use crate::shared::identity::IdentitySigner;
use crate::shared::pump::{PumpConfig, Queue};
use crate::shared::redis::Redis;
use crate::shared::retry::{after_failure, DeadLetterSink};
use crate::shared::state::AppState;
use crate::shared::traces::{Kind, Traces};
use async_trait::async_trait;
use chrono::SecondsFormat;
use hookwarden_core::crypto::Keyring;
use hookwarden_core::standard_webhooks::{sign, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use hookwarden_store::ingress::{InboundEvent, Integration, Job};
use hookwarden_store::model::{AttemptResult, AttemptStatus, Claim};
use hookwarden_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the forwarding worker uses of the application, and nothing else.
#[derive(Clone)]
pub struct Forwarding {
    pub store: Arc<dyn Store>,
    /// Opens integrations' forwarding secrets.
    pub keyring: Arc<Keyring>,
    /// Signs the identity token of each forwarded request.
    pub identity: Arc<IdentitySigner>,
    /// Event locks shared by replicas, when configured.
    pub redis: Option<Redis>,
    pub clock: Clock,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub delivery_lease: Duration,
    pub delivery_ca_file: Option<std::path::PathBuf>,
    /// A span per forwarding, under the inbound event's trace.
    pub traces: Traces,
}

impl From<&AppState> for Forwarding {
    fn from(state: &AppState) -> Self {
        Self {
            store: Arc::clone(&state.store),
            keyring: Arc::clone(&state.keyring),
            identity: Arc::clone(&state.identity),
            redis: state.redis.clone(),
            clock: state.clock.clone(),
            retry_schedule: state.settings.retry_schedule.clone(),
            delivery_timeout: state.settings.delivery_timeout,
            delivery_lease: state.settings.delivery_lease,
            delivery_ca_file: state.settings.delivery_ca_file.clone(),
            traces: state.traces.clone(),
        }
    }
}

pub struct ForwardQueue {
    state: Forwarding,
    client: DeliveryClient,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
}

impl ForwardQueue {
    pub fn new(
        state: Forwarding,
        dead_letters: Option<Arc<dyn DeadLetterSink>>,
    ) -> anyhow::Result<Self> {
        // Forwarding targets are operator-configured internal services.
        let client = DeliveryClient::for_operator_targets(
            forwarding_policy(),
            state.delivery_timeout,
            Arc::new(SystemLookup),
            state.delivery_ca_file.as_deref(),
        )?;
        Ok(Self {
            state,
            client,
            dead_letters,
        })
    }

    pub fn pump_config(settings: &crate::config::Settings, clock: Clock) -> PumpConfig {
        PumpConfig {
            name: "forwarding",
            max_in_flight: settings.max_in_flight,
            per_lane: settings.max_in_flight_per_endpoint,
            poll_interval: settings.poll_interval,
            drain: settings.delivery_timeout + Duration::from_secs(2),
            lease: settings.delivery_lease,
            clock,
        }
    }
}

/// The normalized event every internal service receives.
pub fn normalized(event: &hookwarden_store::ingress::InboundEvent) -> Value {
    // As received: a body stored before the raw-value key was refused is
    // forwarded as it came, not as the JSON text its key's string holds.
    let payload: Value =
        hookwarden_core::plain_json::from_slice(&event.raw_body).unwrap_or(Value::Null);
    json!({
        "id": event.id,
        "provider": event.provider,
        "deliveryId": event.delivery_id,
        "receivedAt": event.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "payload": payload,
    })
}

#[async_trait]
impl Queue for ForwardQueue {
    type Item = Job;

    fn lane(item: &Job) -> String {
        item.provider.clone()
    }

    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        exclude: &[String],
    ) -> anyhow::Result<Vec<Job>> {
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
        Ok(self.state.store.claim_jobs(&claim).await?)
    }

    async fn release(&self, worker_id: &str, jobs: Vec<Job>) -> anyhow::Result<()> {
        for job in jobs {
            self.state.store.release_job(&job.id, worker_id).await?;
        }
        Ok(())
    }

    /// Forwarding records each try inside `process`, where its event lock is held.
    type Done = ();

    async fn record(&self, _worker_id: &str, _done: ()) {}

    async fn process(&self, worker_id: &str, job: Job, lease_ends: Instant) {
        // One handler per event across replicas (a retry and a replay of the
        // same event never run at once). Without Redis the claim suffices.
        if let Some(redis) = &self.state.redis {
            match redis
                .lock(&job.event_id, worker_id, self.state.delivery_lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(event.id = %job.event_id, "event locked by another handler; job released");
                    let _ = self.state.store.release_job(&job.id, worker_id).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error.message = %format!("{e:#}"), "Redis lock unavailable; relying on the database claim")
                }
            }
        }
        let Some(result) = self.forward(worker_id, &job, lease_ends).await else {
            // Nothing was sent, so there is no try to record: the job waits
            // out its lease and is claimed again. (Recording a failed try
            // would spend its retries on a database restart.) It is not
            // released: by now the lease may have run out and this same
            // worker may hold a newer claim on the job, which a release by
            // worker id would clear under the feet of the task sending it.
            // Likewise the event lock is left to expire with the lease.
            tracing::warn!(job.id = %job.id, "nothing was sent (database unavailable, or the lease ran short); the job is retried after its lease");
            return;
        };
        let status = result.status;
        match self.state.store.complete_job(&result).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job.id = %job.id, "lease lost before the forwarding try was recorded")
            }
            Err(e) => {
                tracing::error!(job.id = %job.id, error.message = %e, "recording a forwarding try failed; it will be retried")
            }
        }
        if let Some(redis) = &self.state.redis {
            let _ = redis.unlock(&job.event_id, worker_id).await;
        }
        metrics::counter!(crate::shared::metrics::FORWARDS, "outcome" => status.as_str())
            .increment(1);
        if matches!(status, AttemptStatus::Failed | AttemptStatus::Dead) {
            let reason =
                crate::shared::metrics::failure_reason(result.http_status, result.error.as_deref());
            metrics::counter!(crate::shared::metrics::FORWARD_FAILURES, "reason" => reason)
                .increment(1);
        }
        tracing::info!(
            job.id = %job.id, event.id = %job.event_id, provider = %job.provider, attempt = job.attempt,
            outcome = status.as_str(), http.status = result.http_status, duration_ms = result.duration_ms,
            error = result.error.as_deref(), "forwarding try finished"
        );
        if status == AttemptStatus::Dead {
            if let Some(sink) = &self.dead_letters {
                let notice = json!({"kind": "forwarding", "jobId": job.id, "eventId": job.event_id, "provider": job.provider,
                    "httpStatus": result.http_status, "error": result.error});
                if let Err(e) = sink.publish(&notice).await {
                    tracing::warn!(error.message = %e, "publishing a forwarding dead letter failed; the database records it");
                }
            }
        }
    }
}

impl ForwardQueue {
    /// One forwarding try, or `None` when the database could not be read
    /// before anything was sent.
    async fn forward(
        &self,
        worker_id: &str,
        job: &Job,
        lease_ends: Instant,
    ) -> Option<AttemptResult> {
        let base = AttemptResult {
            attempt_id: job.id.clone(),
            worker_id: worker_id.to_owned(),
            status: AttemptStatus::Dead,
            http_status: None,
            duration_ms: 0,
            response_preview: None,
            error: None,
            completed_at: self.state.clock.now(),
            next: None,
        };
        let dead = |reason: &str| AttemptResult {
            error: Some(reason.to_owned()),
            ..base.clone()
        };
        let (event, integration) = match (
            self.state.store.get_inbound(&job.event_id).await,
            self.state.store.get_integration(&job.provider).await,
        ) {
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(job.id = %job.id, error.message = %e, "reading the event to forward failed");
                return None;
            }
            (Ok(None), _) => return Some(dead("event not found")),
            (_, Ok(None)) => return Some(dead("integration deleted")),
            (Ok(Some(event)), Ok(Some(integration))) => (event, integration),
        };
        // Start the try only if it ends inside the lease (see the delivery worker).
        if !crate::shared::pump::fits_in_lease(
            self.state.clock.instant(),
            self.state.delivery_timeout,
            lease_ends,
        ) {
            return None;
        }
        Some(self.send(job, &event, &integration, base).await)
    }

    /// Signs and sends the event to the integration's target; classifies the answer.
    async fn send(
        &self,
        job: &Job,
        event: &InboundEvent,
        integration: &Integration,
        base: AttemptResult,
    ) -> AttemptResult {
        let secret = match open_forwarding_secret(&self.state.keyring, integration) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(integration = %integration.name, error.message = %e, "cannot open the forwarding secret");
                return self.failed(
                    job,
                    AttemptResult {
                        error: Some("forwarding secret unavailable".into()),
                        ..base
                    },
                    None,
                );
            }
        };
        // The exact verified bytes when the integration asks for them (a
        // service can then rely on what the provider signed: duplicate keys
        // and large numbers survive), else the normalized envelope.
        let body = if integration.forward_raw_body {
            event.raw_body.clone()
        } else {
            serde_json::to_vec(&normalized(event)).unwrap_or_default()
        };
        let issued = self.state.clock.now().timestamp();
        let identity = crate::shared::identity::IdentityClaims {
            iss: crate::shared::identity::ISSUER.into(),
            sub: format!("provider:{}", event.provider),
            aud: integration.name.clone(),
            tenant: integration.name.clone(),
            cid: event.correlation_id.clone(),
            jti: job.id.clone(),
            iat: issued,
            exp: issued + crate::shared::identity::TTL_SECS,
        };
        let token = match self.state.identity.sign(&identity) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error.message = %e, "signing the identity token failed");
                return self.failed(
                    job,
                    AttemptResult {
                        error: Some("identity token unavailable".into()),
                        ..base
                    },
                    None,
                );
            }
        };
        let ts = self.state.clock.now().timestamp();
        let mut headers = vec![
            (HEADER_ID, event.id.clone()),
            (HEADER_TIMESTAMP, ts.to_string()),
            (HEADER_SIGNATURE, sign(&secret, &event.id, ts, &body)),
            ("x-correlation-id", event.correlation_id.clone()),
            ("x-hookwarden-event-id", event.id.clone()),
            ("x-hookwarden-provider", event.provider.clone()),
            ("authorization", format!("Bearer {token}")),
        ];
        if integration.forward_raw_body {
            // What the envelope would have carried, beside the raw body.
            headers.push((
                "x-hookwarden-received-at",
                event
                    .received_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ));
            // A body's id may hold anything; a header only printable ASCII.
            if let Some(d) = event
                .delivery_id
                .as_ref()
                .filter(|d| d.bytes().all(|b| (0x20..0x7f).contains(&b)))
            {
                headers.push(("x-hookwarden-delivery-id", d.clone()));
            }
        }
        drop(secret);
        // The target continues the inbound event's trace under this span.
        let mut span = self.state.traces.start_under(
            "forward inbound event",
            Kind::Client,
            event.trace_parent.as_deref(),
        );
        headers.extend(span.header());
        span.set("hookwarden.job.id", job.id.as_str());
        span.set("hookwarden.inbound_event.id", event.id.as_str());
        span.set("hookwarden.integration", integration.name.as_str());
        span.set("hookwarden.attempt", job.attempt);
        let o = self
            .client
            .send(&integration.target_url, &headers, body)
            .await;
        let result = crate::shared::retry::observed(base, &o, self.state.clock.now());
        let result = match o.http_status {
            Some(s) if (200..300).contains(&s) => AttemptResult {
                status: AttemptStatus::Succeeded,
                ..result
            },
            _ => self.failed(job, result, o.retry_after),
        };
        span.end_try(&integration.target_url, &result);
        result
    }

    fn failed(
        &self,
        job: &Job,
        result: AttemptResult,
        at_least: Option<Duration>,
    ) -> AttemptResult {
        let (status, next) = after_failure(
            &self.state.retry_schedule,
            job.attempt,
            at_least,
            result.completed_at,
        );
        AttemptResult {
            status,
            next: next.map(|(_, due)| (hookwarden_core::ids::new_id("job"), due)),
            ..result
        }
    }
}
