//! Operator routes over the outbound path, across accounts: deliveries
//! (search, retry, bulk retry), events, and webhooks (disable, enable).

pub mod deliveries;
pub mod events;
pub mod webhooks;
