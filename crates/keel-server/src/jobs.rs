//! Jobs over HTTP: long writes (train, retrain, import, ingest) answer `202 Accepted` with a job resource that
//! the server's worker runs; `GET /v1/jobs`, `GET /v1/jobs/{id}` and `POST /v1/jobs/{id}/cancel` follow it.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_app::jobs::JobSpec;
use keel_store::JobRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AsDeployer, AsReader, Authorized};
use crate::body::{UploadedFile, invalid_body, job_request, json, page_limit, query};
use crate::error::{ApiError, ErrorBody};

/// A job: what was asked, where it stands, and what it produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    /// `train`, `retrain`, `ingest` or `import`.
    #[schema(pattern = "^(train|retrain|ingest|import)$")]
    pub kind: String,
    /// The model (train, retrain) or the collection (ingest).
    pub model: String,
    /// The request as queued.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    pub state: String,
    /// 0–1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: f64,
    /// What it is doing now (`reading`, `training`, `embedding`, …).
    pub stage: String,
    /// The outcome in words, or why it failed.
    pub message: String,
    /// What it produced (the registered version, the gate report, the ingest report); null until it succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Value,
    pub cancel_requested: bool,
    /// The worker that claimed it (`host:pid`).
    pub worker: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<JobRecord> for Job {
    fn from(j: JobRecord) -> Self {
        Job {
            id: j.id,
            kind: j.kind,
            model: j.model,
            spec: j.spec,
            state: j.state.as_str().to_string(),
            progress: j.progress.clamp(0.0, 1.0),
            stage: j.stage,
            message: j.message,
            result: j.result,
            cancel_requested: j.cancel_requested,
            worker: j.worker,
            created_by: j.created_by,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// Jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// `202 Accepted` with the job and `Location: /v1/jobs/{id}`.
pub(crate) fn accepted(j: JobRecord) -> Response {
    let location = format!("/v1/jobs/{}", j.id);
    let mut r = (StatusCode::ACCEPTED, Json(Job::from(j))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Queues a job on this server's store and wakes its worker.
pub(crate) async fn queue(
    st: &AppState,
    model: &str,
    spec: &JobSpec,
    actor: &str,
) -> Result<JobRecord, ApiError> {
    let j = keel_app::jobs::enqueue(st.cache.store(), model, spec, actor, false).await?;
    st.jobs.wake();
    Ok(j)
}

/// A model or alias name as the registry accepts it.
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z_-][A-Za-z0-9_.-]{0,99}$")]
pub struct AliasName(#[allow(dead_code)] String);

/// A training request (the same fields as `keel train`'s flags; `gbdt` tree settings and a declared `schema`
/// are accepted too, as in `keel.toml`). `data` and `test` are paths the server can read (404 when they are
/// not there); upload the files instead with `multipart/form-data` (`data`, optional `test`, and `spec`
/// holding the other fields as JSON). The job reads and checks the data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TrainRequest {
    /// Training data (CSV or Parquet) on the server.
    #[schema(min_length = 1)]
    pub data: String,
    /// The registered model's name.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")]
    pub name: String,
    /// The column to predict (not blank).
    #[schema(pattern = "\\S")]
    pub target: String,
    /// `binary`, `multiclass` or `regression` (default: inferred from the target; the regression loss is
    /// `gbdt.loss`).
    #[schema(nullable = false, pattern = "^(binary|multiclass|regression)$")]
    pub objective: Option<String>,
    /// Split by time: train on the earliest rows of this timestamp column, evaluate on the latest `test_size`.
    #[schema(nullable = false, min_length = 1)]
    pub time_split: Option<String>,
    /// Timestamp columns to take features from (`COLUMN.year`, `.month`, `.day`, `.day_of_week`, `.hour`,
    /// `.elapsed_days`); requests to the model then send the timestamp itself.
    #[schema(nullable = false)]
    pub time_features: Option<Vec<TimeFeaturesDoc>>,
    /// Regression: coverage of the served prediction intervals (default 0.9).
    #[schema(nullable = false, exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub interval_level: Option<f64>,
    /// Register a version (default true); false records the run only.
    #[schema(nullable = false)]
    pub register: Option<bool>,
    /// Share of rows held out (default 0.2).
    #[schema(nullable = false, exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub test_size: Option<f64>,
    #[schema(nullable = false)]
    pub seed: Option<u64>,
    /// Columns never used as features.
    #[schema(nullable = false)]
    pub drop: Option<Vec<String>>,
    /// Columns whose groups get fairness metrics.
    #[schema(nullable = false)]
    pub sensitive: Option<Vec<String>>,
    /// Columns whose groups get their own metrics.
    #[schema(nullable = false)]
    pub slices: Option<Vec<String>>,
    /// Classification threshold for the threshold metrics (default 0.5).
    #[schema(nullable = false, minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    /// `auto` (default), `gbdt` or `linear`.
    #[schema(nullable = false, pattern = "^(auto|gbdt|linear)$")]
    pub model_requested: Option<String>,
    /// A separate labelled test file on the server.
    #[schema(nullable = false, min_length = 1)]
    pub test: Option<String>,
    /// Aliases to point at the new version.
    #[schema(nullable = false, value_type = Option<Vec<AliasName>>)]
    pub aliases: Option<Vec<String>>,
    /// Make the new version the champion when the model has none yet.
    #[schema(nullable = false)]
    pub champion_if_none: Option<bool>,
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// Return the latest version when it was trained on the same data and settings by the same code.
    #[schema(nullable = false)]
    pub reuse_identical: Option<bool>,
}

/// The features of one timestamp column.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TimeFeaturesDoc {
    #[schema(min_length = 1)]
    pub column: String,
    /// Which parts (default: all); a part with one value in the training data is left out.
    #[schema(nullable = false, value_type = Option<Vec<TimePartName>>)]
    pub parts: Option<Vec<String>>,
}

/// A part of a timestamp.
#[derive(ToSchema)]
#[schema(pattern = "^(year|month|day|day_of_week|hour|elapsed_days)$")]
pub struct TimePartName(#[allow(dead_code)] String);

const TRAIN_EXPECTED: &str = "a training request ({\"data\", \"name\", \"target\", ...})";

/// Trains and registers a new version, as a job.
#[utoipa::path(post, path = "/v1/jobs/train", tag = "jobs", security(("bearer" = [])),
    request_body(content = TrainRequest, description = "JSON with paths on the server, or multipart/form-data with files `data` (and `test`) and a `spec` field holding the other fields as JSON"),
    responses((status = 202, description = "Queued; follow it at the Location", body = Job),
              (status = 403, body = ErrorBody), (status = 404, description = "A data or test file is not there", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn train(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    const FILES: &[UploadedFile] = &[
        UploadedFile {
            field: "data",
            at: &["data"],
            required: true,
        },
        UploadedFile {
            field: "test",
            at: &["test"],
            required: false,
        },
    ];
    let spec: keel_app::train::TrainSpec = job_request(
        st.cache.store().home(),
        &headers,
        body,
        st.config.body_limit_bytes,
        TRAIN_EXPECTED,
        FILES,
        |v| json(&serde_json::to_vec(&v).unwrap_or_default(), TRAIN_EXPECTED),
    )
    .await?;
    let name = spec.name.clone();
    let j = queue(&st, &name, &JobSpec::Train(Box::new(spec)), &caller.actor()).await?;
    Ok(accepted(j))
}

/// A retraining: a challenger trained with the champion's settings on new data, gated on fresh labelled
/// rows, and rolled out when it passes (`gate` options are accepted too, as in `keel retrain`). Paths are on
/// the server (404 when they are not there); upload the files instead with `multipart/form-data` (`data`,
/// `holdout`, and `spec` holding the other fields as JSON).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RetrainRequest {
    /// Training data (CSV or Parquet) on the server, with the target column.
    #[schema(min_length = 1)]
    pub data: String,
    /// Fresh labelled rows neither model trained on.
    #[schema(min_length = 1)]
    pub holdout: String,
    /// Share of champion traffic for a passing challenger's canary (0–1].
    #[schema(nullable = false, exclusive_minimum = 0.0, maximum = 1.0)]
    pub canary: Option<f64>,
    /// Mirror traffic to a passing challenger.
    #[schema(nullable = false)]
    pub shadow: Option<bool>,
    /// Override the champion's number of trees.
    #[schema(nullable = false, minimum = 1, maximum = 100000)]
    pub trees: Option<u64>,
}

/// Retrains a model against its champion, as a job.
#[utoipa::path(post, path = "/v1/models/{name}/retrain", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "The model (its champion is the baseline)")),
    request_body(content = RetrainRequest, description = "JSON with paths on the server, or multipart/form-data with files `data` and `holdout` and a `spec` field holding the other fields as JSON"),
    responses((status = 202, description = "Queued; follow it at the Location", body = Job),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retrain(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    const EXPECTED: &str = "a retraining request ({\"data\", \"holdout\", ...})";
    const FILES: &[UploadedFile] = &[
        UploadedFile {
            field: "data",
            at: &["data"],
            required: true,
        },
        UploadedFile {
            field: "holdout",
            at: &["holdout"],
            required: true,
        },
    ];
    // The model first: an unknown one is refused before an upload is staged.
    keel_store::Selector::parse(&name)?;
    st.cache
        .store()
        .get(&name, &keel_store::Selector::Latest)
        .await?;
    let spec: keel_app::retrain::RetrainSpec = job_request(
        st.cache.store().home(),
        &headers,
        body,
        st.config.body_limit_bytes,
        EXPECTED,
        FILES,
        |v| json(&serde_json::to_vec(&v).unwrap_or_default(), EXPECTED),
    )
    .await?;
    let j = queue(&st, &name, &JobSpec::Retrain(spec), &caller.actor()).await?;
    Ok(accepted(j))
}

/// An import: a model file trained elsewhere registered as a version of `name`. JSON names files on the
/// server; multipart uploads them (file fields `model`, and optionally `reference` and `holdout`, plus a
/// `spec` field with the other fields as JSON).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ImportRequest {
    /// The model file on the server (multipart: the `model` file field instead).
    #[schema(min_length = 1)]
    pub file: String,
    /// `lightgbm`, `xgboost-json`, `xgboost-ubj` or `onnx`; recognised from the file when absent.
    #[schema(
        nullable = false,
        pattern = "^(lightgbm|xgboost-json|xgboost-ubj|onnx)$"
    )]
    pub format: Option<String>,
    /// The model's feature names in input order, for ONNX files (which store none); by default the reference
    /// data's columns other than the target, in file order.
    #[schema(nullable = false)]
    pub feature_names: Option<Vec<String>>,
    /// Labelled rows the model did not train on (evaluation, SHAP, fairness, monitoring reference).
    #[schema(nullable = false, min_length = 1)]
    pub reference: Option<String>,
    /// The label column of the reference data.
    #[schema(nullable = false, min_length = 1)]
    pub target: Option<String>,
    #[schema(nullable = false)]
    pub sensitive: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub slices: Option<Vec<String>>,
    /// Probability at or above which a row is the positive class (default 0.5).
    #[schema(nullable = false, exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub threshold: Option<f64>,
    /// Aliases to point at the new version.
    #[schema(nullable = false, value_type = Option<Vec<AliasName>>)]
    pub aliases: Option<Vec<String>>,
    /// Make the new version the champion when the model has none yet.
    #[schema(nullable = false)]
    pub champion_if_none: Option<bool>,
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// Gate the version against the champion on a holdout (and roll it out when it passes).
    #[schema(nullable = false)]
    pub gate: Option<ImportGate>,
}

/// The gate of an import, as a retraining's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ImportGate {
    /// Labelled rows on the server (multipart: the `holdout` file field instead).
    #[schema(min_length = 1)]
    pub holdout: String,
    /// Share of champion traffic for a passing version's canary (0–1].
    #[schema(nullable = false, exclusive_minimum = 0.0, maximum = 1.0)]
    pub canary: Option<f64>,
    #[schema(nullable = false)]
    pub shadow: Option<bool>,
}

const IMPORT_EXPECTED: &str = "an import request ({\"file\", \"reference\", \"target\", ...})";

/// Imports a model trained elsewhere and registers it as a version, as a job.
#[utoipa::path(post, path = "/v1/models/{name}/import", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "The model to register the version under")),
    request_body(content = ImportRequest, description = "JSON with paths on the server, or multipart/form-data with files `model` (and `reference`, `holdout`) and a `spec` field holding the other fields as JSON"),
    responses((status = 202, description = "Queued; follow it at the Location", body = Job),
              (status = 403, body = ErrorBody), (status = 404, description = "A file is not there", body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    keel_store::Selector::parse(&name)?;
    const FILES: &[UploadedFile] = &[
        UploadedFile {
            field: "model",
            at: &["file"],
            required: true,
        },
        UploadedFile {
            field: "reference",
            at: &["reference"],
            required: false,
        },
        UploadedFile {
            field: "holdout",
            at: &["gate", "holdout"],
            required: false,
        },
    ];
    let spec: keel_app::import::ImportSpec = job_request(
        st.cache.store().home(),
        &headers,
        body,
        st.config.body_limit_bytes,
        IMPORT_EXPECTED,
        FILES,
        |mut v| {
            // The path names the model; a body may not name another.
            let Some(o) = v.as_object_mut() else {
                return Err(invalid_body("expected a JSON object"));
            };
            if o.contains_key("name") {
                return Err(invalid_body(
                    "name: the model is named by the path (/v1/models/{name}/import), not the body",
                ));
            }
            o.insert("name".into(), name.clone().into());
            json(&serde_json::to_vec(&v).unwrap_or_default(), IMPORT_EXPECTED)
        },
    )
    .await?;
    let j = queue(
        &st,
        &name,
        &JobSpec::Import(Box::new(spec)),
        &caller.actor(),
    )
    .await?;
    Ok(accepted(j))
}

/// Which jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only this model's (or collection's) jobs.
    pub model: Option<String>,
    /// Only jobs in this state.
    #[param(pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    pub state: Option<String>,
    /// Only jobs of this kind.
    #[param(pattern = "^(train|retrain|ingest)$")]
    pub kind: Option<String>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs", security(("bearer" = [])), params(JobQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    _: AsReader,
    State(st): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<JobList>, ApiError> {
    let q: JobQuery = query(&uri)?;
    let one_of = |what: &str, v: &Option<String>, allowed: &[&str]| match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{what} '{x}' must be one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    };
    one_of(
        "state",
        &q.state,
        &["queued", "running", "succeeded", "failed", "cancelled"],
    )?;
    one_of("kind", &q.kind, &["train", "retrain", "ingest"])?;
    let limit = page_limit(q.limit, 100)?;
    let jobs = st.cache.store().jobs(10_000).await?;
    Ok(Json(JobList {
        jobs: jobs
            .into_iter()
            .filter(|j| q.model.as_ref().is_none_or(|m| j.model == *m))
            .filter(|j| q.state.as_ref().is_none_or(|s| j.state.as_str() == s))
            .filter(|j| q.kind.as_ref().is_none_or(|k| j.kind == *k))
            .take(limit)
            .map(Job::from)
            .collect(),
    }))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs", security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, maximum = 1000000000000000_i64, description = "Job id")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    _: AsReader,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    Ok(Json(
        st.cache.store().job(id).await.map_err(job_error)?.into(),
    ))
}

/// Asks a job to stop: a queued job is cancelled at once, a running one at its next progress report.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, maximum = 1000000000000000_i64, description = "Job id")),
    responses((status = 200, description = "The job after the request (cancelled, or running with cancel_requested)", body = Job),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "The job already finished", body = ErrorBody)))]
pub async fn cancel(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    let store = st.cache.store();
    let j = store.job(id).await.map_err(job_error)?;
    if j.state.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!("job {id} already {}", j.state.as_str()),
        ));
    }
    let j = store
        .cancel_job(id, &caller.actor())
        .await
        .map_err(|e| match e {
            // It finished between the read and the cancel.
            keel_store::Error::Invalid { .. } => {
                ApiError::new(StatusCode::CONFLICT, "job_finished", e.to_string())
            }
            e => e.into(),
        })?;
    Ok(Json(j.into()))
}

fn job_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|n| (1..=1_000_000_000_000_000).contains(n))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_job_id",
                format!("'{s}' is not a job id (a positive integer)"),
            )
        })
}

fn job_error(e: keel_store::Error) -> ApiError {
    match e {
        keel_store::Error::Invalid { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_job", e.to_string())
        }
        e => e.into(),
    }
}
