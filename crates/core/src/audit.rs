//! The audit trail's hash chain: each entry's hash covers its content and the
//! previous entry's hash, so editing, inserting or removing an entry behind
//! the service's back breaks every later link.

use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The content of one entry that the chain covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub request_id: &'a str,
    /// Canonical JSON text of the details.
    pub details: &'a str,
    /// RFC 3339 with milliseconds, as stored.
    pub created_at: &'a str,
}

/// `hash = SHA-256(prev_hash ‖ len-prefixed fields)`, hex.
pub fn entry_hash(prev_hash: &str, e: &Entry<'_>) -> String {
    let mut h = Sha256::new();
    h.update(b"hookwarden audit v1\0");
    let seq = e.seq.to_string();
    for part in [
        prev_hash,
        &seq,
        e.id,
        e.actor,
        e.action,
        e.target,
        e.request_id,
        e.details,
        e.created_at,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Where a chain stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("entry {seq}: its hash does not match its content (edited)")]
    Tampered { seq: i64 },
    #[error(
        "entry {seq}: it does not follow the entry before it (an entry was removed or inserted)"
    )]
    Broken { seq: i64 },
}

/// Verifies stored entries in `seq` order: each `(entry, prev_hash, hash)`.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = (Entry<'a>, &'a str, &'a str)>,
) -> Result<u64, ChainError> {
    let mut expected_prev = GENESIS.to_owned();
    let mut last_seq: Option<i64> = None;
    let mut count = 0;
    for (entry, prev, hash) in entries {
        let contiguous = last_seq.is_none_or(|s| entry.seq == s + 1);
        if prev != expected_prev || !contiguous {
            return Err(ChainError::Broken { seq: entry.seq });
        }
        if entry_hash(prev, &entry) != hash {
            return Err(ChainError::Tampered { seq: entry.seq });
        }
        expected_prev = hash.to_owned();
        last_seq = Some(entry.seq);
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, action: &'static str) -> Entry<'static> {
        Entry {
            seq,
            id: "aud_1",
            actor: "op",
            action,
            target: "t",
            request_id: "r",
            details: "{}",
            created_at: "2026-01-01T00:00:00.000Z",
        }
    }

    fn chain(n: i64) -> Vec<(Entry<'static>, String, String)> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = entry(seq, "integration.created");
                let h = entry_hash(&prev, &e);
                let row = (e, prev.clone(), h.clone());
                prev = h;
                row
            })
            .collect()
    }

    fn check(rows: &[(Entry<'static>, String, String)]) -> Result<u64, ChainError> {
        verify_chain(
            rows.iter()
                .map(|(e, p, h)| (e.clone(), p.as_str(), h.as_str())),
        )
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(check(&chain(5)), Ok(5));
        assert_eq!(check(&[]), Ok(0));
    }

    #[test]
    fn edits_removals_and_insertions_are_found() {
        let mut edited = chain(5);
        edited[2].0.action = "integration.deleted";
        assert_eq!(check(&edited), Err(ChainError::Tampered { seq: 3 }));
        let mut removed = chain(5);
        removed.remove(2);
        assert_eq!(check(&removed), Err(ChainError::Broken { seq: 4 }));
        let mut truncated_head = chain(5);
        truncated_head.remove(0);
        assert_eq!(check(&truncated_head), Err(ChainError::Broken { seq: 2 }));
        // Re-hashing an edited entry does not help: the next link breaks.
        let mut rehashed = chain(5);
        rehashed[2].0.action = "x";
        rehashed[2].2 = entry_hash(&rehashed[2].1, &rehashed[2].0);
        assert_eq!(check(&rehashed), Err(ChainError::Broken { seq: 4 }));
    }
}
