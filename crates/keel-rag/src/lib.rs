//! keel-rag: documents → chunks with provenance → BM25 + approximate nearest-neighbour indexes → fused
//! retrieval → extractive answers with citations and groundedness checks.
//!
//! Pure apart from the collection's own files: no network, no database, no HTTP, no async.

pub mod answer;
pub mod bert;
pub mod bm25;
pub mod chunk;
pub mod collection;
pub mod doc;
pub mod embed;
pub mod eval;
pub mod hnsw;
pub mod llm;
pub mod query;

use std::path::{Path, PathBuf};

pub use collection::{Collection, CollectionConfig, Hit, IngestReport, Mode};
pub use embed::{Embedder, LocalModel, MiniLm, SentenceEncoder};
pub use llm::{ChatMessage, GenOptions, Generation, LocalLlm};

/// Errors of keel-rag.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "collection '{0}' does not exist (create it with keel rag ingest PATH --collection {0})"
    )]
    UnknownCollection(String),
    #[error("{0}")]
    Invalid(String),
    #[error("corrupt collection: {0}")]
    Corrupt(String),
    #[error("index: {0}")]
    Index(String),
    #[error("embedding model: {0}")]
    Model(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn class(&self) -> keel_core::ErrorClass {
        match self {
            Error::Io { .. } | Error::Corrupt(_) | Error::Index(_) => keel_core::ErrorClass::Io,
            Error::UnknownCollection(_) | Error::Invalid(_) => keel_core::ErrorClass::Input,
            Error::Model(_) => keel_core::ErrorClass::Io,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Test hook: aborts the process when `KEEL_FAILPOINT` equals `name` (crash-consistency tests).
pub fn failpoint(name: &str) {
    if std::env::var("KEEL_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("keel: failpoint '{name}' hit; aborting");
        std::process::abort();
    }
}
