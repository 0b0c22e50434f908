//! The local language model: SmolLM2-135M-Instruct from a GGUF file (Q4_1 weights, its GPT-2-style BPE
//! tokenizer read from the same file), run on the CPU with candle's quantized llama. Chat prompts use the
//! model's ChatML template; tokens are produced one at a time and handed to a callback as text, so callers can
//! stream them (a callback returning `false` stops generation).
//!
//! One generation at a time per loaded model (the attention cache is per model); callers run this on a
//! blocking thread, never on an async reactor.

use std::path::Path;
use std::sync::Mutex;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::{Error, Result};

/// One chat message (OpenAI's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Generation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenOptions {
    pub max_tokens: usize,
    /// 0 (or below) is greedy decoding.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub repeat_penalty: f32,
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            repeat_penalty: 1.1,
            seed: 299792458,
        }
    }
}

/// Why generation stopped (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
    /// The callback asked to stop (a client went away, an output guard fired).
    Cancelled,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
}

/// The local chat model.
pub struct LocalLlm {
    model: Mutex<ModelWeights>,
    tokenizer: Tokenizer,
    stop: Vec<u32>,
    context: usize,
    id: String,
}

/// Longest prompt kept, in tokens (older context is cut from the front of the conversation's first message).
const MAX_PROMPT_TOKENS: usize = 3072;

fn model_err(e: impl std::fmt::Display) -> Error {
    Error::Model(e.to_string())
}

/// Builds the byte-level BPE tokenizer stored in a GGUF file's metadata.
fn gguf_tokenizer(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let md = |k: &str| {
        ct.metadata
            .get(k)
            .ok_or_else(|| Error::Model(format!("GGUF metadata has no {k}")))
    };
    let model = md("tokenizer.ggml.model")?.to_string().map_err(model_err)?;
    if model != "gpt2" {
        return Err(Error::Model(format!(
            "GGUF tokenizer '{model}' is not supported (byte-level BPE, 'gpt2', is)"
        )));
    }
    let tokens: Vec<String> = md("tokenizer.ggml.tokens")?
        .to_vec()
        .map_err(model_err)?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<candle_core::Result<_>>()
        .map_err(model_err)?;
    let merges: Vec<(String, String)> = md("tokenizer.ggml.merges")?
        .to_vec()
        .map_err(model_err)?
        .iter()
        .map(|v| {
            let s = v.to_string().map_err(model_err)?;
            let (a, b) = s
                .split_once(' ')
                .ok_or_else(|| Error::Model(format!("GGUF merge '{s}' has no space")))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(model_err)?
            .iter()
            .map(|x| x.to_i32())
            .collect::<candle_core::Result<_>>()
            .map_err(model_err)?,
        None => Vec::new(),
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(model_err)?;
    let mut tok = Tokenizer::new(bpe);
    // SmolLM's pre-tokenizer: digits one by one, then GPT-2's byte-level split.
    tok.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (type 3) are matched whole, never split by BPE.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, t)| **t == 3)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(special).map_err(model_err)?;
    Ok(tok)
}

impl LocalLlm {
    /// Loads a GGUF llama-family model with its tokenizer.
    pub fn load(path: &Path) -> Result<LocalLlm> {
        let mut f = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Model(format!(
                    "{} is missing (fetch it with `keel assets smollm2`)",
                    path.display()
                ))
            } else {
                Error::io(path, e)
            }
        })?;
        let ct = gguf_file::Content::read(&mut f)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let tokenizer = gguf_tokenizer(&ct)?;
        let name = ct
            .metadata
            .get("general.basename")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "llama".into());
        let size = ct
            .metadata
            .get("general.size_label")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        let context = ct
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(2048) as usize;
        let mut stop = Vec::new();
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                stop.push(id);
            }
        }
        let model = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        Ok(LocalLlm {
            model: Mutex::new(model),
            tokenizer,
            stop,
            context,
            id: format!("{name}-{size}-instruct").to_lowercase(),
        })
    }

    /// The model's name as clients see it (`model` in OpenAI responses).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Token ids of `text` (special tokens recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode_fast(text, false)
            .map_err(model_err)?
            .get_ids()
            .to_vec())
    }

    /// The ChatML prompt for `messages`, ending where the assistant's answer begins.
    pub fn prompt(messages: &[ChatMessage]) -> String {
        let mut p = String::new();
        if messages.first().is_none_or(|m| m.role != "system") {
            p.push_str("<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n");
        }
        for m in messages {
            p.push_str("<|im_start|>");
            p.push_str(&m.role);
            p.push('\n');
            // A message cannot close its own turn or open another.
            p.push_str(
                &m.content
                    .replace("<|im_start|>", "")
                    .replace("<|im_end|>", ""),
            );
            p.push_str("<|im_end|>\n");
        }
        p.push_str("<|im_start|>assistant\n");
        p
    }

    /// Generates the assistant's reply, calling `on_text` with each new piece of text.
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        opts: &GenOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let mut prompt = self.encode(&Self::prompt(messages))?;
        let budget = MAX_PROMPT_TOKENS.min(self.context.saturating_sub(opts.max_tokens + 1));
        if prompt.len() > budget {
            // Keep the end (the question and the answer's start); the front is the oldest context.
            prompt.drain(..prompt.len() - budget);
        }
        let prompt_tokens = prompt.len();
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        model.clear_kv_cache();
        let temperature = (opts.temperature > 0.0).then_some(opts.temperature);
        let mut sampler = LogitsProcessor::new(opts.seed, temperature, opts.top_p);
        let mut out: Vec<u32> = Vec::new();
        let mut emitted = 0usize;
        let mut finish = Finish::Length;
        let mut pos = 0usize;
        let mut input = prompt.clone();
        for _ in 0..opts.max_tokens {
            let x = Tensor::new(input.as_slice(), &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(model_err)?;
            let logits = model
                .forward(&x, pos)
                .and_then(|l| l.squeeze(0))
                .map_err(model_err)?;
            pos += input.len();
            let logits = if opts.repeat_penalty != 1.0 && !out.is_empty() {
                let start = out.len().saturating_sub(64);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    opts.repeat_penalty,
                    &out[start..],
                )
                .map_err(model_err)?
            } else {
                logits
            };
            let next = sampler.sample(&logits).map_err(model_err)?;
            if self.stop.contains(&next) {
                finish = Finish::Stop;
                break;
            }
            out.push(next);
            input = vec![next];
            // Decode everything so far and hand over only complete characters.
            let all = self.tokenizer.decode(&out, true).map_err(model_err)?;
            if all.len() > emitted && !all.ends_with('\u{FFFD}') && all.is_char_boundary(emitted) {
                let go_on = on_text(&all[emitted..]);
                emitted = all.len();
                if !go_on {
                    finish = Finish::Cancelled;
                    break;
                }
            }
        }
        let mut text = self.tokenizer.decode(&out, true).map_err(model_err)?;
        if finish == Finish::Cancelled {
            // The caller has what it was given and nothing more.
            text.truncate(emitted);
        } else if text.len() > emitted && text.is_char_boundary(emitted) {
            on_text(&text[emitted..]);
        }
        Ok(Generation {
            text,
            prompt_tokens,
            completion_tokens: out.len(),
            finish,
        })
    }
}

/// Passages given to a generator: the best few, each cut to a length a small model can attend to.
pub const RAG_PASSAGES: usize = 3;
pub const RAG_PASSAGE_CHARS: usize = 800;

/// The messages that ask a chat model to answer `question` from numbered passages, citing them as `[n]`.
pub fn rag_messages(question: &str, passages: &[(String, String)]) -> Vec<ChatMessage> {
    let mut context = String::new();
    for (i, (section, text)) in passages.iter().take(RAG_PASSAGES).enumerate() {
        let text = text.trim();
        let cut: String = text.chars().take(RAG_PASSAGE_CHARS).collect();
        context.push_str(&format!("[{}] {section}\n{cut}\n\n", i + 1));
    }
    vec![
        ChatMessage::new(
            "system",
            "You answer questions from the given passages only. Answer in one to three sentences. End each \
             sentence with the number of the passage it comes from, like [1]. If the passages do not contain \
             the answer, say that the documents do not contain it.",
        ),
        ChatMessage::new("user", format!("{context}Question: {question}")),
    ]
}
