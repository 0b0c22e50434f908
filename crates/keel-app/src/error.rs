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
    #[error(transparent)]
    Rag(#[from] keel_rag::Error),
    /// A model or endpoint the use case needs is not there (weights not fetched, no upstream configured).
    #[error("{0}")]
    Unavailable(String),
    /// A shared resource (the local model) stayed busy past the wait; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// Guards are on but no guard model can be loaded.
    #[error("{0}")]
    GuardUnavailable(String),
    /// The input guards blocked the text; `detectors` say which, `reasons` why (shown only when configured).
    #[error("Keel's input guards blocked this {what} (detector: {})", if detectors.is_empty() { "policy".to_string() } else { detectors.join(", ") })]
    Blocked {
        what: String,
        detectors: Vec<String>,
        reasons: Vec<String>,
    },
    #[error(transparent)]
    GuardModel(#[from] keel_guard::Error),
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

impl From<crate::guard::LoadError> for Error {
    fn from(e: crate::guard::LoadError) -> Self {
        use crate::guard::LoadError as L;
        match e {
            L::Store(e) => Error::Store(e),
            L::Guard(e) => Error::GuardModel(e),
            e @ (L::Missing(_) | L::WrongKind { .. }) => Error::GuardUnavailable(e.to_string()),
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
            Error::Rag(e) => e.class(),
            Error::Unavailable(_) | Error::GuardUnavailable(_) | Error::Blocked { .. } => {
                ErrorClass::Input
            }
            Error::Busy(_) => ErrorClass::Io,
            Error::GuardModel(e) => e.class(),
            Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// Whether this is a cancellation.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
