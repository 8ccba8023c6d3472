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

pub use app::{Options, TempDir, TestApp, OPERATOR_KEY, OPERATOR_KEY_OLD};
pub use hookwarden_store::testing::Backend;
pub use receiver::{Received, Receiver, Reply};
pub use reference::{ed25519_verify, reference_verify};
pub use services::{nats_url, redis_url, NatsTest, RedisPrefix};
