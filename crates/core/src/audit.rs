//! The audit trail's chain: each entry's link covers its content and the
//! previous entry's link, so editing, inserting or removing an entry breaks
//! every later link. From the chain key's `keyed_from` entry on, links are
//! HMAC-SHA256 under a secret chain key (v2): without that key nobody can
//! recompute a link, so rewriting an entry and every later one still fails.
//! Entries written before the key existed keep their plain SHA-256 links (v1,
//! which anyone can recompute); the first keyed entry covers the last of them.
//! Removing the newest entries leaves a valid shorter chain: only a head
//! recorded outside the database (`Head`) shows that.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

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

/// Feeds the version tag, then `prev_hash` and every field, length-prefixed
/// so that no two entries serialize alike.
fn feed(tag: &[u8], prev_hash: &str, e: &Entry<'_>, mut update: impl FnMut(&[u8])) {
    update(tag);
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
        update(&(part.len() as u64).to_be_bytes());
        update(part.as_bytes());
    }
}

/// The v1 link, `SHA-256(prev_hash ‖ len-prefixed fields)` in hex: entries
/// written before the chain key existed.
pub fn entry_hash(prev_hash: &str, e: &Entry<'_>) -> String {
    let mut h = Sha256::new();
    feed(b"hookwarden audit v1\0", prev_hash, e, |b| h.update(b));
    hex::encode(h.finalize())
}

/// The secret that keys the chain, and the first entry it keys. Generated
/// once per database and stored sealed under the master key (`to_bytes` is
/// what gets sealed), so a master key rotation re-seals it and never changes it.
#[derive(Clone)]
pub struct ChainKey {
    key: Zeroizing<[u8; 32]>,
    keyed_from: i64,
}

/// The sealed form could not be read back as a chain key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored audit chain key is malformed")]
pub struct BadChainKey;

const KEY_FORMAT_V1: u8 = 1;

impl ChainKey {
    /// A new random key for entries from `keyed_from` on.
    pub fn generate(keyed_from: i64) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        Self { key, keyed_from }
    }

    pub fn keyed_from(&self) -> i64 {
        self.keyed_from
    }

    /// `format ‖ keyed_from (8 bytes, big-endian) ‖ key`: the switch-over
    /// point travels inside the sealed value, so moving it to pass rewritten
    /// entries off as unkeyed ones needs the master key.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(41));
        out.push(KEY_FORMAT_V1);
        out.extend_from_slice(&self.keyed_from.to_be_bytes());
        out.extend_from_slice(&*self.key);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadChainKey> {
        let (&format, rest) = bytes.split_first().ok_or(BadChainKey)?;
        if format != KEY_FORMAT_V1 || rest.len() != 40 {
            return Err(BadChainKey);
        }
        let (from, key) = rest.split_at(8);
        let keyed_from = i64::from_be_bytes(from.try_into().map_err(|_| BadChainKey)?);
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(key);
        if keyed_from < 1 {
            return Err(BadChainKey);
        }
        Ok(Self { key: k, keyed_from })
    }

    /// True when entry `seq` must carry a keyed (v2) link.
    pub fn keys(&self, seq: i64) -> bool {
        seq >= self.keyed_from
    }

    /// The link of entry `e` after `prev_hash`: HMAC-SHA256 (hex) from
    /// `keyed_from` on, the v1 hash before it.
    pub fn link(&self, prev_hash: &str, e: &Entry<'_>) -> String {
        if !self.keys(e.seq) {
            return entry_hash(prev_hash, e);
        }
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&*self.key).unwrap_or_else(|_| unreachable!());
        feed(b"hookwarden audit v2\0", prev_hash, e, |b| mac.update(b));
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey(keyed from {}, <redacted>)", self.keyed_from)
    }
}

/// One entry of the chain named by its seq and link: what an operator
/// records outside the database, printed and parsed as `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a head is SEQ:HASH, e.g. 42:<64 hex digits>")]
pub struct BadHead;

impl std::str::FromStr for Head {
    type Err = BadHead;

    fn from_str(s: &str) -> Result<Self, BadHead> {
        let (seq, hash) = s.trim().split_once(':').ok_or(BadHead)?;
        let seq: i64 = seq.parse().map_err(|_| BadHead)?;
        let valid = seq >= 0 && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(BadHead);
        }
        Ok(Self {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
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
    #[error("the chain ends at entry {last}, but entries up to {expected} existed when it was keyed (newest entries removed)")]
    Truncated { last: i64, expected: i64 },
    #[error("the chain ends at entry {last} and does not hold the recorded head {seq} (newest entries removed)")]
    HeadMissing { seq: i64, last: i64 },
    #[error("entry {seq} is not the recorded head (the chain was rewritten)")]
    HeadDiffers { seq: i64 },
}

/// What a valid chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Entries with a keyed (v2) link: only these resist a rewrite on their own.
    pub keyed: u64,
    pub head: Head,
}

/// Verifies stored entries in `seq` order, each `(entry, prev_hash, hash)`:
/// without a key every link must be v1; with one, entries from its
/// `keyed_from` on must be keyed. With `expected`, the chain must also hold
/// that entry with that hash.
pub fn verify_chain<'a>(
    key: Option<&ChainKey>,
    entries: impl IntoIterator<Item = (Entry<'a>, &'a str, &'a str)>,
    expected: Option<&Head>,
) -> Result<Verified, ChainError> {
    let mut head = Head::genesis();
    let mut keyed = 0;
    let mut count = 0;
    let mut expected_found = expected.is_none_or(|h| h.seq == 0 && h.hash == GENESIS);
    for (entry, prev, hash) in entries {
        if prev != head.hash || entry.seq != head.seq + 1 {
            return Err(ChainError::Broken { seq: entry.seq });
        }
        let link = match key {
            Some(k) => k.link(prev, &entry),
            None => entry_hash(prev, &entry),
        };
        if link != hash {
            return Err(ChainError::Tampered { seq: entry.seq });
        }
        if key.is_some_and(|k| k.keys(entry.seq)) {
            keyed += 1;
        }
        if let Some(h) = expected.filter(|h| h.seq == entry.seq) {
            if h.hash != hash {
                return Err(ChainError::HeadDiffers { seq: entry.seq });
            }
            expected_found = true;
        }
        head = Head {
            seq: entry.seq,
            hash: hash.to_owned(),
        };
        count += 1;
    }
    if let Some(k) = key {
        // The key was made when entries up to keyed_from - 1 existed.
        if head.seq < k.keyed_from() - 1 {
            return Err(ChainError::Truncated {
                last: head.seq,
                expected: k.keyed_from() - 1,
            });
        }
    }
    if let (Some(h), false) = (expected, expected_found) {
        return Err(if h.seq == 0 || h.seq <= head.seq {
            ChainError::HeadDiffers { seq: h.seq }
        } else {
            ChainError::HeadMissing {
                seq: h.seq,
                last: head.seq,
            }
        });
    }
    Ok(Verified {
        entries: count,
        keyed,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (Entry<'static>, String, String);
    type Relink<'f> = &'f dyn Fn(&str, &Entry<'_>) -> String;

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

    /// `n` entries linked as the store links them: v1 alone, or under `key`.
    fn chain(n: i64, key: Option<&ChainKey>) -> Vec<Row> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = entry(seq, "integration.created");
                let h = key.map_or_else(|| entry_hash(&prev, &e), |k| k.link(&prev, &e));
                let row = (e, prev.clone(), h.clone());
                prev = h;
                row
            })
            .collect()
    }

    fn check(
        key: Option<&ChainKey>,
        rows: &[Row],
        head: Option<&Head>,
    ) -> Result<Verified, ChainError> {
        verify_chain(
            key,
            rows.iter()
                .map(|(e, p, h)| (e.clone(), p.as_str(), h.as_str())),
            head,
        )
    }

    /// What an attacker without the key does: edit entry `k`, then relink
    /// every entry from `k` on with a formula anyone can compute.
    fn rewrite(rows: &mut [Row], k: usize, relink: impl Fn(&str, &Entry<'_>) -> String) {
        rows[k].0.actor = "someone-else";
        for i in k..rows.len() {
            let prev = if i == 0 {
                GENESIS.to_owned()
            } else {
                rows[i - 1].2.clone()
            };
            rows[i].1 = prev.clone();
            rows[i].2 = relink(&prev, &rows[i].0);
        }
    }

    fn plain_sha256(prev: &str, e: &Entry<'_>) -> String {
        let text = format!(
            "{prev}{}{}{}{}{}{}{}{}",
            e.seq, e.id, e.actor, e.action, e.target, e.request_id, e.details, e.created_at
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn intact_chains_verify() {
        let v = check(None, &chain(5, None), None).expect("v1 chain");
        assert_eq!((v.entries, v.keyed, v.head.seq), (5, 0, 5));
        let key = ChainKey::generate(1);
        let v = check(Some(&key), &chain(5, Some(&key)), None).expect("keyed chain");
        assert_eq!((v.entries, v.keyed), (5, 5));
        assert_eq!(check(None, &[], None).map(|v| v.head), Ok(Head::genesis()));
    }

    #[test]
    fn edits_removals_and_insertions_are_found() {
        let key = ChainKey::generate(1);
        let k = Some(&key);
        let mut edited = chain(5, k);
        edited[2].0.action = "integration.deleted";
        assert_eq!(
            check(k, &edited, None),
            Err(ChainError::Tampered { seq: 3 })
        );
        let mut removed = chain(5, k);
        removed.remove(2);
        assert_eq!(check(k, &removed, None), Err(ChainError::Broken { seq: 4 }));
        let mut first_removed = chain(5, k);
        first_removed.remove(0);
        assert_eq!(
            check(k, &first_removed, None),
            Err(ChainError::Broken { seq: 2 })
        );
    }

    #[test]
    fn a_keyed_chain_cannot_be_rewritten_without_the_key() {
        let key = ChainKey::generate(1);
        let k = Some(&key);
        let relinks: [Relink<'_>; 3] = [
            &entry_hash,
            &plain_sha256,
            // A guessed key is as good as none.
            &|p, e| ChainKey::generate(1).link(p, e),
        ];
        for relink in relinks {
            let mut rows = chain(6, k);
            rewrite(&mut rows, 2, relink);
            assert_eq!(check(k, &rows, None), Err(ChainError::Tampered { seq: 3 }));
        }
        // The v1 chain this replaces fell to the same rewrite.
        let mut unkeyed = chain(6, None);
        rewrite(&mut unkeyed, 2, entry_hash);
        assert!(check(None, &unkeyed, None).is_ok());
    }

    #[test]
    fn unkeyed_entries_before_the_switch_over_are_covered_by_the_first_keyed_one() {
        // Entries 1-3 predate the key; 4-6 are keyed.
        let key = ChainKey::generate(4);
        let k = Some(&key);
        let rows = chain(6, k);
        let v = check(k, &rows, None).expect("mixed chain");
        assert_eq!((v.entries, v.keyed), (6, 3));
        assert_eq!(rows[0].2, entry_hash(GENESIS, &rows[0].0), "v1 before");
        // Rewriting an old entry and its v1 successors breaks at the first keyed one.
        let mut rows2 = rows.clone();
        rewrite(&mut rows2[..3], 1, entry_hash);
        rows2[3].1 = rows2[2].2.clone();
        assert_eq!(check(k, &rows2, None), Err(ChainError::Tampered { seq: 4 }));
        // Passing keyed entries off as v1 fails: the key says where keying began.
        let mut downgraded = rows.clone();
        rewrite(&mut downgraded, 0, entry_hash);
        assert_eq!(
            check(k, &downgraded, None),
            Err(ChainError::Tampered { seq: 4 })
        );
        // Removing the keyed entries and some before them is seen too.
        assert_eq!(
            check(k, &rows[..2], None),
            Err(ChainError::Truncated {
                last: 2,
                expected: 3
            })
        );
        assert!(check(k, &rows[..3], None).is_ok(), "nothing keyed yet");
    }

    #[test]
    fn removing_the_newest_entries_is_found_against_a_recorded_head() {
        let key = ChainKey::generate(1);
        let k = Some(&key);
        let rows = chain(6, k);
        let recorded = check(k, &rows, None).expect("valid").head;
        assert_eq!(recorded.seq, 6);
        let shorter = &rows[..4];
        let v = check(k, shorter, None).expect("a shorter chain is valid alone");
        assert_ne!(v.head, recorded, "but its head differs");
        assert_eq!(
            check(k, shorter, Some(&recorded)),
            Err(ChainError::HeadMissing { seq: 6, last: 4 })
        );
        // An older head is still held by the longer chain.
        let older = Head {
            seq: 3,
            hash: rows[2].2.clone(),
        };
        assert!(check(k, &rows, Some(&older)).is_ok());
        assert!(check(k, &rows, Some(&Head::genesis())).is_ok());
        let forged = Head {
            seq: 3,
            hash: GENESIS.into(),
        };
        assert_eq!(
            check(k, &rows, Some(&forged)),
            Err(ChainError::HeadDiffers { seq: 3 })
        );
        // A whole chain rewritten as v1 (key and all removed) is caught by the head.
        let mut unkeyed = rows.clone();
        rewrite(&mut unkeyed, 0, entry_hash);
        assert!(check(None, &unkeyed, None).is_ok());
        assert_eq!(
            check(None, &unkeyed, Some(&recorded)),
            Err(ChainError::HeadDiffers { seq: 6 })
        );
    }

    #[test]
    fn keys_and_heads_round_trip() {
        let key = ChainKey::generate(42);
        let again = ChainKey::from_bytes(&key.to_bytes()).expect("parse");
        assert_eq!(again.keyed_from(), 42);
        let e = entry(42, "a");
        assert_eq!(key.link(GENESIS, &e), again.link(GENESIS, &e));
        assert_eq!(
            ChainKey::from_bytes(&key.to_bytes()[1..]).err(),
            Some(BadChainKey)
        );
        assert!(!format!("{key:?}").contains(&hex::encode(&key.to_bytes()[9..])));
        let head = Head {
            seq: 7,
            hash: "ab".repeat(32),
        };
        assert_eq!(head.to_string().parse::<Head>(), Ok(head.clone()));
        assert_eq!(format!("7:{}", "AB".repeat(32)).parse::<Head>(), Ok(head));
        for bad in ["", "7", "x:ab", "-1:00", &format!("7:{}", "g".repeat(64))] {
            assert_eq!(bad.parse::<Head>(), Err(BadHead), "{bad}");
        }
    }
}
