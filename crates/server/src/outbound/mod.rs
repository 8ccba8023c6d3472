//! The outbound path: events published over HTTP or NATS are validated
//! against producers' grants and event-type schemas, committed with their
//! pending tries, and delivered to tenants' endpoints by the dispatcher.

pub mod dispatch;
pub mod intake;
pub mod nats;
pub mod producers;
pub(crate) mod recover;
pub(crate) mod schemas;
pub(crate) mod test_event;
