//! keel-data: everything between a file on disk and a validated [`keel_core::Frame`].
//!
//! Owns reading CSV and Parquet through Arrow ([`read`]), schema inference and declared TOML schemas
//! ([`infer`], [`schema_file`]), conversion into frames with cell-level parse errors ([`convert`]), validation
//! rules and quarantine files ([`validate`]), dataset profiles ([`profile`]), target checks ([`target`]) and
//! content hashes for lineage ([`hash`]).
//!
//! It knows nothing of models, databases, HTTP or the command line. Every error names the file and, where there
//! is one, the row and column.

#![forbid(unsafe_code)]

pub mod columnar;
pub mod convert;
pub mod hash;
pub mod infer;
pub mod profile;
pub mod read;
pub mod schema_file;
pub mod target;
pub mod validate;

use keel_core::ErrorClass;
use std::path::PathBuf;

pub use convert::{CellError, to_frame};
pub use infer::{InferOptions, infer_schema};
pub use profile::{ColumnProfile, Profile, profile};
pub use read::{RawColumn, RawTable, read_table};
pub use validate::{ValidationReport, Violation, validate};

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: file not found", .path.display())]
    NotFound { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: the file has no data rows", .path.display())]
    Empty { path: PathBuf },
    #[error("{}: column name '{name}' appears more than once (columns {first} and {second})", .path.display())]
    DuplicateColumn {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{}: schema: {message}", .path.display())]
    Schema { path: PathBuf, message: String },
    #[error("{message}")]
    Target { message: String },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::NotFound { .. } | Error::Io { .. } => ErrorClass::Io,
            Error::Format { .. }
            | Error::Empty { .. }
            | Error::DuplicateColumn { .. }
            | Error::Schema { .. }
            | Error::Target { .. } => ErrorClass::Input,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
