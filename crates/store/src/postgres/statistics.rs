//! Statistics that say a table is empty while it is not (migration 0026):
//! every `EVERY`, one call to `hook.refresh_stale_statistics()`, which
//! analyzes the tables of schema hook whose statistics count under a tenth
//! of their live rows. Such statistics make every plan on a table count on
//! one row, and the claim and the recording of tries then read whole
//! tables; autovacuum would end it a minute later, and nothing would where
//! it is off. Most calls find nothing to do (a catalog read, under a
//! millisecond).

use crate::error::Result;
use sqlx::postgres::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Between checks: how long plans can be wrong once a table holds 1,000
/// rows more than its statistics say.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// How often a check that keeps failing is said again.
const SAY_AGAIN: Duration = Duration::from_secs(3600);

/// The checking task, stopped when the store drops.
pub(crate) struct Guard(JoinHandle<()>);

impl Guard {
    /// `unsynced` is the application name of this store's unsynced pool.
    pub(crate) fn start(pool: PgPool, unsynced: String) -> Self {
        Self(tokio::spawn(async move {
            // The first check a period after start: `migrate` may still be
            // creating the function.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // When a failure was last said: once an hour while it lasts (a
            // function missing or not granted turns the check off).
            let mut said: Option<tokio::time::Instant> = None;
            loop {
                tick.tick().await;
                match refresh(&pool).await {
                    Ok(tables) => {
                        said = None;
                        if !tables.is_empty() {
                            // Claims and outcomes already running keep the
                            // plans the lying statistics gave them, and one
                            // can run for minutes: cancelled, it changes
                            // nothing, and the next is planned afresh.
                            if let Err(e) = cancel_running(&pool, &unsynced).await {
                                tracing::warn!(error.message = %e, "cancelling the claims planned before the statistics were mended failed; they end at their statement timeout");
                            }
                        }
                        for table in tables {
                            tracing::warn!(
                                table = %table,
                                "PostgreSQL's statistics counted under a tenth of the rows the table holds, so plans made from them can read it whole; analyzed it (docs/PRODUCTION.md, PostgreSQL: statistics)"
                            );
                        }
                    }
                    Err(e) => {
                        if said.is_none_or(|at| at.elapsed() >= SAY_AGAIN) {
                            said = Some(tokio::time::Instant::now());
                            tracing::warn!(error.message = %e, "checking PostgreSQL's statistics failed (docs/PRODUCTION.md, PostgreSQL: statistics); tried again every 10 s, said again hourly");
                        }
                    }
                }
            }
        }))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels the statements of this store's unsynced pool (claims, releases,
/// delivery outcomes) running now. A role may cancel its own sessions.
async fn cancel_running(pool: &PgPool, unsynced: &str) -> Result<()> {
    sqlx::query(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()",
    )
    .bind(unsynced)
    .execute(pool)
    .await?;
    Ok(())
}

/// One check: the tables analyzed (none, nearly always).
pub(crate) async fn refresh(pool: &PgPool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT hook.refresh_stale_statistics()")
        .fetch_all(pool)
        .await?)
}
