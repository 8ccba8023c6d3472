//! Storage errors: the few outcomes callers must tell apart, and the rest.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an 11th webhook for an account (the limit trigger).
    #[error("webhook limit reached for this account")]
    WebhookLimit,
    /// The database refused a second webhook of an account with the same URL
    /// and the same event types (the same trigger).
    #[error("a webhook with this url and these event types exists in this account")]
    WebhookDuplicate,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("no audit chain key is loaded: nothing can be appended to the audit trail")]
    AuditKeyMissing,
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    /// The caller's own bound on a read ran out.
    #[error("the database did not answer in time ({0})")]
    TimedOut(&'static str),
    /// The database could not be reached (connection refused, reset or
    /// timed out, no pooled connection in time, shutting down). Said as
    /// such, so that logs and readiness read "database unavailable".
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if unavailable(&err) {
            Self::Unavailable(err)
        } else {
            Self::Database(err)
        }
    }
}

/// Is this the database being out of reach, rather than refusing a query?
fn unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutting
        // down, cannot connect now), 53300 (too many connections).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
        _ => false,
    }
}

impl StoreError {
    /// The database could not be reached or did not answer in time, as
    /// opposed to refusing this very operation: worth waiting out, and not
    /// the data's fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::TimedOut(_))
    }
}

/// Maps a database error raised by the webhook limit trigger (both backends
/// put these markers in the message) to `WebhookLimit` or `WebhookDuplicate`.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.message().contains("webhook_limit_exceeded") {
            return StoreError::WebhookLimit;
        }
        if db.message().contains("webhook_duplicate") {
            return StoreError::WebhookDuplicate;
        }
    }
    StoreError::from(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_says_so() {
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let text = StoreError::from(err).to_string();
            assert!(text.starts_with("database unavailable: "), "{text}");
        }
        let text = StoreError::from(sqlx::Error::RowNotFound).to_string();
        assert!(!text.contains("unavailable"), "{text}");
    }
}
