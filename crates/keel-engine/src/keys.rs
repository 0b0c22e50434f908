//! API keys: `keel_<id>_<secret>`. The id is public and indexes the key; the secret is stored only as an
//! argon2id hash. The secret is 40 random base-62 characters (about 238 bits), so nobody can guess it and the
//! hash needs no password-grade stretching: Keel uses argon2id with 4 MiB and one pass (a few milliseconds)
//! instead of the 19 MiB, two-pass password default, which keeps the first request of a fresh server fast. The
//! parameters travel in the PHC string, so keys hashed with other parameters still verify. A verified key is
//! remembered (by the SHA-256 of the presented key) and later requests with it cost one hash-map lookup.
//! Revoking a key and reloading drops it from the cache.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use keel_core::Role;
use keel_store::{ApiKeyRecord, Store};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{Error, Result};

/// Why a presented key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// Not of the form `keel_<id>_<secret>`, unknown id, or wrong secret.
    Invalid,
    /// The key was revoked.
    Revoked,
}

/// A newly created key; `key` is shown once and never stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub role: Role,
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// argon2id sized for high-entropy secrets (see the module documentation).
fn key_hasher() -> Argon2<'static> {
    let params = argon2::Params::new(4096, 1, 1, None).expect("valid argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Creates a key with the given role and stores its hash.
pub async fn create_key(
    store: &Store,
    role: Role,
    description: &str,
    created_by: &str,
) -> Result<NewKey> {
    let id = random_string(12);
    let secret = random_string(40);
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Invalid(format!("salt: {e}")))?;
    let hash = key_hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| Error::Invalid(format!("hashing the key: {e}")))?
        .to_string();
    store
        .create_key(&ApiKeyRecord {
            id: id.clone(),
            hash,
            role,
            description: description.to_string(),
            created_by: created_by.to_string(),
            created_at: keel_core::time::now_rfc3339(),
            revoked_at: None,
        })
        .await?;
    Ok(NewKey {
        key: format!("keel_{id}_{secret}"),
        id,
        role,
    })
}

/// Checks presented keys against the stored hashes, with a cache of verified keys.
pub struct KeyVerifier {
    store: Arc<Store>,
    records: RwLock<HashMap<String, ApiKeyRecord>>,
    verified: RwLock<HashMap<[u8; 32], (String, Role)>>,
    /// A hash no secret matches, verified against when the id is unknown or malformed, so a refusal costs the
    /// same and takes as long whether or not the id exists (ids are public; this is no oracle for them).
    decoy: String,
}

impl KeyVerifier {
    pub async fn load(store: Arc<Store>) -> Result<KeyVerifier> {
        let salt_bytes: [u8; 16] = rand::rng().random();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| Error::Invalid(format!("salt: {e}")))?;
        let decoy = key_hasher()
            .hash_password(random_string(40).as_bytes(), &salt)
            .map_err(|e| Error::Invalid(format!("hashing the decoy: {e}")))?
            .to_string();
        let v = KeyVerifier {
            store,
            records: RwLock::new(HashMap::new()),
            verified: RwLock::new(HashMap::new()),
            decoy,
        };
        v.reload().await?;
        Ok(v)
    }

    /// Re-reads the key table; forgets cached verifications of keys that were revoked or deleted.
    pub async fn reload(&self) -> Result<()> {
        let keys = self.store.keys().await?;
        let map: HashMap<String, ApiKeyRecord> =
            keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        self.verified
            .write()
            .expect("key cache lock")
            .retain(|_, (id, _)| map.get(id).is_some_and(|k| k.revoked_at.is_none()));
        *self.records.write().expect("key lock") = map;
        Ok(())
    }

    /// The cached verdict for a key verified before, without touching argon2.
    pub fn cached(&self, presented: &str) -> Option<(String, Role)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.verified
            .read()
            .expect("key cache lock")
            .get(&digest)
            .cloned()
    }

    /// Full verification (argon2; milliseconds). Call off the async reactor. Caches success. Every refusal
    /// (malformed key, unknown id, wrong secret) runs one argon2 verification, so its cost and timing say
    /// nothing about whether the id exists; a revoked key is reported as revoked only to a caller who
    /// presented its correct secret.
    pub fn verify(&self, presented: &str) -> std::result::Result<(String, Role), AuthFailure> {
        if let Some(hit) = self.cached(presented) {
            return Ok(hit);
        }
        let (id, secret) = presented
            .strip_prefix("keel_")
            .and_then(|rest| rest.split_once('_'))
            .unwrap_or(("", presented));
        let record = self.records.read().expect("key lock").get(id).cloned();
        let hash = record
            .as_ref()
            .map_or(self.decoy.as_str(), |r| r.hash.as_str());
        let parsed = PasswordHash::new(hash).map_err(|_| AuthFailure::Invalid)?;
        let matched = Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok();
        let record = match record {
            Some(r) if matched => r,
            _ => return Err(AuthFailure::Invalid),
        };
        if record.revoked_at.is_some() {
            return Err(AuthFailure::Revoked);
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut cache = self.verified.write().expect("key cache lock");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(digest, (record.id.clone(), record.role));
        Ok((record.id, record.role))
    }
}
