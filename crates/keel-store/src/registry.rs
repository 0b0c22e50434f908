//! The model registry: models, versions, aliases, artifacts.

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::{self, AuditEvent, AuditRecord, Verification};
use crate::{Error, Result, failpoint};

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

/// The registry plus the artifact store under one Keel home. Cloning shares the pool and the artifact store.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: crate::Backend,
    pub(crate) artifacts: Arc<dyn ObjectStore>,
    /// Where the database and the artifacts are, for people (passwords redacted).
    locations: (String, String),
    /// The directory behind `artifacts` when it is local (writes are fsynced there).
    pub(crate) artifact_root: Option<PathBuf>,
    home: PathBuf,
    /// Signs the audit head when configured (`KEEL_AUDIT_SIGNING_KEY[_FILE]`, never stored in the home).
    signer: Option<ed25519_dalek::SigningKey>,
    /// The database URL when one was configured (the change listener opens its own connection).
    pub(crate) database_url: Option<String>,
    /// Set by [`Store::fenced`]: writes first check this lease is still held.
    pub(crate) fence: Option<crate::cluster::Lease>,
}

impl Store {
    /// Opens (creating if needed) the store of `home` with the configuration the binary set (or the
    /// environment's; [`crate::StoreConfig::current`]): SQLite and files under `home` by default. Fails with
    /// [`Error::ReadOnly`] before writing anything when `home` cannot be written. SQLite migrates itself;
    /// PostgreSQL must have been migrated (`keel migrate`), else [`Error::SchemaBehind`].
    pub async fn open(home: &Path) -> Result<Store> {
        Store::connect(home, &crate::StoreConfig::current()?).await
    }

    /// [`Store::open`] with an explicit configuration.
    pub async fn connect(home: &Path, config: &crate::StoreConfig) -> Result<Store> {
        let store = Store::connect_unchecked(home, config).await?;
        match store.backend {
            crate::Backend::Sqlite => {
                crate::db::migrate(&store.pool, store.backend).await?;
            }
            crate::Backend::Postgres => crate::db::check_schema(&store.pool, store.backend).await?,
        }
        Ok(store)
    }

    /// Applies the missing migrations of the configured database (`keel migrate`): once, under a lock, so a
    /// concurrent run waits and then finds nothing to do. Returns what it did.
    pub async fn migrate(
        home: &Path,
        config: &crate::StoreConfig,
    ) -> Result<crate::MigrationReport> {
        let store = Store::connect_unchecked(home, config).await?;
        let report = crate::db::migrate(&store.pool, store.backend).await?;
        store.close().await;
        Ok(report)
    }

    /// The database's schema version.
    pub async fn schema_version(&self) -> Result<i64> {
        crate::db::schema_version(&self.pool, self.backend).await
    }

    /// Where the database and the artifacts are (a path or a URL, passwords redacted).
    pub fn locations(&self) -> (&str, &str) {
        (&self.locations.0, &self.locations.1)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> crate::Backend {
        self.backend
    }

    async fn connect_unchecked(home: &Path, config: &crate::StoreConfig) -> Result<Store> {
        if let Err(e) = std::fs::create_dir_all(home) {
            return Err(classify_write_error(home, e));
        }
        probe_writable(home)?;
        let (artifacts, artifact_root) = crate::db::artifact_store(config, home)?;
        let (pool, backend) = crate::db::connect(config, home).await?;
        let database = match backend {
            crate::Backend::Sqlite => crate::db::sqlite_path(config, home).display().to_string(),
            crate::Backend::Postgres => {
                crate::redact_url(config.database_url.as_deref().unwrap_or_default())
            }
        };
        let artifact_place = match (&artifact_root, &config.artifact_url) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Some(u)) => u.clone(),
            (None, None) => String::new(),
        };
        Ok(Store {
            pool,
            backend,
            locations: (database, artifact_place),
            artifacts,
            artifact_root,
            home: home.to_path_buf(),
            signer: audit::signing_key_from_env()?,
            database_url: config.database_url.clone(),
            fence: None,
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
        // durable before the registry refers to it. (An S3 PUT is durable when it returns.)
        if let Some(root) = &self.artifact_root {
            let file = root.join(&key);
            let sync = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&file).map_err(|e| Error::Io {
                path: file.clone(),
                source: e,
            })?;
            if let Some(dir) = file.parent() {
                let _ = sync(dir);
            }
        }
        Ok((key, sha))
    }

    /// Reads an artifact and checks it against its recorded SHA-256.
    pub async fn get_artifact(&self, uri: &str, sha256: &str) -> Result<Vec<u8>> {
        self.fetch_artifact(uri, sha256, true).await
    }

    /// The local copy of a remote artifact, when one is cached (`cache/artifacts/` under the home).
    pub fn cached_artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        self.artifact_root.is_none().then(|| {
            self.home
                .join("cache")
                .join("artifacts")
                .join(sha256.get(..2).unwrap_or("xx"))
                .join(sha256)
        })
    }

    async fn fetch_artifact(&self, uri: &str, sha256: &str, use_cache: bool) -> Result<Vec<u8>> {
        // Remote artifacts are cached on local disk by content hash: a pod downloads each model once, and a
        // cached copy is used only while it still matches its checksum.
        let cached = self.artifact_root.is_none().then(|| {
            self.home
                .join("cache")
                .join("artifacts")
                .join(sha256.get(..2).unwrap_or("xx"))
                .join(sha256)
        });
        if let Some(path) = &cached
            && use_cache
            && let Ok(bytes) = tokio::fs::read(path).await
            && hex::encode(Sha256::digest(&bytes)) == sha256
        {
            return Ok(bytes);
        }
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
        if let Some(path) = cached {
            // Best effort: a full or read-only disk means no cache, not a failed load.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let write = async {
                tokio::fs::create_dir_all(path.parent().expect("has a parent")).await?;
                tokio::fs::write(&tmp, &bytes).await?;
                tokio::fs::rename(&tmp, &path).await
            };
            if let Err(e) = write.await {
                tracing::warn!(error = %e, path = %path.display(), "could not cache an artifact locally");
                let _ = tokio::fs::remove_file(&tmp).await;
            }
        }
        Ok(bytes.to_vec())
    }

    /// Whether the artifact store holds `uri` (a model blob or a run artifact).
    pub async fn has_artifact(&self, uri: &str) -> Result<bool> {
        match self.artifacts.head(&ObjectPath::from(uri)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Test hook: replaces the bytes stored at `uri` (to play a faulty disk or a person with bucket access).
    #[doc(hidden)]
    pub async fn debug_overwrite_artifact(&self, uri: &str, bytes: &[u8]) -> Result<()> {
        self.artifacts
            .put(
                &ObjectPath::from(uri),
                PutPayload::from(Bytes::copy_from_slice(bytes)),
            )
            .await?;
        Ok(())
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
        sqlx::query("INSERT INTO models(name, created_at, description) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING")
            .bind(&new.model)
            .bind(&now)
            .bind(&new.description)
            .execute(&mut *tx)
            .await?;
        // Deleted numbers count: a version number names one version forever (the audit log refers to it).
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM (SELECT version FROM model_versions WHERE model = $1
             UNION ALL SELECT version FROM deleted_versions WHERE model = $2) AS numbers",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
                sqlx::query_scalar("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
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
        self.before_commit(&mut tx, &record).await?;
        tx.commit().await?;
        self.after_audit(&record);
        self.get(&new.model, &Selector::Version(version)).await
    }

    /// A write transaction, one at a time across every process sharing the database, as SQLite has it: every
    /// read-check-write in the store (an alias move checking the version, a profile merge, the last-admin
    /// check, an audit append) then holds on both backends. SQLite takes its write lock at once (`BEGIN
    /// IMMEDIATE`), so two writers queue on the busy timeout instead of one failing when it upgrades a read;
    /// Postgres takes a transaction-scoped advisory lock, released at commit or rollback. These are the
    /// control-plane writes; the high-rate ones (prediction log, job claims, progress) do not take it.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.unfenced_write_tx().await?;
        self.check_fence(&mut tx).await?;
        Ok(tx)
    }

    /// [`Store::write_tx`] without the fence check (taking and renewing leases).
    pub(crate) async fn unfenced_write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            crate::Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            crate::Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(crate::db::LOCK_WRITE)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// After a commit that appended `r`: SQLite moves the head file forward. A failure here is logged, not
    /// returned: the change is committed, and `keel audit verify` accepts a head that lags behind an intact
    /// chain. (Postgres moved its head row inside the transaction.)
    pub(crate) fn after_audit(&self, r: &AuditRecord) {
        if self.backend != crate::Backend::Sqlite {
            return;
        }
        failpoint("audit.before_head");
        if let Err(e) = audit::write_head(&self.home, r, true, self.signer.as_ref()) {
            tracing::warn!(error = %e, "could not update audit.head");
        }
    }

    /// Before a commit that appends `r`: SQLite marks it pending in the head file (replicas share no disk, so
    /// Postgres keeps the head in a row, written in the same transaction as the record).
    pub(crate) async fn before_commit(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        r: &AuditRecord,
    ) -> Result<()> {
        self.bump_changes(tx).await?;
        match self.backend {
            crate::Backend::Sqlite => {
                audit::write_head(&self.home, r, false, self.signer.as_ref())?;
            }
            crate::Backend::Postgres => {
                audit::write_head_row(tx, r, self.signer.as_ref()).await?;
            }
        }
        failpoint("audit.before_commit");
        Ok(())
    }

    /// Appends an event on its own (for decisions that change nothing in the registry).
    pub async fn audit(&self, ev: AuditEvent) -> Result<AuditRecord> {
        let mut tx = self.write_tx().await?;
        let r = audit::append_in(&mut tx, &ev).await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok(r)
    }

    /// Every audit record, oldest first.
    pub async fn audit_records(&self) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, before, after, evidence, prev_hash, hash FROM audit_log ORDER BY seq",
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
        let head = match self.backend {
            crate::Backend::Sqlite => audit::read_head(&self.home)?,
            crate::Backend::Postgres => audit::read_head_row(&self.pool).await?,
        };
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
            "SELECT version FROM model_versions WHERE model = $1 AND version = $2",
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
            sqlx::query_scalar("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
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
        self.before_commit(&mut tx, &record).await?;
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
            let aliases: Vec<(String, i64)> = sqlx::query_as(
                "SELECT alias, version FROM aliases WHERE model = $1 ORDER BY alias",
            )
            .bind(&model)
            .fetch_all(&self.pool)
            .await?;
            let latest: i64 = r.get("latest");
            let kind: String = sqlx::query_scalar(
                "SELECT kind FROM model_versions WHERE model = $1 AND version = $2",
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
        let rows = sqlx::query(
            "SELECT version FROM model_versions WHERE model = $1 ORDER BY version DESC",
        )
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
        let known: Option<String> = sqlx::query_scalar("SELECT name FROM models WHERE name = $1")
            .bind(model)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(Error::UnknownModel(model.to_string()));
        }
        let version: Option<i64> = match sel {
            Selector::Latest => {
                sqlx::query_scalar("SELECT MAX(version) FROM model_versions WHERE model = $1")
                    .bind(model)
                    .fetch_one(&self.pool)
                    .await?
            }
            Selector::Version(v) => {
                sqlx::query_scalar(
                    "SELECT version FROM model_versions WHERE model = $1 AND version = $2",
                )
                .bind(model)
                .bind(v)
                .fetch_optional(&self.pool)
                .await?
            }
            Selector::Alias(a) => {
                sqlx::query_scalar("SELECT version FROM aliases WHERE model = $1 AND alias = $2")
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
        let r = sqlx::query("SELECT * FROM model_versions WHERE model = $1 AND version = $2")
            .bind(model)
            .bind(version)
            .fetch_one(&self.pool)
            .await?;
        let aliases: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM aliases WHERE model = $1 AND version = $2 ORDER BY alias",
        )
        .bind(model)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let json = |col: &str| -> serde_json::Value {
            serde_json::from_str(&r.get::<String, _>(col)).unwrap_or(serde_json::Value::Null)
        };
        let tags: Vec<(String, String)> = sqlx::query_as(
            "SELECT key, value FROM version_tags WHERE model = $1 AND version = $2 ORDER BY key",
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
            let sql = crate::multi_values(
                "INSERT INTO prediction_log(model, request_id, row, version, at_ms, features, output, shadow_version, shadow_output, probabilities, shadow_probabilities)",
                chunk.len(),
                11,
                "ON CONFLICT(model, request_id, row) DO NOTHING",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.model.clone())
                    .bind(r.request_id.clone())
                    .bind(r.row)
                    .bind(r.version)
                    .bind(r.at_ms)
                    .bind(f64s_to_blob(&r.features))
                    .bind(r.output)
                    .bind(r.shadow.map(|s| s.0))
                    .bind(r.shadow.map(|s| s.1))
                    .bind(r.probabilities.as_deref().map(f64s_to_blob))
                    .bind(r.shadow_probabilities.as_deref().map(f64s_to_blob));
            }
            q.execute(&mut *tx).await?;
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
            "SELECT at_ms FROM prediction_log ORDER BY at_ms DESC LIMIT 1 OFFSET $1",
        )
        .bind(max_rows as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(t) = over {
            cutoff = cutoff.max(t + 1);
        }
        sqlx::query(
            "DELETE FROM labels WHERE EXISTS (SELECT 1 FROM prediction_log p WHERE p.model = labels.model
             AND p.request_id = labels.request_id AND p.row = labels.row AND p.at_ms < $1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM prediction_log WHERE at_ms < $1")
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
                "SELECT version FROM prediction_log WHERE model = $1 AND request_id = $2 AND row = $3",
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
                "SELECT label FROM labels WHERE model = $1 AND request_id = $2 AND row = $3",
            )
            .bind(model)
            .bind(&f.request_id)
            .bind(f.row)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO labels(model, request_id, row, label, at_ms) VALUES ($1, $2, $3, $4, $5)
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
            self.before_commit(&mut tx, r).await?;
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
             WHERE p.model = $1 AND p.at_ms >= $2 ORDER BY p.at_ms, p.request_id, p.row",
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
            "SELECT counts FROM profiles WHERE model = $1 AND version = $2 AND window_start = $3 AND replica = $4",
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
            "INSERT INTO profiles(model, version, window_start, replica, counts, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
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
            "SELECT window_start, counts FROM profiles WHERE model = $1 AND version = $2 AND window_start >= $3 ORDER BY window_start, replica",
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
        // Postgres checks its pages and enforces foreign keys itself; SQLite is asked.
        if self.backend == crate::Backend::Sqlite {
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
        }
        let rows =
            sqlx::query("SELECT model, version, artifact_uri, artifact_sha256 FROM model_versions")
                .fetch_all(&self.pool)
                .await?;
        for r in rows {
            let (uri, sha): (String, String) = (r.get("artifact_uri"), r.get("artifact_sha256"));
            // The stored object itself, never a local copy: this is the check of the artifact store.
            if let Err(e) = self.fetch_artifact(&uri, &sha, false).await {
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
        sqlx::query("INSERT INTO api_keys(id, hash, role, description, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
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
        self.before_commit(&mut tx, &record).await?;
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
            sqlx::query_scalar("SELECT role FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
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
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(keel_core::time::now_rfc3339())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let record = audit::append_in(&mut tx, &AuditEvent::new(actor, "key.revoke", id)).await?;
        self.before_commit(&mut tx, &record).await?;
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
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    model: &str,
    alias: &str,
    version: i64,
    now: &str,
) -> Result<()> {
    crate::versions::ensure_not_archived(tx, model, version).await?;
    sqlx::query(
        "INSERT INTO aliases(model, alias, version, updated_at) VALUES ($1, $2, $3, $4)
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
}
