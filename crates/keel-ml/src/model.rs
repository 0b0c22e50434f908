//! A trained model and its versioned binary format.
//!
//! File layout: 8-byte magic `KEELMDL\0`, format version (u32 LE), payload length (u64 LE), the payload
//! (postcard-encoded [`Model`]), and the SHA-256 of the payload. Loading checks all four, so a truncated or
//! edited file is refused rather than half-read. Floats are stored bit-exactly: a saved model reloads to
//! bit-identical predictions.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{Encoder, FeatureSpec};
use crate::gbdt::Ensemble;
use crate::linear::LinearModel;
use crate::{Error, Objective, Result};

const MAGIC: &[u8; 8] = b"KEELMDL\0";
/// The model format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The learner inside a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelKind {
    Gbdt(Ensemble),
    Linear(LinearModel),
}

/// A trained model with everything needed to score raw records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub objective: Objective,
    pub target: String,
    /// Classification: the labels of class 0 and class 1 as they appeared in the data.
    pub class_labels: Option<[String; 2]>,
    pub features: Vec<FeatureSpec>,
    pub kind: ModelKind,
}

impl Model {
    pub fn encoder(&self) -> Encoder {
        Encoder::new(&self.features)
    }

    /// Raw margin of one encoded row (log-odds for classification).
    #[inline]
    pub fn predict_margin(&self, row: &[f64]) -> f64 {
        match &self.kind {
            ModelKind::Gbdt(e) => e.predict_margin(row),
            ModelKind::Linear(l) => l.predict_margin(row),
        }
    }

    /// The prediction on the output scale: probability of class 1, or the regression value.
    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        let m = self.predict_margin(row);
        match self.objective {
            Objective::Binary => crate::sigmoid(m),
            Objective::Regression => m,
        }
    }

    /// Predictions for a row-major matrix.
    pub fn predict_rows(&self, x: &[f64]) -> Vec<f64> {
        let nf = self.features.len();
        x.chunks_exact(nf).map(|r| self.predict(r)).collect()
    }

    pub fn n_trees(&self) -> usize {
        match &self.kind {
            ModelKind::Gbdt(e) => e.trees.len(),
            ModelKind::Linear(_) => 0,
        }
    }

    /// Whether a registry kind is one of these tabular models (and not, say, a guard model).
    pub fn is_tabular_kind(kind: &str) -> bool {
        matches!(kind, "gbdt" | "linear")
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            ModelKind::Gbdt(_) => "gbdt",
            ModelKind::Linear(_) => "linear",
        }
    }

    /// Serialises the model into the versioned binary format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload =
            postcard::to_stdvec(self).map_err(|e| Error::Internal(format!("encode model: {e}")))?;
        let mut out = Vec::with_capacity(payload.len() + 52);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&Sha256::digest(&payload));
        Ok(out)
    }

    /// Reads a model written by [`Model::to_bytes`], verifying magic, version, length and checksum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(Error::BadModelFile("missing the KEELMDL header".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version == 0 || version > FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
        if bytes.len() != 20 + len + 32 {
            return Err(Error::BadModelFile(format!(
                "expected {} bytes, found {} (truncated or padded)",
                20 + len + 32,
                bytes.len()
            )));
        }
        let payload = &bytes[20..20 + len];
        if Sha256::digest(payload)[..] != bytes[20 + len..] {
            return Err(Error::BadModelFile(
                "checksum mismatch (the file was modified or corrupted)".into(),
            ));
        }
        postcard::from_bytes(payload).map_err(|e| Error::BadModelFile(format!("decode: {e}")))
    }
}
