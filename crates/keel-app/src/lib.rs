//! keel-app: Keel's use cases as typed services, shared by the CLI, the HTTP server and the job worker.
//!
//! Each use case takes typed input and returns typed output or one [`Error`] with a class: training
//! ([`train`]), importing models trained elsewhere ([`import`]), retraining with the gate ([`retrain`]), jobs and the worker task that runs them ([`jobs`]),
//! rollouts judged with one policy ([`rollout`]), RAG collections and guarded answers ([`rag`], [`guard`],
//! [`openai`] for remote endpoints), and the files written next to the registry ([`files`]).
//! Nothing here parses flags or knows HTTP; CPU-heavy work runs on the blocking pool, never on the reactor.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod files;
pub mod guard;
pub mod guard_model;
pub mod import;
pub mod jobs;
pub mod openai;
pub mod rag;
pub mod registry;
pub mod retrain;
pub mod rollout;
pub mod runs;
pub mod train;
pub mod tune;

pub use error::{Error, Result};

/// Waits for SIGTERM or Ctrl-C (what `keel serve` and `keel jobs work --forever` stop on).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight work");
}
