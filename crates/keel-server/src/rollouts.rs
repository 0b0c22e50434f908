//! Rollouts over HTTP (start a canary or a shadow, read its status, promote it, stop it), judged with the
//! server's one `[serve.rollout]` policy, and drift history per monitoring window.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AsDeployer, AsReader, Authorized};
use crate::body::{json, query, read_body};
use crate::error::{ApiError, ErrorBody};

/// What runs next to a model's champion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rollout {
    pub model: String,
    /// The canary version, answering `canary_weight` of the champion's requests.
    pub canary_version: Option<i64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub canary_weight: f64,
    /// The shadow version, scored on mirrored requests without answering.
    pub shadow_version: Option<i64>,
    pub started_at: String,
}

impl From<keel_store::Rollout> for Rollout {
    fn from(r: keel_store::Rollout) -> Self {
        Rollout {
            model: r.model,
            canary_version: r.canary_version,
            canary_weight: r.canary_weight,
            shadow_version: r.shadow_version,
            started_at: r.started_at,
        }
    }
}

/// A rollout and what the delayed labels say about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutStatus {
    pub model: String,
    /// Absent when nothing runs next to the champion.
    pub rollout: Option<Rollout>,
    /// Each arm's realized metrics and the judge's decision (`none`, `wait`, `promote`, `rollback`) with its
    /// reason, under the server's policy.
    #[schema(value_type = Option<Object>)]
    pub evaluation: Option<Value>,
}

/// Starts (or changes) a rollout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The version to roll out.
    #[schema(minimum = 1)]
    pub version: i64,
    /// `canary` (answers a share of the champion's requests) or `shadow` (scored on mirrored requests).
    #[schema(pattern = "^(canary|shadow)$")]
    pub mode: String,
    /// The canary's share of traffic, (0, 1] (default 0.1); a shadow answers no traffic and ignores it.
    #[schema(nullable = false, exclusive_minimum = 0.0, maximum = 1.0)]
    pub weight: Option<f64>,
}

/// Starts a canary or a shadow of a version next to the champion.
#[utoipa::path(post, path = "/v1/models/{name}/rollout", tag = "rollouts", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    request_body = DeployRequest,
    responses((status = 200, body = Rollout), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn deploy(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Rollout>, ApiError> {
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let req: DeployRequest = json(&bytes, "{\"version\": N, \"mode\": \"canary\"}")?;
    let mode = match req.mode.as_str() {
        "canary" => keel_app::rollout::DeployMode::Canary {
            weight: req.weight.unwrap_or(0.1),
        },
        "shadow" => keel_app::rollout::DeployMode::Shadow,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("$.mode: '{other}' must be canary or shadow"),
            ));
        }
    };
    let r = keel_app::rollout::deploy(st.cache.store(), &name, req.version, mode, &caller.actor())
        .await?;
    refresh(&st).await;
    Ok(Json(r.into()))
}

async fn refresh(st: &AppState) {
    if let Err(e) = st.cache.refresh().await {
        tracing::warn!(error = %e, "refresh after a rollout change failed");
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The model's rollout and its evaluation under the server's policy.
#[utoipa::path(get, path = "/v1/models/{name}/rollout", tag = "rollouts", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = RolloutStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn status(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    keel_store::Selector::parse(&name)?;
    st.flush_log().await;
    let s = keel_app::rollout::status(st.cache.store(), &name, &st.config.rollout).await?;
    Ok(Json(RolloutStatus {
        model: s.model,
        rollout: s.rollout.map(Rollout::from),
        evaluation: s.evaluation.as_ref().map(to_value),
    }))
}

/// A promoted canary.
#[derive(Debug, Serialize, ToSchema)]
pub struct Promotion {
    pub model: String,
    /// The champion before.
    pub before: Option<i64>,
    /// The champion now (the canary).
    pub after: i64,
    #[schema(value_type = Object)]
    pub evaluation: Value,
}

/// Makes the canary the champion (one audited alias move, with the evaluation as evidence).
#[utoipa::path(post, path = "/v1/models/{name}/rollout/promote", tag = "rollouts", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = Promotion), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn promote(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Promotion>, ApiError> {
    keel_store::Selector::parse(&name)?;
    st.flush_log().await;
    let p =
        keel_app::rollout::promote(st.cache.store(), &name, &st.config.rollout, &caller.actor())
            .await?;
    refresh(&st).await;
    Ok(Json(Promotion {
        model: p.model,
        before: p.before,
        after: p.after,
        evaluation: to_value(&p.evaluation),
    }))
}

/// Stops the canary and the shadow; the champion keeps serving.
#[utoipa::path(post, path = "/v1/models/{name}/rollout/stop", tag = "rollouts", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "The rollout that was stopped", body = Rollout),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stop(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    keel_store::Selector::parse(&name)?;
    st.flush_log().await;
    let r = keel_app::rollout::stop(st.cache.store(), &name, &st.config.rollout, &caller.actor())
        .await?;
    refresh(&st).await;
    Ok(Json(r.into()))
}

/// How far back drift history goes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    /// How many recent windows (1–10000, default 24).
    #[param(minimum = 1, maximum = 10000)]
    pub windows: Option<i64>,
}

/// Drift of one monitoring window against the training reference.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowDrift {
    /// Unix seconds at the window's start.
    pub window_start: i64,
    pub rows: u64,
    pub drifted_columns: u64,
    /// The columns that drifted in this window.
    pub drifted: Vec<String>,
    /// The largest population stability index of any column.
    pub max_psi: Option<f64>,
}

/// Drift per window, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftHistory {
    pub model: String,
    pub version: i64,
    pub window_seconds: u64,
    pub windows: Vec<WindowDrift>,
}

/// Drift per monitoring window of the version a reference serves, each window on its own against the
/// training reference (the monitor report merges them).
#[utoipa::path(get, path = "/v1/models/{name}/drift", tag = "monitoring", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model reference (a bare NAME means NAME@champion)"), DriftQuery),
    responses((status = 200, body = DriftHistory), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The version has no monitoring reference", body = ErrorBody)))]
pub async fn drift(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<DriftHistory>, ApiError> {
    let q: DriftQuery = query(&uri)?;
    let windows = q.windows.unwrap_or(24);
    if !(1..=10_000).contains(&windows) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("windows {windows} must be 1–10000"),
        ));
    }
    let (n, sel) = keel_store::Selector::parse(&name)?;
    let record = st.cache.store().get(&n, &sel).await?;
    st.flush_monitoring().await;
    let since = st.windows_since(windows);
    let history = keel_engine::monitor::drift_history(
        st.cache.store(),
        &record,
        since,
        &keel_monitor::DriftOptions::default(),
    )
    .await?;
    Ok(Json(DriftHistory {
        model: record.model,
        version: record.version,
        window_seconds: st.config.monitor_window_seconds,
        windows: history
            .into_iter()
            .map(|w| WindowDrift {
                window_start: w.window_start,
                rows: w.rows,
                drifted_columns: w.drifted_columns as u64,
                drifted: w.drifted,
                max_psi: w.max_psi,
            })
            .collect(),
    }))
}
