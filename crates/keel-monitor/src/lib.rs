//! keel-monitor: what Keel watches once a model serves.
//!
//! Owns drift statistics between a reference and a current sample ([`drift`]): PSI, Jensen–Shannon,
//! Wasserstein, Kolmogorov–Smirnov and chi² with Cramér's V, and a decision that needs both significance after
//! Holm's correction and a meaningful effect size; mergeable binned profiles that serving keeps per window and
//! compares with the training reference without raw data ([`profile`]); and the drift report's HTML rendering
//! ([`report`]).
//!
//! It does no I/O: it takes [`keel_core::Frame`]s and returns values and strings. It knows nothing of files,
//! databases, HTTP or the command line.

#![forbid(unsafe_code)]

pub mod drift;
pub mod profile;
pub mod report;

use keel_core::ErrorClass;

pub use drift::{ColumnDrift, DriftOptions, DriftReport, compare};
pub use profile::{BinSpec, Profile, ProfileSpec, compare_profiles};

/// Errors of the monitoring layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Invalid(_) => ErrorClass::Input,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
