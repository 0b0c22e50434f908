//! Sentence embeddings on the CPU with Keel's packed encoder ([`crate::bert`]), mean-pooled over each text's
//! own tokens and L2-normalised — the sentence-transformers recipe — for the two local models
//! ([`LocalModel`]): all-MiniLM-L6-v2 (BERT, 384 dimensions, 256-token window; the default) and
//! all-mpnet-base-v2 (MPNet, 768 dimensions, 384-token window; about 5× slower, better on natural questions).
//! The tokenizer's own padding is turned off: sequences are packed, never padded.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::Bert;

use crate::{Error, Result};

/// Anything that turns texts into unit vectors of one dimension.
pub trait Embedder: Send + Sync {
    /// A stable name of the model (stored with a collection, so a query uses the model it was built with).
    fn id(&self) -> String;
    fn dim(&self) -> usize;
    /// Unit-length vectors, one per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Tokens the model sees for `text` (chunk budgets are counted with this).
    fn count_tokens(&self, text: &str) -> usize;
    /// Longest input in tokens, special tokens included; longer texts are truncated.
    fn window(&self) -> usize {
        MAX_TOKENS
    }
}

/// MiniLM's window in tokens (its published sentence-transformers setting); longer texts are truncated.
pub const MAX_TOKENS: usize = 256;

/// The sentence-embedding models Keel runs itself; a collection records which one built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalModel {
    /// all-MiniLM-L6-v2: 384 dimensions, 256 tokens.
    #[default]
    MiniLm,
    /// all-mpnet-base-v2: 768 dimensions, 384 tokens.
    MpNet,
}

impl LocalModel {
    pub const ALL: [LocalModel; 2] = [LocalModel::MiniLm, LocalModel::MpNet];

    /// The short name used on the command line and in asset groups: `minilm`, `mpnet`.
    pub fn name(self) -> &'static str {
        match self {
            LocalModel::MiniLm => "minilm",
            LocalModel::MpNet => "mpnet",
        }
    }

    /// The id a collection stores (the model's sentence-transformers name).
    pub fn id(self) -> &'static str {
        match self {
            LocalModel::MiniLm => "sentence-transformers/all-MiniLM-L6-v2",
            LocalModel::MpNet => "sentence-transformers/all-mpnet-base-v2",
        }
    }

    /// The folder of its files in the asset cache.
    pub fn dir_name(self) -> &'static str {
        match self {
            LocalModel::MiniLm => "all-MiniLM-L6-v2",
            LocalModel::MpNet => "all-mpnet-base-v2",
        }
    }

    /// Its window in tokens, special tokens included.
    pub fn window(self) -> usize {
        match self {
            LocalModel::MiniLm => MAX_TOKENS,
            LocalModel::MpNet => 384,
        }
    }

    /// The model behind a stored id; `None` for a remote embedder's.
    pub fn from_id(id: &str) -> Option<LocalModel> {
        Self::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The model of a short name (`minilm`, `mpnet`).
    pub fn from_name(name: &str) -> Result<LocalModel> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown embedding model '{name}' (minilm or mpnet)"
                ))
            })
    }
}

/// A local sentence-embedding model (either of [`LocalModel`]).
pub type MiniLm = SentenceEncoder;

/// A local sentence-embedding model: its encoder and tokenizer.
pub struct SentenceEncoder {
    model: Bert,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation: lengths are counted whole.
    counter: Tokenizer,
    dim: usize,
    batch: usize,
    model_kind: LocalModel,
}

impl SentenceEncoder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`; which model it is
    /// ([`LocalModel`]) follows from the config's `model_type` (`bert`: MiniLM, `mpnet`: MPNet).
    pub fn load(dir: &Path) -> Result<SentenceEncoder> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(Error::Model(format!(
                    "{} is missing (fetch it with scripts/fetch-assets.sh {})",
                    p.display(),
                    if dir.ends_with(LocalModel::MpNet.dir_name()) {
                        "mpnet"
                    } else {
                        "minilm"
                    }
                )))
            }
        };
        file("config.json")?;
        file("model.safetensors")?;
        let model = Bert::load(dir)?;
        let model_kind = if model.is_mpnet() {
            LocalModel::MpNet
        } else {
            LocalModel::MiniLm
        };
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| Error::Model(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter
            .with_truncation(None)
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: model_kind.window(),
                ..Default::default()
            }))
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        Ok(SentenceEncoder {
            dim: model.hidden_size(),
            model,
            tokenizer,
            counter,
            batch: 32,
            model_kind,
        })
    }

    /// Which local model this is.
    pub fn model(&self) -> LocalModel {
        self.model_kind
    }

    /// Texts per forward pass.
    pub fn with_batch(mut self, batch: usize) -> SentenceEncoder {
        self.batch = batch.max(1);
        self
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Model(format!("tokenizing: {e}")))?;
        let ids: Vec<&[u32]> = enc.iter().map(|e| e.get_ids()).collect();
        self.model.embed(&ids)
    }
}

impl Embedder for SentenceEncoder {
    fn id(&self) -> String {
        self.model_kind.id().to_string()
    }

    fn window(&self) -> usize {
        self.model_kind.window()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        // Batches of similar length waste little work on padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(self.batch) {
            let batch: Vec<&str> = group.iter().map(|&i| texts[i]).collect();
            for (&i, v) in group.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn count_tokens(&self, text: &str) -> usize {
        // Without special tokens, without truncation: the text's own length.
        self.counter
            .encode_fast(text, false)
            .map(|e| e.get_ids().len())
            .unwrap_or_else(|_| text.split_whitespace().count())
            .max(usize::from(!text.trim().is_empty()))
    }
}

/// Tokens repeated between consecutive query windows.
const QUERY_OVERLAP: usize = 32;

/// The embedding of a question of any length. Up to the model's window it is the text's own embedding; a
/// longer question (a pasted error log, a long request) is cut at word boundaries into windows of the
/// model's window − 2 tokens (254 for MiniLM) overlapping by 32, each window is embedded, and the token-weighted mean of the
/// window vectors, normalised, is the query vector — every part of the question counts, where truncation would
/// keep only the first 254 tokens.
pub fn embed_query(embedder: &dyn Embedder, text: &str) -> Result<Vec<f32>> {
    Ok(embed_queries(embedder, &[text])?.remove(0))
}

/// [`embed_query`] for many questions, their windows embedded in one batch.
pub fn embed_queries(embedder: &dyn Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    // Most questions fit: one count of the whole text says so; only longer ones are cut (word by word).
    // A window holds the model's window less its two special tokens.
    let query_window = embedder.window().saturating_sub(2).max(QUERY_OVERLAP + 1);
    let per: Vec<Vec<(String, usize)>> = texts
        .iter()
        .map(|t| {
            let tokens = embedder.count_tokens(t);
            if tokens <= query_window {
                vec![(String::new(), tokens)]
            } else {
                query_windows(t, query_window, QUERY_OVERLAP, &|w| {
                    embedder.count_tokens(w)
                })
            }
        })
        .collect();
    // A question that fits goes in as written (its own text, not the re-joined words).
    let inputs: Vec<&str> = per
        .iter()
        .zip(texts)
        .flat_map(|(w, t)| -> Vec<&str> {
            if w.len() <= 1 {
                vec![*t]
            } else {
                w.iter().map(|(p, _)| p.as_str()).collect()
            }
        })
        .collect();
    let mut vectors = embedder.embed(&inputs)?.into_iter();
    let mut out = Vec::with_capacity(texts.len());
    for w in &per {
        if w.len() <= 1 {
            out.push(vectors.next().expect("one vector per input"));
            continue;
        }
        let mut mean = vec![0f32; embedder.dim()];
        for (_, tokens) in w {
            let v = vectors.next().expect("one vector per window");
            for (m, x) in mean.iter_mut().zip(&v) {
                *m += x * *tokens as f32;
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.push(mean.into_iter().map(|x| x / norm).collect());
    }
    Ok(out)
}

/// `text` cut at word boundaries into windows of at most `window` tokens (a word's tokens counted alone),
/// consecutive windows sharing about `overlap` tokens; each with its token count. One window when it fits.
pub fn query_windows(
    text: &str,
    window: usize,
    overlap: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(String, usize)> {
    let words: Vec<(&str, usize)> = text
        .split_whitespace()
        .map(|w| (w, count(w).max(1)))
        .collect();
    let total: usize = words.iter().map(|w| w.1).sum();
    if total <= window {
        return vec![(text.to_string(), total)];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < words.len() && (tokens + words[end].1 <= window || end == start) {
            tokens += words[end].1;
            end += 1;
        }
        let piece: Vec<&str> = words[start..end].iter().map(|w| w.0).collect();
        out.push((piece.join(" "), tokens));
        if end >= words.len() {
            break;
        }
        // Step back over about `overlap` tokens for the next window's start.
        let mut back = end;
        let mut kept = 0;
        while back > start + 1 && kept + words[back - 1].1 <= overlap {
            kept += words[back - 1].1;
            back -= 1;
        }
        start = back;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::query_windows;

    #[test]
    fn long_queries_are_cut_into_overlapping_windows_that_cover_every_word() {
        let words = |s: &str| s.split_whitespace().count();
        let text: String = (0..1000)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let w = query_windows(&text, 254, 32, &|_| 1);
        assert!(w.len() >= 4, "{}", w.len());
        for (piece, tokens) in &w {
            assert!(*tokens <= 254 && *tokens == words(piece));
        }
        // Consecutive windows share 32 words; the first and the last word are covered.
        for pair in w.windows(2) {
            let a: Vec<&str> = pair[0].0.split_whitespace().collect();
            let b: Vec<&str> = pair[1].0.split_whitespace().collect();
            assert_eq!(&a[a.len() - 32..], &b[..32]);
        }
        assert!(w[0].0.starts_with("w0 "));
        assert!(w.last().unwrap().0.ends_with("w999"));
        // A short query is one window, untouched.
        assert_eq!(query_windows("how do I rebase?", 254, 32, &|_| 1).len(), 1);
    }
}
