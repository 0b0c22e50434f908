//! Routes. Each handler destructures the request, calls the engine, and maps the result back.

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router, middleware};
use keel_core::Role;
use keel_engine::loaded::Prediction;
use keel_engine::request::BodyError;
use keel_engine::{FieldError, LoadedModel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower::ServiceBuilder;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AsAdmin, AsDeployer, AsPredictor, AsReader};
pub(crate) use crate::body::{integer_of, json_type, read_body};
use crate::error::{ApiError, Detail, ErrorBody};
use crate::metrics::METRICS;
use crate::middleware::{RequestId, request_context};

/// The whole API.
pub fn router(st: AppState) -> Router {
    // Every route's role is checked by its handler's first argument (`auth::As*`). All layers go on in one
    // `layer` call, so a request passes one boxed service instead of one per layer. Outermost first: request ids,
    // spans and metrics; no axum body limit (handlers enforce `body_limit_bytes`); panics become 500; excess
    // load is shed with 503 at the concurrency limit; the timeout.
    let layers = ServiceBuilder::new()
        .layer(middleware::from_fn(request_context))
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(HandleErrorLayer::new(overloaded))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            st.config.concurrency_limit,
        ));
    // The time limit differs: predictions and operations get `timeout_ms`; answers that generate text get
    // `llm.timeout_ms` (a streamed answer is bounded only until its first byte).
    let time_limit = |ms: u64| {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(ms)))
    };
    let generative = Router::new()
        .route("/v1/rag/{collection}/query", post(crate::rag::rag_query))
        .route("/v1/embeddings", post(crate::rag::embeddings))
        .route("/v1/chat/completions", post(crate::rag::chat_completions))
        .layer(time_limit(st.config.llm.timeout_ms));
    // Uploads stream files to disk; they get at least five minutes.
    let uploads = Router::new()
        .route("/v1/jobs/train", post(crate::jobs::train))
        .route(
            "/v1/runs/{id}/artifacts/{*path}",
            axum::routing::put(crate::runs::put_artifact).get(crate::runs::get_artifact),
        )
        .route(
            "/v1/rag/collections/{collection}/documents",
            post(crate::collections::ingest),
        )
        .layer(time_limit(st.config.timeout_ms.max(300_000)));
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(show_model))
        .route("/metrics", get(metrics))
        .route("/v1/models/{name}/predict", post(predict))
        .route("/v1/models/{name}/monitor", get(monitor))
        .route("/v1/models/{name}/feedback", post(feedback))
        .route("/v1/models/{name}/aliases/{alias}", put(set_alias))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/v1/guard/scan", post(crate::guard::scan))
        .route("/v1/models/{name}/retrain", post(crate::jobs::retrain))
        .route("/v1/models/{name}/import", post(crate::jobs::import))
        .route("/v1/jobs", get(crate::jobs::list))
        .route("/v1/jobs/{id}", get(crate::jobs::get))
        .route("/v1/jobs/{id}/cancel", post(crate::jobs::cancel))
        .route("/v1/models/{name}/versions", get(crate::versions::list))
        .route(
            "/v1/models/{name}/versions/{version}",
            get(crate::versions::show)
                .patch(crate::runs::annotate)
                .delete(crate::runs::delete_version),
        )
        .route(
            "/v1/models/{name}/versions/{version}/archive",
            post(crate::runs::archive),
        )
        .route("/v1/runs", post(crate::runs::create).get(crate::runs::list))
        .route("/v1/runs/compare", get(crate::runs::compare))
        .route("/v1/experiments", get(crate::runs::experiments))
        .route("/v1/runs/{id}", get(crate::runs::get))
        .route("/v1/runs/{id}/log-batch", post(crate::runs::log_batch))
        .route("/v1/runs/{id}/end", post(crate::runs::end))
        .route(
            "/v1/runs/{id}/metrics/{key}",
            get(crate::runs::metric_history),
        )
        .route(
            "/v1/models/{name}/versions/{version}/card",
            get(crate::versions::card),
        )
        .route(
            "/v1/models/{name}/versions/{version}/lineage",
            get(crate::versions::lineage),
        )
        .route("/v1/models/{name}/aliases", get(crate::versions::aliases))
        .route(
            "/v1/models/{name}/rollback",
            post(crate::versions::rollback),
        )
        .route(
            "/v1/models/{name}/rollout",
            post(crate::rollouts::deploy).get(crate::rollouts::status),
        )
        .route(
            "/v1/models/{name}/rollout/promote",
            post(crate::rollouts::promote),
        )
        .route(
            "/v1/models/{name}/rollout/stop",
            post(crate::rollouts::stop),
        )
        .route("/v1/models/{name}/drift", get(crate::rollouts::drift))
        .route("/v1/audit", get(crate::audit::list))
        .route("/v1/audit/verify", get(crate::audit::verify))
        .route("/v1/rag/collections", get(crate::collections::list))
        .route(
            "/v1/rag/collections/{collection}/chunks",
            get(crate::collections::chunks),
        )
        .route(
            "/v1/rag/collections/{collection}/documents/{*document}",
            axum::routing::delete(crate::collections::delete),
        )
        .layer(time_limit(st.config.timeout_ms))
        .merge(uploads)
        .merge(generative)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(st)
        .layer(layers)
}

async fn overloaded(err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is at its concurrency limit; retry shortly",
        )
        .retry_after(1)
        .into_response()
    } else if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took longer than the server's time limit",
        )
        .retry_after(1)
        .into_response()
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unhandled middleware error: {err}"),
        )
        .into_response()
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request handler panicked; the error was logged",
    )
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Liveness: 200 while the process serves and its job worker (when it runs one) is alive; 503 when the
/// worker has stopped, so an orchestrator restarts the process instead of leaving queued jobs unrun.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses(
    (status = 200, description = "The process is alive", body = crate::schemas::Health),
    (status = 503, description = "The job worker has stopped", body = crate::schemas::Health)))]
pub async fn healthz(State(st): State<AppState>) -> Response {
    let worker = st.worker.get();
    let status = match worker {
        crate::WorkerState::Stopped { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "worker_stopped" },
        "version": env!("CARGO_PKG_VERSION"),
        "worker": worker,
    });
    (status, Json(body)).into_response()
}

/// Readiness: 200 once the champion models are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Models are loaded", body = crate::schemas::Ready),
    (status = 503, description = "Still loading", body = ErrorBody)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        let loaded: Vec<Value> = st
            .cache
            .loaded()
            .into_iter()
            .map(|(r, v)| serde_json::json!({"reference": r, "version": v}))
            .collect();
        Json(serde_json::json!({"status": "ready", "models": loaded, "worker": st.worker.get()}))
            .into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "models are still loading",
        )
        .retry_after(1)
        .into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(_: AsReader, State(st): State<AppState>) -> Response {
    let body = crate::metrics::render(&st.cache.loaded());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::spec_json(),
    )
        .into_response()
}

/// A prediction request: one record (an object of feature values) or `{"records": [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictRequest {
    Batch {
        /// Records, each an object of feature values.
        #[schema(value_type = Vec<Object>)]
        records: Vec<Value>,
    },
    /// One record: feature name → value.
    #[schema(value_type = Object)]
    Single(Value),
}

/// One prediction.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictionBody {
    /// Class label (classification: a string or number, as the labels were) or value (regression).
    #[schema(value_type = Value)]
    pub prediction: Value,
    /// Probability of the positive class (binary) or of the predicted class (multiclass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Multiclass: every class's probability, by label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<std::collections::BTreeMap<String, f64>>,
    /// Regression: the prediction interval [lower, upper] at the version's level (split conformal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// Top SHAP contributions (with `?explain=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub explanation: Option<Value>,
}

/// A prediction response. Single-record requests get `prediction`/`probability` at the top level; batch
/// requests get `predictions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    pub request_id: String,
    pub model: String,
    pub version: i64,
    /// One record's class label or value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub prediction: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Multiclass: every class's probability, by label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<std::collections::BTreeMap<String, f64>>,
    /// Regression: the prediction interval [lower, upper] at the version's level (split conformal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub explanation: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Vec<PredictionBody>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// Add the top SHAP contributions of each row.
    pub explain: Option<bool>,
    /// How many contributions to return with `explain` (default 5).
    #[param(minimum = 1, maximum = 1000)]
    pub top_k: Option<usize>,
    /// Multiclass: explain this class's probability (a class label) instead of the predicted class's.
    pub explain_class: Option<String>,
}

fn parse_query(raw: Option<&str>) -> Result<PredictQuery, ApiError> {
    let mut q = PredictQuery {
        explain: None,
        top_k: None,
        explain_class: None,
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        let bad = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("query parameter '{k}' {what}"),
            )
            .with_details(vec![Detail {
                path: format!("?{k}"),
                problem: "invalid".into(),
                message: None,
            }])
        };
        match k {
            "explain" => q.explain = Some(v.parse().map_err(|_| bad("must be true or false"))?),
            "top_k" => {
                q.top_k = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("must be 1–1000"))?,
                )
            }
            "explain_class" => {
                q.explain_class = Some(
                    percent_encoding::percent_decode_str(&v.replace('+', " "))
                        .decode_utf8()
                        .map_err(|_| bad("is not valid UTF-8"))?
                        .into_owned(),
                )
            }
            _ => return Err(bad("is not known (use explain, top_k, explain_class)")),
        }
    }
    Ok(q)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Csv,
    Arrow,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "text/csv" => Ok(BodyKind::Csv),
        "application/vnd.apache.arrow.stream" => Ok(BodyKind::Arrow),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type '{ct}' is not accepted; send application/json, text/csv or application/vnd.apache.arrow.stream"
            ),
        )),
    }
}

fn schema_error(errors: Vec<FieldError>) -> ApiError {
    let n = errors.len();
    let first = errors
        .first()
        .map(|e| format!("{}: {}", e.path, e.message))
        .unwrap_or_default();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema_mismatch",
        format!("{n} value(s) do not match the model's training schema; first: {first}"),
    )
    .with_details(
        errors
            .into_iter()
            .take(100)
            .map(|e| Detail {
                path: e.path,
                problem: e.problem.to_string(),
                message: Some(e.message),
            })
            .collect(),
    )
}

/// Predict with a model: `NAME`, `NAME@ALIAS` or `NAME@VERSION`.
#[utoipa::path(post, path = "/v1/models/{name}/predict", tag = "predictions", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model reference: NAME@VERSION, NAME@ALIAS, or a bare NAME, which means NAME@champion (never merely the newest version: a challenger is served only by its version or alias)"), PredictQuery),
    request_body(content = PredictRequest, description = "One record, {\"records\": [...]}, or a CSV / Arrow IPC stream body"),
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Malformed body or query", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The key's role does not allow predictions", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Values do not match the training schema", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Overloaded or timed out", body = ErrorBody)))]
pub async fn predict(
    _: AsPredictor,
    State(st): State<AppState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let rid = parts
        .extensions
        .remove::<RequestId>()
        .unwrap_or_else(|| RequestId(String::new()));
    let q = parse_query(parts.uri.query())?;
    let kind = body_kind(&parts.headers)?;
    let bytes = read_body(body, &parts.headers, st.config.body_limit_bytes).await?;
    let (model, shadow) = st.cache.route(&name, &rid.0).await?;
    let explain = q.explain.unwrap_or(false).then_some(q.top_k.unwrap_or(5));
    // A named class to explain (multiclass): checked against the model's classes before any work.
    let explain_class = match &q.explain_class {
        None => None,
        Some(label) => {
            let known = model.labels();
            let class = (model.model.objective == keel_ml::Objective::Multiclass)
                .then(|| model.class_of_label(label))
                .flatten();
            match class {
                Some(c) => Some(c),
                None => {
                    let what = if model.model.objective == keel_ml::Objective::Multiclass {
                        format!(
                            "'{label}' is not a class of {}@{} (classes: {})",
                            model.name,
                            model.version,
                            known
                                .iter()
                                .map(|v| v.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        format!(
                            "explain_class applies to multiclass models; {}@{} is not one",
                            model.name, model.version
                        )
                    };
                    return Err(
                        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", what).with_details(
                            vec![Detail {
                                path: "?explain_class".into(),
                                problem: "invalid".into(),
                                message: None,
                            }],
                        ),
                    );
                }
            }
        }
    };
    let (explain, explain_class) = match explain_class {
        Some(c) => (None, Some((c, q.top_k.unwrap_or(5)))),
        None => (explain, None),
    };
    let nf = model.schema.n_features();
    let (rows, single) = decode(&st, &model, kind, &bytes).await?;
    let n = rows.len() / nf.max(1);
    let (predictions, rows): (Vec<Prediction>, Vec<f64>) = if n <= st.config.inline_batch_rows {
        let p: Vec<Prediction> = rows
            .chunks_exact(nf)
            .map(|r| model.predict_row(r, explain))
            .collect();
        let p = explain_named(&model, &rows, p, explain_class);
        model.observe(&rows, &p);
        (p, rows)
    } else {
        let m = model.clone();
        tokio::task::spawn_blocking(move || {
            let p: Vec<Prediction> = rows
                .chunks_exact(nf)
                .map(|r| m.predict_row(r, explain))
                .collect();
            let p = explain_named(&m, &rows, p, explain_class);
            m.observe(&rows, &p);
            (p, rows)
        })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "prediction task failed",
            )
        })?
    };
    count_classes(&model, &predictions);
    // A shadow scores the same rows (parsed against its own schema) without answering; its outputs are
    // logged next to the served ones for the online comparison.
    let shadow_out = match &shadow {
        Some(sh) => match decode(&st, sh, kind, &bytes).await {
            Ok((srows, _)) => {
                let score = move |sh: &LoadedModel, srows: &[f64]| {
                    let snf = sh.schema.n_features();
                    let sp: Vec<Prediction> = srows
                        .chunks_exact(snf.max(1))
                        .map(|r| sh.predict_row(r, None))
                        .collect();
                    sh.observe(srows, &sp);
                    sp
                };
                let sp = if n <= st.config.inline_batch_rows {
                    score(sh, &srows)
                } else {
                    // A shadow's batch is CPU work like the served one: off the reactor.
                    let m = sh.clone();
                    tokio::task::spawn_blocking(move || score(&m, &srows))
                        .await
                        .unwrap_or_default()
                };
                Some((sh.version, sp))
            }
            Err(e) => {
                tracing::debug!(model = %sh.name, version = sh.version, error = %e.message, "shadow could not score the request");
                None
            }
        },
        None => None,
    };
    if st.logs(&rid.0) {
        log_rows(
            &st,
            &model,
            &rid.0,
            &rows,
            &predictions,
            shadow_out.as_ref(),
        );
    }
    let mut resp = PredictResponse {
        request_id: rid.0,
        model: model.name.clone(),
        version: model.version,
        prediction: None,
        probability: None,
        probabilities: None,
        interval: None,
        explanation: None,
        predictions: None,
    };
    let expl = |p: &Prediction| {
        p.explanation
            .as_ref()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
    };
    if single {
        let p = &predictions[0];
        resp.prediction = Some(p.prediction.clone());
        resp.probability = p.probability;
        resp.probabilities = p.probabilities.clone();
        resp.interval = p.interval;
        resp.explanation = expl(p);
    } else {
        resp.predictions = Some(
            predictions
                .iter()
                .map(|p| PredictionBody {
                    prediction: p.prediction.clone(),
                    probability: p.probability,
                    probabilities: p.probabilities.clone(),
                    interval: p.interval,
                    explanation: expl(p),
                })
                .collect(),
        );
    }
    Ok(Json(resp).into_response())
}

/// With `?explain_class=LABEL`: each row's explanation of that class (`(class, top k)`).
fn explain_named(
    model: &LoadedModel,
    rows: &[f64],
    mut predictions: Vec<Prediction>,
    class: Option<(usize, usize)>,
) -> Vec<Prediction> {
    if let Some((c, k)) = class {
        let nf = model.schema.n_features().max(1);
        for (p, r) in predictions.iter_mut().zip(rows.chunks_exact(nf)) {
            p.explanation = model.explain_class(r, k, c);
        }
    }
    predictions
}

/// JSON bodies up to this size are parsed on the reactor (microseconds); larger ones and every CSV or Arrow
/// body go to the blocking pool.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

/// [`parse_rows`], on the reactor for small JSON bodies (microseconds) and on the blocking pool for every
/// CSV or Arrow body and for large JSON ones.
async fn decode(
    st: &AppState,
    model: &std::sync::Arc<LoadedModel>,
    kind: BodyKind,
    bytes: &Bytes,
) -> Result<(Vec<f64>, bool), ApiError> {
    if kind == BodyKind::Json && bytes.len() <= INLINE_PARSE_BYTES {
        return parse_rows(st, model, kind, bytes);
    }
    let (st, m, b) = (st.clone(), model.clone(), bytes.clone());
    tokio::task::spawn_blocking(move || parse_rows(&st, &m, kind, &b))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "request decoding failed",
            )
        })?
}

/// Parses and encodes a prediction body against one version's schema: (encoded rows, single record?).
fn parse_rows(
    st: &AppState,
    model: &LoadedModel,
    kind: BodyKind,
    bytes: &[u8],
) -> Result<(Vec<f64>, bool), ApiError> {
    Ok(match kind {
        BodyKind::Json => {
            let body = model
                .schema
                .parse_json_body(bytes, st.config.max_records)
                .map_err(|e| match e {
                    BodyError::Malformed(m) => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        format!("the body is not valid JSON: {m}"),
                    ),
                    BodyError::Schema(errors) => schema_error(errors),
                    BodyError::TooManyRecords { limit } => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_many_records",
                        format!(
                            "more than {limit} records in one request; the limit is {limit} (use keel predict for files)"
                        ),
                    ),
                })?;
            (body.rows, body.single)
        }
        BodyKind::Csv | BodyKind::Arrow => {
            // The columns first: a body naming columns the model does not have is refused before anything
            // proportional to its column count is allocated (a 100,000-column header once reserved 52 GB).
            let names = match kind {
                BodyKind::Csv => keel_data::read::csv_body_names(bytes)?,
                _ => keel_data::read::ipc_body_names(bytes)?,
            };
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let problems = model.schema.check_columns(&refs, false);
            if !problems.is_empty() {
                return Err(schema_error(problems));
            }
            let table = match kind {
                // No more rows per batch than a request may hold (+1 to notice one too many).
                BodyKind::Csv => keel_data::read::read_csv_body(bytes, st.config.max_records + 1)?,
                _ => keel_data::read::read_ipc_bytes(bytes)?,
            };
            if table.nrows > st.config.max_records {
                return Err(too_many(table.nrows, st.config.max_records));
            }
            (model.encode_table(&table).map_err(schema_error)?, false)
        }
    })
}

/// Queues a request's rows for the prediction log, with the configured features redacted.
fn log_rows(
    st: &AppState,
    model: &LoadedModel,
    rid: &str,
    rows: &[f64],
    predictions: &[Prediction],
    shadow: Option<&(i64, Vec<Prediction>)>,
) {
    let nf = model.schema.n_features().max(1);
    let redact: Vec<usize> = st
        .config
        .redact
        .iter()
        .flat_map(|r| model.schema.features_named(r))
        .collect();
    let at_ms = keel_core::time::now_unix_ms();
    let logged = rows
        .chunks_exact(nf)
        .zip(predictions)
        .enumerate()
        .map(|(i, (r, p))| {
            let mut features = r.to_vec();
            for &j in &redact {
                features[j] = f64::NAN;
            }
            keel_store::LoggedPrediction {
                model: model.name.clone(),
                version: model.version,
                request_id: rid.to_string(),
                row: i as i64,
                at_ms,
                features,
                output: LoadedModel::output(p),
                shadow: shadow.and_then(|(v, sp)| sp.get(i).map(|s| (*v, LoadedModel::output(s)))),
                probabilities: class_probabilities(model, p),
                shadow_probabilities: shadow
                    .and_then(|(_, sp)| sp.get(i))
                    .and_then(|s| class_probabilities(model, s)),
            }
        })
        .collect();
    st.log_predictions(logged);
}

/// A multiclass prediction's probabilities in the model's class order (what the canary's log loss reads).
fn class_probabilities(model: &LoadedModel, p: &Prediction) -> Option<Vec<f64>> {
    let by_label = p.probabilities.as_ref()?;
    model
        .labels()
        .iter()
        .map(|l| {
            let key = match l {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            by_label.get(&key).copied()
        })
        .collect()
}

fn too_many(n: usize, max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_records",
        format!("{n} records in one request; the limit is {max} (use keel predict for files)"),
    )
}

fn count_classes(model: &LoadedModel, predictions: &[Prediction]) {
    let version = model.version.to_string();
    let multiclass = model.model.objective == keel_ml::Objective::Multiclass;
    let mut counts = vec![0u64; if multiclass { model.labels().len() } else { 2 }];
    let mut other = 0u64;
    for p in predictions {
        match model.class_index(p) {
            Some(c) if c < counts.len() => counts[c] += 1,
            _ => other += 1,
        }
    }
    for (c, n) in counts.iter().enumerate() {
        if *n > 0 {
            // Binary: the class index (0/1); multiclass: the class label.
            let class = if multiclass {
                match &model.labels()[c] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                }
            } else {
                c.to_string()
            };
            METRICS
                .predictions
                .with_label_values(&[model.name.as_str(), &version, &class])
                .inc_by(*n);
        }
    }
    if other > 0 {
        METRICS
            .predictions
            .with_label_values(&[model.name.as_str(), &version, "value"])
            .inc_by(other);
    }
}

/// A registered model version (summary).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub model: String,
    pub version: i64,
    pub aliases: Vec<String>,
    pub kind: String,
    pub objective: String,
    #[schema(value_type = Object)]
    pub metrics: Value,
    pub dataset_hash: String,
    pub created_at: String,
    pub created_by: String,
    /// What this version is (`PATCH .../versions/{version}`).
    pub description: String,
    pub tags: BTreeMap<String, String>,
    /// Archived: readable and servable by number, but no alias may point at it.
    pub archived: bool,
}

pub(crate) fn summary(v: keel_store::VersionRecord) -> ModelSummary {
    ModelSummary {
        model: v.model,
        version: v.version,
        aliases: v.aliases,
        kind: v.kind,
        objective: v.objective,
        metrics: v.metrics,
        dataset_hash: v.dataset_hash,
        created_at: v.created_at,
        created_by: v.created_by,
        description: v.description,
        tags: v.tags,
        archived: v.archived,
    }
}

/// `GET /v1/models`: OpenAI's model list (`{"object": "list", "data": [...]}`), so a stock OpenAI client's
/// `models.list()` works, with Keel's registry listing in the same entries (kind, versions, aliases, champion).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// One model: OpenAI's `id`, `object`, `created`, `owned_by`, then Keel's registry fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelEntry {
    /// The name to send as `model` (chat) or to put in `/v1/models/{name}/predict` (registry models).
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds when the champion (or, without one, the newest version) was registered.
    pub created: i64,
    pub owned_by: String,
    /// `gbdt`, `linear`, `guard` for registry models; `chat` for the chat model.
    pub kind: String,
    /// Newest registered version (registry models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<i64>,
    /// How many versions are registered (registry models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<i64>,
    /// Every alias and the version it points at.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub aliases: std::collections::BTreeMap<String, i64>,
    /// What the bare name serves (`NAME@champion`); absent when no version has been made servable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub champion: Option<ModelSummary>,
}

/// Every model this server knows, OpenAI-shaped: registry models (a bare name means `NAME@champion`) and the
/// chat model of `/v1/chat/completions`.
#[utoipa::path(get, path = "/v1/models", tag = "registry", security(("bearer" = [])),
    description = "OpenAI-compatible model list (`openai.OpenAI(base_url=.../v1).models.list()` works). Each registry model is one entry whose `id` is its name, with Keel's fields: `kind`, `latest_version`, `versions`, `aliases` and `champion` (the version a bare name serves). The chat model of `/v1/chat/completions` is listed with `kind: chat` when it is available.",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)))]
pub async fn list_models(
    _: AsReader,
    State(st): State<AppState>,
) -> Result<Json<ModelList>, ApiError> {
    let mut data: Vec<ModelEntry> = st
        .cache
        .store()
        .list()
        .await?
        .into_iter()
        .map(|m| ModelEntry {
            created: m
                .champion
                .as_ref()
                .and_then(|c| keel_core::time::rfc3339_to_unix(&c.created_at))
                .unwrap_or(0),
            id: m.model,
            object: "model".into(),
            owned_by: "keel".into(),
            kind: m.kind,
            latest_version: Some(m.latest_version),
            versions: Some(m.versions),
            aliases: m.aliases,
            champion: m.champion.map(summary),
        })
        .collect();
    data.extend(
        st.rag
            .chat_models()
            .into_iter()
            .map(|(id, owner)| ModelEntry {
                id,
                object: "model".into(),
                created: 0,
                owned_by: owner,
                kind: "chat".into(),
                latest_version: None,
                versions: None,
                aliases: Default::default(),
                champion: None,
            }),
    );
    Ok(Json(ModelList {
        object: "list".into(),
        data,
    }))
}

/// One version: NAME, NAME@ALIAS or NAME@VERSION.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model reference: NAME@VERSION, NAME@ALIAS, or a bare NAME (= NAME@champion)")),
    responses((status = 200, body = ModelSummary), (status = 404, body = ErrorBody)))]
pub async fn show_model(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelSummary>, ApiError> {
    let (n, sel) = keel_store::Selector::parse(&name)?;
    Ok(Json(summary(st.cache.store().get(&n, &sel).await?)))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    /// The version the alias will point at (a JSON integer; `3.0` is read as 3).
    #[schema(value_type = i64, minimum = 1)]
    pub version: serde_json::Number,
}

impl AliasRequest {
    /// The version as an integer: integral numbers only, also when written with a fraction (`3.0`).
    fn version(&self) -> Result<i64, ApiError> {
        integer_of(&Value::Number(self.version.clone())).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("$.version: {} is not an integer version", self.version),
            )
        })
    }
}

/// `?format=` of the monitoring report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    Json,
    Html,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AliasResponse {
    pub model: String,
    pub alias: String,
    pub version: i64,
}

/// Points an alias at a version; servers swap to it atomically.
#[utoipa::path(put, path = "/v1/models/{name}/aliases/{alias}", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path), ("alias" = String, Path)),
    request_body = AliasRequest,
    responses((status = 200, body = AliasResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_alias(
    crate::auth::Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AliasResponse>, ApiError> {
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let req: AliasRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected {{\"version\": N}}: {e}"),
        )
    })?;
    let m = st
        .cache
        .set_alias(&name, &alias, req.version()?, &caller.actor())
        .await?;
    Ok(Json(AliasResponse {
        model: m.name.clone(),
        alias,
        version: m.version,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct KeyRequest {
    /// reader, predictor, deployer or admin.
    #[schema(pattern = "^(reader|predictor|deployer|admin)$")]
    pub role: String,
    /// What the key is for (at most 500 characters).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
}

/// Longest key description accepted.
pub const MAX_KEY_DESCRIPTION: usize = 500;

/// A server started with `--no-auth` treats every caller as admin, so it must not create or revoke the
/// credentials that authenticated servers on the same home accept: key management needs auth on (or the
/// CLI, `keel keys create`, run by someone with access to the home).
fn refuse_without_auth(st: &AppState) -> Result<(), ApiError> {
    if st.config.auth {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "auth_disabled",
        "this server runs with --no-auth, so it does not create or revoke API keys; use keel keys create, or a server with auth",
    ))
}

/// Creates an API key; the key is returned once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", security(("bearer" = [])), request_body = KeyRequest,
    responses((status = 201, description = "Created; the key is shown once", body = crate::schemas::NewKey), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 422, description = "Invalid role or description", body = ErrorBody)))]
pub async fn create_key(
    crate::auth::Authorized(caller): AsAdmin,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    refuse_without_auth(&st)?;
    // A key request is a few dozen bytes: 16 KiB is generous, and nothing larger is read.
    let bytes = read_body(body, &headers, 16 * 1024).await?;
    let req: KeyRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected {{\"role\", \"description\"?}}: {e}"),
        )
    })?;
    if req.description.chars().count() > MAX_KEY_DESCRIPTION {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "$.description: {} characters; at most {MAX_KEY_DESCRIPTION}",
                req.description.chars().count()
            ),
        ));
    }
    let role: Role = req
        .role
        .parse()
        .map_err(|m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role", m))?;
    let by = caller.actor();
    let k = keel_engine::keys::create_key(st.cache.store(), role, &req.description, &by).await?;
    st.keys.reload().await?;
    Ok((StatusCode::CREATED, Json(k)).into_response())
}

/// Lists API keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])), responses((status = 200, description = "Keys", body = Vec<crate::schemas::KeyInfo>)))]
pub async fn list_keys(_: AsAdmin, State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(st.cache.store().keys().await?).into_response())
}

/// Revokes an API key.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    crate::auth::Authorized(caller): AsAdmin,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    refuse_without_auth(&st)?;
    if !st.cache.store().revoke_key(&id, &caller.actor()).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no active key '{id}'"),
        ));
    }
    st.keys.reload().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Drift of what a version served (all replicas, recent windows) against its training reference.
#[utoipa::path(get, path = "/v1/models/{name}/monitor", tag = "monitoring", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model reference: NAME@VERSION, NAME@ALIAS, or a bare NAME, which means NAME@champion (never merely the newest version: a challenger is served only by its version or alias)"),
        ("windows" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "How many recent windows to include (1–10000, default 24)"),
        ("format" = Option<ReportFormat>, Query, description = "json (default) or html")),
    responses(
        (status = 200, description = "The report: windows, rows, and per-feature and prediction drift (HTML with format=html)",
            content((crate::schemas::MonitorReport = "application/json"), (String = "text/html"))),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The version has no monitoring reference", body = ErrorBody)))]
pub async fn monitor(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let mut windows: i64 = 24;
    let mut html = false;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("query parameter '{k}' {what}"),
            )
        };
        match k {
            "windows" => {
                windows = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| bad("must be 1–10000"))?
            }
            "format" => match v {
                "json" => html = false,
                "html" => html = true,
                _ => return Err(bad("must be json or html")),
            },
            _ => return Err(bad("is not known (use windows, format)")),
        }
    }
    let model = st.cache.get(&name).await?;
    st.flush_monitoring().await;
    let record = st
        .cache
        .store()
        .get(&model.name, &keel_store::Selector::Version(model.version))
        .await?;
    let window = st.config.monitor_window_seconds as i64;
    let since = st.windows_since(windows);
    st.flush_log().await;
    let report = keel_engine::monitor::report(
        st.cache.store(),
        &record,
        since,
        window,
        &keel_monitor::DriftOptions::default(),
    )
    .await?;
    if html {
        let page = report.html();
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    Ok(Json(report).into_response())
}

/// Labels that arrived after the predictions: `{"labels": [{"request_id", "row"?, "label"}]}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// Each label names the prediction's request id (and its row in a batch request, default 0).
    #[schema(value_type = Vec<Object>)]
    pub labels: Vec<Value>,
}

/// Delayed labels, joined to logged predictions by request id: unknown ids are counted (not an error), a
/// second label for a prediction replaces the first (audited), labels of the wrong type are 422.
#[utoipa::path(post, path = "/v1/models/{name}/feedback", tag = "monitoring", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name (NAME, NAME@ALIAS or NAME@VERSION: labels belong to the model)")),
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Labels join only logged predictions (a sampled share, `prediction_log_rate`, default 0.02); `note` explains unknown ids", body = crate::schemas::FeedbackOutcome),
        (status = 404, body = ErrorBody),
        (status = 413, description = "More than 10,000 labels", body = ErrorBody),
        (status = 422, description = "Labels of the wrong type", body = ErrorBody)))]
pub async fn feedback(
    crate::auth::Authorized(caller): AsPredictor,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, &headers, st.config.body_limit_bytes).await?;
    let model = st.cache.get(&name).await?;
    let req: FeedbackRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected {{\"labels\": [{{\"request_id\", \"label\"}}]}}: {e}"),
        )
    })?;
    if req.labels.len() > 10_000 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_labels",
            format!(
                "{} labels in one request; the limit is 10000",
                req.labels.len()
            ),
        ));
    }
    let mut labels = Vec::with_capacity(req.labels.len());
    let mut errors = Vec::new();
    for (i, v) in req.labels.iter().enumerate() {
        let at = |f: &str| format!("$.labels[{i}].{f}");
        let rid = v.get("request_id").and_then(Value::as_str);
        let row = match v.get("row") {
            None => Some(0),
            Some(r) => r.as_i64().filter(|r| *r >= 0),
        };
        let label = v.get("label").map(|l| model.encode_label(l));
        match (rid, row, label) {
            (Some(r), Some(row), Some(Ok(label))) => labels.push(keel_store::Feedback {
                request_id: r.to_string(),
                row,
                label,
            }),
            (rid, row, label) => {
                if rid.is_none() {
                    errors.push(FieldError {
                        path: at("request_id"),
                        problem: "missing_or_not_a_string",
                        message: "each label needs its prediction's request_id".into(),
                    });
                }
                if row.is_none() {
                    errors.push(FieldError {
                        path: at("row"),
                        problem: "wrong_type",
                        message: "row must be a non-negative integer".into(),
                    });
                }
                match label {
                    None => errors.push(FieldError {
                        path: at("label"),
                        problem: "missing_field",
                        message: "label is required".into(),
                    }),
                    Some(Err(m)) => errors.push(FieldError {
                        path: at("label"),
                        problem: "wrong_type",
                        message: m,
                    }),
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(schema_error(errors));
    }
    // Predictions served a moment ago may still be in the buffer (or being written by another flush):
    // `flush_log` returns only when they are in the store.
    st.flush_log().await;
    let mut out = st
        .cache
        .store()
        .put_labels(&model.name, &labels, &caller.actor())
        .await?;
    out.explain(Some(st.config.prediction_log_rate), false);
    Ok(Json(out).into_response())
}
