//! Outbound delivery: the worker that claims due tries and delivers them,
//! and the breaker that pauses failing endpoints. The client that sends and
//! the retry arithmetic are shared with forwarding (`crate::shared`).

pub mod births;
pub(crate) mod breaker;
pub mod worker;
