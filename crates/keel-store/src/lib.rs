//! keel-store: the registry and the artifact store, and the only crate that touches either.
//!
//! The registry is a database reached through sqlx: SQLite (`registry.db` under the Keel home, WAL mode,
//! foreign keys on) by default, PostgreSQL when `database_url` says so, with the same queries ([`db`]).
//! Artifacts (model files, run artifacts) are content-addressed blobs behind the `object_store` crate: a local
//! directory by default, S3-compatible storage when `artifact_url` says so.
//!
//! Invariants:
//! - A model version is registered in one database transaction (model row, version row, aliases); a crash at
//!   any point leaves either the whole version or none of it.
//! - The artifact is written (temporary file, fsync, rename) before the transaction that names it, so a
//!   registered version never points at a missing or partial file. A crash in between leaves at most an
//!   unreferenced blob, never a half version.
//! - Opening the store on a read-only location fails before anything is written.
//! - Every change (registration, alias move, key creation and revocation) appends its audit record in the same
//!   transaction; the log is a hash chain with its head outside the database ([`audit`]).

#![forbid(unsafe_code)]

pub mod audit;
mod cluster;
mod collections;
mod db;
mod jobs;
mod registry;
mod runs;
mod versions;

pub use audit::{AuditEvent, AuditRecord, Verification};
pub use cluster::{CHANNEL, ChangeEvent, ChangeListener, Lease};
pub(crate) use db::multi_values;
pub use db::{
    Backend, MigrationReport, SCHEMA_VERSION, StoreConfig, configure, download_url, redact_url,
    upload_url,
};
pub use jobs::{JobRecord, JobState, Rollout, worker_id};
pub use registry::{
    ApiKeyRecord, CHAMPION, Feedback, FeedbackOutcome, Labelled, LoggedPrediction, ModelListing,
    NewVersion, Selector, Store, VersionRecord, validate_alias,
};
pub use runs::{
    MetricPoint, NewRun, RunArtifact, RunBatch, RunFilter, RunMetric, RunRecord, RunStatus,
};

use keel_core::ErrorClass;
use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Keel home {} is read-only or not writable ({reason}); nothing was changed", .path.display())]
    ReadOnly { path: PathBuf, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("artifact store: {0}")]
    Artifact(#[from] object_store::Error),
    #[error("model '{0}' is not registered")]
    UnknownModel(String),
    #[error("model '{model}' has no version {selector}")]
    UnknownVersion { model: String, selector: String },
    /// The alias is not set. A bare model name means `NAME@champion`, so this is also what a bare name of a
    /// model without a champion gets.
    #[error("{}", no_alias_message(.model, .alias))]
    NoAlias { model: String, alias: String },
    #[error(
        "artifact {uri} does not match its recorded checksum (expected {expected}, found {found})"
    )]
    Corrupt {
        uri: String,
        expected: String,
        found: String,
    },
    #[error("invalid {what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error("run '{0}' does not exist (keel runs list shows the runs)")]
    UnknownRun(String),
    #[error("run '{run}' has no artifact '{path}'")]
    UnknownArtifact { run: String, path: String },
    /// What a request carried is wrong (a run batch, an artifact path, a description): the message names the
    /// entry (`metrics[3].value`). Names in paths are [`Error::Invalid`].
    #[error("invalid {what}: {message}")]
    InvalidContent { what: &'static str, message: String },
    /// Valid, but the current state forbids it (an alias points at the version, the run has ended, …).
    #[error("{0}")]
    Conflict(String),
    /// The database could not be reached.
    #[error(
        "{what} at {target} is unreachable ({reason}); check the URL and that the server is running"
    )]
    Unavailable {
        what: &'static str,
        target: String,
        reason: String,
    },
    /// The database's schema is older than this Keel's: `keel migrate` has not run.
    #[error(
        "the database has schema version {have}, this Keel needs {want}: run `keel migrate` (once, from one place) before starting servers and workers"
    )]
    SchemaBehind { have: i64, want: i64 },
    /// A fenced store's lease expired or was taken over: the write was refused so two holders never act.
    #[error(
        "lease '{name}' (token {token}) is no longer held by this process; the write was refused"
    )]
    LeaseLost { name: String, token: i64 },
    #[error(
        "key '{0}' is the last active admin key; create another admin key before revoking it (keel keys create --role admin)"
    )]
    LastAdmin(String),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::ReadOnly { .. } | Error::Io { .. } => ErrorClass::Io,
            Error::Database(_) | Error::Artifact(_) => ErrorClass::Io,
            Error::UnknownModel(_)
            | Error::UnknownVersion { .. }
            | Error::NoAlias { .. }
            | Error::LastAdmin(_)
            | Error::UnknownRun(_)
            | Error::UnknownArtifact { .. }
            | Error::InvalidContent { .. }
            | Error::Conflict(_)
            | Error::LeaseLost { .. }
            | Error::Invalid { .. } => ErrorClass::Input,
            Error::Corrupt { .. } | Error::Unavailable { .. } | Error::SchemaBehind { .. } => {
                ErrorClass::Io
            }
        }
    }
}

fn no_alias_message(model: &str, alias: &str) -> String {
    if alias == "champion" {
        format!(
            "model '{model}' has no champion (a bare name means {model}@champion): name a version ({model}@3) \
             or make one servable (keel models alias {model} champion 3)"
        )
    } else {
        format!(
            "model '{model}' has no alias '{alias}': name a version ({model}@3) or set it (keel models alias {model} {alias} 3)"
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Test hook: when the environment variable `KEEL_FAILPOINT` equals `name`, the process aborts on the spot,
/// as a crash or `kill -9` would. Used by crash-consistency tests; inert otherwise.
pub fn failpoint(name: &str) {
    if failpoint_armed(name) {
        eprintln!("keel: failpoint '{name}' hit; aborting");
        std::process::abort();
    }
}

/// Whether [`failpoint`] `name` would abort (so a caller can first reach the state the crash test needs).
pub fn failpoint_armed(name: &str) -> bool {
    std::env::var("KEEL_FAILPOINT").is_ok_and(|v| v == name)
}

/// Test hook: when `KEEL_PANICPOINT` is `name:N`, the first N times this point is reached in the process
/// panic (a transient failure, for tests of recovery); inert otherwise.
pub fn panicpoint(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Ok(v) = std::env::var("KEEL_PANICPOINT") else {
        return;
    };
    let Some((point, n)) = v.split_once(':') else {
        return;
    };
    if point == name && HITS.fetch_add(1, Ordering::Relaxed) < n.parse::<u64>().unwrap_or(0) {
        panic!("panicpoint '{name}' hit");
    }
}
