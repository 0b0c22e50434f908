//! Judging a live rollout from delayed labels: the canary's realized metric against the champion's over the
//! same period (different requests, same time), and the shadow's against the champion's on the very same
//! rows. The decision is `wait` (too few labels), `promote` or `rollback`.

use serde::Serialize;

use crate::Result;

/// How a rollout is judged.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutPolicy {
    /// Labelled predictions each arm needs before a decision.
    pub min_labels: usize,
    /// The canary is rolled back when its metric is worse than the champion's by more than this
    /// (ROC-AUC for classification, RMSE relative to the champion's for regression).
    pub max_degradation: f64,
    /// Promote a canary that holds up once it has enough labels (otherwise wait for `keel deploy promote`).
    pub auto_promote: bool,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            min_labels: 200,
            max_degradation: 0.02,
            auto_promote: true,
        }
    }
}

/// What the labels say to do with a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// No canary is running (a shadow alone is never promoted automatically).
    None,
    /// Too few labels (or one class only) to judge yet.
    Wait,
    /// The canary holds up: promote it (automatically when the policy says so).
    Promote,
    /// The canary is worse than the champion beyond the policy: roll it back.
    Rollback,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::None => "none",
            Decision::Wait => "wait",
            Decision::Promote => "promote",
            Decision::Rollback => "rollback",
        }
    }
}

/// One arm's realized performance.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Arm {
    pub version: i64,
    pub labelled: usize,
    /// ROC-AUC (binary), accuracy (multiclass: the log holds the predicted class) or RMSE (regression); `None`
    /// with too few labels or one class only.
    pub metric: Option<f64>,
}

/// What the labels say about a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RolloutEvaluation {
    pub model: String,
    pub metric: String,
    pub champion: Option<Arm>,
    pub canary: Option<Arm>,
    /// The shadow and the champion on the same mirrored rows.
    pub shadow: Option<Arm>,
    pub shadow_champion: Option<Arm>,
    /// About the canary.
    pub decision: Decision,
    pub reason: String,
}

fn metric(y: &[f64], p: &[f64], objective: keel_ml::Objective) -> Option<f64> {
    if objective == keel_ml::Objective::Binary {
        keel_ml::metrics::roc_auc(y, p)
    } else if y.is_empty() {
        None
    } else if objective == keel_ml::Objective::Multiclass {
        Some(y.iter().zip(p).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
    } else {
        let mse = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64;
        Some(mse.sqrt())
    }
}

fn arm(version: i64, y: &[f64], p: &[f64], objective: keel_ml::Objective, min: usize) -> Arm {
    Arm {
        version,
        labelled: y.len(),
        metric: if y.len() >= min {
            metric(y, p, objective)
        } else {
            None
        },
    }
}

/// The decision on a canary from the champion's metric `a` and the canary's `b` (ROC-AUC or accuracy, higher
/// better and compared absolutely, when `higher_better`; else RMSE, compared relatively), and how the two compare in words: better, equal, or worse within or
/// beyond the allowed degradation.
pub fn verdict(higher_better: bool, a: f64, b: f64, max_degradation: f64) -> (Decision, String) {
    // Positive = the canary is worse.
    let worse = if higher_better {
        a - b
    } else {
        (b - a) / a.max(f64::MIN_POSITIVE)
    };
    let unit = if higher_better { "" } else { " (relative)" };
    if worse > max_degradation {
        (
            Decision::Rollback,
            format!("worse by {worse:.4}{unit}, more than the allowed {max_degradation}"),
        )
    } else if worse > 0.0 {
        (
            Decision::Promote,
            format!("worse by {worse:.4}{unit}, within the allowed {max_degradation}"),
        )
    } else if worse < 0.0 {
        (Decision::Promote, format!("better by {:.4}{unit}", -worse))
    } else {
        (Decision::Promote, "equal".to_string())
    }
}

/// Evaluates the rollout of `model` (champion version `champion`) from the labels that arrived since it started.
pub async fn evaluate(
    store: &keel_store::Store,
    rollout: &keel_store::Rollout,
    champion: i64,
    objective: keel_ml::Objective,
    policy: &RolloutPolicy,
) -> Result<RolloutEvaluation> {
    let higher_better = objective.is_classification();
    let labelled = store.labelled(&rollout.model, rollout.started_ms).await?;
    let mut by = |version: i64| {
        let (y, p): (Vec<f64>, Vec<f64>) = labelled
            .iter()
            .filter(|l| l.version == version)
            .map(|l| (l.label, l.output))
            .unzip();
        arm(version, &y, &p, objective, policy.min_labels)
    };
    let champ = by(champion);
    let canary = rollout.canary_version.map(&mut by);
    let (shadow, shadow_champion) = match rollout.shadow_version {
        Some(sv) => {
            let rows: Vec<_> = labelled
                .iter()
                .filter(|l| l.shadow.is_some_and(|s| s.0 == sv))
                .collect();
            let y: Vec<f64> = rows.iter().map(|l| l.label).collect();
            let ps: Vec<f64> = rows.iter().map(|l| l.shadow.expect("filtered").1).collect();
            let pc: Vec<f64> = rows.iter().map(|l| l.output).collect();
            (
                Some(arm(sv, &y, &ps, objective, policy.min_labels)),
                Some(arm(champion, &y, &pc, objective, policy.min_labels)),
            )
        }
        None => (None, None),
    };
    let name = match objective {
        keel_ml::Objective::Binary => "roc_auc",
        keel_ml::Objective::Multiclass => "accuracy",
        keel_ml::Objective::Regression => "rmse",
    };
    let (decision, reason) = match &canary {
        None => (Decision::None, "no canary running".to_string()),
        Some(c) => match (champ.metric, c.metric) {
            (Some(a), Some(b)) => {
                let (decision, how) = verdict(higher_better, a, b, policy.max_degradation);
                (
                    decision,
                    format!(
                        "canary v{} {name} {b:.4} vs champion v{champion} {a:.4} on {} and {} labels: {how}",
                        c.version, c.labelled, champ.labelled
                    ),
                )
            }
            _ => (
                Decision::Wait,
                format!(
                    "waiting for labels: canary {} and champion {} of the {} each needs (or one class only)",
                    c.labelled, champ.labelled, policy.min_labels
                ),
            ),
        },
    };
    Ok(RolloutEvaluation {
        model: rollout.model.clone(),
        metric: name.into(),
        champion: Some(champ),
        canary,
        shadow,
        shadow_champion,
        decision,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::{Decision, verdict};

    #[test]
    fn the_verdict_says_better_when_the_canary_is_better() {
        let (d, how) = verdict(true, 0.70, 0.744, 0.02);
        assert_eq!(d, Decision::Promote);
        assert_eq!(how, "better by 0.0440");
        let (d, how) = verdict(true, 0.70, 0.69, 0.02);
        assert_eq!(d, Decision::Promote);
        assert!(
            how.starts_with("worse by 0.0100, within the allowed 0.02"),
            "{how}"
        );
        let (d, how) = verdict(true, 0.70, 0.60, 0.02);
        assert_eq!(d, Decision::Rollback);
        assert!(how.contains("more than the allowed"), "{how}");
        // RMSE: lower is better.
        let (d, how) = verdict(false, 2.0, 1.0, 0.05);
        assert_eq!(
            (d, how.as_str()),
            (Decision::Promote, "better by 0.5000 (relative)")
        );
    }
}
