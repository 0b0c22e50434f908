//! keel-ml: Keel's models.
//!
//! Owns training (histogram GBDT in [`gbdt`], linear baselines in [`linear`]), the compiled tree layout that
//! inference and TreeSHAP run on ([`tree`], [`shap`]), the versioned binary model format ([`model`]), honest
//! evaluation with bootstrap intervals, calibration, slices and fairness ([`metrics`], [`eval`]), and model
//! cards ([`card`]).
//!
//! It does no I/O: it takes plain vectors and [`keel_core::Frame`]s and returns values and bytes. It knows
//! nothing of files, databases, Arrow, HTTP or the command line.

#![forbid(unsafe_code)]

pub mod binning;
pub mod bitvector;
pub mod card;
pub mod conformal;
pub mod eval;
pub mod features;
pub mod forest;
pub mod gate;
pub mod gbdt;
pub mod import;
pub mod leak;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod neural;
pub mod select;
pub mod shap;
pub mod split;
pub mod tree;
pub mod tune;

use keel_core::ErrorClass;
use serde::{Deserialize, Serialize};

pub use features::{Encoder, FeatureKind, FeatureSpec};
pub use gbdt::{ClassWeight, GbdtParams, Loss};
pub use model::{Model, ModelKind};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Binary classification: the model outputs log-odds; the probability is its sigmoid.
    Binary,
    /// Regression with squared error.
    Regression,
    /// Classification into three or more classes: the model outputs one margin per class; the probabilities are
    /// their softmax (Keel's own training) or, for some imported models, one logistic per class.
    Multiclass,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Binary => "binary",
            Objective::Regression => "regression",
            Objective::Multiclass => "multiclass",
        }
    }

    /// The objective a registry record names (`binary`, `multiclass`, `regression`); anything else is binary,
    /// as records written before the name was stored are.
    pub fn from_record(name: &str) -> Objective {
        match name {
            "regression" => Objective::Regression,
            "multiclass" => Objective::Multiclass,
            _ => Objective::Binary,
        }
    }

    /// Whether the model predicts a class.
    pub fn is_classification(self) -> bool {
        matches!(self, Objective::Binary | Objective::Multiclass)
    }
}

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid training parameters: {0}")]
    InvalidParams(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("column '{0}' is not in the data")]
    MissingColumn(String),
    #[error("not a Keel model file: {0}")]
    BadModelFile(String),
    #[error(
        "model file format version {found} is not supported (this Keel reads up to {supported})"
    )]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("training was cancelled")]
    Cancelled,
    /// A model file from another library that cannot be imported; the message names the place.
    #[error("cannot import this {format} model: {message}")]
    Import {
        format: &'static str,
        message: String,
    },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidParams(_) => ErrorClass::Usage,
            Error::InvalidInput(_) | Error::MissingColumn(_) => ErrorClass::Input,
            Error::BadModelFile(_) | Error::UnsupportedFormat { .. } | Error::Import { .. } => {
                ErrorClass::Input
            }
            Error::Internal(_) => ErrorClass::Internal,
            Error::Cancelled => ErrorClass::Input,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Softmax of `m` in place, shifted by the maximum so no exponent overflows.
pub fn softmax(m: &mut [f64]) {
    let max = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in m.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in m.iter_mut() {
        *v /= sum;
    }
}

/// The index of the largest value (the first on ties): the predicted class.
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (k, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = k;
        }
    }
    best
}

/// The logistic function.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
