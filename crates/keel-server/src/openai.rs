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
        let mut req = self.client.post(&self.url).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            url: self.url.clone(),
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
            let text = String::from_utf8_lossy(&bytes);
            return Err(RemoteError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
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
