//! Experiment tracking over HTTP, the way MLflow tracking is used from a training script: create a run, log
//! parameters, metrics (with steps) and tags in batches, upload artifacts, end it; list, read and compare
//! runs. Also the version changes after registration: delete, archive or restore, describe and tag.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AsAdmin, AsDeployer, AsPredictor, AsReader, Authorized};
use crate::body::{UPLOAD_LIMIT_BYTES, json, page_limit, query, read_body};
use crate::error::{ApiError, ErrorBody};
use crate::routes::{ModelSummary, summary};
use crate::versions::reference;

/// The latest value of one metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunMetric {
    pub value: f64,
    /// The step of the latest value.
    pub step: i64,
    /// An interval around the value (bootstrap, for the metrics `keel train` records).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// How many steps were logged.
    pub steps: i64,
}

/// A file attached to a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunArtifact {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub experiment: String,
    pub name: String,
    /// `train`, `tune` or `client`.
    pub source: String,
    /// `running`, `finished`, `failed` or `killed`.
    pub status: String,
    pub created_by: String,
    pub data_hash: Option<String>,
    pub seed: Option<i64>,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub duration_seconds: f64,
    /// `NAME@VERSION` when the run registered a version.
    pub registered: Option<String>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, RunMetric>,
    pub tags: BTreeMap<String, String>,
    pub artifacts: Vec<RunArtifact>,
}

impl From<keel_store::RunRecord> for Run {
    fn from(r: keel_store::RunRecord) -> Self {
        Run {
            duration_seconds: r.duration_seconds(),
            id: r.id,
            experiment: r.experiment,
            name: r.name,
            source: r.source,
            status: r.status.as_str().to_string(),
            created_by: r.created_by,
            data_hash: r.data_hash,
            seed: r.seed,
            start_time: r.start_ms,
            end_time: r.end_ms,
            registered: r.registered,
            params: r.params,
            metrics: r.metrics.into_iter().map(|(k, m)| (k, metric(m))).collect(),
            tags: r.tags,
            artifacts: r
                .artifacts
                .into_iter()
                .map(|a| RunArtifact {
                    path: a.path,
                    size: a.size,
                    sha256: a.sha256,
                })
                .collect(),
        }
    }
}

fn metric(m: keel_store::RunMetric) -> RunMetric {
    RunMetric {
        value: m.value,
        step: m.step,
        lower: m.lower,
        upper: m.upper,
        steps: m.steps,
    }
}

/// Starts a run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunRequest {
    /// The experiment (created on first use); `default` when absent.
    pub experiment: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Milliseconds since the epoch; now when absent.
    pub start_time: Option<i64>,
    pub seed: Option<i64>,
    pub data_hash: Option<String>,
}

/// Starts a run (`source: client`) for the caller's own training code.
#[utoipa::path(post, path = "/v1/runs", operation_id = "create_run", tag = "runs", security(("bearer" = [])),
    request_body(content = Option<CreateRunRequest>, description = "Optional; `{}` starts a run in experiment `default`"),
    responses((status = 201, body = Run), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    Authorized(caller): AsPredictor,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: CreateRunRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CreateRunRequest::default()
    } else {
        json(&bytes, "{\"experiment\": \"churn\", \"name\": \"lr-0.1\"}")?
    };
    let run = keel_app::runs::start(
        st.cache.store(),
        keel_app::runs::StartRun {
            experiment: req.experiment,
            name: req.name,
            tags: req.tags,
            start_time: req.start_time,
            seed: req.seed,
            data_hash: req.data_hash,
        },
        &caller.actor(),
    )
    .await?;
    let location = format!("/v1/runs/{}", run.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Run::from(run)),
    )
        .into_response())
}

/// `?experiment=&limit=` of the run list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this experiment's runs.
    pub experiment: Option<String>,
    /// At most this many (1–1000, default 100), newest first.
    pub limit: Option<i64>,
}

/// Runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// Lists runs, newest first.
#[utoipa::path(get, path = "/v1/runs", operation_id = "list_runs", tag = "runs", security(("bearer" = [])), params(RunsQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody)))]
pub async fn list(
    _: AsReader,
    State(st): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<RunList>, ApiError> {
    let q: RunsQuery = query(&uri)?;
    let limit = page_limit(q.limit, 100)?;
    let runs = st
        .cache
        .store()
        .runs(&keel_store::RunFilter {
            experiment: q.experiment,
            limit: Some(limit as i64),
        })
        .await?;
    Ok(Json(RunList {
        runs: runs.into_iter().map(Run::from).collect(),
    }))
}

/// An experiment and how many runs it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct Experiment {
    pub experiment: String,
    pub runs: i64,
}

/// Every experiment, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentList {
    pub experiments: Vec<Experiment>,
}

/// Lists experiments with their run counts.
#[utoipa::path(get, path = "/v1/experiments", operation_id = "list_experiments", tag = "runs", security(("bearer" = [])),
    responses((status = 200, body = ExperimentList)))]
pub async fn experiments(
    _: AsReader,
    State(st): State<AppState>,
) -> Result<Json<ExperimentList>, ApiError> {
    let list = st.cache.store().experiments().await?;
    Ok(Json(ExperimentList {
        experiments: list
            .into_iter()
            .map(|(experiment, runs)| Experiment { experiment, runs })
            .collect(),
    }))
}

/// One run.
#[utoipa::path(get, path = "/v1/runs/{id}", operation_id = "get_run", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id (or a unique prefix of at least 6 characters)")),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)))]
pub async fn get(
    _: AsReader,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(
        keel_app::runs::resolve(st.cache.store(), &id).await?.into(),
    ))
}

/// A parameter or tag: `{"key": "lr", "value": 0.1}` (numbers and booleans are stored as their text).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    pub key: String,
    /// Any JSON value (stored as text: strings as they are, other values as JSON).
    #[schema(value_type = Value)]
    pub value: Value,
}

/// Parameters or tags: a list of `{"key", "value"}` (MLflow's form) or one object (`{"lr": 0.1}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum KeyValues {
    List(Vec<KeyValue>),
    #[schema(value_type = Object)]
    Map(BTreeMap<String, Value>),
}

impl Default for KeyValues {
    fn default() -> Self {
        KeyValues::List(vec![])
    }
}

impl KeyValues {
    fn pairs(self) -> Vec<(String, String)> {
        let text = |v: Value| match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        match self {
            KeyValues::List(l) => l.into_iter().map(|kv| (kv.key, text(kv.value))).collect(),
            KeyValues::Map(m) => m.into_iter().map(|(k, v)| (k, text(v))).collect(),
        }
    }
}

/// One metric value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricIn {
    pub key: String,
    pub value: f64,
    /// Default 0.
    #[serde(default)]
    pub step: i64,
    /// Milliseconds since the epoch; now when absent.
    pub timestamp: Option<i64>,
}

/// What one logging call carries (at most 1,000 metrics, 100 parameters and 100 tags), written all or nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatchRequest {
    #[serde(default)]
    pub params: KeyValues,
    #[serde(default)]
    pub metrics: Vec<MetricIn>,
    #[serde(default)]
    pub tags: KeyValues,
}

/// How much a batch logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct Logged {
    pub params: usize,
    pub metrics: usize,
    pub tags: usize,
}

/// Logs parameters, metrics and tags to a running run, atomically.
#[utoipa::path(post, path = "/v1/runs/{id}/log-batch", operation_id = "log_run_batch", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id")),
    request_body = LogBatchRequest,
    responses((status = 200, body = Logged), (status = 404, body = ErrorBody),
              (status = 409, description = "The run has ended, or a parameter already has another value", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn log_batch(
    _: AsPredictor,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Logged>, ApiError> {
    let bytes = read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: LogBatchRequest = json(
        &bytes,
        "{\"params\": {\"lr\": 0.1}, \"metrics\": [{\"key\": \"loss\", \"value\": 0.3, \"step\": 1}]}",
    )?;
    let batch = keel_store::RunBatch {
        params: req.params.pairs(),
        metrics: req
            .metrics
            .into_iter()
            .map(|m| keel_store::MetricPoint {
                key: m.key,
                value: m.value,
                step: m.step,
                timestamp: m.timestamp,
                lower: None,
                upper: None,
            })
            .collect(),
        tags: req.tags.pairs(),
    };
    st.cache.store().log_run_batch(&id, &batch).await?;
    Ok(Json(Logged {
        params: batch.params.len(),
        metrics: batch.metrics.len(),
        tags: batch.tags.len(),
    }))
}

/// Ends a run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndRunRequest {
    /// `finished` (default), `failed` or `killed`.
    pub status: Option<String>,
    /// Milliseconds since the epoch; now when absent.
    pub end_time: Option<i64>,
}

/// Ends a running run.
#[utoipa::path(post, path = "/v1/runs/{id}/end", operation_id = "end_run", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id")),
    request_body(content = Option<EndRunRequest>, description = "Optional; no body ends the run as finished"),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn end(
    _: AsPredictor,
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Run>, ApiError> {
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let req: EndRunRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        EndRunRequest::default()
    } else {
        json(&bytes, "{\"status\": \"finished\"}")?
    };
    let status = match req.status.as_deref() {
        None | Some("finished") => keel_store::RunStatus::Finished,
        Some("failed") => keel_store::RunStatus::Failed,
        Some("killed") => keel_store::RunStatus::Killed,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("$.status: '{other}' must be finished, failed or killed"),
            ));
        }
    };
    let run = st.cache.store().end_run(&id, status, req.end_time).await?;
    Ok(Json(run.into()))
}

/// Uploads a file to a running run (the body is the file; a file at the same path is replaced).
#[utoipa::path(put, path = "/v1/runs/{id}/artifacts/{path}", operation_id = "put_run_artifact", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id"),
           ("path" = String, Path, description = "Where the file goes inside the run (`plots/loss.png`)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = RunArtifact), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_artifact(
    _: AsPredictor,
    State(st): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, UPLOAD_LIMIT_BYTES).await?;
    let a = st
        .cache
        .store()
        .put_run_artifact(&id, &path, &bytes)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RunArtifact {
            path: a.path,
            size: a.size,
            sha256: a.sha256,
        }),
    )
        .into_response())
}

/// Downloads a run's file.
#[utoipa::path(get, path = "/v1/runs/{id}/artifacts/{path}", operation_id = "get_run_artifact", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id"), ("path" = String, Path, description = "The file's path in the run")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
pub async fn get_artifact(
    _: AsReader,
    State(st): State<AppState>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = st.cache.store().run_artifact(&id, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// One logged value of a metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricValue {
    pub step: i64,
    pub value: f64,
    pub timestamp: Option<i64>,
}

/// Every value of one metric, by step.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricHistory {
    pub run: String,
    pub key: String,
    pub values: Vec<MetricValue>,
}

/// A metric's history, by step.
#[utoipa::path(get, path = "/v1/runs/{id}/metrics/{key}", operation_id = "get_metric_history", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's id"), ("key" = String, Path, description = "The metric")),
    responses((status = 200, body = MetricHistory), (status = 404, body = ErrorBody)))]
pub async fn metric_history(
    _: AsReader,
    State(st): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<MetricHistory>, ApiError> {
    let points = st.cache.store().metric_history(&id, &key).await?;
    Ok(Json(MetricHistory {
        run: id,
        key,
        values: points
            .into_iter()
            .map(|p| MetricValue {
                step: p.step,
                value: p.value,
                timestamp: p.timestamp,
            })
            .collect(),
    }))
}

/// `?ids=a,b` of a comparison.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CompareQuery {
    /// Two or more run ids (or unique prefixes), comma-separated.
    pub ids: String,
}

/// One row of a comparison: a key and each run's value, in the order of `runs` (null where a run has none).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffRow {
    pub key: String,
    /// Any JSON value per run (a string, number, object or null).
    #[schema(value_type = Vec<Value>)]
    pub values: Vec<Value>,
}

/// A compared run's header.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunColumn {
    pub id: String,
    pub name: String,
}

/// How runs differ: only what is not the same in all of them.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunComparison {
    pub runs: Vec<RunColumn>,
    pub attributes: Vec<DiffRow>,
    pub params: Vec<DiffRow>,
    /// Each value is the run's latest `{value, step, lower, upper, steps}`.
    pub metrics: Vec<DiffRow>,
    pub tags: Vec<DiffRow>,
    /// Parameters, metrics and tags equal in every run (not listed).
    pub identical: usize,
}

fn rows<T: Serialize>(r: Vec<keel_app::runs::DiffRow<T>>) -> Vec<DiffRow> {
    r.into_iter()
        .map(|d| DiffRow {
            key: d.key,
            values: d
                .values
                .into_iter()
                .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
                .collect(),
        })
        .collect()
}

/// Compares runs side by side, showing only what differs.
#[utoipa::path(get, path = "/v1/runs/compare", operation_id = "compare_runs", tag = "runs", security(("bearer" = [])), params(CompareQuery),
    responses((status = 200, body = RunComparison), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn compare(
    _: AsReader,
    State(st): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<RunComparison>, ApiError> {
    let q: CompareQuery = query(&uri)?;
    let ids: Vec<String> = q
        .ids
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let c = keel_app::runs::compare(st.cache.store(), &ids).await?;
    Ok(Json(RunComparison {
        runs: c
            .runs
            .into_iter()
            .map(|r| RunColumn {
                id: r.id,
                name: r.name,
            })
            .collect(),
        attributes: rows(c.attributes),
        params: rows(c.params),
        metrics: rows(c.metrics),
        tags: rows(c.tags),
        identical: c.identical,
    }))
}

/// What a version change did.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionChange {
    pub model: String,
    pub version: i64,
    /// `deleted`, `archived`, `restored` or `unchanged`.
    pub outcome: String,
    /// Deletion: whether the artifact went too (it stays while another version refers to it).
    pub artifact_removed: Option<bool>,
}

impl From<keel_app::registry::VersionChange> for VersionChange {
    fn from(c: keel_app::registry::VersionChange) -> Self {
        VersionChange {
            model: c.model,
            version: c.version,
            outcome: c.outcome,
            artifact_removed: c.artifact_removed,
        }
    }
}

/// Deletes a version no alias or live rollout points at (admin; audited). Its number is never reused.
#[utoipa::path(delete, path = "/v1/models/{name}/versions/{version}", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "A version number")),
    responses((status = 200, body = VersionChange), (status = 404, body = ErrorBody),
              (status = 409, description = "An alias or a rollout points at the version", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_version(
    Authorized(caller): AsAdmin,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionChange>, ApiError> {
    let c = keel_app::registry::delete_version(
        st.cache.store(),
        &reference(&name, &version)?,
        &caller.actor(),
    )
    .await?;
    Ok(Json(c.into()))
}

/// Archive or restore.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// Restore an archived version instead (default false).
    #[serde(default)]
    pub restore: bool,
}

/// Archives a version (no alias may point at it; still readable), or restores it.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/archive", operation_id = "archive_version", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "A version number")),
    request_body(content = Option<ArchiveRequest>, description = "Optional; no body archives"),
    responses((status = 200, body = VersionChange), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn archive(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<VersionChange>, ApiError> {
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let req: ArchiveRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        ArchiveRequest::default()
    } else {
        json(&bytes, "{\"restore\": false}")?
    };
    let c = keel_app::registry::archive_version(
        st.cache.store(),
        &reference(&name, &version)?,
        !req.restore,
        &caller.actor(),
    )
    .await?;
    Ok(Json(c.into()))
}

/// A version's description and tags (an empty tag value removes the tag).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateRequest {
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Sets a version's description and tags (audited).
#[utoipa::path(patch, path = "/v1/models/{name}/versions/{version}", operation_id = "annotate_version", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "A version number")),
    request_body = AnnotateRequest,
    responses((status = 200, body = ModelSummary), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn annotate(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ModelSummary>, ApiError> {
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let req: AnnotateRequest = json(
        &bytes,
        "{\"description\": \"…\", \"tags\": {\"team\": \"risk\"}}",
    )?;
    let v = keel_app::registry::annotate_version(
        st.cache.store(),
        &reference(&name, &version)?,
        &keel_app::registry::Annotation {
            description: req.description,
            tags: req.tags,
        },
        &caller.actor(),
    )
    .await?;
    Ok(Json(summary(v)))
}
