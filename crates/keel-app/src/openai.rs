//! A client for any OpenAI-compatible chat endpoint (`POST {base_url}/chat/completions`), used for remote
//! answers. Bounded in time; every failure is one clear message naming the endpoint.

use std::time::Duration;

use keel_rag::llm::{ChatMessage, Finish, GenOptions, Generation};
use serde::{Deserialize, Serialize};

/// Where the upstream chat model is (`[serve.llm]` in `keel.toml`, or `--remote-url` / `KEEL_LLM_URL`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Base URL including the version prefix, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: Option<String>,
    /// The `model` sent upstream.
    pub model: String,
    /// Name of the environment variable holding the upstream API key (sent as a bearer token).
    pub api_key_env: String,
    /// Longest wait for an answer.
    pub timeout_ms: u64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            base_url: None,
            model: "gpt-4o-mini".into(),
            api_key_env: "KEEL_LLM_API_KEY".into(),
            timeout_ms: 60_000,
        }
    }
}

/// Why a remote call failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "no remote LLM is configured (set base_url under [serve.llm] in keel.toml, or --remote-url)"
    )]
    NotConfigured,
    #[error("remote LLM at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("remote LLM at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "remote LLM at {url} returned something that is not an OpenAI chat completion: {message}"
    )]
    Garbage { url: String, message: String },
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: usize,
    #[serde(default)]
    completion_tokens: usize,
}

/// POSTs `body` as JSON (with a bearer key when there is one) and returns the body of a 2xx answer; a
/// connection failure or timeout, and any other status, become the matching [`RemoteError`].
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> Result<bytes::Bytes, RemoteError> {
    let mut req = client.post(url).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
        url: url.to_string(),
        message: if e.is_timeout() {
            "timed out".into()
        } else {
            e.to_string()
        },
    };
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(RemoteError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        });
    }
    Ok(bytes)
}

/// An upstream chat model.
#[derive(Clone)]
pub struct RemoteLlm {
    url: String,
    model: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl RemoteLlm {
    pub fn new(config: &RemoteConfig) -> Result<RemoteLlm, RemoteError> {
        let base = config
            .base_url
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .ok_or(RemoteError::NotConfigured)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5000)))
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(RemoteLlm {
            url: format!("{}/chat/completions", base.trim_end_matches('/')),
            model: config.model.clone(),
            key: std::env::var(&config.api_key_env)
                .ok()
                .filter(|k| !k.is_empty()),
            client,
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// One non-streaming chat completion.
    pub async fn chat(
        &self,
        messages: &[ChatMessage],
        opts: &GenOptions,
    ) -> Result<Generation, RemoteError> {
        let mut body = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature.max(0.0),
            "stream": false,
        });
        if let Some(p) = opts.top_p {
            body["top_p"] = p.into();
        }
        let bytes = post_json(&self.client, &self.url, self.key.as_deref(), &body).await?;
        let c: Completion = serde_json::from_slice(&bytes).map_err(|e| RemoteError::Garbage {
            url: self.url.clone(),
            message: e.to_string(),
        })?;
        let choice = c.choices.into_iter().next().ok_or(RemoteError::Garbage {
            url: self.url.clone(),
            message: "no choices".into(),
        })?;
        let text = choice.message.content.unwrap_or_default();
        let usage = c.usage.unwrap_or(Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        Ok(Generation {
            text,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            finish: match choice.finish_reason.as_deref() {
                Some("length") => Finish::Length,
                _ => Finish::Stop,
            },
        })
    }
}

/// An OpenAI-compatible embeddings endpoint (`[serve.llm.embeddings]`, or `keel rag ingest --embeddings-url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteEmbeddingsConfig {
    /// Base URL including the version prefix, e.g. `http://127.0.0.1:8080/v1`; unset means the local MiniLM.
    pub base_url: Option<String>,
    pub model: String,
    /// Name of the environment variable holding the API key (sent as a bearer token).
    pub api_key_env: String,
    /// Longest wait for one batch.
    pub timeout_ms: u64,
    /// Texts per request.
    pub batch: usize,
}

impl Default for RemoteEmbeddingsConfig {
    fn default() -> Self {
        RemoteEmbeddingsConfig {
            base_url: None,
            model: "text-embedding-3-small".into(),
            api_key_env: "KEEL_EMBEDDINGS_API_KEY".into(),
            timeout_ms: 60_000,
            batch: 64,
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingList {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

/// Prefix of the embedder id a collection built with a remote endpoint records.
pub const REMOTE_EMBEDDER_PREFIX: &str = "openai:";

/// A remote embeddings endpoint as a [`keel_rag::Embedder`]. Calls block, so they run where blocking is
/// allowed (the blocking pool, or the CLI outside any runtime): each call drives its request on a private
/// current-thread runtime.
pub struct RemoteEmbedder {
    url: String,
    model: String,
    key: Option<String>,
    timeout: Duration,
    batch: usize,
    dim: std::sync::OnceLock<usize>,
}

impl RemoteEmbedder {
    pub fn new(config: &RemoteEmbeddingsConfig) -> Result<RemoteEmbedder, RemoteError> {
        let base = config
            .base_url
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .ok_or(RemoteError::NotConfigured)?;
        Ok(RemoteEmbedder {
            url: format!("{}/embeddings", base.trim_end_matches('/')),
            model: config.model.clone(),
            key: std::env::var(&config.api_key_env)
                .ok()
                .filter(|k| !k.is_empty()),
            timeout: Duration::from_millis(config.timeout_ms),
            batch: config.batch.max(1),
            dim: std::sync::OnceLock::new(),
        })
    }

    /// The id a collection records: the model name behind a fixed prefix.
    pub fn id_for(model: &str) -> String {
        format!("{REMOTE_EMBEDDER_PREFIX}{model}")
    }

    async fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, RemoteError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        let body = serde_json::json!({"model": self.model, "input": texts});
        let bytes = post_json(&client, &self.url, self.key.as_deref(), &body).await?;
        let garbage = |m: String| RemoteError::Garbage {
            url: self.url.clone(),
            message: m,
        };
        let list: EmbeddingList =
            serde_json::from_slice(&bytes).map_err(|e| garbage(e.to_string()))?;
        if list.data.len() != texts.len() {
            return Err(garbage(format!(
                "{} embeddings for {} texts",
                list.data.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (i, item) in list.data.into_iter().enumerate() {
            let at = item.index.unwrap_or(i);
            let slot = out
                .get_mut(at)
                .ok_or_else(|| garbage(format!("index {at} out of range")))?;
            let mut v = item.embedding;
            keel_rag::hnsw::normalize(&mut v);
            *slot = v;
        }
        let dim = out[0].len();
        if dim == 0 || out.iter().any(|v| v.len() != dim) {
            return Err(garbage("embeddings of different or zero lengths".into()));
        }
        if *self.dim.get_or_init(|| dim) != dim {
            return Err(garbage(format!(
                "{dim}-dimensional embeddings after {}-dimensional ones",
                self.dim.get().copied().unwrap_or(0)
            )));
        }
        Ok(out)
    }

    fn blocking_call(&self, texts: &[&str]) -> keel_rag::Result<Vec<Vec<f32>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| keel_rag::Error::Model(e.to_string()))?;
        rt.block_on(self.call(texts))
            .map_err(|e| keel_rag::Error::Model(e.to_string()))
    }
}

impl keel_rag::Embedder for RemoteEmbedder {
    fn id(&self) -> String {
        RemoteEmbedder::id_for(&self.model)
    }

    fn dim(&self) -> usize {
        if let Some(d) = self.dim.get() {
            return *d;
        }
        // Learned from the endpoint itself.
        self.blocking_call(&["dimension"])
            .map(|v| v[0].len())
            .unwrap_or(0)
    }

    fn embed(&self, texts: &[&str]) -> keel_rag::Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for group in texts.chunks(self.batch) {
            out.extend(self.blocking_call(group)?);
        }
        Ok(out)
    }

    fn count_tokens(&self, text: &str) -> usize {
        // Sub-word tokenizers average about four tokens to three words of English.
        (text.split_whitespace().count() * 4).div_ceil(3)
    }
}
