//! A trained model and its versioned binary format.
//!
//! File layout: 8-byte magic `KEELMDL\0`, format version (u32 LE), payload length (u64 LE), the payload
//! (postcard-encoded [`Model`]), and the SHA-256 of the payload. Loading checks all four, so a truncated or
//! edited file is refused rather than half-read. Floats are stored bit-exactly: a saved model reloads to
//! bit-identical predictions.
//!
//! Versions: 1 had no [`Link`] or [`Numerics`] (the link followed the objective, sums were f64); 2 adds both,
//! for models imported from other libraries; 3 holds any number of class labels (multiclass); 4 adds time features
//! ([`crate::FeatureKind::Time`], decoded by the same struct as 3). This build reads 1 to 4 and writes 4, so an older Keel refuses a newer model instead of misreading it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{Encoder, FeatureSpec};
use crate::gbdt::Ensemble;
use crate::linear::{ImportedLinear, LinearModel};
use crate::{Error, Objective, Result};

const MAGIC: &[u8; 8] = b"KEELMDL\0";
/// The model format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 4;

/// How the raw margin becomes the output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Link {
    /// The margin is the output (regression).
    Identity,
    /// `1 / (1 + exp(-scale * margin))`: the probability of class 1 (LightGBM's `sigmoid:` is the scale).
    Logistic { scale: f64 },
    /// `exp(margin)` (Poisson, gamma and Tweedie regression).
    Exp,
    /// ONNX Runtime's vectorised logistic (MLAS's rational approximation, in f32 with fused multiply-adds), which
    /// its linear classifiers apply to a two-row score.
    LogisticMlas,
    /// Multiclass: the softmax of the class margins.
    Softmax,
}

impl Link {
    /// The link Keel's own training uses for an objective and a regression loss (log-link losses: `Exp`).
    pub fn of_training(objective: Objective, loss: crate::Loss) -> Link {
        if objective == Objective::Regression && loss.log_link() {
            Link::Exp
        } else {
            Link::of(objective)
        }
    }

    /// The link Keel's own training uses for an objective.
    pub fn of(objective: Objective) -> Link {
        match objective {
            Objective::Binary => Link::Logistic { scale: 1.0 },
            Objective::Regression => Link::Identity,
            Objective::Multiclass => Link::Softmax,
        }
    }

    #[inline]
    pub fn apply(self, m: f64) -> f64 {
        match self {
            Link::Identity => m,
            Link::Logistic { scale } => 1.0 / (1.0 + (-(scale * m)).exp()),
            Link::Exp => m.exp(),
            Link::LogisticMlas => f64::from(logistic_mlas(m as f32)),
            // A softmax needs every class's margin; alone, a margin is its own score.
            Link::Softmax => m,
        }
    }
}

/// MLAS's logistic (`MlasComputeLogistic`, the FMA kernel): the input clamped to ±18, an odd degree-9 over even
/// degree-10 rational function with Eigen's coefficients, plus one half, clamped to [0, 1].
#[inline]
#[allow(clippy::excessive_precision)] // the coefficients as MLAS writes them, rounded to f32 by the compiler as there
pub fn logistic_mlas(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let v = x.clamp(-18.0, 18.0);
    let v2 = v * v;
    let mut p = v2.mul_add(4.37031012579801e-11_f32, 1.15627324459942e-07_f32);
    p = p.mul_add(v2, 6.08574864600143e-05_f32);
    p = p.mul_add(v2, 8.51377133304701e-03_f32);
    p = p.mul_add(v2, 2.48287947061529e-01_f32);
    p *= v;
    let mut q = v2.mul_add(6.10247389755681e-13_f32, 5.76102136993427e-09_f32);
    q = q.mul_add(v2, 6.29106785017040e-06_f32);
    q = q.mul_add(v2, 1.70198817374094e-03_f32);
    q = q.mul_add(v2, 1.16817656904453e-01_f32);
    q = q.mul_add(v2, 9.93151921023180e-01_f32);
    (p / q + 0.5).clamp(0.0, 1.0)
}

/// The arithmetic the margin is computed in, as the source library does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Numerics {
    /// Leaves summed in f64 from the initial score (Keel, LightGBM).
    F64,
    /// The initial score and the leaves summed in f32 in tree order, the link in f32 (XGBoost).
    F32,
    /// The leaves summed in f32 from zero in tree order, the initial score added last, the link in f32 as ONNX
    /// Runtime computes it (ONNX-ML tree ensembles).
    Onnx,
}

/// The learner inside a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ModelKind {
    Gbdt(Ensemble),
    Linear(LinearModel),
    /// A linear model imported from ONNX, evaluated in f32 as ONNX Runtime does.
    ImportedLinear(ImportedLinear),
    /// A neural network imported from ONNX, run by ONNX Runtime (the `onnx-runtime` build).
    Neural(crate::neural::NeuralNet),
    /// Multiclass trees: one ensemble per class (its own initial score and trees), in class order.
    GbdtMulticlass(Vec<Ensemble>),
    /// Multinomial linear model: one linear model per class over the same encoding, in class order.
    LinearMulticlass(Vec<LinearModel>),
}

/// A trained model with everything needed to score raw records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub objective: Objective,
    pub target: String,
    /// Classification: the labels of class 0, 1, … as they appeared in the data (two for binary models).
    pub class_labels: Option<Vec<String>>,
    pub features: Vec<FeatureSpec>,
    pub kind: ModelKind,
    pub link: Link,
    pub numerics: Numerics,
}

/// Version 2's payload: exactly two class labels.
#[derive(Deserialize)]
struct ModelV2 {
    objective: Objective,
    target: String,
    class_labels: Option<[String; 2]>,
    features: Vec<FeatureSpec>,
    kind: ModelKind,
    link: Link,
    numerics: Numerics,
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

    /// Raw margin of one encoded row (log-odds for binary classification). A multiclass model's margin is the
    /// largest of its class margins; [`Model::predict_margins`] gives them all.
    #[inline]
    pub fn predict_margin(&self, row: &[f64]) -> f64 {
        match (&self.kind, self.numerics) {
            (ModelKind::Gbdt(e), Numerics::F64) => e.predict_margin(row),
            (ModelKind::Gbdt(e), Numerics::F32) => f64::from(e.predict_margin_f32(row)),
            (ModelKind::Gbdt(e), Numerics::Onnx) => f64::from(e.predict_margin_onnx(row)),
            (ModelKind::Linear(l), _) => l.predict_margin(row),
            (ModelKind::ImportedLinear(l), _) => f64::from(l.margin_f32(row)),
            (ModelKind::Neural(n), _) => n.predict(row),
            (ModelKind::GbdtMulticlass(_) | ModelKind::LinearMulticlass(_), _) => {
                let mut m = vec![0.0; self.n_outputs()];
                self.predict_margins(row, &mut m);
                m.into_iter().fold(f64::NEG_INFINITY, f64::max)
            }
        }
    }

    /// Number of values [`Model::predict_outputs`] writes: the number of classes for a multiclass model, else 1.
    pub fn n_outputs(&self) -> usize {
        match &self.kind {
            ModelKind::GbdtMulticlass(v) => v.len(),
            ModelKind::LinearMulticlass(v) => v.len(),
            _ => 1,
        }
    }

    /// The class margins of a multiclass model (one per class), or the single margin of any other model.
    pub fn predict_margins(&self, row: &[f64], out: &mut [f64]) {
        match (&self.kind, self.numerics) {
            (ModelKind::GbdtMulticlass(v), Numerics::F64) => {
                for (o, e) in out.iter_mut().zip(v) {
                    *o = e.predict_margin(row);
                }
            }
            (ModelKind::GbdtMulticlass(v), Numerics::F32) => {
                for (o, e) in out.iter_mut().zip(v) {
                    *o = f64::from(e.predict_margin_f32(row));
                }
            }
            (ModelKind::GbdtMulticlass(v), Numerics::Onnx) => {
                for (o, e) in out.iter_mut().zip(v) {
                    *o = f64::from(e.predict_margin_onnx(row));
                }
            }
            (ModelKind::LinearMulticlass(v), _) => {
                for (o, l) in out.iter_mut().zip(v) {
                    *o = l.predict_margin(row);
                }
            }
            _ => out[0] = self.predict_margin(row),
        }
    }

    /// What the model outputs for one row: the class probabilities of a multiclass model (in class order), or
    /// the one value [`Model::predict`] returns.
    pub fn predict_outputs(&self, row: &[f64], out: &mut [f64]) {
        if self.n_outputs() == 1 {
            out[0] = self.predict(row);
            return;
        }
        self.predict_margins(row, out);
        match (self.link, self.numerics) {
            (Link::Softmax, Numerics::F64) => crate::softmax(out),
            (Link::Softmax, numerics) => {
                // In f32, as XGBoost and ONNX Runtime compute it: shifted by the maximum, the exponentials in
                // f32; XGBoost sums them in f64 (`double wsum`) and divides by that sum rounded to f32, ONNX
                // Runtime sums in f32.
                let max = out
                    .iter()
                    .map(|&v| v as f32)
                    .fold(f32::NEG_INFINITY, f32::max);
                let (mut sum32, mut sum64) = (0.0f32, 0.0f64);
                for v in out.iter_mut() {
                    let e = (*v as f32 - max).exp();
                    sum32 += e;
                    sum64 += f64::from(e);
                    *v = f64::from(e);
                }
                let sum = if numerics == Numerics::F32 {
                    sum64 as f32
                } else {
                    sum32
                };
                for v in out.iter_mut() {
                    *v = f64::from(*v as f32 / sum);
                }
            }
            (link, Numerics::F64) => out.iter_mut().for_each(|v| *v = link.apply(*v)),
            (link, Numerics::F32) => out
                .iter_mut()
                .for_each(|v| *v = f64::from(link_f32(link, *v as f32))),
            (link, Numerics::Onnx) => out
                .iter_mut()
                .for_each(|v| *v = f64::from(link_onnx(link, *v as f32))),
        }
    }

    /// The prediction on the output scale: probability of class 1, the regression value, or for a multiclass
    /// model the index of the most probable class ([`Model::predict_outputs`] gives the probabilities).
    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        match (&self.kind, self.numerics) {
            (ModelKind::Gbdt(e), Numerics::F32) => {
                f64::from(link_f32(self.link, e.predict_margin_f32(row)))
            }
            (ModelKind::Gbdt(e), Numerics::Onnx) => {
                f64::from(link_onnx(self.link, e.predict_margin_onnx(row)))
            }
            (ModelKind::ImportedLinear(l), _) => f64::from(link_onnx(self.link, l.margin_f32(row))),
            (ModelKind::Neural(n), _) => n.predict(row),
            (ModelKind::GbdtMulticlass(_) | ModelKind::LinearMulticlass(_), _) => {
                let mut p = vec![0.0; self.n_outputs()];
                self.predict_outputs(row, &mut p);
                crate::argmax(&p) as f64
            }
            _ => self.link.apply(self.predict_margin(row)),
        }
    }

    /// Predictions for a row-major matrix, one per row (see [`Model::predict`]).
    pub fn predict_rows(&self, x: &[f64]) -> Vec<f64> {
        let nf = self.features.len();
        x.chunks_exact(nf).map(|r| self.predict(r)).collect()
    }

    /// Outputs for a row-major matrix, [`Model::n_outputs`] per row (class probabilities of a multiclass model).
    pub fn predict_outputs_rows(&self, x: &[f64]) -> Vec<f64> {
        let nf = self.features.len();
        let k = self.n_outputs();
        let mut out = vec![0.0; x.len() / nf.max(1) * k];
        for (r, o) in x.chunks_exact(nf).zip(out.chunks_exact_mut(k)) {
            self.predict_outputs(r, o);
        }
        out
    }

    pub fn n_trees(&self) -> usize {
        match &self.kind {
            ModelKind::Gbdt(e) => e.trees.len(),
            ModelKind::GbdtMulticlass(v) => v.iter().map(|e| e.trees.len()).sum(),
            ModelKind::Linear(_)
            | ModelKind::ImportedLinear(_)
            | ModelKind::Neural(_)
            | ModelKind::LinearMulticlass(_) => 0,
        }
    }

    /// Whether a registry kind is one of these tabular models (and not, say, a guard model).
    pub fn is_tabular_kind(kind: &str) -> bool {
        matches!(kind, "gbdt" | "linear" | "neural")
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            ModelKind::Gbdt(_) | ModelKind::GbdtMulticlass(_) => "gbdt",
            ModelKind::Linear(_)
            | ModelKind::ImportedLinear(_)
            | ModelKind::LinearMulticlass(_) => "linear",
            ModelKind::Neural(_) => "neural",
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
                class_labels: v1.class_labels.map(Vec::from),
                features: v1.features,
                kind: v1.kind,
            });
        }
        if version == 2 {
            let v2: ModelV2 = postcard::from_bytes(payload).map_err(decode)?;
            return Ok(Model {
                objective: v2.objective,
                target: v2.target,
                class_labels: v2.class_labels.map(Vec::from),
                features: v2.features,
                kind: v2.kind,
                link: v2.link,
                numerics: v2.numerics,
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
        Link::LogisticMlas => logistic_mlas(m),
        Link::Softmax => m,
    }
}

/// A link in f32, as ONNX Runtime applies it: its logistic is `1 / (1 + exp(-|m|))`, mirrored for negative
/// margins (`ComputeLogistic`).
#[inline]
fn link_onnx(link: Link, m: f32) -> f32 {
    match link {
        Link::Identity => m,
        Link::Logistic { .. } => {
            let v = 1.0f32 / (1.0f32 + (-m.abs()).exp());
            if m < 0.0 { 1.0f32 - v } else { v }
        }
        Link::Exp => exp_mlas(m),
        Link::LogisticMlas => logistic_mlas(m),
        Link::Softmax => m,
    }
}

/// MLAS's exponential (`MlasComputeExp`, as ONNX Runtime's `Exp` operator computes it): the input clamped to
/// [-103.97, 88.78], reduced by `m·ln 2` in two parts, a degree-5 polynomial with fused multiply-adds, and
/// `2^m` rebuilt from two exponent pieces so subnormal results and overflow come out as the kernel's.
#[inline]
#[allow(clippy::excessive_precision)] // the constants as MLAS writes them
pub fn exp_mlas(x: f32) -> f32 {
    const LOWER: f32 = -103.9720840454;
    const UPPER: f32 = 88.7762626647950;
    const BIAS: f32 = 12582912.0;
    // MLAS spells it 1.44269504088896341f, which rounds to exactly LOG2_E.
    const LOG2_RECIPROCAL: f32 = std::f32::consts::LOG2_E;
    const LOG2_HIGH: f32 = -6.93145752e-1;
    const LOG2_LOW: f32 = -1.42860677e-6;
    // 0x1.694000p-10, 0x1.125edcp-7, 0x1.555b5ap-5, 0x1.555450p-3, 0x1.fffff6p-2, 0x1.000000p+0
    let hex = |frac24: u32, exp: i32| f32::from_bits((((127 + exp) as u32) << 23) | (frac24 >> 1));
    let (p0, p1, p2, p3, p4, p56) = (
        hex(0x694000, -10),
        hex(0x125edc, -7),
        hex(0x555b5a, -5),
        hex(0x555450, -3),
        hex(0xfffff6, -2),
        hex(0x000000, 0),
    );
    const MIN_EXPONENT: i32 = 0xC100_0000_u32 as i32;
    const MAX_EXPONENT: i32 = 0x3F80_0000;
    if x.is_nan() {
        return x;
    }
    let v = x.clamp(LOWER, UPPER);
    let biased = v.mul_add(LOG2_RECIPROCAL, BIAS);
    let m = biased - BIAS;
    let r = m.mul_add(LOG2_HIGH, v);
    let r = m.mul_add(LOG2_LOW, r);
    let shifted = (biased.to_bits() as i32).wrapping_shl(23);
    let normal = shifted.clamp(MIN_EXPONENT, MAX_EXPONENT);
    let overflow = shifted.wrapping_sub(normal).wrapping_add(MAX_EXPONENT);
    let normal = normal.wrapping_add(MAX_EXPONENT);
    let mut p = p0;
    p = p.mul_add(r, p1);
    p = p.mul_add(r, p2);
    p = p.mul_add(r, p3);
    p = p.mul_add(r, p4);
    p = p.mul_add(r, p56);
    let over = f32::from_bits(overflow as u32);
    let r = r * over;
    p = p.mul_add(r, over);
    p * f32::from_bits(normal as u32)
}
