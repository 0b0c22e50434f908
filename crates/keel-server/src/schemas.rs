//! Response schemas of routes whose handlers build their JSON from domain types (documentation for
//! `openapi.json`; each lists the fields always present, so a response with more still conforms).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `worker_stopped` (with 503).
    pub status: String,
    /// The server's version (`keel --version`).
    pub version: String,
    /// The job worker's state (`state`: `off`, `running`, `retrying`, `stopped`).
    #[schema(value_type = Object)]
    pub worker: Value,
}

/// A loaded model reference.
#[derive(Serialize, ToSchema)]
pub struct LoadedModel {
    pub reference: String,
    pub version: i64,
}

/// `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
    pub models: Vec<LoadedModel>,
    #[schema(value_type = Object)]
    pub worker: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ChatMessageOut {
    pub role: String,
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatMessageOut,
    /// `stop`, `length` or `content_filter`.
    pub finish_reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// An OpenAI chat completion (with `stream: true`, server-sent `chat.completion.chunk` events instead).
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: TokenUsage,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingItem {
    /// `embedding`.
    pub object: String,
    pub index: u64,
    /// The vector: numbers, or a base64 string of little-endian f32 bytes with `encoding_format: base64`.
    #[schema(value_type = Value)]
    pub embedding: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// An OpenAI embeddings list.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    /// `list`.
    pub object: String,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// A guard scan: findings with character offsets, the injection score, the policy's decision.
#[derive(Serialize, ToSchema)]
pub struct ScanReport {
    /// PII findings (`type`, `start`, `end`, `score`, `reason`).
    #[schema(value_type = Vec<Object>)]
    pub pii: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub secrets: Vec<Value>,
    /// System-prompt or canary leaks.
    #[schema(value_type = Vec<Object>)]
    pub leaks: Vec<Value>,
    pub blocked: bool,
    /// `allow`, `flag`, `redact` or `block`.
    pub action: String,
    /// The injection score is in the review band (above the review threshold, not above the block
    /// threshold): the text passed, but a person should look.
    pub review: bool,
    pub reasons: Vec<String>,
    /// `score` (a calibrated probability with an encoder guard), `flagged`, `threshold`, `reasons`, `path`
    /// (`ngram` or `encoder`: which path decided), `review_threshold` (encoder guards).
    #[schema(value_type = Option<Object>)]
    pub injection: Option<Value>,
    /// The detected language (ISO 639-3), when PII was scanned.
    pub language: Option<String>,
    /// What a detector could not do for this text (person names are detected in English only).
    pub notes: Option<Vec<String>>,
    /// The text with findings redacted, when the policy redacted.
    pub redacted: Option<String>,
    /// The guard model's registry version.
    pub model_version: i64,
}

/// An API key (never its secret).
#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    /// `reader`, `predictor`, `deployer` or `admin`.
    pub role: String,
    pub description: String,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new key: the secret is shown once.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub role: String,
}

/// What storing labels did.
#[derive(Serialize, ToSchema)]
pub struct FeedbackOutcome {
    /// Labels joined to a logged prediction.
    pub stored: u64,
    /// Of those, labels that replaced an earlier one.
    pub replaced: u64,
    /// Labels whose request id (and row) is not in the prediction log; not stored.
    pub unknown: u64,
    pub unknown_ids: Vec<String>,
    pub log_rate: Option<f64>,
    /// What unknown ids mean and what to do.
    pub note: Option<String>,
}

/// The monitoring report (JSON; `format=html` gives the page with charts).
#[derive(Serialize, ToSchema)]
pub struct MonitorReport {
    pub model: String,
    pub version: i64,
    /// Windows included (`window_start`, `rows`), oldest first.
    #[schema(value_type = Vec<Object>)]
    pub windows: Vec<Value>,
    pub rows: u64,
    /// Per-column drift (`columns`, `drifted_columns`, `options`, `unmatched`).
    #[schema(value_type = Object)]
    pub drift: Value,
    /// Realized performance per window from delayed labels.
    #[schema(value_type = Vec<Object>)]
    pub realized: Vec<Value>,
}

/// An answer with citations and groundedness per sentence.
#[derive(Serialize, ToSchema)]
pub struct RagAnswer {
    pub answer: String,
    /// Cited chunks (`document`, `section`, `score`, `snippet`, …).
    #[schema(value_type = Vec<Object>)]
    pub citations: Vec<Value>,
    /// Every sentence supported by its citation.
    pub grounded: bool,
    #[schema(value_type = Vec<Object>)]
    pub sentences: Vec<Value>,
    /// Whether retrieval was confident enough to answer.
    pub confident: bool,
    pub retrieval: String,
    /// `extractive`, `local` or `remote`.
    pub mode: String,
    /// Why a generated answer fell back to the extractive one.
    pub fallback: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    pub trace_id: String,
    pub seconds: f64,
}
