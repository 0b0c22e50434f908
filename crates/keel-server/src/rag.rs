//! The generative routes: `POST /v1/rag/{collection}/query`, `POST /v1/embeddings` and an OpenAI-compatible
//! `POST /v1/chat/completions` (streaming with server-sent events) over the local model.
//!
//! Models load on first use, on the blocking pool; every embedding, retrieval and generation runs there too,
//! never on the reactor. Collections are cached open and reopened when their `CURRENT` generation changes.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_rag::Embedder;
use keel_rag::collection::Mode;
use keel_rag::llm::{ChatMessage, Finish, GenOptions, LocalLlm};
use keel_rag::query::QueryOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::AsPredictor;
use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::openai::{RemoteError, RemoteLlm};

pub use keel_app::rag::{
    AnswerMode, GENERATION_WAIT, LOCAL_MODEL_ALIAS, LlmConfig, RagState, TextSink, Wanted,
};

fn invalid_body(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
        format!("expected {what}: {e}"),
    )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("worker failed: {e}"),
        )
    })?
}

// ---------------------------------------------------------------------------------------------------------
// RAG query

/// A question to a collection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RagQueryRequest {
    /// The question (not empty; at most 8,192 characters).
    #[schema(min_length = 1, max_length = 8192)]
    pub question: String,
    /// `extractive` (default), `local` (Keel's local LLM) or `remote` (the configured upstream).
    #[serde(default)]
    #[schema(pattern = "^(extractive|local|remote)$")]
    pub mode: Option<String>,
    /// `hybrid` (default), `bm25`, `dense` or `rrf`.
    #[serde(default)]
    #[schema(pattern = "^(hybrid|bm25|dense|rrf)$")]
    pub retrieval: Option<String>,
    /// Chunks retrieved and cited (1–50, default 5).
    #[serde(default, deserialize_with = "optional_count")]
    #[schema(minimum = 1, maximum = 50)]
    pub k: Option<usize>,
}

/// An answer with its evidence, as `POST /v1/rag/{collection}/query` returns it.
#[derive(Debug, Serialize)]
pub struct RagAnswer {
    #[serde(flatten)]
    pub answer: keel_app::rag::Answer,
    pub trace_id: String,
    pub seconds: f64,
}

/// Answer a question from a collection, with citations and a groundedness check per sentence.
#[utoipa::path(post, path = "/v1/rag/{collection}/query", tag = "rag",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = RagQueryRequest,
    responses((status = 200, description = "Answer, citations, groundedness per sentence, trace id", body = crate::schemas::RagAnswer),
              (status = 404, description = "Unknown collection", body = crate::error::ErrorBody),
              (status = 422, description = "Invalid question or options", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn rag_query(
    caller: AsPredictor,
    State(st): State<AppState>,
    Path(collection): Path<String>,
    rid: axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let bytes = crate::routes::read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: RagQueryRequest =
        serde_json::from_slice(&bytes).map_err(|e| invalid_body("{\"question\": \"...\"}", e))?;
    let mode: AnswerMode = req
        .mode
        .as_deref()
        .unwrap_or("extractive")
        .parse()
        .map_err(|m: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("$.mode: {m}"),
            )
        })?;
    let retrieval: Mode = req
        .retrieval
        .as_deref()
        .unwrap_or("hybrid")
        .parse()
        .map_err(|m: String| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("$.retrieval: {m}"),
            )
        })?;
    let k = req.k.unwrap_or(5);
    if !(1..=50).contains(&k) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("$.k: {k} must be between 1 and 50"),
        ));
    }
    keel_rag::query::check_question(&req.question).map_err(ApiError::from)?;
    keel_app::rag::sync_collection(st.cache.store(), st.rag.root(), &collection).await?;
    let rag = st.rag.clone();
    let c = rag.collection(&collection)?;
    let q = keel_app::rag::Question {
        question: req.question,
        mode,
        options: QueryOptions {
            retrieval,
            k,
            ..QueryOptions::default()
        },
        max_tokens: rag.config.max_tokens,
    };
    // With guards on, the question passes the `rag` route's input guards and the answer its output guards.
    let guard = st.guard.for_route(st.cache.store(), "rag").await?;
    let actor = caller.0.actor();
    let on_stage = |g: &keel_app::guard::GuardStage| {
        crate::guard::record(
            &st,
            crate::guard::Record {
                route: "rag",
                stage: g.stage,
                decision: &g.decision,
                actor: actor.clone(),
                request_id: &rid.0.0,
                redacted: Some(g.logged.clone()),
                extra: json!({"collection": collection}),
            },
        )
    };
    let answer = keel_app::rag::guarded_answer(&rag, c, q, guard, &on_stage)
        .await
        .map_err(|e| crate::guard::blocked(e, st.guard.config.expose_reasons))?;
    crate::metrics::METRICS.rag_queries.inc();
    Ok(axum::Json(RagAnswer {
        answer,
        trace_id: rid.0.0.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
    .into_response())
}

// ---------------------------------------------------------------------------------------------------------
// Embeddings

/// An OpenAI chat completion request, as this server reads it (documentation; the handler reads the JSON with
/// paths in its errors, and ignores fields it does not use).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    /// 1–256 messages.
    #[schema(min_items = 1, max_items = 256)]
    pub messages: Vec<ChatMessageDoc>,
    pub stream: Option<bool>,
    /// At most 4096; the server's `[serve.llm] max_tokens` (default 256) caps what is generated.
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
}

/// One chat message: a role and its text, as a string or a list of `{type: "text", text}` parts.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ChatMessageDoc {
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    pub role: String,
    pub content: ChatContentDoc,
}

/// A message's content.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ChatContentDoc {
    Text(String),
    Parts(Vec<ChatPartDoc>),
}

/// One text part.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ChatPartDoc {
    #[schema(pattern = "^text$")]
    pub r#type: String,
    pub text: String,
}

/// `input` of an embeddings request (documentation only; the handler reads it with paths in its errors).
pub struct EmbeddingsInput;

impl utoipa::PartialSchema for EmbeddingsInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
        };
        OneOfBuilder::new()
            .item(text())
            .item(
                ArrayBuilder::new()
                    .items(text())
                    .min_items(Some(1))
                    .max_items(Some(MAX_EMBED_INPUTS)),
            )
            .into()
    }
}

impl ToSchema for EmbeddingsInput {}

/// Texts to embed (OpenAI's shape).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// One string or a list of 1–256 strings.
    #[schema(value_type = EmbeddingsInput)]
    pub input: Value,
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default): lists of numbers; `base64`: each vector's little-endian f32 bytes in base64, as
    /// OpenAI's clients ask for by default.
    #[serde(default)]
    #[schema(pattern = "^(float|base64)$")]
    pub encoding_format: Option<String>,
}

/// Most texts in one embeddings request.
pub const MAX_EMBED_INPUTS: usize = 256;

/// Most tokens one embeddings request may make the model read (each text counts up to the model's 256-token
/// window): about 128 full-length texts, a few seconds of CPU.
pub const MAX_EMBED_TOKENS: usize = 32_768;

/// Texts embedded between two checks that the request is still wanted.
const EMBED_STEP: usize = 16;

/// Sentence embeddings from the local all-MiniLM-L6-v2 (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/embeddings", tag = "rag",
    request_body = EmbeddingsRequest,
    responses((status = 200, description = "OpenAI embeddings list", body = crate::schemas::EmbeddingList),
              (status = 404, description = "The named model is not served here", body = crate::error::ErrorBody),
              (status = 422, description = "Invalid input", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn embeddings(
    _caller: AsPredictor,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = crate::routes::read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: EmbeddingsRequest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid_body("{\"input\": \"text\" | [\"text\", ...]}", e))?;
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m);
    let texts: Vec<String> = match req.input {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(bad(format!(
                    "$.input[{i}]: expected a string, found {}",
                    crate::routes::json_type(&other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(bad(format!(
                "$.input: expected a string or a list of strings, found {}",
                crate::routes::json_type(&other)
            )));
        }
    };
    if texts.is_empty() || texts.len() > MAX_EMBED_INPUTS {
        return Err(bad(format!(
            "$.input: {} texts; between 1 and {MAX_EMBED_INPUTS} are accepted",
            texts.len()
        )));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(bad(format!(
                "$.encoding_format: '{f}' is not supported (float and base64 are)"
            )));
        }
    };
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(bad(format!("$.input[{i}]: empty text")));
    }
    let embedder = st.rag.embedder().await?;
    if let Some(m) = req.model.as_deref()
        && m != embedder.id()
        && m != "all-MiniLM-L6-v2"
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "$.model: '{m}' is not served here (this server embeds with {})",
                embedder.id()
            ),
        ));
    }
    let e2 = embedder.clone();
    let counted = texts.clone();
    let tokens: Vec<usize> =
        blocking(move || Ok(counted.iter().map(|t| e2.count_tokens(t) + 2).collect())).await?;
    let read: usize = tokens
        .iter()
        .map(|&t| t.min(keel_rag::embed::MAX_TOKENS))
        .sum();
    if read > MAX_EMBED_TOKENS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_tokens",
            format!(
                "$.input: {read} tokens to embed (each text counts up to {}); at most {MAX_EMBED_TOKENS} per request: split the input",
                keel_rag::embed::MAX_TOKENS
            ),
        ));
    }
    let tokens: usize = tokens.iter().sum();
    // Embedded a few texts at a time; when the request is dropped (client gone, time limit), the flag stops
    // the work at the next step instead of computing vectors nobody will read.
    let wanted = Wanted::new();
    let flag = wanted.flag();
    let e2 = embedder.clone();
    let vectors = blocking(move || {
        let mut out = Vec::with_capacity(texts.len());
        for step in texts.chunks(EMBED_STEP) {
            if !flag.load(std::sync::atomic::Ordering::Relaxed) {
                crate::metrics::METRICS.embeddings_cancelled.inc();
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cancelled",
                    "the request went away",
                ));
            }
            let refs: Vec<&str> = step.iter().map(String::as_str).collect();
            out.extend(e2.embed(&refs).map_err(ApiError::from)?);
        }
        Ok(out)
    })
    .await?;
    drop(wanted);
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": embedder.id(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------------------------
// Chat completions

/// Most messages in one chat request, and most bytes of text in all of them.
pub const MAX_MESSAGES: usize = 256;
pub const MAX_CHAT_BYTES: usize = 64 * 1024;

/// Reads OpenAI chat messages: `content` a string or a list of `{type: "text", text}` parts.
pub fn parse_messages(v: &Value) -> Result<Vec<ChatMessage>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_messages", m);
    let items = v
        .as_array()
        .ok_or_else(|| bad("$.messages: expected a list of {role, content}".into()))?;
    if items.is_empty() || items.len() > MAX_MESSAGES {
        return Err(bad(format!(
            "$.messages: {} messages; between 1 and {MAX_MESSAGES} are accepted",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut total = 0;
    for (i, m) in items.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("$.messages[{i}].role: missing or not a string")))?;
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(bad(format!(
                "$.messages[{i}].role: '{role}' is not system, developer, user, assistant or tool"
            )));
        }
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Keel runs no tools, so no message is content-less (OpenAI's null content goes with tool calls).
            Some(Value::Null) | None => {
                return Err(bad(format!(
                    "$.messages[{i}].content: required (a string or a list of text parts)"
                )));
            }
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => {
                            if !s.is_empty() {
                                s.push('\n');
                            }
                            s.push_str(t);
                        }
                        _ => {
                            return Err(bad(format!(
                                "$.messages[{i}].content[{j}]: only {{\"type\": \"text\", \"text\": \"...\"}} parts are supported"
                            )));
                        }
                    }
                }
                s
            }
            Some(other) => {
                return Err(bad(format!(
                    "$.messages[{i}].content: expected a string or a list of text parts, found {}",
                    crate::routes::json_type(other)
                )));
            }
        };
        total += content.len();
        if total > MAX_CHAT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "messages_too_large",
                format!("$.messages[{i}]: the conversation exceeds {MAX_CHAT_BYTES} bytes of text"),
            ));
        }
        let role = if role == "developer" { "system" } else { role };
        out.push(ChatMessage::new(role, content));
    }
    Ok(out)
}

/// A JSON number that is a non-negative integer (`38.0` included; see [`crate::routes::integer_of`]).
fn as_count(v: &Value) -> Option<u64> {
    crate::routes::integer_of(v).and_then(|n| u64::try_from(n).ok())
}

/// Serde helper: an optional count that may be written `38.0`.
fn optional_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_count(&v).map(|n| Some(n as usize)).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a non-negative integer, found {v}"))
        }),
    }
}

fn gen_options(req: &Value, default_max: usize) -> Result<GenOptions, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    let mut o = GenOptions {
        max_tokens: default_max,
        ..GenOptions::default()
    };
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            let n = as_count(v)
                .filter(|n| (1..=4096).contains(n))
                .ok_or_else(|| bad(format!("$.{key}: expected an integer from 1 to 4096")))?;
            // The server's `[serve.llm] max_tokens` is a ceiling: a request may ask for fewer tokens, never
            // for more work than the operator sized the time limit for (the answer then ends with
            // finish_reason `length`).
            o.max_tokens = (n as usize).min(default_max);
        }
    }
    if let Some(v) = req.get("temperature").filter(|v| !v.is_null()) {
        o.temperature = v
            .as_f64()
            .filter(|t| (0.0..=2.0).contains(t))
            .ok_or_else(|| bad("$.temperature: expected a number from 0 to 2".into()))?;
    }
    if let Some(v) = req.get("top_p").filter(|v| !v.is_null()) {
        o.top_p = Some(
            v.as_f64()
                .filter(|t| *t > 0.0 && *t <= 1.0)
                .ok_or_else(|| bad("$.top_p: expected a number in (0, 1]".into()))?,
        );
    }
    if let Some(v) = req.get("seed").filter(|v| !v.is_null()) {
        o.seed =
            as_count(v).ok_or_else(|| bad("$.seed: expected a non-negative integer".into()))?;
    }
    if req.get("n").and_then(as_count).is_some_and(|n| n != 1) {
        return Err(bad("$.n: only one choice is generated".into()));
    }
    Ok(o)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::Cancelled => "stop",
        Finish::Length => "length",
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI-compatible chat completions from Keel's local model; `stream: true` answers with server-sent events.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "rag",
    request_body(content = ChatCompletionRequest, description = "OpenAI chat completion request: model, messages, stream, max_tokens, temperature, top_p, seed"),
    responses((status = 200, description = "`chat.completion`, or `text/event-stream` of `chat.completion.chunk` ending in `data: [DONE]`",
        content((crate::schemas::ChatCompletion = "application/json"), (String = "text/event-stream"))),
              (status = 404, description = "Unknown model", body = crate::error::ErrorBody),
              (status = 422, description = "Invalid request", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn chat_completions(
    caller: AsPredictor,
    State(st): State<AppState>,
    rid: axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = crate::routes::read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid_body("an OpenAI chat completion request", e))?;
    if !req.is_object() {
        return Err(invalid_body(
            "an OpenAI chat completion request",
            "the body is not a JSON object",
        ));
    }
    let mut messages = parse_messages(req.get("messages").unwrap_or(&Value::Null))?;
    let opts = gen_options(&req, st.rag.config.max_tokens)?;
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let gcfg = &st.guard.config;
    let upstream = if gcfg.upstream == crate::guard::Upstream::Remote {
        let r =
            st.rag.remote.clone().ok_or_else(|| {
                keel_app::Error::Unavailable(RemoteError::NotConfigured.to_string())
            })?;
        Engine::Remote(r)
    } else {
        Engine::Local(st.rag.llm().await?)
    };
    let model = match &upstream {
        Engine::Local(llm) => llm.id().to_string(),
        Engine::Remote(r) => r.model().to_string(),
    };
    if let Some(m) = req.get("model").filter(|m| !m.is_null() && !m.is_string()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "$.model: expected a string, found {}",
                crate::routes::json_type(m)
            ),
        ));
    }
    if let (Engine::Local(_), Some(m)) = (&upstream, req.get("model").and_then(Value::as_str))
        && m != model
        && m != LOCAL_MODEL_ALIAS
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "$.model: '{m}' is not served here (this server has '{model}', also called '{LOCAL_MODEL_ALIAS}')"
            ),
        ));
    }
    let id = format!("chatcmpl-{}", rid.0.0);
    let request_started = Instant::now();
    let actor = caller.0.actor();
    let request_id = rid.0.0.clone();
    // Input guards: block injections, redact PII and secrets in what reaches the model, plant a canary.
    let mut out_guard: Option<OutputGuard> = None;
    // The strongest guard action on this request (`off` in the response header when guards are off).
    let mut action: Option<keel_guard::policy::Action> = None;
    if gcfg.enabled {
        let guard = st.guard.guard(st.cache.store()).await?;
        let policy = gcfg.policy("chat");
        let started = Instant::now();
        let (msgs, input) = blocking({
            let (guard, policy) = (guard.clone(), policy.clone());
            move || {
                let mut m = messages;
                let stage = keel_app::guard::GuardStage::messages(&guard, &policy, &mut m);
                Ok((m, stage))
            }
        })
        .await?;
        crate::metrics::METRICS
            .guard_seconds
            .with_label_values(&["input"])
            .observe(started.elapsed().as_secs_f64());
        crate::guard::record(
            &st,
            crate::guard::Record {
                route: "chat",
                stage: input.stage,
                decision: &input.decision,
                actor: actor.clone(),
                request_id: &request_id,
                redacted: Some(input.logged.clone()),
                extra: Value::Null,
            },
        );
        if input.decision.blocked {
            return Err(crate::guard::blocked(
                input.blocked("request"),
                gcfg.expose_reasons,
            ));
        }
        action = Some(input.decision.action);
        messages = msgs;
        let mut canaries = Vec::new();
        let mut system_prompt = None;
        if let Some(sys) = messages.iter_mut().find(|m| m.role == "system") {
            system_prompt = Some(sys.content.clone());
            if gcfg.canary {
                let c = keel_guard::leak::new_canary();
                sys.content = keel_guard::leak::plant(&sys.content, &c);
                canaries.push(c);
            }
        }
        out_guard = Some(OutputGuard {
            guard,
            policy,
            canaries,
            system_prompt,
        });
    }
    let created = unix_now();
    let upstream_name = match upstream {
        Engine::Local(_) => "local",
        Engine::Remote(_) => "remote",
    };
    crate::metrics::METRICS.chat_completions.inc();
    if !stream {
        let g = match upstream {
            Engine::Local(llm) => {
                // One generation at a time; one whose request went away (time limit, closed
                // connection) stops at its next token.
                let slot = st.rag.generation_slot().await?;
                let wanted = Wanted::new();
                let flag = wanted.flag();
                let g = blocking(move || {
                    let _slot = slot;
                    llm.chat(&messages, &opts, &mut |_| {
                        flag.load(std::sync::atomic::Ordering::Relaxed)
                    })
                    .map_err(ApiError::from)
                })
                .await?;
                drop(wanted);
                g
            }
            Engine::Remote(r) => r.chat(&messages, &opts).await.map_err(upstream_error)?,
        };
        count_tokens(upstream_name, &g);
        let mut text = g.text;
        let mut finish = finish_reason(g.finish);
        if let Some(og) = out_guard {
            let started = Instant::now();
            let output = blocking(move || {
                Ok(keel_app::guard::GuardStage::output(
                    &og.guard,
                    &og.policy,
                    &text,
                    &og.canaries,
                    og.system_prompt.as_deref(),
                ))
            })
            .await?;
            let d = &output.decision;
            crate::metrics::METRICS
                .guard_seconds
                .with_label_values(&["output"])
                .observe(started.elapsed().as_secs_f64());
            crate::guard::record(
                &st,
                crate::guard::Record {
                    route: "chat",
                    stage: output.stage,
                    decision: d,
                    actor,
                    request_id: &request_id,
                    redacted: Some(output.logged.clone()),
                    extra: json!({
                        "upstream": upstream_name,
                        "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens},
                        "latency_ms": request_started.elapsed().as_millis() as u64,
                    }),
                },
            );
            action = action.max(Some(d.action));
            if d.blocked {
                finish = "content_filter";
            }
            text = output.decision.text.clone();
            keel_app::rag::apply_output(&output.decision, &mut text);
        }
        let mut resp = axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "total_tokens": g.prompt_tokens + g.completion_tokens,
            },
        }))
        .into_response();
        resp.headers_mut().insert(
            "x-keel-guard",
            HeaderValue::from_static(action.map_or("off", keel_guard::policy::Action::as_str)),
        );
        return Ok(resp);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Value, finish: Option<&str>| -> Bytes {
            let v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            Bytes::from(format!("data: {v}\n\n"))
        }
    };
    let handle = tokio::runtime::Handle::current();
    let st2 = st.clone();
    let slot = match upstream {
        Engine::Local(_) => Some(st.rag.generation_slot().await?),
        Engine::Remote(_) => None,
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        if tx
            .blocking_send(chunk(json!({"role": "assistant", "content": ""}), None))
            .is_err()
        {
            return;
        }
        let mut sg = out_guard.map(|og| {
            keel_guard::stream::StreamGuard::new(og.guard, og.policy, og.canaries, og.system_prompt)
        });
        let mut stop: Option<String> = None;
        let mut gone = false;
        // Sends released text; false when the client went away (which stops generation).
        let mut on_piece = |piece: &str| -> bool {
            let emit = match sg.as_mut() {
                None => piece.to_string(),
                Some(sg) => {
                    let step = sg.push(piece);
                    if step.stop.is_some() {
                        stop = step.stop;
                    }
                    step.emit
                }
            };
            if !emit.is_empty()
                && tx
                    .blocking_send(chunk(json!({"content": emit}), None))
                    .is_err()
            {
                gone = true;
            }
            stop.is_none() && !gone
        };
        let result = match upstream {
            Engine::Local(llm) => llm
                .chat(&messages, &opts, &mut on_piece)
                .map_err(|e| e.to_string()),
            Engine::Remote(r) => match handle.block_on(r.chat(&messages, &opts)) {
                // The upstream answers whole; its text goes through the same stream guard in word-sized pieces.
                Ok(g) => {
                    for piece in g.text.split_inclusive(char::is_whitespace) {
                        if !on_piece(piece) {
                            break;
                        }
                    }
                    Ok(g)
                }
                Err(e) => Err(e.to_string()),
            },
        };
        match result {
            Ok(g) => {
                count_tokens(upstream_name, &g);
                if gone || g.finish == Finish::Cancelled && stop.is_none() {
                    return;
                }
                let mut finish = finish_reason(g.finish);
                if let Some(sg) = sg.as_mut() {
                    if stop.is_none() {
                        let step = sg.finish();
                        if !step.emit.is_empty() {
                            let _ = tx.blocking_send(chunk(json!({"content": step.emit}), None));
                        }
                        stop = step.stop;
                    }
                    let d = sg.decision();
                    crate::guard::record(
                        &st2,
                        crate::guard::Record {
                            route: "chat",
                            stage: keel_app::guard::Stage::Output,
                            decision: &d,
                            actor,
                            request_id: &request_id,
                            redacted: None,
                            extra: json!({
                                "upstream": upstream_name,
                                "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens},
                                "latency_ms": request_started.elapsed().as_millis() as u64,
                            }),
                        },
                    );
                    if stop.is_some() {
                        let _ = tx.blocking_send(chunk(
                            json!({"content": crate::guard::BLOCKED_ANSWER}),
                            None,
                        ));
                        finish = "content_filter";
                    }
                }
                let _ = tx.blocking_send(chunk(json!({}), Some(finish)));
                let _ = tx.blocking_send(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            Err(e) => {
                tracing::error!(error = %e, "generation failed mid-stream");
                let v = json!({"error": {"code": "generation_failed", "message": e}});
                let _ = tx.blocking_send(Bytes::from(format!("data: {v}\n\n")));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp.headers_mut().insert(
        "x-keel-guard",
        HeaderValue::from_static(action.map_or("off", keel_guard::policy::Action::as_str)),
    );
    Ok(resp)
}

/// The model behind `/v1/chat/completions`.
enum Engine {
    Local(Arc<LocalLlm>),
    Remote(RemoteLlm),
}

/// What the output guards need for one answer.
struct OutputGuard {
    guard: Arc<keel_guard::Guard>,
    policy: keel_guard::policy::Policy,
    canaries: Vec<String>,
    system_prompt: Option<String>,
}

fn count_tokens(upstream: &str, g: &keel_rag::llm::Generation) {
    let m = &crate::metrics::METRICS;
    m.generated_tokens.inc_by(g.completion_tokens as u64);
    m.gateway_tokens
        .with_label_values(&[upstream, "prompt"])
        .inc_by(g.prompt_tokens as u64);
    m.gateway_tokens
        .with_label_values(&[upstream, "completion"])
        .inc_by(g.completion_tokens as u64);
}

/// An upstream that fails, hangs past its timeout or answers garbage: 502 with the reason.
fn upstream_error(e: RemoteError) -> ApiError {
    let status = match e {
        RemoteError::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
        RemoteError::Unreachable { ref message, .. } if message == "timed out" => {
            StatusCode::GATEWAY_TIMEOUT
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, "upstream_failed", e.to_string())
}
