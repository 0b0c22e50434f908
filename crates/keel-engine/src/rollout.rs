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
    /// ROC-AUC (binary), log loss (multiclass; accuracy for rows logged without probabilities) or RMSE
    /// (regression); `None` with too few labels or one class only.
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

/// What an arm is judged on: the served output per labelled row, and for multiclass every class's
/// probability when the log holds them (then the arm is judged on log loss, as the gate judges).
struct Scored<'a> {
    y: Vec<f64>,
    output: Vec<f64>,
    probabilities: Option<Vec<&'a [f64]>>,
}

fn metric(s: &Scored, objective: keel_ml::Objective) -> Option<f64> {
    let (y, p) = (&s.y, &s.output);
    if objective == keel_ml::Objective::Binary {
        keel_ml::metrics::roc_auc(y, p)
    } else if y.is_empty() {
        None
    } else if objective == keel_ml::Objective::Multiclass {
        match &s.probabilities {
            Some(rows) => {
                let k = rows.first().map_or(0, |r| r.len());
                let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
                Some(keel_ml::metrics::multiclass_log_loss(y, &flat, k, None))
            }
            None => Some(y.iter().zip(p).filter(|(a, b)| a == b).count() as f64 / y.len() as f64),
        }
    } else {
        let mse = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64;
        Some(mse.sqrt())
    }
}

fn arm(version: i64, s: &Scored, objective: keel_ml::Objective, min: usize) -> Arm {
    Arm {
        version,
        labelled: s.y.len(),
        metric: if s.y.len() >= min {
            metric(s, objective)
        } else {
            None
        },
    }
}

/// Rows scored by one version: (label, output, probabilities if logged). With `use_probabilities`, every row
/// has them (the caller checked).
fn scored<'a>(
    rows: impl Iterator<Item = (f64, f64, Option<&'a Vec<f64>>)>,
    use_probabilities: bool,
) -> Scored<'a> {
    let mut s = Scored {
        y: vec![],
        output: vec![],
        probabilities: use_probabilities.then(Vec::new),
    };
    for (y, o, p) in rows {
        s.y.push(y);
        s.output.push(o);
        if let (Some(all), Some(p)) = (s.probabilities.as_mut(), p) {
            all.push(p.as_slice());
        }
    }
    s
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
    let labelled = store.labelled(&rollout.model, rollout.started_ms).await?;
    let multiclass = objective == keel_ml::Objective::Multiclass;
    // Multiclass arms are judged on log loss when every row they use logged its probabilities (rows logged
    // before the log held them fall back to accuracy on the predicted class, for every arm alike).
    let arms = [Some(champion), rollout.canary_version];
    let by_log_loss = multiclass
        && labelled
            .iter()
            .all(|l| !arms.contains(&Some(l.version)) || l.probabilities.is_some())
        && labelled
            .iter()
            .filter(|l| l.shadow.is_some())
            .all(|l| l.probabilities.is_some() && l.shadow_probabilities.is_some());
    let higher_better = objective == keel_ml::Objective::Binary || (multiclass && !by_log_loss);
    let by = |version: i64| {
        let s = scored(
            labelled
                .iter()
                .filter(|l| l.version == version)
                .map(|l| (l.label, l.output, l.probabilities.as_ref())),
            by_log_loss,
        );
        arm(version, &s, objective, policy.min_labels)
    };
    let champ = by(champion);
    let canary = rollout.canary_version.map(by);
    let (shadow, shadow_champion) = match rollout.shadow_version {
        Some(sv) => {
            let rows: Vec<_> = labelled
                .iter()
                .filter(|l| l.shadow.is_some_and(|s| s.0 == sv))
                .collect();
            let ss = scored(
                rows.iter().map(|l| {
                    (
                        l.label,
                        l.shadow.expect("filtered").1,
                        l.shadow_probabilities.as_ref(),
                    )
                }),
                by_log_loss,
            );
            let sc = scored(
                rows.iter()
                    .map(|l| (l.label, l.output, l.probabilities.as_ref())),
                by_log_loss,
            );
            (
                Some(arm(sv, &ss, objective, policy.min_labels)),
                Some(arm(champion, &sc, objective, policy.min_labels)),
            )
        }
        None => (None, None),
    };
    let name = match objective {
        keel_ml::Objective::Binary => "roc_auc",
        keel_ml::Objective::Multiclass if by_log_loss => "log_loss",
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
    use super::{Decision, metric, scored, verdict};

    /// A multiclass arm with logged probabilities is judged on log loss; without them, on accuracy.
    #[test]
    fn multiclass_arms_use_log_loss_when_the_log_holds_probabilities() {
        let p0 = vec![0.7, 0.2, 0.1];
        let p1 = vec![0.1, 0.5, 0.4];
        let rows = || vec![(0.0, 0.0, Some(&p0)), (2.0, 1.0, Some(&p1))].into_iter();
        let m = metric(&scored(rows(), true), keel_ml::Objective::Multiclass).unwrap();
        let expected = -(0.7f64.ln() + 0.4f64.ln()) / 2.0;
        assert!((m - expected).abs() < 1e-12, "{m} vs {expected}");
        let acc = metric(&scored(rows(), false), keel_ml::Objective::Multiclass).unwrap();
        assert_eq!(acc, 0.5);
    }

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
