//! Where the store keeps its state, and the database behind it.
//!
//! The database is SQLite (`registry.db` under the Keel home, the embedded default) or PostgreSQL, reached
//! through sqlx's `Any` driver with one query text for both: `$N` placeholders (which SQLite also accepts),
//! integers as 64-bit and reals as doubles in both schemas, JSON and timestamps as text. What differs is kept
//! here and in a handful of places that ask [`Backend`]: how a write transaction starts (SQLite takes its write
//! lock at once; Postgres locks rows), how a job is claimed (`FOR UPDATE SKIP LOCKED`), and how audit appends
//! are serialised (`pg_advisory_xact_lock`; SQLite has one writer).
//!
//! Migrations: SQLite migrates itself when opened (one process owns the file). PostgreSQL is migrated only by
//! [`crate::Store::migrate`] (`keel migrate`), under an advisory lock in one transaction, so a second
//! concurrent run waits and then finds nothing to do, and a crash leaves the schema as it was; `keel serve`
//! and `keel worker` check the version and refuse to start against a schema that is behind.

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::{Error, Result};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Schema migrations, applied in order; both lists have the same length, and version N means the same
/// tables in both.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_registry.sql"),
    include_str!("../migrations/sqlite/0002_api_keys.sql"),
    include_str!("../migrations/sqlite/0003_audit.sql"),
    include_str!("../migrations/sqlite/0004_profiles.sql"),
    include_str!("../migrations/sqlite/0005_prediction_log.sql"),
    include_str!("../migrations/sqlite/0006_jobs_rollouts.sql"),
    include_str!("../migrations/sqlite/0007_prediction_log_retention.sql"),
    include_str!("../migrations/sqlite/0008_runs.sql"),
    include_str!("../migrations/sqlite/0009_prediction_probabilities.sql"),
    include_str!("../migrations/sqlite/0010_scale_out.sql"),
    include_str!("../migrations/sqlite/0011_collections.sql"),
];

const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_registry.sql"),
    include_str!("../migrations/postgres/0002_api_keys.sql"),
    include_str!("../migrations/postgres/0003_audit.sql"),
    include_str!("../migrations/postgres/0004_profiles.sql"),
    include_str!("../migrations/postgres/0005_prediction_log.sql"),
    include_str!("../migrations/postgres/0006_jobs_rollouts.sql"),
    include_str!("../migrations/postgres/0007_prediction_log_retention.sql"),
    include_str!("../migrations/postgres/0008_runs.sql"),
    include_str!("../migrations/postgres/0009_prediction_probabilities.sql"),
    include_str!("../migrations/postgres/0010_scale_out.sql"),
    include_str!("../migrations/postgres/0011_collections.sql"),
];

/// The schema version this build of Keel writes and reads.
pub const SCHEMA_VERSION: i64 = 11;

/// Advisory lock keys (Postgres): migrations, audit appends, control-plane writes
/// ([`crate::Store::write_tx`]; always taken before the audit lock, so the two never deadlock).
pub(crate) const LOCK_MIGRATE: i64 = 0x6b65_656c_0001;
pub(crate) const LOCK_AUDIT: i64 = 0x6b65_656c_0002;
pub(crate) const LOCK_WRITE: i64 = 0x6b65_656c_0003;

/// Where state lives. Every field is optional: the defaults are SQLite and files under the Keel home.
///
/// Read from `[store]` in `keel.toml`, overridden by `KEEL_DATABASE_URL`, `KEEL_ARTIFACT_URL`,
/// `KEEL_DB_POOL_SIZE`, `KEEL_S3_ENDPOINT`, `KEEL_S3_REGION` (the binary merges them; see
/// [`StoreConfig::from_env`]). S3 credentials come from the environment only (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), never from a file Keel reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`; unset: `registry.db` under the home.
    pub database_url: Option<String>,
    /// `file:///DIR` or `s3://BUCKET/PREFIX`; unset: `artifacts/` under the home.
    pub artifact_url: Option<String>,
    /// Database connections per process (default 4 on SQLite, 10 on Postgres). Replicas × this must stay under
    /// Postgres' `max_connections`.
    pub pool_size: Option<u32>,
    /// S3 endpoint for S3-compatible servers (`http://127.0.0.1:8333`); unset: AWS (or `AWS_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// S3 region (default `us-east-1`, what most S3-compatible servers accept).
    pub s3_region: Option<String>,
}

static CONFIGURED: OnceLock<StoreConfig> = OnceLock::new();

impl StoreConfig {
    /// The variables `KEEL_DATABASE_URL`, `KEEL_ARTIFACT_URL`, `KEEL_DB_POOL_SIZE`, `KEEL_S3_ENDPOINT` and
    /// `KEEL_S3_REGION` over `self` (each set variable wins).
    pub fn with_env(mut self) -> Result<StoreConfig> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("KEEL_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("KEEL_ARTIFACT_URL") {
            self.artifact_url = Some(v);
        }
        if let Some(v) = var("KEEL_DB_POOL_SIZE") {
            self.pool_size =
                Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| Error::Invalid {
                            what: "KEEL_DB_POOL_SIZE",
                            message: format!("'{v}' is not a positive whole number"),
                        })?,
                );
        }
        if let Some(v) = var("KEEL_S3_ENDPOINT") {
            self.s3_endpoint = Some(v);
        }
        if let Some(v) = var("KEEL_S3_REGION") {
            self.s3_region = Some(v);
        }
        Ok(self)
    }

    /// The environment alone over the defaults.
    pub fn from_env() -> Result<StoreConfig> {
        StoreConfig::default().with_env()
    }

    /// What [`crate::Store::open`] uses: the configuration the binary set with [`configure`], else the
    /// environment.
    pub fn current() -> Result<StoreConfig> {
        match CONFIGURED.get() {
            Some(c) => Ok(c.clone()),
            None => StoreConfig::from_env(),
        }
    }

    /// The backend `database_url` names.
    pub fn backend(&self) -> Result<Backend> {
        match self.database_url.as_deref() {
            None => Ok(Backend::Sqlite),
            Some(u) if u.starts_with("sqlite:") => Ok(Backend::Sqlite),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Backend::Postgres)
            }
            Some(u) => Err(Error::Invalid {
                what: "database_url",
                message: format!(
                    "'{}' is neither sqlite://PATH nor postgres://HOST/DB",
                    redact_url(u)
                ),
            }),
        }
    }
}

/// Sets the configuration every later [`crate::Store::open`] in this process uses (the binary calls it once,
/// after merging `keel.toml`, the environment and its flags). A second call is ignored.
pub fn configure(config: StoreConfig) {
    let _ = CONFIGURED.set(config);
}

/// A URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn sqlite_url(path: &Path) -> String {
    let mut s = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3F"),
            '#' => s.push_str("%23"),
            ' ' => s.push_str("%20"),
            c => s.push(c),
        }
    }
    s.push_str("?mode=rwc");
    s
}

/// The SQLite file a configuration names (`registry.db` under `home` by default).
pub(crate) fn sqlite_path(config: &StoreConfig, home: &Path) -> PathBuf {
    match config.database_url.as_deref() {
        Some(u) => {
            let rest = u
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            PathBuf::from(rest.split('?').next().unwrap_or(rest))
        }
        None => home.join("registry.db"),
    }
}

/// Opens the pool. SQLite: the file is created in WAL mode first through SQLite itself (never opened as a
/// plain file: closing a descriptor would drop SQLite's POSIX locks).
pub(crate) async fn connect(config: &StoreConfig, home: &Path) -> Result<(AnyPool, Backend)> {
    sqlx::any::install_default_drivers();
    let backend = config.backend()?;
    match backend {
        Backend::Sqlite => {
            let db = sqlite_path(config, home);
            prepare_sqlite(&db).await?;
            let pool = AnyPoolOptions::new()
                .max_connections(config.pool_size.unwrap_or(4))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&sqlite_url(&db))
                .await?;
            Ok((pool, backend))
        }
        Backend::Postgres => {
            let url = config.database_url.as_deref().expect("postgres has a url");
            let pool = AnyPoolOptions::new()
                .max_connections(config.pool_size.unwrap_or(10))
                .acquire_timeout(std::time::Duration::from_secs(30))
                .connect(url)
                .await
                .map_err(|e| Error::Unavailable {
                    what: "PostgreSQL",
                    target: redact_url(url),
                    reason: e.to_string(),
                })?;
            Ok((pool, backend))
        }
    }
}

/// Creates the SQLite file in WAL mode, and takes and releases its write lock, so a database that cannot be
/// written fails here with [`Error::ReadOnly`] rather than half-way through a change.
async fn prepare_sqlite(db: &Path) -> Result<()> {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
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
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .map_err(readonly)?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .map_err(readonly)?;
    sqlx::query("ROLLBACK").execute(&mut conn).await?;
    use sqlx::Connection;
    conn.close().await?;
    Ok(())
}

/// The schema version the database has (0 for an empty one).
pub(crate) async fn schema_version(pool: &AnyPool, backend: Backend) -> Result<i64> {
    match backend {
        Backend::Sqlite => Ok(sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(pool)
            .await?),
        Backend::Postgres => {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT CAST(to_regclass('keel_schema') AS TEXT)")
                    .fetch_one(pool)
                    .await?;
            if exists.is_none() {
                return Ok(0);
            }
            Ok(
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM keel_schema")
                    .fetch_one(pool)
                    .await?,
            )
        }
    }
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    pub backend: Backend,
    /// The schema version before.
    pub from: i64,
    /// The schema version after (this Keel's [`SCHEMA_VERSION`]).
    pub to: i64,
}

impl MigrationReport {
    /// Whether this run changed the schema (a concurrent or earlier run may have done it).
    pub fn applied(&self) -> bool {
        self.to > self.from
    }
}

fn newer_schema(found: i64) -> Error {
    Error::Invalid {
        what: "registry",
        message: format!(
            "the registry has schema version {found}, newer than this Keel understands ({SCHEMA_VERSION}); upgrade Keel"
        ),
    }
}

/// Applies the missing migrations in one transaction (Postgres: under an advisory lock, so concurrent runs
/// queue and the later ones find nothing to do).
pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<MigrationReport> {
    let mut tx = pool.begin().await?;
    let applied: i64 = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *tx)
                .await?
        }
        Backend::Postgres => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LOCK_MIGRATE)
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql("CREATE TABLE IF NOT EXISTS keel_schema (version BIGINT NOT NULL)")
                .execute(&mut *tx)
                .await?;
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM keel_schema")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    if applied > SCHEMA_VERSION {
        return Err(newer_schema(applied));
    }
    let list = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    for (i, m) in list.iter().enumerate().skip(applied as usize) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*m))
            .execute(&mut *tx)
            .await?;
        crate::failpoint("migrate.mid");
        match backend {
            Backend::Sqlite => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA user_version = {}",
                    i + 1
                )))
                .execute(&mut *tx)
                .await?;
            }
            Backend::Postgres => {
                sqlx::query("DELETE FROM keel_schema")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO keel_schema(version) VALUES ($1)")
                    .bind(i as i64 + 1)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(MigrationReport {
        backend,
        from: applied,
        to: SCHEMA_VERSION.max(applied),
    })
}

/// Fails unless the schema is this Keel's: behind means `keel migrate` has not run.
pub(crate) async fn check_schema(pool: &AnyPool, backend: Backend) -> Result<()> {
    let have = schema_version(pool, backend).await?;
    if have > SCHEMA_VERSION {
        return Err(newer_schema(have));
    }
    if have < SCHEMA_VERSION {
        return Err(Error::SchemaBehind {
            have,
            want: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The artifact store a configuration names, and the local directory behind it when it is one (to make
/// writes durable with fsync).
pub(crate) fn artifact_store(
    config: &StoreConfig,
    home: &Path,
) -> Result<(Arc<dyn ObjectStore>, Option<PathBuf>)> {
    let local = |dir: PathBuf| -> Result<(Arc<dyn ObjectStore>, Option<PathBuf>)> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        Ok((Arc::new(LocalFileSystem::new_with_prefix(&dir)?), Some(dir)))
    };
    match config.artifact_url.as_deref() {
        None => local(home.join("artifacts")),
        Some(u) if u.starts_with("file://") => local(PathBuf::from(&u["file://".len()..])),
        Some(u) if u.starts_with("s3://") => {
            let rest = &u["s3://".len()..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::Invalid {
                    what: "artifact_url",
                    message: format!("'{u}' names no bucket (s3://BUCKET/PREFIX)"),
                });
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(config.s3_region.as_deref().unwrap_or("us-east-1"));
            if let Some(e) = &config.s3_endpoint {
                b = b
                    .with_endpoint(e)
                    .with_allow_http(e.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                s3
            } else {
                Arc::new(PrefixStore::new(s3, prefix.to_string()))
            };
            Ok((store, None))
        }
        Some(u) => Err(Error::Invalid {
            what: "artifact_url",
            message: format!("'{u}' is neither file:///DIR nor s3://BUCKET/PREFIX"),
        }),
    }
}

/// The bucket and key of an `s3://BUCKET/KEY` URL.
fn split_s3_url(url: &str) -> Result<(&str, &str)> {
    let bad = || Error::Invalid {
        what: "object URL",
        message: format!("'{url}' is not s3://BUCKET/KEY"),
    };
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(bad());
    }
    Ok((bucket, key))
}

fn s3_bucket(config: &StoreConfig, bucket: &str) -> Result<object_store::aws::AmazonS3> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(config.s3_region.as_deref().unwrap_or("us-east-1"));
    if let Some(e) = &config.s3_endpoint {
        b = b
            .with_endpoint(e)
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    Ok(b.build()?)
}

/// Downloads `s3://BUCKET/KEY` (with the configuration's endpoint and the environment's credentials) into
/// `to`, streamed: written to a temporary file beside it and renamed when complete.
pub async fn download_url(config: &StoreConfig, url: &str, to: &Path) -> Result<u64> {
    use futures_util::StreamExt;
    use object_store::ObjectStoreExt;
    use tokio::io::AsyncWriteExt;
    let (bucket, key) = split_s3_url(url)?;
    let s3 = s3_bucket(config, bucket)?;
    let got = s3
        .get(&object_store::path::Path::from(key))
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => Error::Invalid {
                what: "object URL",
                message: format!("{url} does not exist"),
            },
            e => e.into(),
        })?;
    let io = |e: std::io::Error| Error::Io {
        path: to.to_path_buf(),
        source: e,
    };
    let tmp = to.with_extension("part");
    let mut f = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let mut stream = got.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.sync_all().await.map_err(io)?;
    tokio::fs::rename(&tmp, to).await.map_err(io)?;
    Ok(n)
}

/// Uploads the file `from` to `s3://BUCKET/KEY` in parts (a multipart upload, completed only when every part
/// is written, so a reader never sees half a file).
pub async fn upload_url(config: &StoreConfig, from: &Path, url: &str) -> Result<u64> {
    use object_store::ObjectStoreExt;
    use tokio::io::AsyncReadExt;
    let (bucket, key) = split_s3_url(url)?;
    let s3 = s3_bucket(config, bucket)?;
    let io = |e: std::io::Error| Error::Io {
        path: from.to_path_buf(),
        source: e,
    };
    let mut f = tokio::fs::File::open(from).await.map_err(io)?;
    let upload = s3
        .put_multipart(&object_store::path::Path::from(key))
        .await?;
    let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).await.map_err(io)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        w.wait_for_capacity(4).await?;
        w.write(&buf[..k]);
    }
    w.finish().await?;
    Ok(n)
}

/// `INSERT … VALUES ($1, …), (…) tail` for `rows` rows of `cols` values.
pub(crate) fn multi_values(head: &str, rows: usize, cols: usize, tail: &str) -> String {
    let mut s = String::with_capacity(head.len() + tail.len() + rows * cols * 6);
    s.push_str(head);
    s.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s.push(' ');
    s.push_str(tail);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(
            multi_values("INSERT INTO t(a, b)", 2, 2, "ON CONFLICT DO NOTHING"),
            "INSERT INTO t(a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn urls_pick_backends_and_hide_passwords() {
        let c = |u: &str| StoreConfig {
            database_url: Some(u.into()),
            ..Default::default()
        };
        assert_eq!(StoreConfig::default().backend().unwrap(), Backend::Sqlite);
        assert_eq!(c("sqlite:///x/r.db").backend().unwrap(), Backend::Sqlite);
        assert_eq!(c("postgres://u@h/db").backend().unwrap(), Backend::Postgres);
        let e = c("mysql://u:secret@h/db")
            .backend()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mysql://u:***@h/db") && !e.contains("secret"),
            "{e}"
        );
        assert_eq!(
            sqlite_path(&c("sqlite:///x/r.db?mode=rwc"), Path::new("/h")),
            PathBuf::from("/x/r.db")
        );
        assert_eq!(
            sqlite_url(Path::new("/a b/r#1.db")),
            "sqlite:///a%20b/r%231.db?mode=rwc"
        );
    }

    #[test]
    fn both_backends_have_every_migration() {
        assert_eq!(SQLITE_MIGRATIONS.len() as i64, SCHEMA_VERSION);
        assert_eq!(POSTGRES_MIGRATIONS.len() as i64, SCHEMA_VERSION);
        // Postgres' INTEGER/REAL are 32-bit; sqlx decodes strictly, so the Postgres schema never uses them.
        for m in POSTGRES_MIGRATIONS {
            for bad in [" INTEGER", " REAL", " BLOB", "AUTOINCREMENT"] {
                assert!(!m.contains(bad), "{bad} in a Postgres migration:\n{m}");
            }
        }
    }
}
