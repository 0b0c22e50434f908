//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 384 dimensions) run with candle on the CPU, batched by length,
//! mean-pooled with the attention mask and L2-normalised — the sentence-transformers recipe. The tokenizer's
//! own padding (to 128) is turned off: each batch pads to its longest member and the mask keeps padding out
//! of the mean.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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

/// The local MiniLM model.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    /// Longest input in tokens (longer texts are truncated, as sentence-transformers does).
    max_tokens: usize,
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
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(file("config.json")?).map_err(|e| Error::io(dir, e))?,
        )
        .map_err(|e| Error::Model(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| Error::Model(format!("tokenizer.json: {e}")))?;
        let max_tokens = 256;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        let device = Device::Cpu;
        // SAFETY: the weights file is memory-mapped read-only; the asset cache is not modified while in use.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[file("model.safetensors")?], DType::F32, &device)
        }
        .map_err(|e| Error::Model(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| Error::Model(format!("BERT: {e}")))?;
        Ok(MiniLm {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_tokens,
            batch: 32,
            id: "sentence-transformers/all-MiniLM-L6-v2".into(),
        })
    }

    /// Longest input in tokens; longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Model(format!("tokenizing: {e}")))?;
        let n = enc.len();
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for e in &enc {
            ids.extend(e.get_ids().iter().map(|&x| x as i64));
            mask.extend(e.get_attention_mask().iter().map(|&x| x as i64));
            types.extend(e.get_type_ids().iter().map(|&x| x as i64));
        }
        let t = |v: Vec<i64>| Tensor::from_vec(v, (n, len), &self.device);
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let (ids, types, mask) = (t(ids)?, t(types)?, t(mask)?);
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
            let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dim)
            let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        };
        run().map_err(|e| Error::Model(format!("embedding: {e}")))
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
