//! The tamper-evident audit log: every mutating action, appended with actor, time, before/after and evidence,
//! in a hash chain. Record `n` stores `hash = SHA-256(JSON [seq, at, actor, action, target, before, after,
//! evidence, prev_hash])` over the exact stored text, and `prev_hash` = record `n − 1`'s hash (64 zeros for the
//! first). An edited record no longer matches its hash; a deleted, inserted or reordered record breaks the
//! sequence or the links. Deleting the newest records keeps a valid prefix, so the head (sequence number and
//! hash of the newest record) is also kept in `audit.head` beside the database, updated around every commit;
//! verification checks the chain against it. The chain has no secret: it shows partial edits, not a wholesale
//! rewrite by someone who can write both files.
//!
//! Records are appended inside the transaction of the change they describe, so a change is never committed
//! without its record, or a record without its change.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Any, Transaction};
use std::path::Path;

use crate::{Error, Result};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Who: a user name, `key:<id>` for an API key, or `keel` for automatic decisions.
    pub actor: String,
    /// What, e.g. `model.register`, `alias.set`, `key.create`, `key.revoke`.
    pub action: String,
    /// On what, e.g. `employment@champion`.
    pub target: String,
    pub before: Value,
    pub after: Value,
    /// Why: metrics, gate results, reasons.
    pub evidence: Value,
}

impl AuditEvent {
    pub fn new(actor: &str, action: &str, target: &str) -> AuditEvent {
        AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            before: Value::Null,
            after: Value::Null,
            evidence: Value::Null,
        }
    }

    pub fn before(mut self, v: Value) -> Self {
        self.before = v;
        self
    }

    pub fn after(mut self, v: Value) -> Self {
        self.after = v;
        self
    }

    pub fn evidence(mut self, v: Value) -> Self {
        self.evidence = v;
        self
    }
}

/// One stored record, exactly as stored (JSON fields as their text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: String,
    pub after: String,
    pub evidence: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> AuditRecord {
        use sqlx::Row;
        AuditRecord {
            seq: r.get("seq"),
            at: r.get("at"),
            actor: r.get("actor"),
            action: r.get("action"),
            target: r.get("target"),
            before: r.get("before"),
            after: r.get("after"),
            evidence: r.get("evidence"),
            prev_hash: r.get("prev_hash"),
            hash: r.get("hash"),
        }
    }

    /// The hash this record's content and link call for.
    pub fn expected_hash(&self) -> String {
        chain_hash(
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.target,
            &self.before,
            &self.after,
            &self.evidence,
            &self.prev_hash,
        )
    }

    /// The record as JSON for export, with the JSON fields parsed back.
    pub fn to_json(&self) -> Value {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.into()));
        serde_json::json!({
            "seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action, "target": self.target,
            "before": parse(&self.before), "after": parse(&self.after), "evidence": parse(&self.evidence),
            "prev_hash": self.prev_hash, "hash": self.hash,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    target: &str,
    before: &str,
    after: &str,
    evidence: &str,
    prev: &str,
) -> String {
    let canonical = serde_json::json!([
        seq, at, actor, action, target, before, after, evidence, prev
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The newest record's position, kept outside the database. While an append is being committed, `pending`
/// names the record it adds, so a crash on either side of the commit is told apart from tampering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    #[serde(default)]
    pub pending: Option<(i64, String)>,
    /// Ed25519 signature (hex) over [`AuditHead::message`], when the writer held the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl AuditHead {
    /// What the signature covers: every field of the head.
    pub fn message(&self) -> Vec<u8> {
        let (ps, ph) = self
            .pending
            .as_ref()
            .map_or((0, ""), |(s, h)| (*s, h.as_str()));
        format!(
            "keel-audit-head:v1:{}:{}:{}:{}",
            self.seq, self.hash, ps, ph
        )
        .into_bytes()
    }
}

/// The key that signs the audit head, from outside the Keel home: `KEEL_AUDIT_SIGNING_KEY` (64 hex
/// characters: an Ed25519 seed) or `KEEL_AUDIT_SIGNING_KEY_FILE` (a file holding them, e.g. a mounted
/// secret). `None` when neither is set.
pub fn signing_key_from_env() -> Result<Option<ed25519_dalek::SigningKey>> {
    let hex_seed = match (
        std::env::var("KEEL_AUDIT_SIGNING_KEY"),
        std::env::var("KEEL_AUDIT_SIGNING_KEY_FILE"),
    ) {
        (Ok(k), _) if !k.trim().is_empty() => k,
        (_, Ok(f)) if !f.trim().is_empty() => {
            std::fs::read_to_string(&f).map_err(|e| Error::Io {
                path: f.into(),
                source: e,
            })?
        }
        _ => return Ok(None),
    };
    let seed: [u8; 32] = hex::decode(hex_seed.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Invalid {
            what: "audit signing key",
            message: "KEEL_AUDIT_SIGNING_KEY must be 64 hex characters (a 32-byte Ed25519 seed; `keel audit keygen` makes one)".into(),
        })?;
    Ok(Some(ed25519_dalek::SigningKey::from_bytes(&seed)))
}

/// The public key (hex) of an Ed25519 seed.
pub fn public_key_hex(seed: &[u8; 32]) -> String {
    hex::encode(
        ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes(),
    )
}

/// A public key (64 hex characters) to check the head's signature with.
pub fn verifying_key(hex_key: &str) -> Result<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Error::Invalid {
            what: "audit public key",
            message: "expected 64 hex characters (`keel audit keygen` prints the public key)"
                .into(),
        })?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| Error::Invalid {
        what: "audit public key",
        message: e.to_string(),
    })
}

/// Checks the head's signature against a trusted public key.
pub fn check_signature(
    head: &AuditHead,
    key: &ed25519_dalek::VerifyingKey,
) -> std::result::Result<(), String> {
    use ed25519_dalek::Verifier;
    let sig = head
        .signature
        .as_deref()
        .ok_or("the head is not signed (was KEEL_AUDIT_SIGNING_KEY set for every writer?)")?;
    let bytes: [u8; 64] = hex::decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the head's signature is malformed")?;
    key.verify(&head.message(), &ed25519_dalek::Signature::from_bytes(&bytes))
        .map_err(|_| "the head's signature does not match the trusted public key: the log or its head was rewritten".to_string())
}

/// Appends `ev` inside `tx` and returns the new record.
pub(crate) async fn append_in(
    tx: &mut Transaction<'_, Any>,
    ev: &AuditEvent,
) -> Result<AuditRecord> {
    // Postgres: concurrent writers would both read the same last record and fork the chain; a transaction-scoped
    // advisory lock queues them (released at commit or rollback). SQLite has one writer already.
    if tx.backend_name().eq_ignore_ascii_case("postgres") {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::db::LOCK_AUDIT)
            .execute(&mut **tx)
            .await?;
    }
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let mut r = AuditRecord {
        seq,
        at: keel_core::time::now_rfc3339(),
        actor: ev.actor.clone(),
        action: ev.action.clone(),
        target: ev.target.clone(),
        before: ev.before.to_string(),
        after: ev.after.to_string(),
        evidence: ev.evidence.to_string(),
        prev_hash,
        hash: String::new(),
    };
    r.hash = r.expected_hash();
    sqlx::query(
        "INSERT INTO audit_log(seq, at, actor, action, target, before, after, evidence, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.seq)
    .bind(&r.at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.before)
    .bind(&r.after)
    .bind(&r.evidence)
    .bind(&r.prev_hash)
    .bind(&r.hash)
    .execute(&mut **tx)
    .await?;
    crate::failpoint("audit.after_insert");
    Ok(r)
}

/// Updates the head file under a lock (`audit.lock`), never moving it backwards: before a commit with
/// `pending` set to the record being added, after it with the record as the head.
pub(crate) fn write_head(
    home: &Path,
    r: &AuditRecord,
    committed: bool,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<()> {
    let path = home.join("audit.head");
    let io = |e: std::io::Error| Error::Io {
        path: path.clone(),
        source: e,
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.join("audit.lock"))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    if read_head(home)?.is_some_and(|h| h.seq >= r.seq) {
        return Ok(());
    }
    let mut head = if committed {
        AuditHead {
            seq: r.seq,
            hash: r.hash.clone(),
            pending: None,
            signature: None,
        }
    } else {
        // The record before this one is committed (the write lock is held), so it is the head meanwhile.
        AuditHead {
            seq: r.seq - 1,
            hash: r.prev_hash.clone(),
            pending: Some((r.seq, r.hash.clone())),
            signature: None,
        }
    };
    if let Some(k) = signer {
        use ed25519_dalek::Signer;
        head.signature = Some(hex::encode(k.sign(&head.message()).to_bytes()));
    }
    let tmp = home.join("audit.head.tmp");
    let body = serde_json::to_vec(&head).expect("head serialises");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

/// Moves the head row (Postgres) to `r`, inside the transaction that appends it.
pub(crate) async fn write_head_row(
    tx: &mut Transaction<'_, Any>,
    r: &AuditRecord,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<()> {
    let mut head = AuditHead {
        seq: r.seq,
        hash: r.hash.clone(),
        pending: None,
        signature: None,
    };
    if let Some(k) = signer {
        use ed25519_dalek::Signer;
        head.signature = Some(hex::encode(k.sign(&head.message()).to_bytes()));
    }
    sqlx::query(
        "INSERT INTO audit_head(id, seq, hash, signature) VALUES (1, $1, $2, $3)
         ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, signature = excluded.signature",
    )
    .bind(head.seq)
    .bind(&head.hash)
    .bind(&head.signature)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The head row (Postgres), if any record was appended.
pub(crate) async fn read_head_row(pool: &sqlx::AnyPool) -> Result<Option<AuditHead>> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(seq, hash, signature)| AuditHead {
        seq,
        hash,
        pending: None,
        signature,
    }))
}

pub(crate) fn read_head(home: &Path) -> Result<Option<AuditHead>> {
    let path = home.join("audit.head");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub ok: bool,
    /// Records in the log.
    pub records: usize,
    /// Sequence number (1-based position) of the first record that fails, when one does.
    pub first_bad: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
    /// The head's signature: `valid` (checked against the trusted public key), `unchecked` (signed, but no
    /// public key was given), `unsigned`, or absent when there is no head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Checks records (in stored order) against each other and against the head.
pub fn verify(records: &[AuditRecord], head: Option<&AuditHead>) -> Verification {
    let bad = |at: i64, problem: String| Verification {
        ok: false,
        records: records.len(),
        first_bad: Some(at),
        problem: Some(problem),
        signature: None,
    };
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if r.seq != want_seq {
            return bad(
                want_seq,
                format!(
                    "record {want_seq} is missing or out of order (found sequence number {} there)",
                    r.seq
                ),
            );
        }
        if r.prev_hash != prev {
            return bad(
                want_seq,
                format!("record {want_seq} does not link to record {}", want_seq - 1),
            );
        }
        if r.expected_hash() != r.hash {
            return bad(
                want_seq,
                format!("record {want_seq} was altered: its content does not match its hash"),
            );
        }
        prev = r.hash.clone();
    }
    let n = records.len() as i64;
    let last = records.last().map_or(GENESIS, |r| r.hash.as_str());
    match head {
        // The head names the newest record, or the commit of the pending one happened (a crash followed).
        Some(h)
            if (h.seq == n && h.hash == last)
                || h.pending
                    .as_ref()
                    .is_some_and(|(s, p)| *s == n && p == last) => {}
        Some(h) if h.seq > n => {
            return bad(
                n + 1,
                format!(
                    "the log ends at record {n} but its head says {}: records were removed from the end",
                    h.seq
                ),
            );
        }
        Some(h) if h.seq < n => {
            return bad(
                h.seq + 1,
                format!(
                    "records after {} were added outside Keel (the head says the log ends at {})",
                    h.seq, h.seq
                ),
            );
        }
        Some(h) => {
            return bad(
                h.seq,
                format!("record {} does not match the head's hash", h.seq),
            );
        }
        None if n > 0 => {
            return bad(
                1,
                "the log has records but no head file (audit.head was removed)".into(),
            );
        }
        None => {}
    }
    Verification {
        ok: true,
        records: records.len(),
        first_bad: None,
        problem: None,
        signature: head.map(|h| {
            if h.signature.is_some() {
                "unchecked".to_string()
            } else {
                "unsigned".to_string()
            }
        }),
    }
}

/// [`verify`], then the head's signature against `trusted` when given: a head that is unsigned or signed by
/// another key fails, so rewriting history needs the signing key, not only write access to the home.
pub fn verify_signed(
    records: &[AuditRecord],
    head: Option<&AuditHead>,
    trusted: Option<&ed25519_dalek::VerifyingKey>,
) -> Verification {
    let mut v = verify(records, head);
    let Some(key) = trusted else {
        return v;
    };
    if !v.ok {
        return v;
    }
    match head {
        None if records.is_empty() => {}
        None => {
            v.ok = false;
            v.problem = Some("no head to check the signature of".into());
        }
        Some(h) => match check_signature(h, key) {
            Ok(()) => v.signature = Some("valid".into()),
            Err(problem) => {
                v.ok = false;
                v.first_bad = Some(h.seq.max(1));
                v.problem = Some(problem);
                v.signature = Some("invalid".into());
            }
        },
    }
    v
}
