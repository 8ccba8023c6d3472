//! The audit trail: appending from handlers and workers (details never hold
//! secrets; a failure to append is logged loudly, the change itself stands),
//! the chain key every new entry is linked with, verification, and the head
//! exposed as a metric and logged, so that it can be kept outside the database.

use crate::shared::secrets::row_identity;
use anyhow::Context;
use chrono::Utc;
use hookwarden_core::audit::{verify_chain, ChainError, ChainKey, Head, Verified};
use hookwarden_core::crypto::{Keyring, Sealed};
use hookwarden_store::ingress::{NewAudit, AUDIT_KEY_ROW};
use hookwarden_store::sealed::SealedColumn;
use hookwarden_store::Store;
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the head is logged (and its metric refreshed from the database).
pub const HEAD_LOG_INTERVAL: Duration = Duration::from_secs(300);

pub async fn record(
    store: &dyn Store,
    actor: &str,
    action: &str,
    target: &str,
    request_id: &str,
    details: Value,
) {
    if let Err(e) = record_or_fail(store, actor, action, target, request_id, details).await {
        tracing::error!(audit.action = action, audit.target = target, error.message = %e, "appending to the audit trail failed")
    }
}

/// Appends an entry, or says why it could not: for an action that must not
/// happen unaudited (showing a secret), which the caller then refuses.
pub async fn record_or_fail(
    store: &dyn Store,
    actor: &str,
    action: &str,
    target: &str,
    request_id: &str,
    details: Value,
) -> Result<(), hookwarden_store::StoreError> {
    let entry = NewAudit {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        request_id: request_id.to_owned(),
        details,
    };
    let r = store.append_audit(&entry, Utc::now()).await?;
    metrics::gauge!(crate::shared::metrics::AUDIT_HEAD_SEQ).set(r.seq as f64);
    Ok(())
}

fn open(keyring: &Keyring, sealed: &Sealed) -> anyhow::Result<ChainKey> {
    let plain = keyring
        .open(row_identity(SealedColumn::AuditChainKey, AUDIT_KEY_ROW, ""), sealed)
        .map_err(|e| {
            anyhow::anyhow!(
                "the audit chain key cannot be opened ({e}); is its master key in HOOKWARDEN_PREVIOUS_MASTER_KEYS?"
            )
        })?;
    Ok(ChainKey::from_bytes(&plain)?)
}

/// Opens the chain key, made and sealed under the current master key on the
/// first start, and gives it to the store, which links every new entry with
/// it. A database with unkeyed entries gets a first keyed one at once: it
/// covers them all.
pub async fn load_chain_key(store: &dyn Store, keyring: &Keyring) -> anyhow::Result<ChainKey> {
    let seal = |next: i64| {
        keyring.seal(
            row_identity(SealedColumn::AuditChainKey, AUDIT_KEY_ROW, ""),
            &ChainKey::generate(next).to_bytes(),
        )
    };
    let sealed = store
        .init_audit_key(&seal, Utc::now())
        .await
        .context("loading the audit chain key (has `hookwarden migrate` run?)")?;
    let key = open(keyring, &sealed)?;
    store.set_audit_key(key.clone());
    let head = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    if key.keyed_from() > 1 && head == key.keyed_from() - 1 {
        let entry = NewAudit {
            actor: "system".into(),
            action: "audit.chain_keyed".into(),
            target: format!("audit_entry:{}", key.keyed_from()),
            request_id: "startup".into(),
            details: serde_json::json!({"unkeyedEntries": head}),
        };
        store.append_audit(&entry, Utc::now()).await?;
        tracing::info!(
            audit.keyed_from = key.keyed_from(),
            "the audit chain is keyed from now on; earlier entries are covered by the first keyed one"
        );
    }
    Ok(key)
}

/// Checks the whole chain (under the chain key when one was made) and, with
/// `expected`, that it still holds that head. `Err` is a failure to check;
/// the inner result is the verdict.
pub async fn verify(
    store: &dyn Store,
    keyring: &Keyring,
    expected: Option<&Head>,
) -> anyhow::Result<Result<Verified, ChainError>> {
    let key = match store.audit_key().await? {
        Some(sealed) => Some(open(keyring, &sealed)?),
        None => None,
    };
    let chain = store.audit_chain().await?;
    Ok(verify_chain(
        key.as_ref(),
        chain
            .iter()
            .map(|r| (r.entry(), r.prev_hash.as_str(), r.hash.as_str())),
        expected,
    ))
}

/// Every `interval` (and at once), one `HeadWatch::look`.
pub async fn watch_head(
    store: std::sync::Arc<dyn Store>,
    operational: std::sync::Arc<crate::shared::operational::Operational>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = HeadWatch::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        watch.look(store.as_ref(), &operational).await;
    }
}

/// What the head watcher remembers between looks: the highest seq seen,
/// and the last head sent as an `audit.head` operational event.
#[derive(Debug, Default)]
pub struct HeadWatch {
    highest: Option<i64>,
    sent: Option<i64>,
}

impl HeadWatch {
    /// The head's seq as a gauge and the head logged at INFO as
    /// `audit.head=SEQ:HASH`, so logs kept elsewhere hold the anchors
    /// `hookwarden audit verify --head` checks. A head that moved back since
    /// an earlier look (newest entries removed) is logged at ERROR. A head
    /// that moved since the last one sent goes to the operational webhooks
    /// (`audit.head`), so the platform keeps anchors outside hookwarden.
    pub async fn look(
        &mut self,
        store: &dyn Store,
        operational: &crate::shared::operational::Operational,
    ) {
        let head = match store.audit_head().await {
            Ok(h) => h.map_or_else(Head::genesis, |(seq, hash)| Head { seq, hash }),
            Err(e) => {
                tracing::warn!(error.message = %e, "reading the audit chain head failed");
                return;
            }
        };
        metrics::gauge!(crate::shared::metrics::AUDIT_HEAD_SEQ).set(head.seq as f64);
        match self.highest {
            Some(seen) if head.seq < seen => tracing::error!(
                audit.head = %head, audit.seen_seq = seen,
                "the audit chain's head moved back: entries were removed behind the service's back"
            ),
            _ => tracing::info!(audit.head = %head, "audit chain head"),
        }
        self.highest = Some(self.highest.map_or(head.seq, |s| s.max(head.seq)));
        if self.sent != Some(head.seq) {
            operational
                .emit(
                    crate::shared::operational::AUDIT_HEAD,
                    serde_json::json!({"seq": head.seq, "head": head.to_string()}),
                )
                .await;
            self.sent = Some(head.seq);
        }
    }
}
