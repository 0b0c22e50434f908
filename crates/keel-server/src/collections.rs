//! RAG collections over HTTP: list them, upload documents (an ingest job, `202 Accepted`), read their
//! chunks, delete documents. Questions go to `POST /v1/rag/{collection}/query` ([`crate::rag`]).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AsDeployer, AsReader, Authorized};
use crate::body::{invalid_body, page_limit, query, upload};
use crate::error::{ApiError, ErrorBody};

/// One collection at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collection {
    pub collection: String,
    pub documents: u64,
    pub chunks: u64,
    /// The embedding model it was built with.
    pub embedder: String,
    /// BM25's weight in hybrid fusion.
    pub fusion_weight: f64,
    /// Whether the weight was tuned on judged queries.
    pub tuned: bool,
    /// The current generation (changes with every ingest).
    pub generation: String,
}

impl From<keel_app::rag::CollectionSummary> for Collection {
    fn from(c: keel_app::rag::CollectionSummary) -> Self {
        Collection {
            collection: c.collection,
            documents: c.documents as u64,
            chunks: c.chunks as u64,
            embedder: c.embedder,
            fusion_weight: c.fusion_weight,
            tuned: c.tuned,
            generation: c.generation,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<Collection>,
}

/// Every collection.
#[utoipa::path(get, path = "/v1/rag/collections", operation_id = "list_collections", tag = "rag", security(("bearer" = [])),
    responses((status = 200, body = CollectionList), (status = 401, body = ErrorBody)))]
pub async fn list(
    _: AsReader,
    State(st): State<AppState>,
) -> Result<Json<CollectionList>, ApiError> {
    let root = st.rag.root().to_path_buf();
    keel_app::rag::sync_all(st.cache.store(), &root).await?;
    let all = keel_app::rag::blocking(move || keel_app::rag::list(&root)).await?;
    Ok(Json(CollectionList {
        collections: all.into_iter().map(Collection::from).collect(),
    }))
}

/// Documents to ingest, as `multipart/form-data` (documentation of the form).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct IngestForm {
    /// One or more files (Markdown, HTML, text, PDF); repeat the field for more.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub file: Vec<String>,
    /// Most tokens per chunk (default 200).
    #[schema(nullable = false, minimum = 64, maximum = 100000)]
    pub max_tokens: Option<u32>,
    /// Tokens shared by consecutive chunks (default 32).
    #[schema(nullable = false, minimum = 0, maximum = 63)]
    pub overlap: Option<u32>,
    /// `false` to skip the injection screen (default `true`).
    #[schema(nullable = false)]
    pub screen: Option<bool>,
    /// The local embedding model of a new collection: `minilm` (all-MiniLM-L6-v2, the default) or `mpnet`
    /// (all-mpnet-base-v2: 768 dimensions, slower, better on natural questions). An existing collection keeps
    /// its model; naming another is refused (422).
    #[schema(nullable = false, pattern = "^(minilm|mpnet)$")]
    pub embedder: Option<String>,
}

/// Uploads documents into a collection (created on first upload), as a job: embedded, screened for indirect
/// prompt injection per the collection's policy, and switched in atomically.
#[utoipa::path(post, path = "/v1/rag/collections/{collection}/documents", tag = "rag", security(("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name")),
    request_body(content = IngestForm, content_type = "multipart/form-data"),
    responses((status = 202, description = "Queued; follow it at the Location", body = crate::jobs::Job),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ingest(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    keel_rag::collection::validate_name(&collection)?;
    let up = upload(st.cache.store().home(), &headers, body).await?;
    let spec = (|| {
        up.only(&["max_tokens", "overlap", "screen", "embedder"], &["file"])?;
        if up.files.is_empty() {
            return Err(invalid_body(
                "upload at least one file (multipart field `file`)",
            ));
        }
        let mut spec = keel_app::rag::IngestSpec::new(&collection, &up.dir);
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            up.field(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| invalid_body(&format!("{name}: '{v}' is not a whole number")))
                })
                .transpose()
        };
        // The documented ranges, so any two values the document allows make valid chunks.
        let within = |name: &str, n: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(invalid_body(&format!("{name}: {n} must be {lo}–{hi}")))
            }
        };
        if let Some(n) = number("max_tokens")? {
            spec.max_tokens = within("max_tokens", n, 64, 100_000)?;
        }
        if let Some(n) = number("overlap")? {
            spec.overlap = within("overlap", n, 0, 63)?;
        }
        if let Some(v) = up.field("screen") {
            spec.screen = match v.trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(invalid_body(&format!(
                        "screen: '{other}' must be true or false"
                    )));
                }
            };
        }
        if let Some(v) = up.field("embedder") {
            let m = keel_rag::LocalModel::from_name(v.trim())
                .map_err(|_| invalid_body(&format!("embedder: '{v}' must be minilm or mpnet")))?;
            if let Ok(c) = keel_rag::collection::Collection::open(
                &keel_app::rag::collections_root(st.cache.store().home()),
                &collection,
            ) {
                keel_app::rag::check_embedder(&c, Some(m))
                    .map_err(|e| invalid_body(&e.to_string()))?;
            }
            spec.embedder = Some(m);
        }
        Ok(spec)
    })();
    let queued = match spec {
        Ok(spec) => {
            crate::jobs::queue(
                &st,
                &collection,
                &keel_app::jobs::JobSpec::Ingest(spec),
                &caller.actor(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match queued {
        Ok(j) => Ok(crate::jobs::accepted(j)),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&up.dir).await;
            Err(e)
        }
    }
}

/// Which chunks to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChunkQuery {
    /// Only this document's chunks.
    pub document: Option<String>,
    /// Skip this many (0–1000000000, default 0).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<i64>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// One chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct Chunk {
    /// `document#ordinal`.
    pub id: String,
    pub document: String,
    pub section_path: String,
    pub tokens: u64,
    pub text: String,
    /// Why the injection screen distrusts it.
    pub untrusted: Option<String>,
    /// Kept for review but never retrieved.
    pub quarantined: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkPage {
    pub collection: String,
    /// Chunks matching the query in all.
    pub total: u64,
    pub chunks: Vec<Chunk>,
}

/// A collection's chunks, in document order.
#[utoipa::path(get, path = "/v1/rag/collections/{collection}/chunks", tag = "rag", security(("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"), ChunkQuery),
    responses((status = 200, body = ChunkPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn chunks(
    _: AsReader,
    State(st): State<AppState>,
    Path(collection): Path<String>,
    uri: axum::http::Uri,
) -> Result<Json<ChunkPage>, ApiError> {
    let q: ChunkQuery = query(&uri)?;
    let limit = page_limit(q.limit, 100)?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=1_000_000_000).contains(&offset) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("offset {offset} must be 0–1000000000"),
        ));
    }
    keel_app::rag::sync_collection(st.cache.store(), st.rag.root(), &collection).await?;
    let rag = st.rag.clone();
    let c = keel_app::rag::blocking(move || rag.collection(&collection)).await?;
    let matching: Vec<&keel_rag::chunk::Chunk> = c
        .chunks
        .iter()
        .filter(|ch| q.document.as_ref().is_none_or(|d| ch.document == *d))
        .collect();
    Ok(Json(ChunkPage {
        collection: c.manifest.name.clone(),
        total: matching.len() as u64,
        chunks: matching
            .into_iter()
            .skip(offset as usize)
            .take(limit)
            .map(|ch| Chunk {
                id: ch.id.clone(),
                document: ch.document.clone(),
                section_path: ch.section_path.clone(),
                tokens: ch.tokens as u64,
                text: ch.text.clone(),
                untrusted: ch.untrusted.clone(),
                quarantined: ch.quarantined,
            })
            .collect(),
    }))
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub collection: String,
    pub removed: u64,
}

/// Removes a document (by its path in the collection, as chunks name it) from a collection.
#[utoipa::path(delete, path = "/v1/rag/collections/{collection}/documents/{document}", tag = "rag", security(("bearer" = [])),
    params(("collection" = String, Path, description = "Collection name"),
           ("document" = String, Path, description = "The document's path in the collection (URL-encoded)")),
    responses((status = 200, body = Deleted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn delete(
    Authorized(caller): AsDeployer,
    State(st): State<AppState>,
    Path((collection, document)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    let store = st.cache.store();
    let base = keel_app::rag::sync_collection(store, st.rag.root(), &collection).await?;
    let root = st.rag.root().to_path_buf();
    let name = collection.clone();
    let removed =
        keel_app::rag::blocking(move || keel_app::rag::delete_documents(&root, &name, &[document]))
            .await?;
    keel_app::rag::publish_collection(
        store,
        st.rag.root(),
        &collection,
        base.as_deref(),
        &caller.actor(),
    )
    .await?;
    Ok(Json(Deleted {
        collection,
        removed: removed as u64,
    }))
}
