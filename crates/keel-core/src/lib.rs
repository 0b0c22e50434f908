//! keel-core: the shared vocabulary of Keel.
//!
//! Owns the types every other crate speaks: column types and schemas ([`schema`]), the plain column-oriented
//! [`frame::Frame`] that the data layer hands to the model layer, the error classes that decide exit codes and
//! HTTP statuses ([`error::ErrorClass`]), and the clock. It does no I/O and knows nothing of files, databases,
//! HTTP or the command line.

#![forbid(unsafe_code)]

pub mod error;
pub mod frame;
pub mod role;
pub mod schema;
pub mod time;

pub use error::ErrorClass;
pub use frame::{ColumnData, Frame, MISSING_CODE};
pub use role::Role;
pub use schema::{ColumnSchema, ColumnType, Schema};

/// The version of Keel that produced an artifact, recorded in lineage.
pub const KEEL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The asset cache (`$KEEL_CACHE`, default `~/.cache/keel`): downloaded datasets and model weights.
pub fn cache_dir() -> std::path::PathBuf {
    if let Ok(c) = std::env::var("KEEL_CACHE")
        && !c.is_empty()
    {
        return std::path::PathBuf::from(c);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    std::path::PathBuf::from(home).join(".cache").join("keel")
}
