//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 384 dimensions) on the CPU with Keel's packed encoder
//! ([`crate::bert`]), mean-pooled over each text's own tokens and L2-normalised — the sentence-transformers
//! recipe. The tokenizer's own padding (to 128) is turned off: sequences are packed, never padded.

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
}

/// Longest input in tokens; longer texts are truncated (the model's published sentence-transformers setting).
pub const MAX_TOKENS: usize = 256;

/// The local MiniLM model.
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
    batch: usize,
    id: String,
}

impl MiniLm {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<MiniLm> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(Error::Model(format!(
                    "{} is missing (fetch it with `keel assets minilm`)",
                    p.display()
                )))
            }
        };
        file("config.json")?;
        file("model.safetensors")?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| Error::Model(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        tokenizer.with_padding(None);
        let model = Bert::load(dir)?;
        Ok(MiniLm {
            dim: model.hidden_size(),
            model,
            tokenizer,
            batch: 32,
            id: "sentence-transformers/all-MiniLM-L6-v2".into(),
        })
    }

    /// Texts per forward pass.
    pub fn with_batch(mut self, batch: usize) -> MiniLm {
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

impl Embedder for MiniLm {
    fn id(&self) -> String {
        self.id.clone()
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
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().len())
            .unwrap_or_else(|_| text.split_whitespace().count())
            .max(usize::from(!text.trim().is_empty()))
    }
}
