//! The Prometheus recorder (process-wide) and the names of our metrics.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

pub const DELIVERIES: &str = "hookwarden_deliveries_total";
pub const DELIVERY_DURATION: &str = "hookwarden_delivery_duration_seconds";
pub const IN_FLIGHT: &str = "hookwarden_deliveries_in_flight";
pub const QUEUE_PENDING: &str = "hookwarden_delivery_queue_pending";
pub const QUEUE_DUE: &str = "hookwarden_delivery_queue_due";
pub const QUEUE_OLDEST_DUE: &str = "hookwarden_delivery_queue_oldest_due_seconds";
pub const DEAD_LETTERS: &str = "hookwarden_dead_letters_total";
/// Endpoints paused by the breaker after failing tries in a row.
pub const BREAKER_PAUSES: &str = "hookwarden_endpoint_pauses_total";
/// The seq of the audit chain's newest entry (its hash is logged as `audit.head`).
pub const AUDIT_HEAD_SEQ: &str = "hookwarden_audit_head_seq";

/// Installs the recorder once per process and returns its handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours
            // simply renders nothing, which tests would notice.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
