//! The registry over HTTP, per version: list, show, card (JSON or HTML), lineage, aliases and rollback.
//! `{version}` is a number or an alias (`3`, `champion`).

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
use crate::auth::{AsDeployer, AsReader, Authorized};
use crate::body::{json, query, read_body};
use crate::error::{ApiError, ErrorBody};
use crate::routes::{ModelSummary, summary};

/// Every version of a model, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub model: String,
    pub versions: Vec<ModelSummary>,
}

/// The versions of a model.
#[utoipa::path(get, path = "/v1/models/{name}/versions", operation_id = "list_versions", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = VersionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    bare(&name)?;
    let mut versions = st.cache.store().versions(&name).await?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    Ok(Json(VersionList {
        model: name,
        versions: versions.into_iter().map(summary).collect(),
    }))
}

/// A model name without a selector (`NAME`, not `NAME@3`).
fn bare(name: &str) -> Result<(), ApiError> {
    let (n, _) = keel_store::Selector::parse(name)?;
    if n != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_reference",
            format!("'{name}': name the model without '@' here; the version goes in the path"),
        ));
    }
    Ok(())
}

/// `NAME@{version}` for a path's name and version (a number or an alias).
pub(crate) fn reference(name: &str, version: &str) -> Result<String, ApiError> {
    bare(name)?;
    Ok(format!("{name}@{version}"))
}

/// One version in full: its summary, parameters, declared schema and artifact.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    #[serde(flatten)]
    pub summary: ModelSummary,
    /// The training settings, as stored.
    #[schema(value_type = Object)]
    pub params: Value,
    /// The input schema the version enforces.
    #[schema(value_type = Object)]
    pub schema: Value,
    pub artifact_uri: String,
    pub artifact_sha256: String,
    pub code_version: String,
}

/// One version.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "A version number or an alias")),
    responses((status = 200, body = VersionDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    _: AsReader,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<VersionDetail>, ApiError> {
    let v = keel_app::registry::version(st.cache.store(), &reference(&name, &version)?).await?;
    Ok(Json(VersionDetail {
        params: v.params.clone(),
        schema: v.schema.clone(),
        artifact_uri: v.artifact_uri.clone(),
        artifact_sha256: v.artifact_sha256.clone(),
        code_version: v.code_version.clone(),
        summary: summary(v),
    }))
}

/// `?format=` of a card.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CardQuery {
    /// `json` (default) or `html`.
    #[param(pattern = "^(json|html)$")]
    pub format: Option<String>,
}

/// A model card.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardResponse {
    pub model: String,
    pub version: i64,
    /// The card: data, evaluation with intervals, calibration, slices, fairness, lineage, limitations.
    #[schema(value_type = Object)]
    pub card: Value,
}

/// The version's model card, as JSON or as the HTML page `keel models card` writes.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/card", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "A version number or an alias"), CardQuery),
    responses((status = 200, description = "The card (JSON, or HTML with format=html)",
                content((CardResponse = "application/json"), (String = "text/html"))),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn card(
    _: AsReader,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q: CardQuery = query(&uri)?;
    let html = match q.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("format '{other}' must be json or html"),
            ));
        }
    };
    let c = keel_app::registry::card(st.cache.store(), &reference(&name, &version)?).await?;
    if html {
        return Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], c.html).into_response());
    }
    Ok(Json(CardResponse {
        model: c.model,
        version: c.version,
        card: c.card,
    })
    .into_response())
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Value,
    #[schema(value_type = Option<Object>)]
    pub after: Value,
    #[schema(value_type = Option<Object>)]
    pub evidence: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<keel_app::registry::AuditEntry> for AuditEntry {
    fn from(e: keel_app::registry::AuditEntry) -> Self {
        AuditEntry {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
            evidence: e.evidence,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Where a version came from (data, code, seed, artifact) and what happened to it since.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lineage {
    pub model: String,
    pub version: i64,
    pub kind: String,
    /// The training data as given to the trainer, when recorded.
    pub data: Option<String>,
    pub dataset_hash: String,
    pub test_dataset_hash: Option<String>,
    pub code_version: String,
    pub seed: Option<u64>,
    pub artifact_uri: String,
    pub artifact_sha256: String,
    pub created_by: String,
    pub created_at: String,
    /// The champion version it was trained to challenge, when it came from a retraining.
    pub challenger_of: Option<i64>,
    /// Audit records about this version, oldest first.
    pub events: Vec<AuditEntry>,
}

/// The version's lineage.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/lineage", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "A version number or an alias")),
    responses((status = 200, body = Lineage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn lineage(
    _: AsReader,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Lineage>, ApiError> {
    let l = keel_app::registry::lineage(st.cache.store(), &reference(&name, &version)?).await?;
    Ok(Json(Lineage {
        model: l.model,
        version: l.version,
        kind: l.kind,
        data: l.data,
        dataset_hash: l.dataset_hash,
        test_dataset_hash: l.test_dataset_hash,
        code_version: l.code_version,
        seed: l.seed,
        artifact_uri: l.artifact_uri,
        artifact_sha256: l.artifact_sha256,
        created_by: l.created_by,
        created_at: l.created_at,
        challenger_of: l.challenger_of,
        events: l.events.into_iter().map(AuditEntry::from).collect(),
    }))
}

/// A model's aliases.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasList {
    pub model: String,
    /// Alias → version.
    pub aliases: BTreeMap<String, i64>,
}

/// Every alias of a model and the version it points at.
#[utoipa::path(get, path = "/v1/models/{name}/aliases", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = AliasList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn aliases(
    _: AsReader,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AliasList>, ApiError> {
    bare(&name)?;
    let mut aliases = BTreeMap::new();
    for v in st.cache.store().versions(&name).await? {
        for a in v.aliases {
            aliases.insert(a, v.version);
        }
    }
    Ok(Json(AliasList {
        model: name,
        aliases,
    }))
}

/// Which alias to roll back (default `champion`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[schema(nullable = false, pattern = "^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
    pub alias: Option<String>,
}

/// An alias move.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasMove {
    pub model: String,
    pub alias: String,
    /// The version it pointed at before (none for a new alias).
    pub before: Option<i64>,
    /// The version it points at now.
    pub version: i64,
}

/// Moves an alias (the champion by default) back to the version it pointed at before its latest move; the
/// server serves it at once.
#[utoipa::path(post, path = "/v1/models/{name}/rollback", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "Model name")),
    request_body(content = Option<RollbackRequest>, description = "Optional; `{}` or no body rolls back the champion"),
    responses((status = 200, body = AliasMove), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The alias was never moved", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AliasMove>, ApiError> {
    bare(&name)?;
    let bytes = read_body(body, &headers, 64 * 1024).await?;
    let blank = bytes.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.is_null());
    let req: RollbackRequest = if blank {
        RollbackRequest::default()
    } else {
        json(&bytes, "{\"alias\": \"champion\"}")?
    };
    let alias = req
        .alias
        .unwrap_or_else(|| keel_store::CHAMPION.to_string());
    st.cache
        .store()
        .get(&name, &keel_store::Selector::Latest)
        .await?;
    let m = keel_app::registry::rollback(st.cache.store(), &name, &alias, &caller.actor()).await?;
    if let Err(e) = st.cache.refresh().await {
        tracing::warn!(error = %e, "refresh after a rollback failed");
    }
    Ok(Json(AliasMove {
        model: name,
        alias,
        before: m.before,
        version: m.after,
    }))
}
