//! Registry use cases: versions, cards, lineage, alias moves and rollbacks, and the audit log read back
//! (paged, filtered, verified).

use keel_store::{AuditRecord, Selector, Store, VersionRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The version a reference names (`NAME`, `NAME@3`, `NAME@champion`).
pub async fn version(store: &Store, reference: &str) -> Result<VersionRecord> {
    let (name, sel) = Selector::parse(reference)?;
    Ok(store.get(&name, &sel).await?)
}

/// A model's card: the stored card and its HTML rendering.
#[derive(Debug, Clone)]
pub struct Card {
    pub model: String,
    pub version: i64,
    /// The card as stored (a tabular model's `ModelCard`, or a guard model's card).
    pub card: Value,
    pub html: String,
}

/// The card of the version `reference` names, rendered.
pub async fn card(store: &Store, reference: &str) -> Result<Card> {
    let v = version(store, reference).await?;
    // Versions trained here carry a full model card; others (guard models, versions registered without
    // training) show what their card holds.
    let html = match serde_json::from_value::<keel_ml::card::ModelCard>(v.card.clone()) {
        Ok(card) if v.kind != crate::guard::GUARD_KIND => keel_ml::card::render_html(&card),
        _ => plain_card_html(&v),
    };
    Ok(Card {
        model: v.model,
        version: v.version,
        card: v.card,
        html,
    })
}

/// A card that is not a trained model's as a plain HTML page (its JSON, escaped).
fn plain_card_html(v: &VersionRecord) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let pretty = serde_json::to_string_pretty(&v.card).unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{m}@{n} model card</title></head>\
         <body><h1>{m}@{n} ({k})</h1><pre>{}</pre></body></html>",
        esc(&pretty),
        m = esc(&v.model),
        n = v.version,
        k = esc(&v.kind)
    )
}

/// Where a version came from and what happened to it since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub model: String,
    pub version: i64,
    pub kind: String,
    /// The training data as the trainer read it (the card's data source), when recorded.
    pub data: Option<String>,
    pub dataset_hash: String,
    /// SHA-256 of the separate test file, when one was given.
    pub test_dataset_hash: Option<String>,
    pub code_version: String,
    pub seed: Option<u64>,
    pub artifact_uri: String,
    pub artifact_sha256: String,
    pub created_by: String,
    pub created_at: String,
    /// The version it was trained to challenge (retraining), when it was.
    pub challenger_of: Option<i64>,
    /// Audit records about this version: its registration, alias moves to or from it, rollouts, gates.
    pub events: Vec<AuditEntry>,
}

/// The lineage of the version `reference` names.
pub async fn lineage(store: &Store, reference: &str) -> Result<Lineage> {
    let v = version(store, reference).await?;
    let records = store.audit_records().await?;
    let mine = format!("{}@{}", v.model, v.version);
    let prefix = format!("{}@", v.model);
    let events: Vec<AuditEntry> = records
        .iter()
        .map(AuditEntry::from)
        .filter(|e| {
            e.target == mine
                || (e.target.starts_with(&prefix) || e.target == v.model)
                    && [&e.before, &e.after, &e.evidence].iter().any(|x| {
                        x.get("version").and_then(Value::as_i64) == Some(v.version)
                            || x.get("challenger").and_then(Value::as_i64) == Some(v.version)
                            || x.get("canary_version").and_then(Value::as_i64) == Some(v.version)
                    })
        })
        .collect();
    let challenger_of = events
        .iter()
        .filter(|e| e.action.starts_with("retrain"))
        .find_map(|e| e.evidence.get("champion").and_then(Value::as_i64));
    let lineage = v.card.get("lineage");
    Ok(Lineage {
        data: v
            .card
            .pointer("/data/source")
            .and_then(Value::as_str)
            .map(str::to_string),
        test_dataset_hash: lineage
            .and_then(|l| l.get("test_dataset_hash"))
            .and_then(Value::as_str)
            .map(str::to_string),
        seed: lineage.and_then(|l| l.get("seed")).and_then(Value::as_u64),
        model: v.model,
        version: v.version,
        kind: v.kind,
        dataset_hash: v.dataset_hash,
        code_version: v.code_version,
        artifact_uri: v.artifact_uri,
        artifact_sha256: v.artifact_sha256,
        created_by: v.created_by,
        created_at: v.created_at,
        challenger_of,
        events,
    })
}

/// `NAME@VERSION` with a version number: what deletion, archiving and annotation act on (an alias moves).
pub fn numbered(reference: &str) -> Result<(String, i64)> {
    match Selector::parse(reference)? {
        (name, Selector::Version(v)) if reference.contains('@') => Ok((name, v)),
        _ => Err(Error::input(format!(
            "'{reference}': name one version by number (NAME@3); an alias or a bare name may move"
        ))),
    }
}

/// What a version change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionChange {
    pub model: String,
    pub version: i64,
    /// `deleted`, `archived`, `restored`, `unchanged` or `annotated`.
    pub outcome: String,
    /// Deletion: whether the artifact went too (it stays while another version refers to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_removed: Option<bool>,
}

/// Deletes a version nothing points at (audited); see [`Store::delete_version`].
pub async fn delete_version(store: &Store, reference: &str, actor: &str) -> Result<VersionChange> {
    let (model, version) = numbered(reference)?;
    let removed = store.delete_version(&model, version, actor).await?;
    Ok(VersionChange {
        model,
        version,
        outcome: "deleted".into(),
        artifact_removed: Some(removed),
    })
}

/// Archives (or restores) a version (audited).
pub async fn archive_version(
    store: &Store,
    reference: &str,
    archived: bool,
    actor: &str,
) -> Result<VersionChange> {
    let (model, version) = numbered(reference)?;
    let changed = store.set_archived(&model, version, archived, actor).await?;
    Ok(VersionChange {
        model,
        version,
        outcome: match (changed, archived) {
            (false, _) => "unchanged",
            (true, true) => "archived",
            (true, false) => "restored",
        }
        .into(),
        artifact_removed: None,
    })
}

/// A version's description and tags to set (an empty tag value removes the tag).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Annotation {
    pub description: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Sets a version's description and tags (audited).
pub async fn annotate_version(
    store: &Store,
    reference: &str,
    a: &Annotation,
    actor: &str,
) -> Result<VersionRecord> {
    let (model, version) = numbered(reference)?;
    if a.description.is_none() && a.tags.is_empty() {
        return Err(Error::input(
            "nothing to change: give a description or at least one tag",
        ));
    }
    store
        .annotate_version(&model, version, a.description.as_deref(), &a.tags, actor)
        .await?;
    Ok(store.get(&model, &Selector::Version(version)).await?)
}

/// An alias move: where it pointed before (none for a new alias) and where it points now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMove {
    pub before: Option<i64>,
    pub after: i64,
}

/// Points `model@alias` at `version` (audited).
pub async fn set_alias(
    store: &Store,
    model: &str,
    alias: &str,
    version: i64,
    actor: &str,
) -> Result<AliasMove> {
    let before = store.set_alias(model, alias, version, actor).await?;
    Ok(AliasMove {
        before,
        after: version,
    })
}

/// Moves `model@alias` back to the version it pointed at before its latest move (promotions included), in
/// one audited alias move.
pub async fn rollback(store: &Store, model: &str, alias: &str, actor: &str) -> Result<AliasMove> {
    keel_store::validate_alias(alias)?;
    let target = format!("{model}@{alias}");
    let records = store.audit_records().await?;
    let last = records
        .iter()
        .rev()
        .find(|r| r.action == "alias.set" && r.target == target)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "'{target}' has never been moved; nothing to roll back"
            ))
        })?;
    let before: Value = serde_json::from_str(&last.before)
        .map_err(|e| Error::Internal(format!("audit record {}: {e}", last.seq)))?;
    let previous = before["version"].as_i64().ok_or_else(|| {
        Error::Conflict(format!(
            "'{target}' had no version before its last move (audit record {}); nothing to roll back to",
            last.seq
        ))
    })?;
    let now = store.set_alias(model, alias, previous, actor).await?;
    Ok(AliasMove {
        before: now,
        after: previous,
    })
}

/// One audit record with its JSON fields parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Value,
    pub after: Value,
    pub evidence: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditRecord> for AuditEntry {
    /// The record as the store exports it (`AuditRecord::to_json`: its JSON fields parsed back).
    fn from(r: &AuditRecord) -> Self {
        serde_json::from_value(r.to_json()).expect("an exported audit record has every field")
    }
}

/// Which audit records to read: newest first, `limit` at a time, older than `before` (a sequence number)
/// to page back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Records about this model (targets `NAME`, `NAME@…`).
    pub model: Option<String>,
    /// Records with this action, or with this prefix when it ends in `.` (`alias.`, `guard.`).
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only records with a smaller sequence number (the previous page's `next_before`).
    pub before: Option<i64>,
    /// 1–1000 (default 100).
    pub limit: Option<usize>,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
    /// Records in the whole log.
    pub total: usize,
}

/// A page of the audit log, newest first.
pub async fn audit(store: &Store, q: &AuditQuery) -> Result<AuditPage> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::input(format!("limit {limit} must be 1–1000")));
    }
    let records = store.audit_records().await?;
    let total = records.len();
    let matches = |r: &&AuditRecord| {
        q.before.is_none_or(|b| r.seq < b)
            && q.model.as_ref().is_none_or(|m| {
                r.target == *m
                    || r.target
                        .strip_prefix(m.as_str())
                        .is_some_and(|rest| rest.starts_with('@'))
            })
            && q.action.as_ref().is_none_or(|a| match a.strip_suffix('.') {
                Some(prefix) => r
                    .action
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => r.action == *a,
            })
            && q.actor.as_ref().is_none_or(|a| r.actor == *a)
    };
    let mut page: Vec<AuditEntry> = records
        .iter()
        .rev()
        .filter(matches)
        .take(limit + 1)
        .map(AuditEntry::from)
        .collect();
    let next_before = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage {
        records: page,
        next_before,
        total,
    })
}

/// Checks the audit chain and its head.
pub async fn verify_audit(store: &Store) -> Result<keel_store::Verification> {
    Ok(store.audit_verify().await?)
}
