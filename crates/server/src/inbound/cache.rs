//! Integrations as the receive path reads them: every integration held in
//! memory, so a request naming no integration (a cheap way to load the
//! database) costs no query at all. The copy is reloaded when the database's
//! integration generation (bumped by a trigger on every change, migration
//! 0010) moves; that one-row read is made at most every `CHECK_EVERY`, by
//! one request at a time, so a change made on any replica (a provider secret
//! rotated out, an integration deleted) applies on every replica within
//! `CHECK_EVERY` plus one query. A change made through this replica applies
//! at once (`invalidate`).
//!
//! Polling a counter was chosen over PostgreSQL `LISTEN/NOTIFY`: it works the
//! same on both backends, and a dropped listening connection cannot make a
//! replica miss a revocation silently.

use hookwarden_store::ingress::Integration;
use hookwarden_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How stale this replica's copy may be.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// While the database cannot be read, the last copy is served this long
/// (one failed read then answers for `CHECK_EVERY`: waiters do not pile up
/// behind it), then requests fail.
pub const SERVE_STALE_FOR: Duration = Duration::from_secs(5);
/// Longest wait for the generation or the list.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

struct Snapshot {
    generation: i64,
    checked: Instant,
    by_name: Arc<HashMap<String, Integration>>,
}

#[derive(Default)]
pub struct IntegrationCache {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// One refresh at a time; the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
    /// Set after this replica changed an integration: reload at the next read.
    stale: AtomicBool,
    /// When the last refresh failed.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Which provider secret last verified a request (this replica).
    pub verified: super::verified::LastVerified,
}

impl IntegrationCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> hookwarden_store::Result<Option<Integration>> {
        let snapshot = match self.fresh() {
            Some(s) => s,
            None => self.refresh(store).await?,
        };
        Ok(snapshot.by_name.get(name).cloned())
    }

    /// Forgets what this replica holds (after it changed an integration).
    pub fn invalidate(&self, _name: &str) {
        self.stale.store(true, Ordering::SeqCst);
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        if self.stale.load(Ordering::SeqCst) {
            return None;
        }
        self.current().filter(|s| s.checked.elapsed() < CHECK_EVERY)
    }

    async fn refresh(&self, store: &dyn Store) -> hookwarden_store::Result<Arc<Snapshot>> {
        let _one = self.refreshing.lock().await;
        // Someone else may have refreshed while this request waited.
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let recently_failed = self
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < CHECK_EVERY);
        if recently_failed {
            if let Some(s) = self.usable_while_failing() {
                return Ok(s);
            }
        }
        match self.reload(store).await {
            Ok(s) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(s)
            }
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                tracing::warn!(error.message = %e, "reading the integrations failed; serving the last copy while it is recent");
                self.usable_while_failing().ok_or(e)
            }
        }
    }

    /// The last copy, if it is recent enough to answer while the database
    /// cannot be read (never after this replica changed an integration).
    fn usable_while_failing(&self) -> Option<Arc<Snapshot>> {
        if self.stale.load(Ordering::SeqCst) {
            return None;
        }
        self.current()
            .filter(|s| s.checked.elapsed() < SERVE_STALE_FOR)
    }

    async fn reload(&self, store: &dyn Store) -> hookwarden_store::Result<Arc<Snapshot>> {
        let forced = self.stale.swap(false, Ordering::SeqCst);
        let timeout = || hookwarden_store::StoreError::TimedOut("integrations");
        let generation = match tokio::time::timeout(READ_TIMEOUT, store.integration_generation())
            .await
            .unwrap_or_else(|_| Err(timeout()))
        {
            Ok(g) => g,
            Err(e) => {
                if forced {
                    self.stale.store(true, Ordering::SeqCst);
                }
                return Err(e);
            }
        };
        let by_name = match self.current() {
            Some(s) if s.generation == generation && !forced => Arc::clone(&s.by_name),
            _ => {
                // The generation is read first: a change committed between
                // the two reads only makes the next check reload again.
                let all = tokio::time::timeout(READ_TIMEOUT, store.list_integrations())
                    .await
                    .unwrap_or_else(|_| Err(timeout()))
                    .inspect_err(|_| {
                        if forced {
                            self.stale.store(true, Ordering::SeqCst);
                        }
                    })?;
                Arc::new(all.into_iter().map(|i| (i.name.clone(), i)).collect())
            }
        };
        let snapshot = Arc::new(Snapshot {
            generation,
            checked: Instant::now(),
            by_name,
        });
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}
