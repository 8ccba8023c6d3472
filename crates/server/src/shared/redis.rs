//! Redis as an accelerator and coordinator, never a store of record: shared
//! rate-limit windows, deduplication markers and per-event locks. Every call
//! is bounded by a short timeout; on any failure the caller falls back (the
//! database's constraints stand behind every decision made here). Redis down
//! at start-up is such a failure too: hookwarden starts without it and
//! connects once it answers.

use crate::shared::error::ApiError;
use crate::shared::ratelimit::{LocalRateLimiter, RateLimiter};
use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How long any Redis call may take before we act without it.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a dedup marker lives (providers retry within hours, not days).
const MARKER_TTL_SECS: u64 = 24 * 3600;

/// First wait between reconnection attempts when Redis was down at start-up.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between them: Redis is back in use within this of returning.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Redis {
    /// Empty until the first connection is made (Redis may be down at
    /// start-up); the manager then reconnects by itself after any outage.
    conn: Arc<OnceLock<ConnectionManager>>,
    prefix: String,
}

impl Redis {
    /// Connects to Redis. If it cannot be reached now, hookwarden starts
    /// without it (degraded, as during an outage mid-run) and keeps trying in
    /// the background; only an unparsable URL is an error.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("parsing the Redis URL")?;
        let this = Self {
            conn: Arc::default(),
            prefix: prefix.to_owned(),
        };
        match open(&client).await {
            Ok(conn) => {
                let _ = this.conn.set(conn);
            }
            Err(e) => {
                tracing::warn!(
                    error.message = %format!("{e:#}"),
                    "Redis is unreachable: starting degraded (local rate limits, database dedup) and reconnecting in the background"
                );
                tokio::spawn(reconnect(client, Arc::downgrade(&this.conn)));
            }
        }
        Ok(this)
    }

    /// The connection, or an error while none was ever made.
    fn conn(&self) -> anyhow::Result<ConnectionManager> {
        self.conn
            .get()
            .cloned()
            .context("Redis has not been reachable since start-up")
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.prefix, parts.join(":"))
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        Ok(tokio::time::timeout(OP_TIMEOUT, fut)
            .await
            .context("Redis timed out")??)
    }

    pub async fn ping(&self) -> bool {
        let Ok(mut c) = self.conn() else {
            return false;
        };
        self.bounded(redis::cmd("PING").query_async::<String>(&mut c))
            .await
            .is_ok()
    }

    /// The event id recorded for a provider delivery, if a marker exists.
    pub async fn dedup_get(&self, provider: &str, key: &str) -> anyhow::Result<Option<String>> {
        let mut c = self.conn()?;
        let k = self.key(&["dedup", provider, key]);
        self.bounded(c.get::<_, Option<String>>(k)).await
    }

    /// Records the event id of a provider delivery (after the database commit).
    pub async fn dedup_set(&self, provider: &str, key: &str, event_id: &str) -> anyhow::Result<()> {
        let mut c = self.conn()?;
        let k = self.key(&["dedup", provider, key]);
        self.bounded(c.set_ex::<_, _, ()>(k, event_id, MARKER_TTL_SECS))
            .await
    }

    /// Takes the lock of one event for `ttl`; false if another worker holds it.
    pub async fn lock(&self, event_id: &str, owner: &str, ttl: Duration) -> anyhow::Result<bool> {
        let mut c = self.conn()?;
        let k = self.key(&["lock", "event", event_id]);
        let set: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(&k)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis() as u64)
                    .query_async(&mut c),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Releases the lock if (and only if) `owner` still holds it.
    pub async fn unlock(&self, event_id: &str, owner: &str) -> anyhow::Result<()> {
        let script = redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end");
        let mut c = self.conn()?;
        let k = self.key(&["lock", "event", event_id]);
        self.bounded(script.key(k).arg(owner).invoke_async::<i64>(&mut c))
            .await
            .map(|_| ())
    }

    /// Counts one request in this minute's window and returns (previous
    /// minute's count, this minute's count including this one).
    async fn count(&self, key: &str, minute: u64) -> anyhow::Result<(u64, u64)> {
        let mut c = self.conn()?;
        let current = self.key(&["rl", key, &minute.to_string()]);
        let previous = self.key(&["rl", key, &(minute.saturating_sub(1)).to_string()]);
        let (prev, now): (Option<u64>, u64) = self
            .bounded(
                redis::pipe()
                    .get(&previous)
                    .incr(&current, 1u64)
                    .expire(&current, 120)
                    .ignore()
                    .query_async(&mut c),
            )
            .await?;
        Ok((prev.unwrap_or(0), now))
    }
}

/// One connection attempt, bounded (a black-holed address must not hold start-up).
async fn open(client: &redis::Client) -> anyhow::Result<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(OP_TIMEOUT)
        .set_number_of_retries(1);
    tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client.clone(), config),
    )
    .await
    .context("Redis did not answer within 5s")?
    .context("connecting to Redis")
}

/// Tries until Redis answers, then hands the connection to every clone of
/// the `Redis` it was started for; ends early once the application is gone.
async fn reconnect(client: redis::Client, slot: Weak<OnceLock<ConnectionManager>>) {
    let mut wait = RECONNECT_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        if slot.strong_count() == 0 {
            return;
        }
        match open(&client).await {
            Ok(conn) => {
                if let Some(slot) = slot.upgrade() {
                    let _ = slot.set(conn);
                    tracing::info!(
                        "Redis is reachable: shared rate limits, dedup markers and locks in use"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error.message = %format!("{e:#}"), "Redis still unreachable");
                wait = (wait * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// Rate limits shared by every replica through Redis, falling back to the
/// process's own limiter when Redis cannot answer.
pub struct RedisRateLimiter {
    redis: Redis,
    fallback: LocalRateLimiter,
}

impl RedisRateLimiter {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            fallback: LocalRateLimiter::default(),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> Result<(), ApiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let minute = now.as_secs() / 60;
        match self.redis.count(key, minute).await {
            Ok((previous, current)) => {
                let into = (now.as_secs_f64() % 60.0) / 60.0;
                let estimate = previous as f64 * (1.0 - into) + current as f64;
                if estimate > f64::from(per_minute) {
                    let wait = Duration::from_secs(60 - now.as_secs() % 60);
                    return Err(ApiError::RateLimited(wait.max(Duration::from_secs(1))));
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "Redis rate limit unavailable; using this process's limiter");
                self.fallback.check(key, per_minute).await
            }
        }
    }
}
