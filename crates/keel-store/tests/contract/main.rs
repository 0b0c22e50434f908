//! The store contract: the same tests against every backend. Each test runs twice, as `NAME::sqlite` (SQLite
//! and files under a temporary home, the embedded default) and `NAME::postgres` (a fresh schema in the
//! PostgreSQL at `KEEL_TEST_POSTGRES_URL`, artifacts in the S3-compatible server at `KEEL_TEST_S3_ENDPOINT`,
//! bucket `keel`, under a fresh prefix). `scripts/test.sh` starts both services and sets
//! `KEEL_TEST_REQUIRE_SERVICES=1`, which turns a missing service into a failure instead of a skip.

mod artifacts;
mod cluster;
mod collections;
mod races;
mod registry;

use keel_store::{Backend, NewVersion, Store, StoreConfig};
use std::path::PathBuf;

pub struct Env {
    pub store: Store,
    pub config: StoreConfig,
    pub home: PathBuf,
    pub backend: Backend,
    /// The Postgres schema (dropped when the test ends) and the base URL.
    pub schema: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub fn require_services() -> bool {
    std::env::var("KEEL_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> Option<()> {
    assert!(
        !require_services(),
        "{what} is not set but KEEL_TEST_REQUIRE_SERVICES=1 (scripts/test.sh starts the services)"
    );
    eprintln!(
        "skipped: {what} is not set (scripts/test.sh starts PostgreSQL and SeaweedFS and sets it)"
    );
    None
}

/// A unique name for a schema or prefix.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for a fresh, unmigrated place of `kind` (None: the service is not configured here).
pub async fn fresh_config(kind: Kind) -> Option<(StoreConfig, Option<(String, String)>)> {
    match kind {
        Kind::Sqlite => Some((StoreConfig::default(), None)),
        Kind::Postgres => {
            let Ok(base) = std::env::var("KEEL_TEST_POSTGRES_URL") else {
                missing("KEEL_TEST_POSTGRES_URL")?;
                return None;
            };
            let schema = unique("keel_t");
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {base}: {e}"));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            let artifact_url = match std::env::var("KEEL_TEST_S3_ENDPOINT") {
                Ok(_) => Some(format!("s3://keel/{schema}")),
                Err(_) => {
                    missing("KEEL_TEST_S3_ENDPOINT")?;
                    None
                }
            };
            Some((
                StoreConfig {
                    database_url: Some(url),
                    artifact_url,
                    pool_size: Some(4),
                    s3_endpoint: std::env::var("KEEL_TEST_S3_ENDPOINT").ok(),
                    s3_region: None,
                },
                Some((schema, base)),
            ))
        }
    }
}

/// A migrated, empty store of `kind`.
pub async fn open(kind: Kind) -> Option<Env> {
    let (config, schema) = fresh_config(kind).await?;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    if matches!(kind, Kind::Postgres) {
        Store::migrate(&home, &config).await.unwrap();
    }
    let store = Store::connect(&home, &config).await.unwrap();
    let backend = store.backend();
    Some(Env {
        store,
        config,
        home,
        backend,
        schema,
        _dir: dir,
    })
}

impl Env {
    /// Another store over the same state (another process, replica or worker).
    pub async fn another(&self) -> Store {
        Store::connect(&self.home, &self.config).await.unwrap()
    }

    /// A store over the same database and artifacts with a home of its own (a new pod: empty local cache).
    pub async fn another_pod(&self) -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = self.config.clone();
        if config.database_url.is_none() {
            config.database_url = Some(format!(
                "sqlite://{}",
                self.home.join("registry.db").display()
            ));
            config.artifact_url = Some(format!("file://{}", self.home.join("artifacts").display()));
        }
        (Store::connect(dir.path(), &config).await.unwrap(), dir)
    }

    /// Runs raw SQL against the database (to play an attacker or a crash).
    pub async fn raw_sql(&self, sql: &str) {
        match &self.schema {
            None => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&format!(
                    "sqlite://{}",
                    self.home.join("registry.db").display()
                ))
                .await
                .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
            }
            Some((schema, base)) => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(base).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET search_path = {schema}; {sql}"
                )))
                .execute(&mut c)
                .await
                .unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((schema, base)) = self.schema.take() {
            // Best effort: a schema left behind by a crashed test is harmless (names are unique).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA {schema} CASCADE"
                        )))
                        .execute(&mut c)
                        .await;
                        let _ = c.close().await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn version(model: &str, aliases: &[&str], champion_if_none: bool) -> NewVersion {
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

/// `contract!(name)` runs `async fn name(env: Env)` once per backend, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(env) = $crate::open($crate::Kind::Sqlite).await {
                    super::$name(env).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(env) = $crate::open($crate::Kind::Postgres).await {
                    super::$name(env).await;
                }
            }
        }
    };
}
