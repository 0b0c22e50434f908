//! A trained model and its versioned binary format.
//!
//! File layout: 8-byte magic `KEELMDL\0`, format version (u32 LE), payload length (u64 LE), the payload
//! (postcard-encoded [`Model`]), and the SHA-256 of the payload. Loading checks all four, so a truncated or
//! edited file is refused rather than half-read. Floats are stored bit-exactly: a saved model reloads to
//! bit-identical predictions.
//!
//! Versions: 1 had no [`Link`] or [`Numerics`] (the link followed the objective, sums were f64); 2 adds both,
//! for models imported from other libraries. This build reads 1 and 2 and writes 2, so a Keel that only reads
//! version 1 refuses an imported model instead of misreading it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{Encoder, FeatureSpec};
use crate::gbdt::Ensemble;
use crate::linear::LinearModel;
use crate::{Error, Objective, Result};

const MAGIC: &[u8; 8] = b"KEELMDL\0";
/// The model format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 2;

/// How the raw margin becomes the output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Link {
    /// The margin is the output (regression).
    Identity,
    /// `1 / (1 + exp(-scale * margin))`: the probability of class 1 (LightGBM's `sigmoid:` is the scale).
    Logistic { scale: f64 },
    /// `exp(margin)` (Poisson, gamma and Tweedie regression).
    Exp,
}

impl Link {
    /// The link Keel's own training uses for an objective.
    pub fn of(objective: Objective) -> Link {
        match objective {
            Objective::Binary => Link::Logistic { scale: 1.0 },
            Objective::Regression => Link::Identity,
        }
    }

    #[inline]
    pub fn apply(self, m: f64) -> f64 {
        match self {
            Link::Identity => m,
            Link::Logistic { scale } => 1.0 / (1.0 + (-(scale * m)).exp()),
            Link::Exp => m.exp(),
        }
    }
}

/// The arithmetic the margin is computed in, as the source library does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Numerics {
    /// Leaves summed in f64 from the initial score (Keel, LightGBM).
    F64,
    /// The initial score and the leaves summed in f32 in tree order, the link in f32 (XGBoost, ONNX).
    F32,
}

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
    pub link: Link,
    pub numerics: Numerics,
}

/// Version 1's payload: a model without link or numerics.
#[derive(Deserialize)]
struct ModelV1 {
    objective: Objective,
    target: String,
    class_labels: Option<[String; 2]>,
    features: Vec<FeatureSpec>,
    kind: ModelKind,
}

impl Model {
    pub fn encoder(&self) -> Encoder {
        Encoder::new(&self.features)
    }

    /// Raw margin of one encoded row (log-odds for classification).
    #[inline]
    pub fn predict_margin(&self, row: &[f64]) -> f64 {
        match (&self.kind, self.numerics) {
            (ModelKind::Gbdt(e), Numerics::F64) => e.predict_margin(row),
            (ModelKind::Gbdt(e), Numerics::F32) => f64::from(e.predict_margin_f32(row)),
            (ModelKind::Linear(l), _) => l.predict_margin(row),
        }
    }

    /// The prediction on the output scale: probability of class 1, or the regression value.
    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        match (&self.kind, self.numerics) {
            (ModelKind::Gbdt(e), Numerics::F32) => {
                f64::from(link_f32(self.link, e.predict_margin_f32(row)))
            }
            _ => self.link.apply(self.predict_margin(row)),
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
        if !(1..=FORMAT_VERSION).contains(&version) {
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
        let decode = |e: postcard::Error| Error::BadModelFile(format!("decode: {e}"));
        if version == 1 {
            let v1: ModelV1 = postcard::from_bytes(payload).map_err(decode)?;
            return Ok(Model {
                link: Link::of(v1.objective),
                numerics: Numerics::F64,
                objective: v1.objective,
                target: v1.target,
                class_labels: v1.class_labels,
                features: v1.features,
                kind: v1.kind,
            });
        }
        postcard::from_bytes(payload).map_err(decode)
    }
}

/// A link in f32, as XGBoost applies it (its sigmoid clamps the exponent at 88.7 and adds 1e-16).
#[inline]
fn link_f32(link: Link, m: f32) -> f32 {
    match link {
        Link::Identity => m,
        Link::Logistic { .. } => {
            let e = (-m).min(88.7f32).exp();
            1.0f32 / (e + 1.0f32 + 1e-16f32)
        }
        Link::Exp => m.exp(),
    }
}
