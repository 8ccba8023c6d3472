//! Optional shared backends: Redis (rate limits, dedup markers, locks).
//! NATS lives in `crate::nats`.

pub mod redis;
