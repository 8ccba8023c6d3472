//! Envelope encryption of secrets at rest: AES-256-GCM under a per-account data
//! key derived from the master key with HKDF-SHA256, the owning row's identity
//! bound as associated data, and a key id naming the master key used.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::{engine::general_purpose::STANDARD, Engine};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

const NONCE_LEN: usize = 12;
/// Version tag inside every ciphertext, so the format can evolve.
const FORMAT_V1: u8 = 1;

/// A 32-byte master key. Never printed.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("no master key with id {0} is loaded")]
    UnknownKeyId(String),
    #[error("ciphertext does not decrypt for this row")]
    Decrypt,
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        // The id is a digest of the key, so it names the key without revealing it.
        let digest = Sha256::new_with_prefix(b"hookwarden master key id\0")
            .chain_update(bytes)
            .finalize();
        let id = format!("mk_{}", hex::encode(&digest[..8]));
        Self {
            bytes: Zeroizing::new(bytes),
            id,
        }
    }

    /// Parses base64 of 32 bytes (`HOOKWARDEN_MASTER_KEY`, key files).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let mut raw = STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadMasterKey)?;
        let arr: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadMasterKey)?;
        raw.zeroize();
        Ok(Self::from_bytes(arr))
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The data key of one account: HKDF-SHA256 with the account id as context.
    fn account_key(&self, account_id: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"hookwarden/secrets/v1"), &*self.bytes);
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        hk.expand(account_id.as_bytes(), &mut *okm)
            .unwrap_or_else(|_| unreachable!());
        okm
    }
}

impl MasterKey {
    /// A 32-byte seed for a purpose other than secrets (e.g. the Ed25519 key
    /// that signs identity tokens): every replica with this master key derives
    /// the same seed, and rotating the master key rotates it.
    pub fn derive_seed(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"hookwarden/derived/v1"), &*self.bytes);
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(purpose.as_bytes(), &mut *okm)
            .unwrap_or_else(|_| unreachable!());
        okm
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.id)
    }
}

/// Identity of the row that owns a secret, bound into the ciphertext as
/// associated data: a ciphertext copied to another row or account fails.
#[derive(Debug, Clone, Copy)]
pub struct RowIdentity<'a> {
    pub table: &'a str,
    pub account_id: &'a str,
    pub row_id: &'a str,
}

impl RowIdentity<'_> {
    fn aad(&self) -> Vec<u8> {
        // Length-prefixed so that no two identities serialize alike.
        let mut out = Vec::new();
        for part in [self.table, self.account_id, self.row_id] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A sealed secret as stored: ciphertext plus the id of the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealed({}, {} bytes)",
            self.key_id,
            self.ciphertext.len()
        )
    }
}

/// The master keys loaded: the current one seals, any of them opens (so that a
/// key rotation can proceed while the service runs).
#[derive(Clone, Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// The current master key first, then the previous ones.
    pub fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    fn by_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }

    pub fn seal(&self, row: RowIdentity<'_>, plaintext: &[u8]) -> Sealed {
        let key = self.current.account_key(row.account_id);
        let cipher = Aes256Gcm::new_from_slice(&*key).unwrap_or_else(|_| unreachable!());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = row.aad();
        // Encryption with a valid key and nonce only fails on absurd lengths.
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_else(|_| unreachable!());
        let mut ciphertext = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        ciphertext.push(FORMAT_V1);
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&ct);
        Sealed {
            key_id: self.current.id().to_owned(),
            ciphertext,
        }
    }

    pub fn open(
        &self,
        row: RowIdentity<'_>,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let master = self
            .by_id(&sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?;
        let data = &sealed.ciphertext;
        if data.len() < 1 + NONCE_LEN + 16 || data[0] != FORMAT_V1 {
            return Err(CryptoError::Decrypt);
        }
        let key = master.account_key(row.account_id);
        let cipher = Aes256Gcm::new_from_slice(&*key).unwrap_or_else(|_| unreachable!());
        let aad = row.aad();
        cipher
            .decrypt(
                Nonce::from_slice(&data[1..1 + NONCE_LEN]),
                Payload {
                    msg: &data[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// True when the sealed value is under an older master key and should be
    /// re-encrypted by `keys rotate`.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.current.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: RowIdentity<'static> = RowIdentity {
        table: "webhook_configs",
        account_id: "acct_a",
        row_id: "wh_1",
    };

    #[test]
    fn round_trip() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(ROW, b"whsec_xyz");
        assert_eq!(&*ring.open(ROW, &sealed).expect("open"), b"whsec_xyz");
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"whsec_xyz"));
    }

    #[test]
    fn ciphertext_moved_to_another_row_or_account_fails() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(ROW, b"secret");
        let other_row = RowIdentity {
            row_id: "wh_2",
            ..ROW
        };
        let other_account = RowIdentity {
            account_id: "acct_b",
            ..ROW
        };
        let other_table = RowIdentity {
            table: "integrations",
            ..ROW
        };
        for row in [other_row, other_account, other_table] {
            assert_eq!(ring.open(row, &sealed), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let mut sealed = ring.seal(ROW, b"secret");
        let last = sealed.ciphertext.len() - 1;
        sealed.ciphertext[last] ^= 1;
        assert_eq!(ring.open(ROW, &sealed), Err(CryptoError::Decrypt));
    }

    #[test]
    fn rotation_reads_old_key_and_seals_with_new() {
        let old = MasterKey::generate();
        let sealed = Keyring::new(old.clone(), vec![]).seal(ROW, b"secret");
        let ring = Keyring::new(MasterKey::generate(), vec![old]);
        assert!(ring.needs_reseal(&sealed));
        assert_eq!(
            &*ring.open(ROW, &sealed).expect("old key still opens"),
            b"secret"
        );
        let resealed = ring.seal(ROW, b"secret");
        assert!(!ring.needs_reseal(&resealed));
        let without_old = Keyring::new(MasterKey::generate(), vec![]);
        assert!(matches!(
            without_old.open(ROW, &sealed),
            Err(CryptoError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn derived_seeds_are_stable_and_separate() {
        let k = MasterKey::generate();
        assert_eq!(*k.derive_seed("a"), *k.derive_seed("a"));
        assert_ne!(*k.derive_seed("a"), *k.derive_seed("b"));
        assert_ne!(*k.derive_seed("a"), *MasterKey::generate().derive_seed("a"));
    }

    #[test]
    fn master_key_parsing_and_debug() {
        assert_eq!(
            MasterKey::from_base64("AAAA").err(),
            Some(CryptoError::BadMasterKey)
        );
        let k = MasterKey::generate();
        let again = MasterKey::from_base64(&k.to_base64()).expect("parse");
        assert_eq!(k.id(), again.id());
        assert!(!format!("{k:?}").contains(&*k.to_base64()));
    }
}
