//! keel-server: Keel's HTTP API. The only crate that knows HTTP status codes.
//!
//! Handlers destructure the request, call one engine method, and map the result back; every error becomes the
//! `{"error": {...}}` body exactly once ([`error`]). Cross-cutting layers: request ids and metrics
//! ([`middleware`]), API-key auth with roles and per-key rate limits ([`auth`]), body limits, a concurrency limit
//! that sheds load with 503 + `Retry-After`, a timeout, and panic catching ([`router`]).

#![forbid(unsafe_code)]

pub mod alerts;
pub mod audit;
pub mod auth;
pub(crate) mod body;
pub mod collections;
pub mod config;
pub mod error;
pub mod guard;
pub mod jobs;
pub mod listen;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod rag;
pub mod rollouts;
pub mod routes;
pub mod runs;
pub mod schemas;
pub mod versions;

pub use keel_app::openai;

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
    /// Bounds on full key verifications (concurrency, per client address).
    pub verify_limits: Arc<auth::VerifyLimits>,
    /// This process's name in stored monitoring profiles (replicas' windows merge when read).
    pub replica: String,
    /// Logged predictions waiting for the writer (bounded; see [`PREDICTION_LOG_BUFFER`]).
    pub log: std::sync::Mutex<Vec<keel_store::LoggedPrediction>>,
    /// Predictions not logged because the buffer was full (also `keel_prediction_log_dropped_total`).
    pub log_dropped: std::sync::atomic::AtomicU64,
    /// Held while a batch of the prediction log is taken and written, so a flush returns only when every row
    /// queued before it is in the store (feedback flushes, then joins: a label for a prediction served a moment
    /// ago must not miss rows another flush is still writing).
    pub log_writer: tokio::sync::Mutex<()>,
    /// Alerts firing now, by (rule, model, version): a rule notifies when it starts firing, not on every
    /// evaluation.
    pub firing: std::sync::Mutex<std::collections::HashSet<(String, String, i64)>>,
    pub webhooks: reqwest::Client,
    /// Collections, the local embedding and chat models (loaded on first use) and the upstream LLM.
    pub rag: Arc<rag::RagState>,
    /// The guard model (loaded on first use) and the guard policies.
    pub guard: Arc<guard::GuardState>,
    /// The job worker: a task of this process on the server's store ([`AppState::start_worker`]);
    /// `/healthz` fails when it has stopped.
    pub jobs: Arc<keel_app::jobs::Worker>,
    /// Its state, for health checks ([`WorkerState::Off`] until it is started).
    pub worker: Arc<WorkerHealth>,
    /// The lease on the single-writer loops (rollout judge, alert evaluation, retention) while this replica
    /// holds it: exactly one replica sharing the database runs them, with writes fenced by its token.
    pub singleton: std::sync::Mutex<Option<keel_store::Lease>>,
    /// Woken when the database announces a change (Postgres NOTIFY), so the refresh loop checks at once.
    pub changes: tokio::sync::Notify,
    /// Set when notifications may have been missed (the listening connection was lost): reload everything.
    pub reload_all: AtomicBool,
}

/// The lease the single-writer loops run under.
pub const SINGLETON_LEASE: &str = "singletons";

pub use keel_app::jobs::{WorkerHealth, WorkerState};

/// One alert that started firing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FiredAlert {
    pub alert: String,
    pub model: String,
    pub version: i64,
    pub reason: String,
    pub at: String,
}

/// Most logged predictions held in memory before new ones are dropped (and counted), so a slow store never
/// slows serving.
pub const PREDICTION_LOG_BUFFER: usize = 200_000;

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
        let rag = Arc::new(rag::RagState::new(store.home(), config.llm.clone()));
        let guard = Arc::new(guard::GuardState::new(
            config.guard.clone(),
            Duration::from_millis(config.refresh_interval_ms),
        ));
        let keys = Arc::new(KeyVerifier::load(store.clone()).await?);
        let jobs = keel_app::jobs::Worker::with_rag(
            store,
            keel_app::jobs::RagContext {
                rag: rag.clone(),
                guard: config.guard.clone(),
            },
        );
        Ok(AppState(Arc::new(Shared {
            cache,
            keys,
            limiter: Arc::new(auth::KeyLimiter::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            verify_limits: Arc::new(auth::VerifyLimits::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
                config.auth_attempts_per_second,
                config.auth_attempts_burst,
            )),
            config: Arc::new(config),
            ready: Arc::new(AtomicBool::new(false)),
            replica: format!("{:08x}-{}", rand::random::<u32>(), std::process::id()),
            singleton: std::sync::Mutex::new(None),
            changes: tokio::sync::Notify::new(),
            reload_all: AtomicBool::new(false),
            log: std::sync::Mutex::new(Vec::new()),
            log_dropped: std::sync::atomic::AtomicU64::new(0),
            log_writer: tokio::sync::Mutex::new(()),
            firing: std::sync::Mutex::new(std::collections::HashSet::new()),
            webhooks: alerts::webhook_client(Duration::from_secs(2)),
            rag,
            guard,
            worker: jobs.health(),
            jobs,
        })))
    }

    /// The store fenced by the single-writer lease when this replica holds it (taking or renewing it now if
    /// needed); None while another replica holds it. Writes through the returned store fail once the lease is
    /// lost, so a paused replica never acts after its successor.
    pub async fn singleton_store(&self) -> Option<keel_store::Store> {
        let ttl = self.config.lease_ttl_ms as i64;
        let now = keel_core::time::now_unix_ms();
        let held = self.singleton.lock().expect("lease state").clone();
        let lease = match held {
            // Fresh enough: at least half its time left.
            Some(l) if l.expires_ms - now > ttl / 2 => Some(l),
            _ => self.renew_singleton().await,
        }?;
        Some(self.cache.store().fenced(&lease))
    }

    /// Takes or renews the single-writer lease; returns it when this replica holds it.
    pub async fn renew_singleton(&self) -> Option<keel_store::Lease> {
        let got = self
            .cache
            .store()
            .acquire_lease(
                SINGLETON_LEASE,
                &self.replica,
                self.config.lease_ttl_ms as i64,
            )
            .await;
        let lease = match got {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "could not take or renew the single-writer lease");
                None
            }
        };
        let mut held = self.singleton.lock().expect("lease state");
        if let Some(l) = &lease
            && held.as_ref().is_none_or(|h| h.token != l.token)
        {
            tracing::info!(
                token = l.token,
                "this replica now runs the rollout judge, alerts and retention"
            );
        }
        *held = lease.clone();
        lease
    }

    /// Gives the single-writer lease up (on shutdown), so another replica takes over at once.
    pub async fn release_singleton(&self) {
        let held = self.singleton.lock().expect("lease state").take();
        if let Some(l) = held
            && let Err(e) = self.cache.store().release_lease(&l).await
        {
            tracing::warn!(error = %e, "could not release the single-writer lease");
        }
    }

    /// Evaluates every alert rule on every monitored version; returns the alerts that started firing. Each is
    /// logged, counted in `keel_alerts_total`, written to the audit log and, when its rule names a webhook,
    /// POSTed there on its own task (four attempts, backoff from 500 ms).
    pub async fn evaluate_alerts(&self) -> Vec<FiredAlert> {
        self.flush_monitoring().await;
        self.flush_log().await;
        let Some(fenced) = self.singleton_store().await else {
            return Vec::new();
        };
        let mut fired = Vec::new();
        let window = self.config.monitor_window_seconds as i64;
        let now = keel_engine::monitor::now_unix();
        let since = now - now.rem_euclid(window) - window;
        for m in self.cache.monitored() {
            let rules: Vec<&alerts::AlertRule> = self
                .config
                .alerts
                .iter()
                .filter(|r| r.covers(&m.name))
                .collect();
            if rules.is_empty() {
                continue;
            }
            let store = self.cache.store();
            let report = match store
                .get(&m.name, &keel_store::Selector::Version(m.version))
                .await
            {
                Ok(record) => {
                    keel_engine::monitor::report(
                        store,
                        &record,
                        since,
                        window,
                        &keel_monitor::DriftOptions::default(),
                    )
                    .await
                }
                Err(e) => Err(e.into()),
            };
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(model = %m.name, version = m.version, error = %e, "alert evaluation skipped");
                    continue;
                }
            };
            for rule in rules {
                let key = (rule.name.clone(), m.name.clone(), m.version);
                match rule.evaluate(&report) {
                    Some(reason) => {
                        if !self.firing.lock().expect("alert state").insert(key) {
                            continue;
                        }
                        let a = FiredAlert {
                            alert: rule.name.clone(),
                            model: m.name.clone(),
                            version: m.version,
                            reason,
                            at: keel_core::time::now_rfc3339(),
                        };
                        self.notify(&fenced, rule, &a).await;
                        fired.push(a);
                    }
                    None => {
                        if self.firing.lock().expect("alert state").remove(&key) {
                            tracing::info!(alert = %rule.name, model = %m.name, version = m.version, "alert resolved");
                        }
                    }
                }
            }
        }
        fired
    }

    async fn notify(&self, fenced: &keel_store::Store, rule: &alerts::AlertRule, a: &FiredAlert) {
        tracing::warn!(alert = %a.alert, model = %a.model, version = a.version, reason = %a.reason, "alert fired");
        metrics::METRICS
            .alerts
            .with_label_values(&[a.alert.as_str()])
            .inc();
        let body = serde_json::to_value(a).expect("alerts serialise");
        if let Err(e) = fenced
            .audit(
                keel_store::AuditEvent::new(
                    "keel",
                    "alert.fire",
                    &format!("{}@{}", a.model, a.version),
                )
                .evidence(body.clone()),
            )
            .await
        {
            tracing::warn!(error = %e, "could not audit an alert");
        }
        if let Some(spec) = &rule.retrain {
            self.queue_retrain(fenced, &a.model, spec, &format!("keel (alert {})", a.alert))
                .await;
        }
        if let Some(url) = rule.webhook.clone() {
            let client = self.webhooks.clone();
            let name = a.alert.clone();
            tokio::spawn(async move {
                match alerts::post_with_retry(&client, &url, &body, 4, Duration::from_millis(500))
                    .await
                {
                    Ok(n) => tracing::info!(alert = %name, attempts = n, "alert webhook delivered"),
                    Err(e) => tracing::warn!(alert = %name, error = %e, "alert webhook failed"),
                }
            });
        }
    }

    /// Queues a retraining job for `model` unless one is already queued or running, and wakes the worker.
    async fn queue_retrain(
        &self,
        fenced: &keel_store::Store,
        model: &str,
        spec: &keel_app::retrain::RetrainSpec,
        actor: &str,
    ) {
        let spec = keel_app::jobs::JobSpec::Retrain(spec.clone());
        match keel_app::jobs::enqueue(fenced, model, &spec, actor, true).await {
            Ok(j) => {
                tracing::info!(
                    model,
                    job = j.id,
                    state = j.state.as_str(),
                    "retraining queued"
                );
                self.jobs.wake();
            }
            Err(e) => tracing::warn!(model, error = %e, "could not queue retraining"),
        }
    }

    /// Starts the job worker as a task of this process, on the server's store; returns its handle (it ends
    /// after `self.jobs.stop()`).
    pub fn start_worker(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.jobs.clone().run())
    }

    /// Judges every running canary with the configured policy (keel-app's one judge): rolls it back or
    /// promotes it as the labels say; swaps the served versions at once when something changed.
    pub async fn judge_rollouts(&self) -> Vec<keel_engine::rollout::RolloutEvaluation> {
        self.flush_log().await;
        let Some(fenced) = self.singleton_store().await else {
            return Vec::new();
        };
        let judged = match keel_app::rollout::judge_all(&fenced, &self.config.rollout).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "could not judge rollouts");
                return Vec::new();
            }
        };
        if judged.iter().any(|j| j.applied)
            && let Err(e) = self.cache.refresh().await
        {
            tracing::warn!(error = %e, "refresh after a rollout decision failed");
        }
        judged.into_iter().map(|j| j.evaluation).collect()
    }

    /// Where the last `windows` monitoring windows (the current one included) start, in unix seconds.
    pub fn windows_since(&self, windows: i64) -> i64 {
        let window = self.config.monitor_window_seconds as i64;
        let now = keel_engine::monitor::now_unix();
        now - now.rem_euclid(window) - (windows - 1) * window
    }

    /// Whether this request's rows go to the prediction log (a hash of the request id against the rate).
    pub fn logs(&self, request_id: &str) -> bool {
        let rate = self.config.prediction_log_rate;
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        // Stable across replicas, so a request is logged or not wherever it lands.
        keel_engine::cache::unit_hash(0, request_id) < rate
    }

    /// Queues rows for the prediction log, dropping (and counting) them when the buffer is full.
    pub fn log_predictions(&self, rows: Vec<keel_store::LoggedPrediction>) {
        let mut buf = self.log.lock().expect("log buffer");
        if buf.len() + rows.len() > PREDICTION_LOG_BUFFER {
            self.log_dropped
                .fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
            metrics::METRICS.log_dropped.inc_by(rows.len() as u64);
            return;
        }
        buf.extend(rows);
    }

    /// Writes the queued prediction log to the store; returns when every row queued before the call is
    /// written (or failed), including rows a concurrent flush had taken.
    pub async fn flush_log(&self) {
        let _writing = self.log_writer.lock().await;
        let batch = std::mem::take(&mut *self.log.lock().expect("log buffer"));
        for chunk in batch.chunks(5000) {
            if let Err(e) = self.cache.store().log_predictions(chunk).await {
                tracing::warn!(error = %e, rows = chunk.len(), "writing the prediction log failed; rows dropped");
            }
        }
    }

    /// Applies the prediction log's retention (age, then size); returns how many rows went.
    pub async fn prune_log(&self) -> u64 {
        let keep_ms = (self.config.prediction_log_retention_hours as i64).saturating_mul(3_600_000);
        let older_than = keel_core::time::now_unix_ms().saturating_sub(keep_ms);
        let Some(fenced) = self.singleton_store().await else {
            return 0;
        };
        match fenced
            .prune_prediction_log(older_than, self.config.prediction_log_max_rows)
            .await
        {
            Ok(n) => {
                metrics::METRICS.log_pruned.inc_by(n);
                if n > 0 {
                    tracing::info!(rows = n, "prediction log retention applied");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "prediction log retention failed");
                0
            }
        }
    }

    /// Adds what every monitored version served since the last flush to its stored windows.
    pub async fn flush_monitoring(&self) {
        for m in self.cache.monitored() {
            let Some(live) = &m.monitor else {
                continue;
            };
            if let Err(e) = keel_engine::monitor::flush(
                self.cache.store(),
                &m.name,
                m.version,
                live,
                &self.replica,
            )
            .await
            {
                tracing::warn!(model = %m.name, version = m.version, error = %e, "writing a monitoring window failed; kept for the next flush");
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
        if !self.config.alerts.is_empty() {
            let st = self.clone();
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_millis(st.config.alert_interval_ms));
                loop {
                    tick.tick().await;
                    st.evaluate_alerts().await;
                }
            });
        }
        if self.config.prediction_log_rate > 0.0 {
            let st = self.clone();
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_millis(st.config.rollout_interval_ms));
                loop {
                    tick.tick().await;
                    st.judge_rollouts().await;
                }
            });
            let st = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    st.flush_log().await;
                }
            });
            let st = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tick.tick().await;
                    st.prune_log().await;
                }
            });
        }
        let st = self.clone();
        tokio::spawn(async move {
            match st.cache.preload().await {
                Ok(p) => {
                    for (reference, error) in &p.failed {
                        tracing::error!(reference = %reference, error = %error, "could not load a champion; it loads on demand");
                    }
                    tracing::info!(
                        models = p.loaded.len(),
                        failed = p.failed.len(),
                        "models loaded; ready"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "preloading models failed; serving on demand")
                }
            }
            st.ready.store(true, Ordering::Release);
            // Alias moves, rollouts and keys reach this replica through the change counter: polled every
            // refresh interval, checked at once when the database announces a change, and a full reload after
            // a lost notification connection (and every 30 s regardless).
            let mut tick =
                tokio::time::interval(Duration::from_millis(st.config.refresh_interval_ms));
            let mut last: Option<i64> = None;
            let mut last_full = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = st.changes.notified() => {}
                }
                let counter = st.cache.store().change_counter().await;
                let full = st.reload_all.swap(false, Ordering::AcqRel)
                    || last_full.elapsed() > Duration::from_secs(30);
                let moved = match &counter {
                    Ok(c) => last != Some(*c),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the change counter failed");
                        true
                    }
                };
                if !(moved || full) {
                    continue;
                }
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
                last = counter.ok();
                last_full = std::time::Instant::now();
            }
        });
        // Postgres: a LISTEN connection wakes the refresh loop when a change commits anywhere.
        let st = self.clone();
        tokio::spawn(async move {
            let name = format!("keel-listen-{}", std::process::id());
            loop {
                match st.cache.store().listen_changes(&name).await {
                    Ok(None) => return,
                    Ok(Some(mut listener)) => loop {
                        match listener.next().await {
                            Ok(keel_store::ChangeEvent::Changed) => st.changes.notify_one(),
                            Ok(keel_store::ChangeEvent::Reconnected) => {
                                tracing::warn!(
                                    "the change notification connection was lost; reloading everything"
                                );
                                st.reload_all.store(true, Ordering::Release);
                                st.changes.notify_one();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "change notifications failed; polling meanwhile");
                                st.reload_all.store(true, Ordering::Release);
                                break;
                            }
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not listen for changes; polling meanwhile")
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        // The single-writer lease: renewed three times per TTL while held, tried as often while not.
        let st = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis((st.config.lease_ttl_ms / 3).max(50)));
            loop {
                tick.tick().await;
                st.renew_singleton().await;
            }
        });
    }
}

pub use routes::router;

pub use keel_app::shutdown_signal;
