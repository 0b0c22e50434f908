//! Server configuration. Precedence: defaults < `[serve]` in `keel.toml` < `KEEL_*` environment < flags;
//! the binary merges them and hands the result here, validated.

use keel_engine::UnseenCategory;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    pub port: u16,
    /// Require API keys. Turning this off must be explicit (`--no-auth`); it is logged loudly.
    pub auth: bool,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Most records in one prediction request.
    pub max_records: usize,
    /// Requests handled at once; more are shed with 503 and `Retry-After`.
    pub concurrency_limit: usize,
    /// Longest a request may take before it is answered with 503.
    pub timeout_ms: u64,
    /// A client must send a whole request head within this long after connecting or after its previous
    /// response; otherwise the connection is closed (slow-header and idle clients hold no connection longer).
    pub header_read_timeout_ms: u64,
    /// Open connections at most; more clients wait in the listen backlog.
    pub max_connections: usize,
    /// Requests per second allowed per API key (0 = unlimited).
    pub rate_limit_per_second: u32,
    /// Burst allowed above the per-key rate.
    pub rate_limit_burst: u32,
    /// Full verifications (argon2) of not-yet-verified keys per second per client address (0 = unlimited):
    /// bounds a flood of wrong secrets; a good key is verified once and then cached.
    pub auth_attempts_per_second: u32,
    /// Burst allowed above `auth_attempts_per_second`.
    pub auth_attempts_burst: u32,
    /// What to do with a category the model never saw.
    pub unseen_category: UnseenCategory,
    /// How often the registry's change counter is polled to pick up alias moves, rollouts and keys changed
    /// elsewhere (on Postgres a notification also wakes the check at once).
    pub refresh_interval_ms: u64,
    /// Batches larger than this are scored on the blocking pool instead of the request task.
    pub inline_batch_rows: usize,
    /// Keep window profiles of every served version (counts over its training bins) for drift reports.
    pub monitoring: bool,
    /// Length of a monitoring window.
    pub monitor_window_seconds: u64,
    /// How often window profiles are written to the store.
    pub monitor_flush_ms: u64,
    /// Share of requests whose rows and outputs go to the prediction log (for joining delayed labels);
    /// chosen by request id, so all rows of a request go together. 0 turns the log off.
    pub prediction_log_rate: f64,
    /// Features stored as missing in the prediction log (personal data, say).
    pub redact: Vec<String>,
    /// Logged predictions (and their labels) older than this are deleted.
    pub prediction_log_retention_hours: u64,
    /// Most logged predictions kept; the oldest beyond go first.
    pub prediction_log_max_rows: u64,
    /// Alert rules over the monitoring report (see `crate::alerts`).
    pub alerts: Vec<crate::alerts::AlertRule>,
    /// How often alert rules are evaluated.
    pub alert_interval_ms: u64,
    /// How canaries are judged from delayed labels (promotion or automatic rollback).
    pub rollout: keel_engine::rollout::RolloutPolicy,
    /// How often running canaries are judged.
    pub rollout_interval_ms: u64,
    /// The single-writer lease's time to live: replicas sharing a database run the rollout judge, alert
    /// evaluation and retention on one replica at a time; when it dies, another takes over within this time.
    pub lease_ttl_ms: u64,
    /// Run queued jobs (retraining, imports) in this process. Off for replicas next to `keel worker`s.
    pub worker: bool,
    /// Generative endpoints: local model location, answer length, the upstream OpenAI-compatible LLM.
    pub llm: crate::rag::LlmConfig,
    /// Guardrails: the gateway's guards on `/v1/chat/completions`, policies per route and collection.
    pub guard: crate::guard::GuardConfig,
}

impl ServerConfig {
    /// The listener's connection limits.
    pub fn connection_limits(&self) -> crate::listen::ConnectionLimits {
        crate::listen::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            max_connections: self.max_connections,
            drain: std::time::Duration::from_millis(self.timeout_ms.max(1000)),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            auth: true,
            body_limit_bytes: 2 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            auth_attempts_per_second: 10,
            auth_attempts_burst: 20,
            max_connections: 4096,
            max_records: 1000,
            concurrency_limit: 512,
            timeout_ms: 10_000,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            unseen_category: UnseenCategory::Reject,
            refresh_interval_ms: 1000,
            inline_batch_rows: 64,
            monitoring: true,
            monitor_window_seconds: 3600,
            monitor_flush_ms: 5000,
            prediction_log_rate: keel_engine::monitor::DEFAULT_PREDICTION_LOG_RATE,
            redact: Vec::new(),
            prediction_log_retention_hours: 24 * 30,
            prediction_log_max_rows: 5_000_000,
            alerts: Vec::new(),
            alert_interval_ms: 60_000,
            rollout: Default::default(),
            rollout_interval_ms: 10_000,
            lease_ttl_ms: 15_000,
            worker: true,
            llm: Default::default(),
            guard: Default::default(),
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.body_limit_bytes < 1024 {
            return Err("body_limit_bytes must be at least 1024".into());
        }
        if self.header_read_timeout_ms == 0 || self.max_connections == 0 {
            return Err("header_read_timeout_ms and max_connections must be positive".to_string());
        }
        if self.max_records == 0 || self.concurrency_limit == 0 {
            return Err("max_records and concurrency_limit must be positive".into());
        }
        if self.timeout_ms == 0 || self.llm.timeout_ms == 0 {
            return Err("timeout_ms and llm.timeout_ms must be positive".into());
        }
        if self.llm.max_tokens == 0 || self.llm.max_tokens > 4096 {
            return Err("llm.max_tokens must be from 1 to 4096".into());
        }
        if !(0.0..=1.0).contains(&self.prediction_log_rate) {
            return Err("prediction_log_rate must be between 0 and 1".into());
        }
        for rule in &self.alerts {
            rule.validate()?;
        }
        if !self.alerts.is_empty() && !self.monitoring {
            return Err("alert rules need monitoring on".into());
        }
        if self.rollout.min_labels < 20 || self.rollout_interval_ms == 0 {
            return Err(
                "rollout.min_labels must be at least 20 and rollout_interval_ms positive".into(),
            );
        }
        if self.rollout.max_degradation.is_nan() || self.rollout.max_degradation < 0.0 {
            return Err("rollout.max_degradation must be 0 or more".into());
        }
        if self.lease_ttl_ms < 300 || self.refresh_interval_ms == 0 {
            return Err(
                "lease_ttl_ms must be at least 300 and refresh_interval_ms positive".into(),
            );
        }
        if self.monitor_window_seconds == 0 || self.monitor_flush_ms == 0 {
            return Err("monitor_window_seconds and monitor_flush_ms must be positive".into());
        }
        if self.guard.enabled
            && self.guard.upstream == crate::guard::Upstream::Remote
            && self.llm.remote.base_url.is_none()
        {
            return Err("guard.upstream = \"remote\" needs llm.remote.base_url".into());
        }
        Ok(())
    }
}
