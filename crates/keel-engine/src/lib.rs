//! keel-engine: what a prediction server needs besides HTTP.
//!
//! Owns the loaded form of a model version ([`loaded::LoadedModel`]), the request schema check that guards
//! against training–serving skew ([`request`]), the model cache keyed by reference (`name`, `name@alias`,
//! `name@3`) with atomic hot swap when an alias moves ([`cache`]), and API-key verification with a cache in front
//! of argon2 ([`keys`]). It knows nothing of HTTP status codes, axum or flags.

pub mod cache;
pub mod keys;
pub mod loaded;
pub mod monitor;
pub mod request;
pub mod rollout;

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
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store(e) => e.class(),
            Error::Model(e) => e.class(),
            Error::Invalid(_) | Error::NoReference(_) => ErrorClass::Input,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
