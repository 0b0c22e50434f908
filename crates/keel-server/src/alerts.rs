//! Alert rules over the monitoring report, and their notifications: a log line, a metric, an audit record and,
//! when the rule names one, a webhook POST retried with exponential backoff on its own task, so a slow or dead
//! receiver never holds up serving or the next evaluation.
//!
//! Rules live under `[serve]` in `keel.toml`:
//!
//! ```toml
//! [[serve.alerts]]
//! name = "employment-drift"
//! model = "employment"          # optional: every served model
//! when = "drifted_features"     # or "prediction_drift", or "metric_below"
//! at_least = 3
//! webhook = "http://127.0.0.1:9000/hook"
//!
//! [[serve.alerts]]
//! name = "auc-floor"
//! when = "metric_below"
//! metric = "roc_auc"            # roc_auc, accuracy (higher is better) or log_loss (alerts when above)
//! floor = 0.85
//!
//! [[serve.alerts]]
//! name = "parity"
//! when = "fairness_above"
//! gap = "demographic_parity_difference"   # or equal_opportunity_difference
//! ceiling = 0.1
//! column = "SEX"                # optional: any sensitive column
//!
//! [serve.alerts.retrain]        # optional: the rule queues a retraining job
//! data = "data/latest.parquet"
//! holdout = "data/holdout.parquet"
//! canary = 0.1
//! ```

use keel_engine::monitor::MonitorReport;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What makes a rule fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum Condition {
    /// At least this many features drifted.
    DriftedFeatures { at_least: usize },
    /// The prediction's distribution drifted.
    PredictionDrift,
    /// The newest window with enough labels has this realized metric on the wrong side of `floor`.
    MetricBelow { metric: String, floor: f64 },
    /// The newest window with enough labels has a fairness gap (`demographic_parity_difference` or
    /// `equal_opportunity_difference`) above `ceiling` on a sensitive column (`column`, or any).
    FairnessAbove {
        gap: String,
        ceiling: f64,
        #[serde(default)]
        column: Option<String>,
    },
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub name: String,
    /// Only this model (by name); every served model when absent.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(flatten)]
    pub condition: Condition,
    /// Where to POST the alert as JSON.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Queue a retraining job when the rule fires (unless one is already queued or running for the model).
    #[serde(default)]
    pub retrain: Option<keel_app::retrain::RetrainSpec>,
}

impl AlertRule {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("an alert rule needs a name".into());
        }
        if let Condition::MetricBelow { metric, .. } = &self.condition
            && !["roc_auc", "accuracy", "log_loss"].contains(&metric.as_str())
        {
            return Err(format!(
                "alert '{}': metric '{metric}' must be roc_auc, accuracy or log_loss",
                self.name
            ));
        }
        if let Condition::FairnessAbove { gap, .. } = &self.condition
            && ![
                "demographic_parity_difference",
                "equal_opportunity_difference",
            ]
            .contains(&gap.as_str())
        {
            return Err(format!(
                "alert '{}': gap '{gap}' must be demographic_parity_difference or equal_opportunity_difference",
                self.name
            ));
        }
        if let Some(w) = &self.webhook
            && !(w.starts_with("http://") || w.starts_with("https://"))
        {
            return Err(format!(
                "alert '{}': webhook '{w}' must be an http:// or https:// URL",
                self.name
            ));
        }
        Ok(())
    }

    /// Whether the rule applies to `model`.
    pub fn covers(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
    }

    /// Why the rule fires on this report, or `None` when it does not.
    pub fn evaluate(&self, r: &MonitorReport) -> Option<String> {
        let features = || {
            r.drift
                .columns
                .iter()
                .filter(|c| c.drifted && c.name != "prediction")
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        match &self.condition {
            Condition::DriftedFeatures { at_least } => {
                let d = features();
                (d.len() >= *at_least && !d.is_empty())
                    .then(|| format!("{} features drifted: {}", d.len(), d.join(", ")))
            }
            Condition::PredictionDrift => r
                .drift
                .columns
                .iter()
                .find(|c| c.name == "prediction" && c.drifted)
                .map(|c| format!("the prediction drifted (PSI {:.3})", c.psi.unwrap_or(0.0))),
            Condition::MetricBelow { metric, floor } => {
                let w = r.realized.iter().rev().find(|w| w.note.is_none())?;
                let (value, bad) = match metric.as_str() {
                    "roc_auc" => (w.roc_auc?, w.roc_auc? < *floor),
                    "accuracy" => (w.accuracy?, w.accuracy? < *floor),
                    "log_loss" => (w.log_loss?, w.log_loss? > *floor),
                    _ => return None,
                };
                bad.then(|| {
                    format!(
                        "realized {metric} {value:.4} in the window starting {} ({} labels) is past {floor}",
                        w.window_start, w.labelled
                    )
                })
            }
            Condition::FairnessAbove {
                gap,
                ceiling,
                column,
            } => {
                let w = r.realized.iter().rev().find(|w| w.note.is_none())?;
                w.fairness
                    .iter()
                    .filter(|f| column.as_ref().is_none_or(|c| *c == f.column))
                    .map(|f| {
                        let v = if gap == "demographic_parity_difference" {
                            f.demographic_parity_difference
                        } else {
                            f.equal_opportunity_difference
                        };
                        (f, v)
                    })
                    .find(|(_, v)| *v > *ceiling)
                    .map(|(f, v)| {
                        format!(
                            "realized {gap} on {} is {v:.4} in the window starting {} ({} labels), above {ceiling}",
                            f.column, w.window_start, w.labelled
                        )
                    })
            }
        }
    }
}

/// POSTs `body` to `url`, retrying failures (connection errors, timeouts, non-2xx) with exponential backoff.
/// Returns the number of attempts it took, or the last error after `attempts` tries.
pub async fn post_with_retry(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    attempts: u32,
    first_backoff: Duration,
) -> Result<u32, String> {
    let mut wait = first_backoff;
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) if e.is_timeout() => last = "timed out".into(),
            Err(e) => last = e.to_string(),
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(format!("{attempts} attempts failed; last: {last}"))
}

/// The HTTP client for webhooks: a per-attempt `timeout`, no redirects.
pub fn webhook_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with static settings builds")
}
