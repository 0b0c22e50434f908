//! The OpenAPI document, generated from the handlers' annotations. `openapi.json` at the repository root is
//! this document; a test fails when they differ.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::{Detail, ErrorBody, ErrorDetail};
use crate::routes::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "Keel", description = "Keel's HTTP API: predictions, monitoring, registry, keys, retrieval-augmented answers, embeddings, a guarded chat-completions gateway, guard scans, operations."),
    paths(predict, crate::rag::rag_query, crate::rag::embeddings, crate::rag::chat_completions, crate::guard::scan, monitor, feedback, list_models, show_model, set_alias, create_key, list_keys, revoke_key, healthz, readyz, metrics, openapi,
        crate::jobs::train, crate::jobs::retrain, crate::jobs::import, crate::jobs::list, crate::jobs::get, crate::jobs::cancel,
        crate::versions::list, crate::versions::show, crate::versions::card, crate::versions::lineage, crate::versions::aliases, crate::versions::rollback,
        crate::rollouts::deploy, crate::rollouts::status, crate::rollouts::promote, crate::rollouts::stop, crate::rollouts::drift,
        crate::audit::list, crate::audit::verify,
        crate::runs::create, crate::runs::list, crate::runs::experiments, crate::runs::get, crate::runs::log_batch, crate::runs::end, crate::runs::put_artifact,
        crate::runs::get_artifact, crate::runs::metric_history, crate::runs::compare, crate::runs::delete_version, crate::runs::archive, crate::runs::annotate,
        crate::collections::list, crate::collections::ingest, crate::collections::chunks, crate::collections::delete),
    components(schemas(crate::guard::ScanRequest, crate::rag::RagQueryRequest, crate::rag::EmbeddingsRequest, FeedbackRequest, PredictRequest, PredictResponse, PredictionBody, ModelSummary, ModelList, ModelEntry, AliasRequest, AliasResponse, KeyRequest, ReportFormat, ErrorBody, ErrorDetail, Detail,
        crate::jobs::Job, crate::jobs::JobList, crate::jobs::TrainRequest, crate::jobs::TimeFeaturesDoc, crate::jobs::TimePartName, crate::jobs::RetrainRequest, crate::jobs::ImportRequest, crate::jobs::ImportGate,
        crate::versions::VersionList, crate::versions::VersionDetail, crate::versions::CardResponse, crate::versions::Lineage, crate::versions::AuditEntry, crate::versions::AliasList, crate::versions::RollbackRequest, crate::versions::AliasMove,
        crate::rollouts::Rollout, crate::rollouts::RolloutStatus, crate::rollouts::DeployRequest, crate::rollouts::Promotion, crate::rollouts::DriftHistory, crate::rollouts::WindowDrift,
        crate::audit::AuditPage, crate::audit::Verification,
        crate::runs::Run, crate::runs::Experiment, crate::runs::ExperimentList, crate::runs::RunMetric, crate::runs::RunArtifact, crate::runs::CreateRunRequest, crate::runs::RunList, crate::runs::KeyValue,
        crate::runs::KeyValues, crate::runs::MetricIn, crate::runs::LogBatchRequest, crate::runs::Logged, crate::runs::EndRunRequest, crate::runs::MetricValue,
        crate::runs::MetricHistory, crate::runs::DiffRow, crate::runs::RunColumn, crate::runs::RunComparison, crate::runs::VersionChange, crate::runs::ArchiveRequest,
        crate::runs::AnnotateRequest,
        crate::collections::Collection, crate::collections::CollectionList, crate::collections::IngestForm, crate::collections::Chunk, crate::collections::ChunkPage, crate::collections::Deleted)),
    modifiers(&BearerAuth, &CommonResponses)
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

/// What every route can answer besides its own responses, added to the document from how the router is
/// built (one place, so no operation forgets one): 401/403/429 where a key is needed (missing or invalid key,
/// role too low, rate limit), 400/413/422 where a body is read (malformed, over the body limit, not matching),
/// 503 everywhere behind the shedding layer and the time limit; and the patterns of path parameters the
/// server checks.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Object, Schema, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        let name_pattern = |p: &str| {
            RefOr::T(Schema::Object({
                let mut o = Object::with_type(Type::String);
                o.pattern = Some(p.to_string());
                o
            }))
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                item.get.as_mut(),
                item.put.as_mut(),
                item.post.as_mut(),
                item.delete.as_mut(),
            ];
            for op in operations.into_iter().flatten() {
                let r = &mut op.responses.responses;
                let mut add = |code: &str, d: &str| {
                    r.entry(code.to_string()).or_insert_with(|| error(d));
                };
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "Missing or invalid API key");
                    add("403", "The key's role does not allow this route");
                    add(
                        "429",
                        "Rate limited (per key, or key verifications per address)",
                    );
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add("400", "A path or query parameter is invalid");
                }
                if op.request_body.is_some() {
                    add("400", "Malformed body");
                    add("413", "Body over the limit");
                    add("422", "Body does not match what the route expects");
                }
                if path != "/healthz" && path != "/openapi.json" {
                    add(
                        "503",
                        "Overloaded or over the time limit (retry after Retry-After)",
                    );
                }
                // Routes about a model as a whole take its bare name; the others a reference.
                let bare = ["/versions", "/aliases", "/rollback", "/retrain", "/rollout"]
                    .iter()
                    .any(|s| path.contains(s));
                for p in op.parameters.iter_mut().flatten() {
                    let pattern = match p.name.as_str() {
                        "name" if bare => Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"),
                        "name" => {
                            Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}(@[A-Za-z0-9_.-]{1,100})?$")
                        }
                        // A version number or an alias.
                        "version" => Some("^([1-9][0-9]{0,15}|[A-Za-z_-][A-Za-z0-9_.-]{0,99})$"),
                        "alias" => Some("^[A-Za-z_-][A-Za-z0-9_.-]{0,99}$"),
                        "collection" => Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"),
                        _ => None,
                    };
                    if let (Some(pt), utoipa::openapi::path::ParameterIn::Path) =
                        (pattern, &p.parameter_in)
                    {
                        p.schema = Some(name_pattern(pt));
                    }
                }
            }
        }
    }
}

/// The document as pretty JSON, with the version pinned so builds of the same API produce the same bytes.
pub fn spec_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".into();
    doc.to_pretty_json()
        .expect("the OpenAPI document serialises")
}
