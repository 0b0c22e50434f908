//! The model registry: models, versions, aliases, artifacts.

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{self, AuditEvent, AuditRecord, Verification};
use crate::{Error, Result, failpoint};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_registry.sql"),
    include_str!("../migrations/0002_api_keys.sql"),
    include_str!("../migrations/0003_audit.sql"),
    include_str!("../migrations/0004_profiles.sql"),
    include_str!("../migrations/0005_prediction_log.sql"),
    include_str!("../migrations/0006_jobs_rollouts.sql"),
    include_str!("../migrations/0007_prediction_log_retention.sql"),
    include_str!("../migrations/0008_runs.sql"),
    include_str!("../migrations/0009_prediction_probabilities.sql"),
];

async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let applied: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await?;
    if applied as usize > MIGRATIONS.len() {
        return Err(Error::Invalid {
            what: "registry",
            message: format!(
                "the registry has schema version {applied}, newer than this Keel understands ({}); upgrade Keel",
                MIGRATIONS.len()
            ),
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        sqlx::raw_sql(*m).execute(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {}",
            i + 1
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The alias that a bare model name resolves to.
pub const CHAMPION: &str = "champion";

/// Which version of a model to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(i64),
    Alias(String),
}

impl Selector {
    /// The alias a bare model name stands for.
    pub fn champion() -> Selector {
        Selector::Alias(CHAMPION.to_string())
    }

    /// Parses `name`, `name@3` or `name@champion` into (name, selector). A bare name means
    /// `name@champion`: what a person or a passing gate made servable, never merely the newest version (a
    /// rejected challenger is newer than the champion it lost to).
    pub fn parse(reference: &str) -> Result<(String, Selector)> {
        let (name, sel) = match reference.split_once('@') {
            None => (reference, Selector::champion()),
            Some((n, s)) if !s.is_empty() => {
                let s = s.trim_start_matches('v');
                match s.parse::<i64>() {
                    Ok(v) => (n, Selector::Version(v)),
                    Err(_) => (
                        n,
                        Selector::Alias(reference.split_once('@').expect("has @").1.to_string()),
                    ),
                }
            }
            Some(_) => {
                return Err(Error::Invalid {
                    what: "model reference",
                    message: format!("'{reference}' has an empty version after '@'"),
                });
            }
        };
        validate_name("model name", name)?;
        Ok((name.to_string(), sel))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Latest => write!(f, "latest"),
            Selector::Version(v) => write!(f, "{v}"),
            Selector::Alias(a) => write!(f, "@{a}"),
        }
    }
}

/// Names of models and aliases: letters, digits, `-`, `_`, `.`; 1–100 characters; not starting with a digit
/// for aliases (so `@3` always means version 3).
pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what,
            message: format!(
                "'{name}' must be 1–100 characters of letters, digits, '-', '_' or '.'"
            ),
        })
    }
}

/// What a registration records.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub model: String,
    pub description: String,
    pub kind: String,
    pub objective: String,
    pub model_bytes: Vec<u8>,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
    pub schema: serde_json::Value,
    /// The model card as JSON; its `version` field is filled in by the registry.
    pub card: serde_json::Value,
    pub dataset_hash: String,
    pub code_version: String,
    pub created_by: String,
    /// Aliases to point at the new version, in the same transaction.
    pub aliases: Vec<String>,
    /// Also make the new version the champion when the model has none yet (its first servable version: the
    /// person who registered it chose it). Never set for challengers, which only a passing gate promotes.
    pub champion_if_none: bool,
    /// The monitoring reference: bins and the training-time profile over them (`null` when none).
    pub profile: serde_json::Value,
}

/// One registered model, as `keel models list` and `GET /v1/models` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelListing {
    pub model: String,
    /// Kind of the newest version (`gbdt`, `linear`, `guard`, …).
    pub kind: String,
    pub latest_version: i64,
    /// How many versions are registered.
    pub versions: i64,
    /// Every alias and the version it points at.
    pub aliases: std::collections::BTreeMap<String, i64>,
    /// The version a bare name serves (`NAME@champion`), when one is set.
    pub champion: Option<VersionRecord>,
}

/// A registered version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub model: String,
    pub version: i64,
    pub kind: String,
    pub objective: String,
    pub artifact_uri: String,
    pub artifact_sha256: String,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
    pub schema: serde_json::Value,
    #[serde(skip)]
    pub card: serde_json::Value,
    pub dataset_hash: String,
    pub code_version: String,
    pub created_by: String,
    pub created_at: String,
    pub aliases: Vec<String>,
    #[serde(skip)]
    pub profile: serde_json::Value,
    /// What this version is (set with `keel models describe`); the model's intended use is on its card.
    pub description: String,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Archived versions stay readable (and served by number) but no alias may point at them.
    pub archived: bool,
}

/// One logged prediction: the encoded row (little-endian `f64`s, redacted columns as NaN) and the output.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPrediction {
    pub model: String,
    pub version: i64,
    pub request_id: String,
    /// Position of the row in its request (0 for single-record requests).
    pub row: i64,
    pub at_ms: i64,
    pub features: Vec<f64>,
    pub output: f64,
    /// The shadow version's score of the same row, when a shadow was running: (version, output).
    pub shadow: Option<(i64, f64)>,
    /// Multiclass: every class's probability, in class order (and the shadow's).
    pub probabilities: Option<Vec<f64>>,
    pub shadow_probabilities: Option<Vec<f64>>,
}

fn f64s_to_blob(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// A label that arrived later, for the prediction `request_id` (row `row`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Feedback {
    pub request_id: String,
    #[serde(default)]
    pub row: i64,
    pub label: f64,
}

/// What storing a batch of labels did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackOutcome {
    /// Labels joined to a logged prediction.
    pub stored: usize,
    /// Of those, labels that replaced an earlier label (last write wins).
    pub replaced: usize,
    /// Labels whose request id (and row) is not in the prediction log; not stored.
    pub unknown: usize,
    /// Up to 20 of the unknown request ids.
    pub unknown_ids: Vec<String>,
    /// The share of requests the serving side logs (only logged predictions can take a label), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rate: Option<f64>,
    /// What unknown ids mean and what to do, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FeedbackOutcome {
    /// Explains unknown ids: the sampled log (at `log_rate`, when known) and, from outside a server, rows a
    /// running server has not flushed yet (`buffered_elsewhere`).
    pub fn explain(&mut self, log_rate: Option<f64>, buffered_elsewhere: bool) {
        self.log_rate = log_rate;
        if self.unknown == 0 {
            return;
        }
        let mut note = match log_rate {
            Some(r) if r < 1.0 => format!(
                "{} labels match no logged prediction: only a sampled {:.0} % of requests is logged (prediction_log_rate {r}), so about that share of labels can match; raise the rate to join more",
                self.unknown,
                r * 100.0
            ),
            _ => format!("{} labels match no logged prediction", self.unknown),
        };
        if buffered_elsewhere {
            note.push_str(
                "; predictions served in the last second may still be in a running server's buffer: send these labels again shortly (or through POST /v1/models/NAME/feedback, which waits for the buffer) and they will match",
            );
        }
        self.note = Some(note);
    }
}

/// A logged prediction with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub version: i64,
    pub at_ms: i64,
    pub features: Vec<f64>,
    pub output: f64,
    pub label: f64,
    /// The shadow version's score of the same row, if one was running: (version, output).
    pub shadow: Option<(i64, f64)>,
    /// Multiclass: every class's probability as served, in class order (and the shadow's).
    pub probabilities: Option<Vec<f64>>,
    pub shadow_probabilities: Option<Vec<f64>>,
}

/// A stored API key: the id is public, the secret is kept only as an argon2 hash.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    #[serde(skip)]
    pub hash: String,
    pub role: keel_core::Role,
    pub description: String,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// The registry plus the artifact store under one Keel home.
pub struct Store {
    pub(crate) pool: SqlitePool,
    pub(crate) artifacts: Arc<dyn ObjectStore>,
    artifact_root: PathBuf,
    home: PathBuf,
    /// Signs the audit head when configured (`KEEL_AUDIT_SIGNING_KEY[_FILE]`, never stored in the home).
    signer: Option<ed25519_dalek::SigningKey>,
}

impl Store {
    /// Opens (creating if needed) the store under `home`. Fails with [`Error::ReadOnly`] before writing anything
    /// when `home` cannot be written.
    pub async fn open(home: &Path) -> Result<Store> {
        let io = |e: std::io::Error| Error::Io {
            path: home.to_path_buf(),
            source: e,
        };
        if let Err(e) = std::fs::create_dir_all(home) {
            return Err(classify_write_error(home, e));
        }
        probe_writable(home)?;
        let artifact_root = home.join("artifacts");
        std::fs::create_dir_all(&artifact_root).map_err(io)?;
        let options = SqliteConnectOptions::new()
            .filename(home.join("registry.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let db = home.join("registry.db");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.message().contains("readonly") => Error::ReadOnly {
                    path: db.clone(),
                    reason: d.message().to_string(),
                },
                _ => Error::Database(e),
            })?;
        probe_database(&pool, &db).await?;
        migrate(&pool).await?;
        let artifacts = LocalFileSystem::new_with_prefix(&artifact_root)?;
        Ok(Store {
            pool,
            artifacts: Arc::new(artifacts),
            artifact_root,
            home: home.to_path_buf(),
            signer: audit::signing_key_from_env()?,
        })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Signs audit heads with `key` from now on (instead of the key from the environment).
    pub fn with_audit_signer(mut self, key: ed25519_dalek::SigningKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// Writes a model blob under its SHA-256 and returns (uri, sha256). Idempotent.
    async fn put_artifact(&self, bytes: &[u8]) -> Result<(String, String)> {
        let sha = hex::encode(Sha256::digest(bytes));
        self.put_at(format!("models/sha256/{sha}.keelmodel"), sha, bytes)
            .await
    }

    /// Writes any other blob (a run's artifact) under `{prefix}/sha256/{sha}`. Idempotent.
    pub(crate) async fn put_blob(&self, prefix: &str, bytes: &[u8]) -> Result<(String, String)> {
        let sha = hex::encode(Sha256::digest(bytes));
        self.put_at(format!("{prefix}/sha256/{sha}"), sha, bytes)
            .await
    }

    async fn put_at(&self, key: String, sha: String, bytes: &[u8]) -> Result<(String, String)> {
        let path = ObjectPath::from(key.as_str());
        self.artifacts
            .put(&path, PutPayload::from(Bytes::copy_from_slice(bytes)))
            .await?;
        // object_store's local backend stages to a temporary file and renames it into place; make the result
        // durable before the registry refers to it.
        let file = self.artifact_root.join(&key);
        let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        sync(&file).map_err(|e| Error::Io {
            path: file.clone(),
            source: e,
        })?;
        if let Some(dir) = file.parent() {
            let _ = sync(dir);
        }
        Ok((key, sha))
    }

    /// Reads an artifact and checks it against its recorded SHA-256.
    pub async fn get_artifact(&self, uri: &str, sha256: &str) -> Result<Vec<u8>> {
        let bytes = self
            .artifacts
            .get(&ObjectPath::from(uri))
            .await?
            .bytes()
            .await?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != sha256 {
            return Err(Error::Corrupt {
                uri: uri.to_string(),
                expected: sha256.to_string(),
                found,
            });
        }
        Ok(bytes.to_vec())
    }

    /// Registers a new version: artifact first, then one transaction for model, version and aliases.
    pub async fn register(&self, new: NewVersion) -> Result<VersionRecord> {
        validate_name("model name", &new.model)?;
        for a in &new.aliases {
            validate_alias(a)?;
        }
        let (uri, sha) = self.put_artifact(&new.model_bytes).await?;
        failpoint("registry.after_artifact");
        let now = keel_core::time::now_rfc3339();
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO models(name, created_at, description) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(&new.model)
            .bind(&now)
            .bind(&new.description)
            .execute(&mut *tx)
            .await?;
        // Deleted numbers count: a version number names one version forever (the audit log refers to it).
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM (SELECT version FROM model_versions WHERE model = ?
             UNION ALL SELECT version FROM deleted_versions WHERE model = ?)",
        )
        .bind(&new.model)
        .bind(&new.model)
        .fetch_one(&mut *tx)
        .await?;
        let mut card = new.card.clone();
        if let Some(obj) = card.as_object_mut() {
            obj.insert("version".into(), version.into());
            obj.insert("created_at".into(), now.clone().into());
        }
        sqlx::query(
            "INSERT INTO model_versions(model, version, kind, objective, artifact_uri, artifact_sha256, params, metrics, schema, card, dataset_hash, code_version, created_by, created_at, profile)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.model)
        .bind(version)
        .bind(&new.kind)
        .bind(&new.objective)
        .bind(&uri)
        .bind(&sha)
        .bind(new.params.to_string())
        .bind(new.metrics.to_string())
        .bind(new.schema.to_string())
        .bind(card.to_string())
        .bind(&new.dataset_hash)
        .bind(&new.code_version)
        .bind(&new.created_by)
        .bind(&now)
        .bind(new.profile.to_string())
        .execute(&mut *tx)
        .await?;
        failpoint("registry.mid_registration");
        let mut aliases = new.aliases.clone();
        if new.champion_if_none && !aliases.iter().any(|a| a == CHAMPION) {
            let has: Option<i64> =
                sqlx::query_scalar("SELECT version FROM aliases WHERE model = ? AND alias = ?")
                    .bind(&new.model)
                    .bind(CHAMPION)
                    .fetch_optional(&mut *tx)
                    .await?;
            if has.is_none() {
                aliases.push(CHAMPION.to_string());
            }
        }
        for a in &aliases {
            set_alias_in(&mut tx, &new.model, a, version, &now).await?;
        }
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(
                &new.created_by,
                "model.register",
                &format!("{}@{version}", new.model),
            )
            .after(serde_json::json!({
                "version": version, "kind": new.kind, "artifact_sha256": sha,
                "dataset_hash": new.dataset_hash, "aliases": aliases,
            }))
            .evidence(registration_evidence(&new)),
        )
        .await?;
        failpoint("registry.before_commit");
        self.before_commit(&record)?;
        tx.commit().await?;
        self.after_audit(&record);
        self.get(&new.model, &Selector::Version(version)).await
    }

    /// A write transaction that takes the database's write lock at once (`BEGIN IMMEDIATE`), so two writers
    /// queue on the busy timeout instead of one failing when it upgrades a read.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// After a commit that appended `r`: moves the head file forward. A failure here is logged, not returned:
    /// the change is committed, and `keel audit verify` accepts a head that lags behind an intact chain.
    pub(crate) fn after_audit(&self, r: &AuditRecord) {
        failpoint("audit.before_head");
        if let Err(e) = audit::write_head(&self.home, r, true, self.signer.as_ref()) {
            tracing::warn!(error = %e, "could not update audit.head");
        }
    }

    /// Before a commit that appends `r`: marks it pending in the head file.
    pub(crate) fn before_commit(&self, r: &AuditRecord) -> Result<()> {
        audit::write_head(&self.home, r, false, self.signer.as_ref())?;
        failpoint("audit.before_commit");
        Ok(())
    }

    /// Appends an event on its own (for decisions that change nothing in the registry).
    pub async fn audit(&self, ev: AuditEvent) -> Result<AuditRecord> {
        let mut tx = self.write_tx().await?;
        let r = audit::append_in(&mut tx, &ev).await?;
        self.before_commit(&r)?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok(r)
    }

    /// Every audit record, oldest first.
    pub async fn audit_records(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, before, after, evidence, prev_hash, hash FROM audit_log ORDER BY rowid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(AuditRecord::from_row).collect())
    }

    /// Checks the audit chain and its head.
    pub async fn audit_verify(&self) -> Result<Verification> {
        self.audit_verify_signed(None).await
    }

    /// Checks the audit chain, its head, and (given a trusted public key) the head's signature.
    pub async fn audit_verify_signed(
        &self,
        trusted: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<Verification> {
        let records = self.audit_records().await?;
        let head = audit::read_head(&self.home)?;
        Ok(audit::verify_signed(&records, head.as_ref(), trusted))
    }

    /// Points `alias` at an existing version, atomically, and audits the move (`actor` did it). Returns the
    /// version the alias pointed at before, if any.
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: i64,
        actor: &str,
    ) -> Result<Option<i64>> {
        validate_alias(alias)?;
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM model_versions WHERE model = ? AND version = ?",
        )
        .bind(model)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(Error::UnknownVersion {
                model: model.to_string(),
                selector: version.to_string(),
            });
        }
        let before: Option<i64> =
            sqlx::query_scalar("SELECT version FROM aliases WHERE model = ? AND alias = ?")
                .bind(model)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
        set_alias_in(
            &mut tx,
            model,
            alias,
            version,
            &keel_core::time::now_rfc3339(),
        )
        .await?;
        failpoint("registry.alias_before_audit");
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "alias.set", &format!("{model}@{alias}"))
                .before(serde_json::json!({ "version": before }))
                .after(serde_json::json!({ "version": version })),
        )
        .await?;
        self.before_commit(&record)?;
        tx.commit().await?;
        self.after_audit(&record);
        Ok(before)
    }

    /// Every registered model: its versions, its aliases and its champion (what a bare name serves).
    pub async fn list(&self) -> Result<Vec<ModelListing>> {
        let rows = sqlx::query(
            "SELECT v.model, MAX(v.version) AS latest, COUNT(*) AS n FROM model_versions v GROUP BY v.model ORDER BY v.model",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let model: String = r.get("model");
            let aliases: Vec<(String, i64)> =
                sqlx::query_as("SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias")
                    .bind(&model)
                    .fetch_all(&self.pool)
                    .await?;
            let latest: i64 = r.get("latest");
            let kind: String = sqlx::query_scalar(
                "SELECT kind FROM model_versions WHERE model = ? AND version = ?",
            )
            .bind(&model)
            .bind(latest)
            .fetch_one(&self.pool)
            .await?;
            let champion = match self.get(&model, &Selector::champion()).await {
                Ok(v) => Some(v),
                Err(Error::NoAlias { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(ModelListing {
                model,
                kind,
                latest_version: latest,
                versions: r.get("n"),
                aliases: aliases.into_iter().collect(),
                champion,
            });
        }
        Ok(out)
    }

    /// Every version of one model, newest first.
    pub async fn versions(&self, model: &str) -> Result<Vec<VersionRecord>> {
        let rows =
            sqlx::query("SELECT version FROM model_versions WHERE model = ? ORDER BY version DESC")
                .bind(model)
                .fetch_all(&self.pool)
                .await?;
        if rows.is_empty() {
            return Err(Error::UnknownModel(model.to_string()));
        }
        let mut out = Vec::new();
        for r in rows {
            out.push(
                self.get(model, &Selector::Version(r.get("version")))
                    .await?,
            );
        }
        Ok(out)
    }

    /// One version, by number, alias or latest.
    pub async fn get(&self, model: &str, sel: &Selector) -> Result<VersionRecord> {
        let known: Option<String> = sqlx::query_scalar("SELECT name FROM models WHERE name = ?")
            .bind(model)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(Error::UnknownModel(model.to_string()));
        }
        let version: Option<i64> = match sel {
            Selector::Latest => {
                sqlx::query_scalar("SELECT MAX(version) FROM model_versions WHERE model = ?")
                    .bind(model)
                    .fetch_one(&self.pool)
                    .await?
            }
            Selector::Version(v) => {
                sqlx::query_scalar(
                    "SELECT version FROM model_versions WHERE model = ? AND version = ?",
                )
                .bind(model)
                .bind(v)
                .fetch_optional(&self.pool)
                .await?
            }
            Selector::Alias(a) => {
                sqlx::query_scalar("SELECT version FROM aliases WHERE model = ? AND alias = ?")
                    .bind(model)
                    .bind(a)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(version) = version else {
            return Err(match sel {
                Selector::Alias(a) => Error::NoAlias {
                    model: model.to_string(),
                    alias: a.clone(),
                },
                _ => Error::UnknownVersion {
                    model: model.to_string(),
                    selector: sel.to_string(),
                },
            });
        };
        let r = sqlx::query("SELECT * FROM model_versions WHERE model = ? AND version = ?")
            .bind(model)
            .bind(version)
            .fetch_one(&self.pool)
            .await?;
        let aliases: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
        )
        .bind(model)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let json = |col: &str| -> serde_json::Value {
            serde_json::from_str(&r.get::<String, _>(col)).unwrap_or(serde_json::Value::Null)
        };
        let tags: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM version_tags WHERE model = ? AND version = ? ORDER BY key",
        )
        .bind(model)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        Ok(VersionRecord {
            model: r.get("model"),
            version: r.get("version"),
            kind: r.get("kind"),
            objective: r.get("objective"),
            artifact_uri: r.get("artifact_uri"),
            artifact_sha256: r.get("artifact_sha256"),
            params: json("params"),
            metrics: json("metrics"),
            schema: json("schema"),
            card: json("card"),
            dataset_hash: r.get("dataset_hash"),
            code_version: r.get("code_version"),
            created_by: r.get("created_by"),
            created_at: r.get("created_at"),
            aliases,
            profile: json("profile"),
            description: r.get("version_description"),
            tags: tags.into_iter().collect(),
            archived: r.get::<Option<String>, _>("archived_at").is_some(),
        })
    }

    /// Appends logged predictions in one transaction (a request id and row already logged is kept as it was).
    pub async fn log_predictions(&self, rows: &[LoggedPrediction]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Multi-row statements: one round trip through sqlx per 500 rows instead of per row.
        for chunk in rows.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO prediction_log(model, request_id, row, version, at_ms, features, output, shadow_version, shadow_output, probabilities, shadow_probabilities) ",
            );
            q.push_values(chunk, |mut b, r| {
                let blob = f64s_to_blob(&r.features);
                b.push_bind(r.model.clone())
                    .push_bind(r.request_id.clone())
                    .push_bind(r.row)
                    .push_bind(r.version)
                    .push_bind(r.at_ms)
                    .push_bind(blob)
                    .push_bind(r.output)
                    .push_bind(r.shadow.map(|s| s.0))
                    .push_bind(r.shadow.map(|s| s.1))
                    .push_bind(r.probabilities.as_deref().map(f64s_to_blob))
                    .push_bind(r.shadow_probabilities.as_deref().map(f64s_to_blob));
            });
            q.push(" ON CONFLICT(model, request_id, row) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Retention of the prediction log: deletes logged predictions (and their labels) older than
    /// `older_than_ms`, then the oldest beyond the newest `max_rows`. Returns how many predictions went.
    pub async fn prune_prediction_log(&self, older_than_ms: i64, max_rows: u64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let mut cutoff = older_than_ms;
        // The at_ms of the newest row that must go for the log to hold at most `max_rows`.
        let over: Option<i64> = sqlx::query_scalar(
            "SELECT at_ms FROM prediction_log ORDER BY at_ms DESC LIMIT 1 OFFSET ?",
        )
        .bind(max_rows as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(t) = over {
            cutoff = cutoff.max(t + 1);
        }
        sqlx::query(
            "DELETE FROM labels WHERE EXISTS (SELECT 1 FROM prediction_log p WHERE p.model = labels.model
             AND p.request_id = labels.request_id AND p.row = labels.row AND p.at_ms < ?)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM prediction_log WHERE at_ms < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    /// Stores labels for logged predictions of `model`: joined by request id and row; unknown ones are
    /// counted, not stored; a second label for the same prediction replaces the first and is audited.
    pub async fn put_labels(
        &self,
        model: &str,
        labels: &[Feedback],
        actor: &str,
    ) -> Result<FeedbackOutcome> {
        let mut out = FeedbackOutcome::default();
        let mut replaced_ids = Vec::new();
        let mut tx = self.write_tx().await?;
        let now = keel_core::time::now_unix_ms();
        for f in labels {
            let known: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM prediction_log WHERE model = ? AND request_id = ? AND row = ?",
            )
            .bind(model)
            .bind(&f.request_id)
            .bind(f.row)
            .fetch_optional(&mut *tx)
            .await?;
            if known.is_none() {
                out.unknown += 1;
                if out.unknown_ids.len() < 20 {
                    out.unknown_ids.push(f.request_id.clone());
                }
                continue;
            }
            let previous: Option<f64> = sqlx::query_scalar(
                "SELECT label FROM labels WHERE model = ? AND request_id = ? AND row = ?",
            )
            .bind(model)
            .bind(&f.request_id)
            .bind(f.row)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO labels(model, request_id, row, label, at_ms) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT(model, request_id, row) DO UPDATE SET label = excluded.label, at_ms = excluded.at_ms",
            )
            .bind(model)
            .bind(&f.request_id)
            .bind(f.row)
            .bind(f.label)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            out.stored += 1;
            if let Some(p) = previous {
                out.replaced += 1;
                replaced_ids.push(serde_json::json!({"request_id": f.request_id, "row": f.row, "before": p, "after": f.label}));
            }
        }
        let record = if replaced_ids.is_empty() {
            None
        } else {
            Some(
                audit::append_in(
                    &mut tx,
                    &AuditEvent::new(actor, "labels.replace", model)
                        .evidence(serde_json::json!({ "replaced": replaced_ids })),
                )
                .await?,
            )
        };
        if let Some(r) = &record {
            self.before_commit(r)?;
        }
        tx.commit().await?;
        if let Some(r) = &record {
            self.after_audit(r);
        }
        Ok(out)
    }

    /// Logged predictions of `model` that have labels, since `since_ms`, oldest first.
    pub async fn labelled(&self, model: &str, since_ms: i64) -> Result<Vec<Labelled>> {
        let rows = sqlx::query(
            "SELECT p.version, p.at_ms, p.features, p.output, l.label, p.shadow_version, p.shadow_output,
                    p.probabilities, p.shadow_probabilities FROM prediction_log p
             JOIN labels l ON l.model = p.model AND l.request_id = p.request_id AND l.row = p.row
             WHERE p.model = ? AND p.at_ms >= ? ORDER BY p.at_ms, p.request_id, p.row",
        )
        .bind(model)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let blob: Vec<u8> = r.get("features");
                Labelled {
                    version: r.get("version"),
                    at_ms: r.get("at_ms"),
                    features: blob_to_f64s(&blob),
                    output: r.get("output"),
                    label: r.get("label"),
                    shadow: r
                        .get::<Option<i64>, _>("shadow_version")
                        .zip(r.get::<Option<f64>, _>("shadow_output")),
                    probabilities: r
                        .get::<Option<Vec<u8>>, _>("probabilities")
                        .map(|b| blob_to_f64s(&b)),
                    shadow_probabilities: r
                        .get::<Option<Vec<u8>>, _>("shadow_probabilities")
                        .map(|b| blob_to_f64s(&b)),
                }
            })
            .collect())
    }

    /// Adds counts to one replica's stored window: `merge` gets the stored counts (JSON, `None` for a new
    /// window) and returns the new total, and both happen in one write transaction, so concurrent flushes
    /// cannot lose each other's counts. A stored window is never replaced by anything but its merge.
    pub async fn add_profile(
        &self,
        model: &str,
        version: i64,
        window_start: i64,
        replica: &str,
        merge: impl FnOnce(Option<&str>) -> std::result::Result<String, String>,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT counts FROM profiles WHERE model = ? AND version = ? AND window_start = ? AND replica = ?",
        )
        .bind(model)
        .bind(version)
        .bind(window_start)
        .bind(replica)
        .fetch_optional(&mut *tx)
        .await?;
        let counts = merge(stored.as_deref()).map_err(|message| Error::Invalid {
            what: "monitoring profile",
            message: format!("{model}@{version}, window {window_start}: {message}"),
        })?;
        sqlx::query(
            "INSERT INTO profiles(model, version, window_start, replica, counts, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(model, version, window_start, replica) DO UPDATE SET counts = excluded.counts, updated_at = excluded.updated_at",
        )
        .bind(model)
        .bind(version)
        .bind(window_start)
        .bind(replica)
        .bind(counts)
        .bind(keel_core::time::now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored (window start, counts) of a version since `since` (unix seconds), all replicas, oldest
    /// first.
    pub async fn profiles(
        &self,
        model: &str,
        version: i64,
        since: i64,
    ) -> Result<Vec<(i64, serde_json::Value)>> {
        let rows = sqlx::query(
            "SELECT window_start, counts FROM profiles WHERE model = ? AND version = ? AND window_start >= ? ORDER BY window_start, replica",
        )
        .bind(model)
        .bind(version)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let c: String = r.get("counts");
                (
                    r.get::<i64, _>("window_start"),
                    serde_json::from_str(&c).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect())
    }

    /// Loads a version's model bytes, verified against the recorded checksum.
    pub async fn model_bytes(&self, v: &VersionRecord) -> Result<Vec<u8>> {
        self.get_artifact(&v.artifact_uri, &v.artifact_sha256).await
    }

    /// Consistency check: SQLite integrity, foreign keys, and every version's artifact present and intact.
    /// Returns the problems found (empty when consistent).
    pub async fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let ic: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&self.pool)
            .await?;
        if ic != "ok" {
            problems.push(format!("integrity_check: {ic}"));
        }
        let fk = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&self.pool)
            .await?;
        if !fk.is_empty() {
            problems.push(format!("{} rows violate foreign keys", fk.len()));
        }
        let rows =
            sqlx::query("SELECT model, version, artifact_uri, artifact_sha256 FROM model_versions")
                .fetch_all(&self.pool)
                .await?;
        for r in rows {
            let (uri, sha): (String, String) = (r.get("artifact_uri"), r.get("artifact_sha256"));
            if let Err(e) = self.get_artifact(&uri, &sha).await {
                problems.push(format!(
                    "{}@{}: {e}",
                    r.get::<String, _>("model"),
                    r.get::<i64, _>("version")
                ));
            }
        }
        Ok(problems)
    }

    /// Stores a new API key (its argon2 hash only).
    pub async fn create_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO api_keys(id, hash, role, description, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&key.id)
            .bind(&key.hash)
            .bind(key.role.as_str())
            .bind(&key.description)
            .bind(&key.created_by)
            .bind(&key.created_at)
            .execute(&mut *tx)
            .await?;
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(&key.created_by, "key.create", &key.id).after(
                serde_json::json!({ "role": key.role.as_str(), "description": key.description }),
            ),
        )
        .await?;
        self.before_commit(&record)?;
        tx.commit().await?;
        self.after_audit(&record);
        Ok(())
    }

    /// All API keys, revoked ones included.
    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let role: String = r.get("role");
                Ok(ApiKeyRecord {
                    id: r.get("id"),
                    hash: r.get("hash"),
                    role: role.parse().map_err(|m| Error::Invalid {
                        what: "stored role",
                        message: m,
                    })?,
                    description: r.get("description"),
                    created_by: r.get("created_by"),
                    created_at: r.get("created_at"),
                    revoked_at: r.get("revoked_at"),
                })
            })
            .collect()
    }

    /// Marks a key revoked (by `actor`) and audits it. Returns false when no such active key exists.
    pub async fn revoke_key(&self, id: &str, actor: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        // Never the last active admin key: nobody could manage keys over HTTP afterwards.
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM api_keys WHERE id = ? AND revoked_at IS NULL")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if role.as_deref() == Some("admin") {
            let admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await?;
            if admins <= 1 {
                return Err(Error::LastAdmin(id.to_string()));
            }
        }
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(keel_core::time::now_rfc3339())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let record = audit::append_in(&mut tx, &AuditEvent::new(actor, "key.revoke", id)).await?;
        self.before_commit(&record)?;
        tx.commit().await?;
        self.after_audit(&record);
        Ok(true)
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The audit evidence of a registration: the metrics, plus the card's account of how the registered candidate
/// was chosen when it has one.
fn registration_evidence(new: &NewVersion) -> serde_json::Value {
    let mut ev = new.metrics.clone();
    if let (Some(obj), Some(sel)) = (ev.as_object_mut(), new.card.get("selection")) {
        obj.insert("selection".into(), sel.clone());
    }
    ev
}

/// Checks an alias name (the rules of model names, and not starting with a digit, which would read as a version).
pub fn validate_alias(alias: &str) -> Result<()> {
    validate_name("alias", alias)?;
    if alias.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Error::Invalid {
            what: "alias",
            message: format!(
                "'{alias}' must not start with a digit (that reads as a version number)"
            ),
        });
    }
    Ok(())
}

pub(crate) async fn set_alias_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    model: &str,
    alias: &str,
    version: i64,
    now: &str,
) -> Result<()> {
    crate::versions::ensure_not_archived(tx, model, version).await?;
    sqlx::query(
        "INSERT INTO aliases(model, alias, version, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(model)
    .bind(alias)
    .bind(version)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn classify_write_error(path: &Path, e: std::io::Error) -> Error {
    let ro = e.raw_os_error() == Some(30) || e.kind() == std::io::ErrorKind::PermissionDenied;
    if ro || e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
        Error::ReadOnly {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Creates and removes a probe file, so a read-only home fails here rather than half-way through a write.
///
/// The database file itself is never opened here (nor anywhere outside SQLite): closing any descriptor of a
/// file drops every POSIX lock the process holds on it, so another process could then checkpoint and delete
/// the WAL under our open connections and committed writes would vanish ("How To Corrupt An SQLite Database
/// File", §2.2). Whether the database is writable is asked of SQLite ([`probe_database`]).
fn probe_writable(home: &Path) -> Result<()> {
    let probe = home.join(format!(".keel-write-probe-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(classify_write_error(home, e)),
    }
}

/// Takes and releases the database's write lock through SQLite, so a database file that cannot be written
/// fails at open with [`Error::ReadOnly`] rather than half-way through a change.
async fn probe_database(pool: &SqlitePool, db: &Path) -> Result<()> {
    let readonly = |e: sqlx::Error| match &e {
        sqlx::Error::Database(d)
            if d.code().as_deref() == Some("8") || d.message().contains("readonly") =>
        {
            Error::ReadOnly {
                path: db.to_path_buf(),
                reason: d.message().to_string(),
            }
        }
        _ => Error::Database(e),
    };
    let mut conn = pool.acquire().await.map_err(readonly)?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(readonly)?;
    sqlx::query("ROLLBACK").execute(&mut *conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        // A bare name is the champion, never "whatever is newest".
        assert_eq!(
            Selector::parse("m").unwrap(),
            ("m".into(), Selector::Alias("champion".into()))
        );
        assert_eq!(
            Selector::parse("m@3").unwrap(),
            ("m".into(), Selector::Version(3))
        );
        assert_eq!(
            Selector::parse("m@v3").unwrap(),
            ("m".into(), Selector::Version(3))
        );
        assert_eq!(
            Selector::parse("m@champion").unwrap(),
            ("m".into(), Selector::Alias("champion".into()))
        );
        assert!(Selector::parse("m@").is_err());
        assert!(Selector::parse("bad name").is_err());
    }

    fn version(model: &str, aliases: &[&str], champion_if_none: bool) -> NewVersion {
        NewVersion {
            model: model.into(),
            description: String::new(),
            kind: "gbdt".into(),
            objective: "binary".into(),
            model_bytes: format!("{model}{aliases:?}{champion_if_none}").into_bytes(),
            params: serde_json::json!({}),
            metrics: serde_json::json!({"auc": aliases.len() as f64}),
            schema: serde_json::json!({}),
            card: serde_json::json!({}),
            dataset_hash: "d".into(),
            code_version: "c".into(),
            created_by: "tester".into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            champion_if_none,
            profile: serde_json::Value::Null,
        }
    }

    /// A challenger registered after the champion is newer, but a bare name still means the champion; the
    /// listing shows the champion's metrics and every alias.
    #[tokio::test(flavor = "current_thread")]
    async fn a_bare_name_is_the_champion_not_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let v1 = store.register(version("m", &[], true)).await.unwrap();
        assert_eq!(
            v1.aliases,
            vec!["champion".to_string()],
            "first version becomes champion"
        );
        let v2 = store
            .register(version("m", &["challenger"], false))
            .await
            .unwrap();
        assert_eq!(v2.aliases, vec!["challenger".to_string()]);
        // A later plain registration does not take the champion either.
        let v3 = store.register(version("m", &[], true)).await.unwrap();
        assert!(v3.aliases.is_empty(), "{:?}", v3.aliases);
        let (name, sel) = Selector::parse("m").unwrap();
        assert_eq!(store.get(&name, &sel).await.unwrap().version, 1);
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].latest_version, 3);
        assert_eq!(listed[0].versions, 3);
        let champion = listed[0].champion.as_ref().unwrap();
        assert_eq!(champion.version, 1);
        assert_eq!(champion.metrics["auc"], 0.0);
        assert_eq!(listed[0].aliases.get("challenger"), Some(&2));
        assert_eq!(listed[0].aliases.get("champion"), Some(&1));

        // A model without a champion: a bare name is refused with what to do.
        store
            .register(version("solo", &["staging"], false))
            .await
            .unwrap();
        let (name, sel) = Selector::parse("solo").unwrap();
        let e = store.get(&name, &sel).await.unwrap_err();
        assert!(matches!(e, Error::NoAlias { .. }), "{e:?}");
        assert!(
            e.to_string().contains("keel models alias solo champion"),
            "{e}"
        );
        assert!(store.get("solo", &Selector::Version(1)).await.is_ok());
    }

    /// Another process reading the registry (an operator's `sqlite3`, a backup) while this process holds it
    /// open must not make acknowledged writes vanish. Opening the store again (as a job worker did every
    /// second) used to open `registry.db` outside SQLite and close it, which drops every POSIX lock this
    /// process holds on the file; the other process then checkpointed and deleted the WAL that our open
    /// connections kept writing into.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outside_reader_never_makes_acknowledged_writes_vanish() {
        let python = ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|p| std::process::Command::new(p).arg("-V").output().is_ok())
            .expect("python3 (its sqlite3 module plays the outside reader)");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store.register(version("m", &[], true)).await.unwrap();
        store.register(version("m", &["x"], false)).await.unwrap();
        let db = dir.path().join("registry.db");
        for round in 0..3 {
            // What a second component of the same process does (the job worker, a progress report).
            Store::open(dir.path()).await.unwrap().close().await;
            let out = std::process::Command::new(python)
                .arg("-c")
                .arg("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('select count(*) from audit_log').fetchone()[0]); c.close()")
                .arg(&db)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Acknowledged writes after the outside read.
            store
                .set_alias(
                    "m",
                    "champion",
                    if round % 2 == 0 { 2 } else { 1 },
                    "tester",
                )
                .await
                .unwrap();
            store.register(version("m", &[], false)).await.unwrap();
        }
        let aliases = store.list().await.unwrap()[0].aliases.clone();
        let records = store.audit_records().await.unwrap().len();
        store.close().await;
        // A restart sees every one of them, and the chain verifies.
        let again = Store::open(dir.path()).await.unwrap();
        let listed = again.list().await.unwrap();
        assert_eq!(listed[0].latest_version, 5);
        assert_eq!(listed[0].aliases, aliases);
        assert_eq!(again.audit_records().await.unwrap().len(), records);
        let v = again.audit_verify().await.unwrap();
        assert!(v.ok, "{v:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_prediction_log_keeps_what_retention_allows_and_labels_go_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let rows: Vec<LoggedPrediction> = (0..100)
            .map(|i| LoggedPrediction {
                model: "m".into(),
                version: 1,
                request_id: format!("r{i}"),
                row: 0,
                at_ms: 1_000 + i,
                features: vec![1.0],
                output: 0.5,
                shadow: None,
                probabilities: None,
                shadow_probabilities: None,
            })
            .collect();
        store.log_predictions(&rows).await.unwrap();
        let label = |id: &str| Feedback {
            request_id: id.into(),
            row: 0,
            label: 1.0,
        };
        store
            .put_labels("m", &[label("r5"), label("r95")], "t")
            .await
            .unwrap();
        // Age: everything before at_ms 1,010 goes (r0..r9), with r5's label.
        assert_eq!(store.prune_prediction_log(1_010, 1_000).await.unwrap(), 10);
        // Size: at most 50 rows remain, the newest.
        assert_eq!(store.prune_prediction_log(0, 50).await.unwrap(), 40);
        let left = store.labelled("m", 0).await.unwrap();
        assert_eq!(left.len(), 1, "r95's label stays with its row");
        let out = store
            .put_labels("m", &[label("r49"), label("r50")], "t")
            .await
            .unwrap();
        assert_eq!((out.stored, out.unknown), (1, 1), "r49 is gone, r50 kept");
    }

    /// With a signing key outside the home, rewriting history needs the key: a head rewritten to match an
    /// edited log fails the signature check, as does a head signed by another key.
    #[tokio::test(flavor = "current_thread")]
    async fn a_signed_head_catches_a_rewrite_made_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key();
        let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        let store = Store::open(dir.path())
            .await
            .unwrap()
            .with_audit_signer(key);
        store.register(version("m", &[], true)).await.unwrap();
        store.set_alias("m", "staging", 1, "tester").await.unwrap();
        let v = store.audit_verify_signed(Some(&public)).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.signature.as_deref(), Some("valid"));
        assert!(!store.audit_verify_signed(Some(&other)).await.unwrap().ok);
        // Without a trusted key the chain still verifies and says the signature was not checked.
        let v = store.audit_verify().await.unwrap();
        assert_eq!((v.ok, v.signature.as_deref()), (true, Some("unchecked")));
        // An attacker with write access to the database and the home, but not the key, drops the last
        // record and rewrites the head to match: the chain is consistent again, the signature is not.
        let records = store.audit_records().await.unwrap();
        sqlx::query("DELETE FROM audit_log WHERE seq = ?")
            .bind(records.last().unwrap().seq)
            .execute(&store.pool)
            .await
            .unwrap();
        let prev = &records[records.len() - 2];
        let forged = audit::AuditHead {
            seq: prev.seq,
            hash: prev.hash.clone(),
            pending: None,
            signature: None,
        };
        std::fs::write(
            dir.path().join("audit.head"),
            serde_json::to_vec(&forged).unwrap(),
        )
        .unwrap();
        assert!(
            store.audit_verify().await.unwrap().ok,
            "without the key it looks intact"
        );
        let v = store.audit_verify_signed(Some(&public)).await.unwrap();
        assert!(!v.ok, "{v:?}");
        assert!(v.problem.unwrap().contains("not signed"));
    }

    /// Deleting and archiving respect what points at a version; numbers are never reused; a blob shared by
    /// two versions outlives the first deletion; every change is audited.
    #[tokio::test(flavor = "current_thread")]
    async fn versions_are_archived_and_deleted_only_when_nothing_points_at_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut shared = version("m", &[], true);
        shared.model_bytes = b"same bytes".to_vec();
        let v1 = store.register(shared.clone()).await.unwrap();
        shared.aliases = vec![];
        shared.champion_if_none = false;
        let v2 = store.register(shared.clone()).await.unwrap();
        assert_eq!(v1.artifact_uri, v2.artifact_uri);
        let v3 = store
            .register(version("m", &["staging"], false))
            .await
            .unwrap();

        // The champion and an aliased version are pinned.
        for v in [1, 3] {
            let e = store.delete_version("m", v, "t").await.unwrap_err();
            assert!(matches!(e, Error::Conflict(_)), "{e}");
            assert!(e.to_string().contains("alias"), "{e}");
            assert!(store.set_archived("m", v, true, "t").await.is_err());
        }
        // Archiving v2 forbids aliasing it until it is restored.
        assert!(store.set_archived("m", 2, true, "t").await.unwrap());
        assert!(
            store
                .get("m", &Selector::Version(2))
                .await
                .unwrap()
                .archived
        );
        let e = store.set_alias("m", "canary", 2, "t").await.unwrap_err();
        assert!(e.to_string().contains("archived"), "{e}");
        assert!(store.set_archived("m", 2, false, "t").await.unwrap());
        store.set_alias("m", "canary", 2, "t").await.unwrap();
        store.set_alias("m", "canary", 1, "t").await.unwrap();

        // Tags and a description.
        let tags: std::collections::BTreeMap<String, String> =
            [("team".to_string(), "risk".to_string())].into();
        store
            .annotate_version("m", 2, Some("weekly retrain"), &tags, "t")
            .await
            .unwrap();
        let got = store.get("m", &Selector::Version(2)).await.unwrap();
        assert_eq!(got.description, "weekly retrain");
        assert_eq!(got.tags, tags);

        // v2 shares its blob with v1: deleting v2 keeps the blob; v1 still loads.
        assert!(!store.delete_version("m", 2, "t").await.unwrap());
        assert!(store.model_bytes(&v1).await.is_ok());
        assert!(matches!(
            store.get("m", &Selector::Version(2)).await,
            Err(Error::UnknownVersion { .. })
        ));
        // v3's own blob goes with it once its alias moved.
        store.set_alias("m", "staging", 1, "t").await.unwrap();
        assert!(store.delete_version("m", 3, "t").await.unwrap());
        assert!(!dir.path().join("artifacts").join(&v3.artifact_uri).exists());
        // Numbers are not reused: the next version is 4.
        let v4 = store.register(version("m", &[], false)).await.unwrap();
        assert_eq!(v4.version, 4);
        assert_eq!(store.versions("m").await.unwrap().len(), 2);

        let actions: Vec<String> = store
            .audit_records()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect();
        for a in [
            "model.archive",
            "model.restore",
            "model.annotate",
            "model.delete",
        ] {
            assert!(
                actions.iter().any(|x| x == a),
                "{a} missing from {actions:?}"
            );
        }
        assert!(store.audit_verify().await.unwrap().ok);
    }

    /// A run logged in batches: parameters immutable, metrics by step with the latest shown, a bad batch
    /// refused whole with the JSON path of the bad entry, an ended run closed to writes.
    #[tokio::test(flavor = "current_thread")]
    async fn runs_take_batches_atomically_and_close_when_ended() {
        use crate::runs::{MetricPoint, NewRun, RunBatch, RunFilter, RunStatus};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let run = store
            .create_run(NewRun {
                experiment: "exp".into(),
                name: "first".into(),
                source: "client".into(),
                created_by: "t".into(),
                ..NewRun::default()
            })
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Running);
        let m = |key: &str, step: i64, value: f64| MetricPoint {
            key: key.into(),
            value,
            step,
            timestamp: None,
            lower: None,
            upper: None,
        };
        let batch = RunBatch {
            params: vec![("lr".into(), "0.1".into())],
            metrics: (0..100)
                .map(|s| m("loss", s, 1.0 / (s + 1) as f64))
                .collect(),
            tags: vec![("framework".into(), "torch".into())],
        };
        store.log_run_batch(&run.id, &batch).await.unwrap();
        // The same parameter value again is fine; another value is refused and nothing of that batch lands.
        store.log_run_batch(&run.id, &batch).await.unwrap();
        let bad = RunBatch {
            params: vec![("lr".into(), "0.2".into())],
            metrics: vec![m("acc", 0, 0.5)],
            tags: vec![],
        };
        let e = store.log_run_batch(&run.id, &bad).await.unwrap_err();
        assert!(e.to_string().contains("params[0]"), "{e}");
        let nan = RunBatch {
            metrics: vec![m("acc", 0, 0.5), m("acc", 1, f64::NAN)],
            ..RunBatch::default()
        };
        let e = store.log_run_batch(&run.id, &nan).await.unwrap_err();
        assert!(e.to_string().contains("metrics[1].value"), "{e}");
        let got = store.run(&run.id).await.unwrap();
        assert!(
            !got.metrics.contains_key("acc"),
            "a refused batch left {:?}",
            got.metrics
        );
        assert_eq!(got.metrics["loss"].steps, 100);
        assert_eq!(got.metrics["loss"].step, 99);
        assert_eq!(got.metrics["loss"].value, 0.01);
        assert_eq!(
            store.metric_history(&run.id, "loss").await.unwrap().len(),
            100
        );

        store
            .put_run_artifact(&run.id, "plots/loss.txt", b"down")
            .await
            .unwrap();
        assert_eq!(
            store.run_artifact(&run.id, "plots/loss.txt").await.unwrap(),
            b"down"
        );
        assert!(matches!(
            store.put_run_artifact(&run.id, "../escape", b"x").await,
            Err(Error::InvalidContent { .. })
        ));
        assert!(matches!(
            store.run_artifact(&run.id, "plots/missing.txt").await,
            Err(Error::UnknownArtifact { .. })
        ));

        let ended = store
            .end_run(&run.id, RunStatus::Finished, None)
            .await
            .unwrap();
        assert_eq!(ended.status, RunStatus::Finished);
        let e = store.log_run_batch(&run.id, &batch).await.unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(matches!(store.run("nope").await, Err(Error::UnknownRun(_))));

        store
            .create_run(NewRun {
                experiment: "other".into(),
                source: "train".into(),
                created_by: "t".into(),
                ..NewRun::default()
            })
            .await
            .unwrap();
        let only = store
            .runs(&RunFilter {
                experiment: Some("exp".into()),
                limit: None,
            })
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 2);
    }
}
