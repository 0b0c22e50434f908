//! The application layer's one error type. Each variant has a class (the CLI's exit code, mapped once in
//! `output::classify`); its variants are what an HTTP mapping will match on.

use keel_core::ErrorClass;
use std::path::PathBuf;

/// What went wrong in a use case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request (a spec, a file's content, a value) is wrong; the message says what and where.
    #[error("{0}")]
    Input(String),
    /// The thing named does not exist (a job, a rollout).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but conflicts with the current state (a job already finished, a rollout running).
    #[error("{0}")]
    Conflict(String),
    /// The work was cancelled before it finished; nothing was registered.
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] keel_store::Error),
    #[error(transparent)]
    Data(#[from] keel_data::Error),
    #[error(transparent)]
    Ml(keel_ml::Error),
    #[error(transparent)]
    Engine(#[from] keel_engine::Error),
    #[error(transparent)]
    Monitor(#[from] keel_monitor::Error),
    /// A bug in Keel (a task panicked, say).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<keel_ml::Error> for Error {
    fn from(e: keel_ml::Error) -> Self {
        match e {
            keel_ml::Error::Cancelled => Error::Cancelled("stopped at a progress report".into()),
            e => Error::Ml(e),
        }
    }
}

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input(message.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit-code class.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Input(_) | Error::NotFound(_) | Error::Conflict(_) => ErrorClass::Input,
            Error::Cancelled(_) => ErrorClass::CheckFailed,
            Error::Io { .. } => ErrorClass::Io,
            Error::Store(e) => e.class(),
            Error::Data(e) => e.class(),
            Error::Ml(e) => e.class(),
            Error::Engine(e) => e.class(),
            Error::Monitor(e) => e.class(),
            Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
