//! keel-engine: what a prediction server needs besides HTTP.
//!
//! Owns the loaded form of a model version ([`loaded::LoadedModel`]), the request schema check that guards
//! against training–serving skew ([`request`]), the model cache keyed by reference (`name`, `name@alias`,
//! `name@3`) with atomic hot swap when an alias moves ([`cache`]), and API-key verification with a cache in front
//! of argon2 ([`keys`]). It knows nothing of HTTP status codes, axum or flags.

#![forbid(unsafe_code)]

pub mod cache;
pub mod keys;
pub mod loaded;
pub mod monitor;
#[cfg(feature = "onnx-runtime")]
pub mod onnxrt;
pub mod request;
pub mod rollout;
pub mod table;

use keel_core::ErrorClass;

pub use cache::ModelCache;
pub use loaded::LoadedModel;
pub use request::{FieldError, RequestSchema, UnseenCategory};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] keel_store::Error),
    #[error(transparent)]
    Model(#[from] keel_ml::Error),
    #[error("{0}")]
    Invalid(String),
    /// The version has no monitoring reference to compare with.
    #[error("{0}")]
    NoReference(String),
    /// The version is not a tabular model (a guard model, say), so it cannot score rows.
    #[error(
        "{model}@{version} is a {kind} model, not a tabular model: it cannot predict rows{}",
        if .kind == "guard" { " (scan text with POST /v1/guard/scan or keel guard scan)" } else { "" }
    )]
    NotTabular {
        model: String,
        version: i64,
        kind: String,
    },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store(e) => e.class(),
            Error::Model(e) => e.class(),
            Error::Invalid(_) | Error::NoReference(_) | Error::NotTabular { .. } => {
                ErrorClass::Input
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
