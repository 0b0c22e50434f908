//! The OpenAPI document, generated from the handlers' annotations. `openapi.json` at the repository root is
//! this document; a test fails when they differ.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::{Detail, ErrorBody, ErrorDetail};
use crate::routes::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "Keel", description = "Keel's HTTP API: predictions, monitoring, registry, keys, retrieval-augmented answers, embeddings, a guarded chat-completions gateway, guard scans, operations."),
    paths(predict, crate::rag::rag_query, crate::rag::embeddings, crate::rag::chat_completions, crate::guard::scan, monitor, feedback, list_models, show_model, set_alias, create_key, list_keys, revoke_key, healthz, readyz, metrics, openapi),
    components(schemas(crate::guard::ScanRequest, crate::rag::RagQueryRequest, crate::rag::EmbeddingsRequest, FeedbackRequest, PredictRequest, PredictResponse, PredictionBody, ModelSummary, ModelList, ModelEntry, AliasRequest, AliasResponse, KeyRequest, ErrorBody, ErrorDetail, Detail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as pretty JSON, with the version pinned so builds of the same API produce the same bytes.
pub fn spec_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".into();
    doc.to_pretty_json()
        .expect("the OpenAPI document serialises")
}
