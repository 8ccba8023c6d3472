//! Outbound delivery: the SSRF-safe client, the worker that claims due
//! attempts and delivers them, and where dead letters are announced.

pub mod client;
pub mod worker;

use async_trait::async_trait;
use serde_json::Value;

/// Where dead-letter notices go besides the database (NATS when configured).
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    async fn publish(&self, notice: &Value) -> anyhow::Result<()>;
}
