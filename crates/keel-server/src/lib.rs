//! keel-server: Keel's HTTP API. The only crate that knows HTTP status codes.
//!
//! Handlers destructure the request, call one engine method, and map the result back; every error becomes the
//! `{"error": {...}}` body exactly once ([`error`]). Cross-cutting layers: request ids and metrics
//! ([`middleware`]), API-key auth with roles and per-key rate limits ([`auth`]), body limits, a concurrency limit
//! that sheds load with 503 + `Retry-After`, a timeout, and panic catching ([`router`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;

use keel_engine::ModelCache;
use keel_engine::keys::KeyVerifier;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use config::ServerConfig;

/// Shared state of the server: one `Arc`, so handing it to a handler or a middleware costs one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    pub cache: Arc<ModelCache>,
    pub keys: Arc<KeyVerifier>,
    pub config: Arc<ServerConfig>,
    pub ready: Arc<AtomicBool>,
    pub limiter: Arc<auth::KeyLimiter>,
    /// This process's name in stored monitoring profiles (replicas' windows merge when read).
    pub replica: String,
}

impl AppState {
    pub async fn new(
        store: Arc<keel_store::Store>,
        config: ServerConfig,
    ) -> Result<AppState, keel_engine::Error> {
        let mut cache = ModelCache::new(store.clone(), config.unseen_category);
        if config.monitoring {
            cache = cache.with_monitoring(config.monitor_window_seconds as i64);
        }
        let cache = Arc::new(cache);
        let keys = Arc::new(KeyVerifier::load(store).await?);
        Ok(AppState(Arc::new(Shared {
            cache,
            keys,
            limiter: Arc::new(auth::KeyLimiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            config: Arc::new(config),
            ready: Arc::new(AtomicBool::new(false)),
            replica: format!("{:08x}-{}", rand::random::<u32>(), std::process::id()),
        })))
    }

    /// Writes every monitored version's changed windows to the store.
    pub async fn flush_monitoring(&self) {
        for m in self.cache.monitored() {
            let Some(live) = &m.monitor else {
                continue;
            };
            for (window, profile) in live.drain() {
                let counts = serde_json::to_value(&profile).expect("profiles serialise");
                if let Err(e) = self
                    .cache
                    .store()
                    .put_profile(&m.name, m.version, window, &self.replica, &counts)
                    .await
                {
                    tracing::warn!(model = %m.name, version = m.version, error = %e, "writing a monitoring window failed");
                }
            }
        }
    }

    /// Loads every champion, then marks the server ready; afterwards keeps aliases and keys fresh.
    pub fn spawn_background(&self) {
        if self.config.monitoring {
            let st = self.clone();
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_millis(st.config.monitor_flush_ms));
                loop {
                    tick.tick().await;
                    st.flush_monitoring().await;
                }
            });
        }
        let st = self.clone();
        tokio::spawn(async move {
            match st.cache.preload().await {
                Ok(n) => tracing::info!(models = n, "models loaded; ready"),
                Err(e) => {
                    tracing::error!(error = %e, "preloading models failed; serving on demand")
                }
            }
            st.ready.store(true, Ordering::Release);
            let mut tick =
                tokio::time::interval(Duration::from_millis(st.config.refresh_interval_ms));
            loop {
                tick.tick().await;
                match st.cache.refresh().await {
                    Ok(moved) => {
                        for (r, v) in moved {
                            tracing::info!(reference = %r, version = v, "alias moved; swapped in the new version");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "alias refresh failed"),
                }
                if let Err(e) = st.keys.reload().await {
                    tracing::warn!(error = %e, "key reload failed");
                }
            }
        });
    }
}

pub use routes::router;

/// Waits for SIGTERM or Ctrl-C.
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
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
