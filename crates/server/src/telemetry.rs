//! Logging set-up: `RUST_LOG` wins over the default filter; text or JSON.
//! What we log is chosen at each call site: ids, outcomes and durations —
//! never secrets, signatures, raw bodies or payload fields.

use crate::config::LogFormat;
use tracing_subscriber::{fmt, EnvFilter};

const DEFAULT_FILTER: &str = "info,sqlx=warn,async_nats=warn,hyper=warn,reqwest=warn";

/// Installs the global subscriber; a second call is a no-op (tests).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
