//! Experiment tracking: runs in experiments, the way MLflow tracking is used.
//!
//! A run holds parameters (immutable once logged, as in MLflow: logging the same value again is a no-op,
//! a different one is refused), metrics with a step (a later value at the same step replaces the earlier
//! one) and optionally an interval, tags, and artifacts (content-addressed blobs next to the model
//! artifacts). `keel train` and `keel tune` record theirs in one transaction; a user's own code creates a run,
//! logs batches and ends it over HTTP. Only registering makes a model version; a run that did points at it.
//!
//! Invariants: a batch is validated whole before anything is written and lands in one transaction; an ended
//! run takes no more writes; an artifact blob is durable before the row that names it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;

use crate::registry::Store;
use crate::{Error, Result};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "killed" => RunStatus::Killed,
            _ => RunStatus::Failed,
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    #[serde(default)]
    pub step: i64,
    /// Milliseconds since the epoch; `None` means now.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// A confidence or bootstrap interval around `value`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
}

/// What one logging call carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunBatch {
    #[serde(default)]
    pub params: Vec<(String, String)>,
    #[serde(default)]
    pub metrics: Vec<MetricPoint>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// Most values one batch may carry (MLflow's limits).
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
const MAX_KEY: usize = 250;
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 5000;

/// A run to create.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// The experiment (created on first use).
    pub experiment: String,
    pub name: String,
    /// `train`, `tune`, `retrain` or `client`.
    pub source: String,
    pub created_by: String,
    pub data_hash: Option<String>,
    pub seed: Option<i64>,
    /// Start time (ms since the epoch); `None` means now.
    pub start_ms: Option<i64>,
    /// Logged with the creation, in the same transaction.
    pub batch: RunBatch,
    /// Files to attach (path inside the run, bytes).
    pub artifacts: Vec<(String, Vec<u8>)>,
    /// End the run at once with this status and end time (`keel train` records a finished run).
    pub ended: Option<(RunStatus, i64)>,
    /// The version registering made, if any.
    pub version: Option<(String, i64)>,
}

/// The latest value of one metric in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetric {
    pub value: f64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// How many steps were logged.
    pub steps: i64,
}

/// A file attached to a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunArtifact {
    pub path: String,
    pub size: i64,
    pub sha256: String,
    #[serde(skip)]
    pub uri: String,
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub experiment: String,
    pub name: String,
    pub source: String,
    pub status: RunStatus,
    pub created_by: String,
    pub data_hash: Option<String>,
    pub seed: Option<i64>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    /// `NAME@VERSION` when the run registered a version.
    pub registered: Option<String>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, RunMetric>,
    pub tags: BTreeMap<String, String>,
    pub artifacts: Vec<RunArtifact>,
}

impl RunRecord {
    /// Wall-clock seconds from start to end (or to now while running).
    pub fn duration_seconds(&self) -> f64 {
        let end = self.end_ms.unwrap_or_else(keel_core::time::now_unix_ms);
        (end - self.start_ms).max(0) as f64 / 1000.0
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub experiment: Option<String>,
    /// Newest first; at most this many (all when `None`).
    pub limit: Option<i64>,
}

fn invalid(what: &'static str, message: String) -> Error {
    Error::InvalidContent { what, message }
}

fn check_key(path: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && !key.starts_with('/')
        && !key.split('/').any(|p| p == "..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-. /:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "run batch",
            format!(
                "{path}: '{key}' is not a valid key (1–{MAX_KEY} characters of letters, digits, '_', '-', '.', ' ', ':' or '/')"
            ),
        ))
    }
}

/// Checks a whole batch, naming the first bad entry by its JSON path.
pub fn validate_batch(b: &RunBatch) -> Result<()> {
    let limit = |n: usize, max: usize, what: &str| {
        if n > max {
            Err(invalid(
                "run batch",
                format!("{what}: {n} entries, at most {max} per batch; split the batch"),
            ))
        } else {
            Ok(())
        }
    };
    limit(b.metrics.len(), MAX_BATCH_METRICS, "metrics")?;
    limit(b.params.len(), MAX_BATCH_PARAMS, "params")?;
    limit(b.tags.len(), MAX_BATCH_TAGS, "tags")?;
    for (i, (k, v)) in b.params.iter().enumerate() {
        check_key(&format!("params[{i}].key"), k)?;
        if v.len() > MAX_PARAM_VALUE {
            return Err(invalid(
                "run batch",
                format!(
                    "params[{i}].value: {} bytes, at most {MAX_PARAM_VALUE}",
                    v.len()
                ),
            ));
        }
        // One batch naming a parameter twice with two values is as wrong as two batches doing it.
        if let Some((j, _)) = b.params[..i]
            .iter()
            .enumerate()
            .find(|(_, (k2, v2))| k2 == k && v2 != v)
        {
            return Err(invalid(
                "run batch",
                format!(
                    "params[{i}]: '{k}' is also params[{j}] with another value; a parameter has one value"
                ),
            ));
        }
    }
    for (i, m) in b.metrics.iter().enumerate() {
        check_key(&format!("metrics[{i}].key"), &m.key)?;
        if !m.value.is_finite() {
            return Err(invalid(
                "run batch",
                format!("metrics[{i}].value: '{}' must be a finite number", m.key),
            ));
        }
        if m.step < 0 {
            return Err(invalid(
                "run batch",
                format!("metrics[{i}].step: {} must be 0 or more", m.step),
            ));
        }
        for (name, b) in [("lower", m.lower), ("upper", m.upper)] {
            if b.is_some_and(|x| !x.is_finite()) {
                return Err(invalid(
                    "run batch",
                    format!("metrics[{i}].{name}: must be a finite number"),
                ));
            }
        }
    }
    for (i, (k, v)) in b.tags.iter().enumerate() {
        check_key(&format!("tags[{i}].key"), k)?;
        if v.len() > MAX_TAG_VALUE {
            return Err(invalid(
                "run batch",
                format!(
                    "tags[{i}].value: {} bytes, at most {MAX_TAG_VALUE}",
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks an artifact's path inside its run: relative, no `.`/`..` parts.
pub fn validate_artifact_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.len() <= 500
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.+/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "artifact path",
            format!(
                "'{path}' must be a relative path of letters, digits, '_', '-', '.', '+' and '/' (no empty, '.' or '..' parts)"
            ),
        ))
    }
}

/// A fresh run id: 32 hex digits from the operating system's random source, unique across processes and
/// replicas.
fn new_run_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Store {
    /// Creates a run (and its experiment on first use), with its first batch and artifacts, in one
    /// transaction. Returns the run as stored.
    pub async fn create_run(&self, new: NewRun) -> Result<RunRecord> {
        crate::registry::validate_name("experiment name", &new.experiment)?;
        if new.name.len() > MAX_KEY {
            return Err(invalid(
                "run name",
                format!("{} characters, at most {MAX_KEY}", new.name.len()),
            ));
        }
        validate_batch(&new.batch)?;
        let mut stored = Vec::with_capacity(new.artifacts.len());
        for (path, bytes) in &new.artifacts {
            validate_artifact_path(path)?;
            stored.push((
                path.clone(),
                self.put_blob("runs", bytes).await?,
                bytes.len(),
            ));
        }
        let id = new_run_id();
        let now_ms = keel_core::time::now_unix_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO experiments(name, created_at) VALUES ($1, $2) ON CONFLICT(name) DO NOTHING",
        )
        .bind(&new.experiment)
        .bind(keel_core::time::now_rfc3339())
        .execute(&mut *tx)
        .await?;
        let exp: i64 = sqlx::query_scalar("SELECT id FROM experiments WHERE name = $1")
            .bind(&new.experiment)
            .fetch_one(&mut *tx)
            .await?;
        let (status, end) = match new.ended {
            Some((s, end)) => (s, Some(end)),
            None => (RunStatus::Running, None),
        };
        sqlx::query(
            "INSERT INTO runs(id, experiment_id, name, source, status, data_hash, seed, created_by, start_ms, end_ms, model, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(exp)
        .bind(&new.name)
        .bind(&new.source)
        .bind(status.as_str())
        .bind(&new.data_hash)
        .bind(new.seed)
        .bind(&new.created_by)
        .bind(new.start_ms.unwrap_or(now_ms))
        .bind(end)
        .bind(new.version.as_ref().map(|v| v.0.clone()))
        .bind(new.version.as_ref().map(|v| v.1))
        .execute(&mut *tx)
        .await?;
        write_batch(&mut tx, &id, &new.batch, now_ms).await?;
        for (path, (uri, sha), size) in &stored {
            sqlx::query(
                "INSERT INTO run_artifacts(run_id, path, uri, sha256, size) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(path)
            .bind(uri)
            .bind(sha)
            .bind(*size as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.run(&id).await
    }

    /// Logs a batch to a running run, atomically: all of it or, on any error, none.
    pub async fn log_run_batch(&self, id: &str, batch: &RunBatch) -> Result<()> {
        validate_batch(batch)?;
        let mut tx = self.write_tx().await?;
        running(&mut tx, id).await?;
        write_batch(&mut tx, id, batch, keel_core::time::now_unix_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Attaches a file to a running run (replacing one at the same path).
    pub async fn put_run_artifact(
        &self,
        id: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<RunArtifact> {
        validate_artifact_path(path)?;
        {
            // Fail before writing the blob when the run cannot take it.
            let mut tx = self.pool.begin().await?;
            running(&mut tx, id).await?;
        }
        let (uri, sha) = self.put_blob("runs", bytes).await?;
        let mut tx = self.write_tx().await?;
        running(&mut tx, id).await?;
        sqlx::query(
            "INSERT INTO run_artifacts(run_id, path, uri, sha256, size) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT(run_id, path) DO UPDATE SET uri = excluded.uri, sha256 = excluded.sha256, size = excluded.size",
        )
        .bind(id)
        .bind(path)
        .bind(&uri)
        .bind(&sha)
        .bind(bytes.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RunArtifact {
            path: path.to_string(),
            size: bytes.len() as i64,
            sha256: sha,
            uri,
        })
    }

    /// The bytes of a run's artifact, checked against their checksum.
    pub async fn run_artifact(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let run = self.run(id).await?;
        let Some(a) = run.artifacts.iter().find(|a| a.path == path) else {
            return Err(Error::UnknownArtifact {
                run: id.to_string(),
                path: path.to_string(),
            });
        };
        self.get_artifact(&a.uri, &a.sha256).await
    }

    /// Ends a running run with `status` (not `running`).
    pub async fn end_run(
        &self,
        id: &str,
        status: RunStatus,
        end_ms: Option<i64>,
    ) -> Result<RunRecord> {
        if status == RunStatus::Running {
            return Err(invalid(
                "run status",
                "a run ends as finished, failed or killed".into(),
            ));
        }
        let mut tx = self.write_tx().await?;
        let start = running(&mut tx, id).await?;
        let end = end_ms.unwrap_or_else(keel_core::time::now_unix_ms);
        if end < start {
            return Err(invalid(
                "end time",
                format!("{end} is before the run's start {start}"),
            ));
        }
        sqlx::query("UPDATE runs SET status = $1, end_ms = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(end)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.run(id).await
    }

    /// One run with its parameters, latest metrics, tags and artifacts.
    pub async fn run(&self, id: &str) -> Result<RunRecord> {
        let r = sqlx::query(
            "SELECT r.*, e.name AS experiment FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::UnknownRun(id.to_string()))?;
        let params: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM run_params WHERE run_id = $1 ORDER BY key")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let tags: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM run_tags WHERE run_id = $1 ORDER BY key")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let metrics = sqlx::query(
            "SELECT m.key, m.step, m.value, m.lower, m.upper, c.n FROM run_metrics m
             JOIN (SELECT key, MAX(step) AS last, COUNT(*) AS n FROM run_metrics WHERE run_id = $1 GROUP BY key) c
               ON c.key = m.key AND c.last = m.step
             WHERE m.run_id = $2 ORDER BY m.key",
        )
        .bind(id)
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let artifacts = sqlx::query(
            "SELECT path, uri, sha256, size FROM run_artifacts WHERE run_id = $1 ORDER BY path",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let model: Option<String> = r.get("model");
        let version: Option<i64> = r.get("version");
        Ok(RunRecord {
            id: r.get("id"),
            experiment: r.get("experiment"),
            name: r.get("name"),
            source: r.get("source"),
            status: RunStatus::parse(&r.get::<String, _>("status")),
            created_by: r.get("created_by"),
            data_hash: r.get("data_hash"),
            seed: r.get("seed"),
            start_ms: r.get("start_ms"),
            end_ms: r.get("end_ms"),
            registered: model.zip(version).map(|(m, v)| format!("{m}@{v}")),
            params: params.into_iter().collect(),
            metrics: metrics
                .iter()
                .map(|m| {
                    (
                        m.get("key"),
                        RunMetric {
                            value: m.get("value"),
                            step: m.get("step"),
                            lower: m.get("lower"),
                            upper: m.get("upper"),
                            steps: m.get("n"),
                        },
                    )
                })
                .collect(),
            tags: tags.into_iter().collect(),
            artifacts: artifacts
                .iter()
                .map(|a| RunArtifact {
                    path: a.get("path"),
                    size: a.get("size"),
                    sha256: a.get("sha256"),
                    uri: a.get("uri"),
                })
                .collect(),
        })
    }

    /// Runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id
             WHERE ($1 IS NULL OR e.name = $1) ORDER BY r.start_ms DESC, r.id DESC LIMIT $2",
        )
        .bind(&filter.experiment)
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.run(&id).await?);
        }
        Ok(out)
    }

    /// Every logged value of one metric, by step.
    pub async fn metric_history(&self, id: &str, key: &str) -> Result<Vec<MetricPoint>> {
        self.run(id).await?;
        let rows = sqlx::query(
            "SELECT step, value, lower, upper, at_ms FROM run_metrics WHERE run_id = $1 AND key = $2 ORDER BY step",
        )
        .bind(id)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| MetricPoint {
                key: key.to_string(),
                value: r.get("value"),
                step: r.get("step"),
                timestamp: Some(r.get("at_ms")),
                lower: r.get("lower"),
                upper: r.get("upper"),
            })
            .collect())
    }

    /// Ids of runs starting with `prefix` (at most 10).
    pub async fn run_ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        Ok(sqlx::query_scalar(
            "SELECT id FROM runs WHERE id LIKE $1 ESCAPE '\\' ORDER BY id LIMIT 10",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every experiment name with its run count, by name.
    pub async fn experiments(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT e.name, COUNT(r.id) FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id GROUP BY e.id ORDER BY e.name",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The run's start time when it is running; its absence or its end as errors.
async fn running(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> Result<i64> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT status, start_ms FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    match row {
        None => Err(Error::UnknownRun(id.to_string())),
        Some((s, start)) if s == "running" => Ok(start),
        Some((s, _)) => Err(Error::Conflict(format!(
            "run '{id}' has ended ({s}); it takes no more logs (start a new run)"
        ))),
    }
}

async fn write_batch(tx: &mut Tx, id: &str, b: &RunBatch, now_ms: i64) -> Result<()> {
    for (i, (k, v)) in b.params.iter().enumerate() {
        let old: Option<String> =
            sqlx::query_scalar("SELECT value FROM run_params WHERE run_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .fetch_optional(&mut **tx)
                .await?;
        match old {
            Some(o) if &o == v => {}
            Some(o) => {
                return Err(Error::Conflict(format!(
                    "params[{i}]: parameter '{k}' of run '{id}' is already '{o}'; a parameter is logged once (log a metric or a tag for values that change)"
                )));
            }
            None => {
                sqlx::query("INSERT INTO run_params(run_id, key, value) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(k)
                    .bind(v)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    for chunk in b.metrics.chunks(400) {
        let sql = crate::multi_values(
            "INSERT INTO run_metrics(run_id, key, step, value, lower, upper, at_ms)",
            chunk.len(),
            7,
            "ON CONFLICT(run_id, key, step) DO UPDATE SET value = excluded.value, lower = excluded.lower,
              upper = excluded.upper, at_ms = excluded.at_ms",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for m in chunk {
            q = q
                .bind(id.to_string())
                .bind(m.key.clone())
                .bind(m.step)
                .bind(m.value)
                .bind(m.lower)
                .bind(m.upper)
                .bind(m.timestamp.unwrap_or(now_ms));
        }
        q.execute(&mut **tx).await?;
    }
    for (k, v) in &b.tags {
        sqlx::query(
            "INSERT INTO run_tags(run_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
