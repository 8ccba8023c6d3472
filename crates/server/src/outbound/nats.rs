//! NATS JetStream: the durable consumer of `<prefix>.dispatch` (event intake,
//! acked only after the event is committed) and the dead-letter publisher on
//! `<prefix>.dispatch.deadletter`. NATS never holds the only copy of anything
//! we accepted: the database does.

use crate::config::{format_bytes, NatsSettings};
use crate::inbound::body;
use crate::outbound::intake::{self, IntakeError, PublishRequest};
use crate::shared::retry::DeadLetterSink;
use crate::shared::state::AppState;
use crate::shared::traces::Kind;
use anyhow::Context;
use async_nats::jetstream::context as stream_errors;
use async_nats::jetstream::{self, consumer, stream, AckKind, ErrorCode};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use hookwarden_core::duration::format_duration;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Intake messages handled at once.
const INTAKE_CONCURRENCY: usize = 64;

/// Durable consumer name shared by every replica (they split the messages).
const DURABLE: &str = "hookwarden-dispatcher";

pub struct Nats {
    pub client: async_nats::Client,
    js: jetstream::Context,
    settings: NatsSettings,
}

/// The connection options `serve` and `config check --connect` share: TLS,
/// client certificate and creds file as configured.
pub async fn connect_options(
    settings: &NatsSettings,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut opts = async_nats::ConnectOptions::new().name("hookwarden");
    if let Some(ca) = &settings.tls_ca_file {
        opts = opts.require_tls(true).add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &settings.tls_client {
        opts = opts
            .require_tls(true)
            .add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(creds) = &settings.creds_file {
        opts = opts
            .credentials_file(creds)
            .await
            .with_context(|| format!("HOOKWARDEN_NATS_CREDS_FILE {}", creds.display()))?;
    }
    Ok(opts)
}

/// The stream as hookwarden wants it: intake and dead-letter subjects, on
/// disk, with bounded retention (oldest messages go first).
pub fn stream_config(settings: &NatsSettings) -> stream::Config {
    let dispatch = settings.dispatch_subject();
    stream::Config {
        name: settings.stream.clone(),
        description: Some("hookwarden: event intake and dead-letter notices".into()),
        subjects: vec![dispatch.clone(), format!("{dispatch}.>")],
        storage: stream::StorageType::File,
        max_age: settings.max_age,
        max_bytes: i64::try_from(settings.max_bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// Creates the stream, or brings the retention of the existing stream of
/// that name (hookwarden's: the setting names it) to the configured limits.
pub async fn ensure_stream(js: &jetstream::Context, settings: &NatsSettings) -> anyhow::Result<()> {
    let want = stream_config(settings);
    match js.get_stream(&settings.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .with_context(|| format!("reading the JetStream stream {}", settings.stream))?;
            let mut config = info.config.clone();
            if config.max_age != want.max_age || config.max_bytes != want.max_bytes {
                config.max_age = want.max_age;
                config.max_bytes = want.max_bytes;
                js.update_stream(&config).await.with_context(|| {
                    format!(
                        "updating the retention of the JetStream stream {}",
                        settings.stream
                    )
                })?;
                tracing::info!(
                    stream = %settings.stream,
                    max_age = %format_duration(settings.max_age),
                    max_bytes = %format_bytes(settings.max_bytes),
                    "JetStream stream retention updated"
                );
            }
            Ok(())
        }
        Err(e) if is_not_found(&e) => match js.create_stream(&want).await {
            Ok(_) => {
                tracing::info!(stream = %settings.stream, "JetStream stream created");
                Ok(())
            }
            Err(e) if is_overlap(&e) => Err(overlap_error(js, &want).await),
            Err(e) => {
                Err(e).with_context(|| format!("creating the JetStream stream {}", settings.stream))
            }
        },
        Err(e) => {
            Err(e).with_context(|| format!("opening the JetStream stream {}", settings.stream))
        }
    }
}

fn is_not_found(e: &stream_errors::GetStreamError) -> bool {
    matches!(e.kind(), stream_errors::GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn is_overlap(e: &stream_errors::CreateStreamError) -> bool {
    matches!(e.kind(), stream_errors::CreateStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP)
}

/// Names the stream that already takes our subjects, and the settings that
/// avoid it. JetStream's own error says only that subjects overlap.
async fn overlap_error(js: &jetstream::Context, want: &stream::Config) -> anyhow::Error {
    let mut other = None;
    let mut streams = js.streams();
    while let Ok(Some(info)) = streams.try_next().await {
        let overlaps = info.config.subjects.iter().any(|theirs| {
            want.subjects
                .iter()
                .any(|ours| subjects_overlap(ours, theirs))
        });
        if overlaps && info.config.name != want.name {
            other = Some((info.config.name.clone(), info.config.subjects.join(", ")));
            break;
        }
    }
    let ours = want.subjects.join(", ");
    match other {
        Some((name, theirs)) => anyhow::anyhow!(
            "creating the JetStream stream {}: the stream {name} already takes subjects {theirs}, which overlap {ours}; \
             give hookwarden a subject prefix of its own (HOOKWARDEN_NATS_SUBJECT_PREFIX), or, if {name} is hookwarden's stream, \
             name it in HOOKWARDEN_NATS_STREAM",
            want.name
        ),
        None => anyhow::anyhow!(
            "creating the JetStream stream {}: another stream already takes subjects overlapping {ours}; \
             give hookwarden a subject prefix of its own (HOOKWARDEN_NATS_SUBJECT_PREFIX) or name that stream in HOOKWARDEN_NATS_STREAM",
            want.name
        ),
    }
}

/// Could one subject match both patterns? (`*` takes one token, `>` the rest.)
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => continue,
            _ => return false,
        }
    }
}

/// Why NATS failed, as an operator should read it: an outage says so.
pub fn unavailable_or(client: &async_nats::Client, what: &'static str) -> String {
    match client.connection_state() {
        async_nats::connection::State::Connected => what.to_owned(),
        state => format!("NATS unavailable ({state}): {what}"),
    }
}

impl Nats {
    /// Connects (with a creds file when configured) and makes sure the stream exists.
    pub async fn connect(settings: &NatsSettings) -> anyhow::Result<Self> {
        let opts = connect_options(settings).await?.retry_on_initial_connect();
        let client = tokio::time::timeout(Duration::from_secs(10), opts.connect(&settings.url))
            .await
            .context("NATS unavailable: no connection within 10s")?
            .context("connecting to NATS")?;
        let js = jetstream::new(client.clone());
        ensure_stream(&js, settings).await?;
        Ok(Self {
            client,
            js,
            settings: settings.clone(),
        })
    }

    /// Consumes intake messages until `shutdown`.
    pub async fn consume(
        &self,
        state: AppState,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .context("opening the JetStream stream")?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                DURABLE,
                consumer::pull::Config {
                    durable_name: Some(DURABLE.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await
            .context("creating the durable consumer")?;
        let messages = consumer
            .messages()
            .await
            .context("subscribing to the consumer")?;
        tracing::info!(subject = %self.settings.dispatch_subject(), "NATS intake started");
        // Messages are handled concurrently, so that their commits share
        // transactions (group commit): one at a time, intake was bound by one
        // commit's latency. Each is still acked only after its own commit;
        // order was never promised (redeliveries reorder anyway) and intake
        // is idempotent on the event id. On shutdown, no new message is
        // taken and those in hand finish.
        messages
            .take_until(shutdown.cancelled())
            .for_each_concurrent(INTAKE_CONCURRENCY, |next| {
                let state = &state;
                async move {
                    match next {
                        Err(e) => {
                            let what =
                                unavailable_or(&self.client, "NATS consumer error; continuing");
                            tracing::warn!(error.message = %e, "{what}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok(msg) => self.handle(state, msg).await,
                    }
                }
            })
            .await;
        tracing::info!("NATS intake stopped");
        Ok(())
    }

    /// The producer a subject names: `<prefix>.dispatch.<producer>`, or
    /// `nats` for the unscoped `<prefix>.dispatch` (allowed only without grants).
    /// `None` for our own dead letters, which share the stream.
    fn producer_of(&self, subject: &str) -> Option<String> {
        let dispatch = self.settings.dispatch_subject();
        if subject == self.settings.deadletter_subject() {
            return None;
        }
        if subject == dispatch {
            return Some("nats".into());
        }
        subject
            .strip_prefix(&format!("{dispatch}."))
            .map(str::to_owned)
    }

    async fn handle(&self, state: &AppState, msg: jetstream::Message) {
        let Some(producer) = self.producer_of(msg.subject.as_str()) else {
            let _ = msg.ack().await;
            return;
        };
        // How many times JetStream has handed us this message (1 the first time).
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1);
        // The producer's trace, from the message's `traceparent` header.
        let mut span = state.traces.start_under(
            "process webhook.dispatch",
            Kind::Consumer,
            msg.headers
                .as_ref()
                .and_then(|h| h.get(hookwarden_core::trace_context::HEADER))
                .map(|v| v.as_str()),
        );
        span.set("messaging.system", "nats");
        span.set("messaging.destination.name", msg.subject.as_str());
        // Read as the HTTP API reads a body (`http/json.rs`): a message
        // holding serde_json's reserved raw-value key is refused, not read
        // as the JSON text its string holds.
        let parsed: Result<PublishRequest, String> = if body::holds_reserved_key(&msg.payload) {
            Err(body::reserved_key_refusal())
        } else {
            serde_json::from_slice(&msg.payload).map_err(|e| {
                format!(
                    "malformed message: {}",
                    e.to_string().split(" at line ").next().unwrap_or("")
                )
            })
        };
        let verdict = match parsed {
            Err(e) => Err(e),
            Ok(req) => match intake::publish(state, req, &producer, "nats", &mut span).await {
                Ok(_) => Ok(()),
                // Whatever the cause (the database refusing this very
                // message, or down), never redelivered forever: after a
                // bounded number of deliveries it is a dead letter, with the
                // reason. An unavailable database is given longer (about six
                // minutes), so that a restart or fail-over dead-letters nothing.
                Err(IntakeError::Store(e)) if delivered >= store_deliveries(&e) => Err(format!(
                    "could not be stored after {delivered} deliveries: {}",
                    crate::shared::retry::storable_text(&e.to_string())
                )),
                Err(IntakeError::Store(e)) => {
                    span.fail("not stored; redelivered");
                    // Not committed: let JetStream redeliver it, a little later each time.
                    let delay = store_retry_delay(delivered);
                    tracing::warn!(error.message = %e, delivered, retry_in_ms = delay.as_millis() as u64,
                        "storing a NATS event failed; it will be redelivered");
                    if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                        tracing::warn!(error.message = %e, "nak failed; JetStream redelivers after ack_wait");
                    }
                    return;
                }
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(reason) = verdict {
            span.fail("refused; dead-lettered");
            // Never dropped silently: the message goes to the dead-letter subject with the reason.
            tracing::warn!(reason = %reason, "NATS event refused; dead-lettered");
            if let Err(e) = self.publish(&intake_notice(&msg, &reason)).await {
                if delivered >= REFUSED_DELIVERIES {
                    // Not even a dead letter can be written: stop the loop
                    // here, loudly, rather than take the message forever.
                    tracing::error!(error.message = %e, reason = %reason, subject = %msg.subject,
                        delivered, "dead-lettering failed again; the message is terminated");
                    let _ = msg.ack_with(AckKind::Term).await;
                    return;
                }
                tracing::warn!(error.message = %e, "dead-lettering failed; the message will be redelivered");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
                return;
            }
        }
        if let Err(e) = msg.double_ack().await {
            tracing::warn!(error.message = %e, "ack failed; the message may be redelivered (intake is idempotent on id)");
        }
    }
}

/// Deliveries of a message the database refuses before it is dead-lettered.
pub const REFUSED_DELIVERIES: i64 = 5;
/// Deliveries of a message while the database is unavailable before it is
/// dead-lettered: 1 + 2 + 4 + 8 + 16 + 32 + 60 × 5 s, about six minutes.
pub const UNAVAILABLE_DELIVERIES: i64 = 12;

/// How many deliveries a message failing to store with `e` is given.
fn store_deliveries(e: &hookwarden_store::StoreError) -> i64 {
    if e.is_unavailable() {
        UNAVAILABLE_DELIVERIES
    } else {
        REFUSED_DELIVERIES
    }
}

/// Bytes a dead-letter notice of intake takes at most: any publishable
/// event fits, and the notice stays under NATS's default maximum message
/// size (1 MiB), so that it can always be published.
const NOTICE_BYTES: usize = 768 * 1024;

/// The wait before the next delivery of a message that failed to store:
/// 1 s, 2 s, 4 s, 8 s… doubling up to a minute (15 s in all before the
/// fifth delivery).
fn store_retry_delay(delivered: i64) -> Duration {
    Duration::from_secs((1u64 << (delivered - 1).clamp(0, 6)).min(60))
}

/// The dead-letter notice of a refused intake message: the reason, and the
/// message (cut to a bound) for whoever repairs and re-publishes it.
fn intake_notice(msg: &jetstream::Message, reason: &str) -> Value {
    let text = String::from_utf8_lossy(&msg.payload);
    let mut cut = text.len();
    loop {
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut notice = json!({
            "kind": "intake",
            "reason": reason,
            "subject": msg.subject.as_str(),
            "message": &text[..cut],
        });
        if cut < text.len() {
            notice["truncated"] = Value::Bool(true);
        }
        // Escaping can make the message longer than it was: measure.
        if cut == 0 || notice.to_string().len() <= NOTICE_BYTES {
            return notice;
        }
        cut /= 2;
    }
}

#[async_trait]
impl DeadLetterSink for Nats {
    async fn publish(&self, notice: &Value) -> anyhow::Result<()> {
        let ack = self
            .js
            .publish(
                self.settings.deadletter_subject(),
                notice.to_string().into(),
            )
            .await
            .with_context(|| unavailable_or(&self.client, "publishing a dead-letter notice"))?;
        ack.await.with_context(|| {
            unavailable_or(&self.client, "a dead-letter notice was not acknowledged")
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_redelivered_a_bounded_number_of_times() {
        let waits: Vec<u64> = (1..UNAVAILABLE_DELIVERIES)
            .map(|n| store_retry_delay(n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        let refused: u64 = waits[..(REFUSED_DELIVERIES - 1) as usize].iter().sum();
        assert_eq!(refused, 15);
        let unavailable = hookwarden_store::StoreError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(store_deliveries(&unavailable), UNAVAILABLE_DELIVERIES);
        let refusing = hookwarden_store::StoreError::Corrupt("refused".into());
        assert_eq!(store_deliveries(&refusing), REFUSED_DELIVERIES);
    }
}
