//! What the integration tests share, by job: the application under test
//! (`app`), tokens and typed requests to it (`tokens`, `requests`), a fake
//! customer endpoint (`receiver`), the reference verifier (`reference`) and
//! the shared services a test takes its own slice of (`services`). Test files
//! import it all with `use crate::helpers::*`.

mod app;
mod receiver;
mod reference;
mod requests;
mod services;
mod tokens;

pub use app::{behind_proxy, Options, TempDir, TestApp, OPERATOR_KEY, OPERATOR_KEY_OLD};
pub use hookwarden_store::testing::Backend;
pub use receiver::{Received, Receiver, Reply};
pub use reference::{ed25519_verify, reference_verify};
pub use services::{nats_url, redis_url, NatsTest, RedisPrefix};

/// Waits, if fewer than `room` seconds are left in the current minute, for
/// the next one: what the service counts per calendar minute (refusals,
/// recoveries) and a test does within `room` seconds then falls in one
/// minute, not split over two.
pub async fn early_in_a_minute(room: i64) {
    while chrono::Utc::now().timestamp() % 60 > 60 - room {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
