//! Choosing between the candidates of one training run (gradient-boosted trees and the linear baseline)
//! honestly: on a validation split carved from the training rows, so the holdout that the card reports stays
//! untouched by the choice; and saying so when the registered candidate loses to the other on the holdout.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Objective;

/// Which candidate `keel train` registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// The better of the two on a validation split of the training rows (the default).
    #[default]
    Auto,
    Gbdt,
    Linear,
}

/// The candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Candidate {
    Gbdt,
    Linear,
}

impl Candidate {
    pub fn name(self) -> &'static str {
        match self {
            Candidate::Gbdt => "gradient-boosted trees",
            Candidate::Linear => "linear baseline",
        }
    }

    pub fn other(self) -> Candidate {
        match self {
            Candidate::Gbdt => Candidate::Linear,
            Candidate::Linear => Candidate::Gbdt,
        }
    }
}

/// The metric a choice is made on: ROC-AUC for binary classification, log loss for multiclass, RMSE for
/// regression.
pub fn primary_metric(objective: Objective) -> &'static str {
    match objective {
        Objective::Binary => "auc",
        Objective::Regression => "rmse",
        Objective::Multiclass => "log_loss",
    }
}

/// The metric a regression trained with `loss` is chosen and gated on: RMSE for squared error, MAE for
/// absolute error, else the loss's own mean (the deviance of a log-link loss, the pinball or Huber loss).
pub fn regression_metric(loss: crate::Loss) -> &'static str {
    match loss {
        crate::Loss::L2 => "rmse",
        crate::Loss::L1 => "mae",
        crate::Loss::Huber { .. } => "huber_loss",
        crate::Loss::Poisson => "poisson_deviance",
        crate::Loss::Gamma => "gamma_deviance",
        crate::Loss::Tweedie { .. } => "tweedie_deviance",
        crate::Loss::Quantile { .. } => "pinball_loss",
    }
}

/// Whether a larger value of `metric` is better.
pub fn higher_is_better(metric: &str) -> bool {
    matches!(
        metric,
        "auc"
            | "pr_auc"
            | "accuracy"
            | "precision"
            | "recall"
            | "f1"
            | "r2"
            | "macro_f1"
            | "weighted_f1"
            | "top2_accuracy"
    )
}

/// How the registered candidate was chosen, for the card, the output and the audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// What was asked for (`--model`).
    pub requested: Choice,
    pub chosen: Candidate,
    /// The metric the choice compares.
    pub metric: String,
    /// Each candidate's value of `metric` on the validation split (only for `auto`).
    pub validation: BTreeMap<String, f64>,
    /// Rows of the validation split (only for `auto`).
    pub validation_rows: usize,
    /// Each candidate's holdout metrics (both trained on every training row).
    pub holdout: BTreeMap<String, BTreeMap<String, f64>>,
    /// One sentence saying why this candidate was registered.
    pub reason: String,
}

fn key(c: Candidate) -> String {
    match c {
        Candidate::Gbdt => "gbdt".into(),
        Candidate::Linear => "linear".into(),
    }
}

/// The candidate that does better on `metric` (ties go to the trees, the richer model).
pub fn better(metric: &str, gbdt: f64, linear: f64) -> Candidate {
    let linear_wins = if higher_is_better(metric) {
        linear > gbdt
    } else {
        linear < gbdt
    };
    if linear_wins {
        Candidate::Linear
    } else {
        Candidate::Gbdt
    }
}

impl Selection {
    /// A choice made on `metric` (see [`primary_metric`] and [`regression_metric`]): `validation` holds (gbdt,
    /// linear) values of it on the validation split when the choice was `auto`; `holdout` holds each
    /// candidate's holdout metrics.
    pub fn on_metric(
        requested: Choice,
        metric: &str,
        validation: Option<((f64, f64), usize)>,
        holdout_gbdt: BTreeMap<String, f64>,
        holdout_linear: BTreeMap<String, f64>,
    ) -> Selection {
        let metric = metric.to_string();
        let (chosen, reason, val, val_rows) = match (requested, validation) {
            (Choice::Gbdt, _) => (
                Candidate::Gbdt,
                "gradient-boosted trees, as asked (--model gbdt)".to_string(),
                BTreeMap::new(),
                0,
            ),
            (Choice::Linear, _) => (
                Candidate::Linear,
                "the linear model, as asked (--model linear)".to_string(),
                BTreeMap::new(),
                0,
            ),
            (Choice::Auto, Some(((g, l), rows))) => {
                let c = better(&metric, g, l);
                let (cv, ov) = if c == Candidate::Gbdt { (g, l) } else { (l, g) };
                (
                    c,
                    format!(
                        "the {} scored {metric} {cv:.4} against {ov:.4} for the {} on a validation split of {rows} training rows (--model auto; the holdout played no part in the choice)",
                        c.name(),
                        c.other().name()
                    ),
                    [(key(Candidate::Gbdt), g), (key(Candidate::Linear), l)].into(),
                    rows,
                )
            }
            (Choice::Auto, None) => (
                Candidate::Gbdt,
                "gradient-boosted trees (too few training rows to hold out a validation split)"
                    .to_string(),
                BTreeMap::new(),
                0,
            ),
        };
        Selection {
            requested,
            chosen,
            metric,
            validation: val,
            validation_rows: val_rows,
            holdout: [
                (key(Candidate::Gbdt), holdout_gbdt),
                (key(Candidate::Linear), holdout_linear),
            ]
            .into(),
            reason,
        }
    }

    /// Metrics on which the other candidate did better on the holdout than the chosen one.
    pub fn beaten_on(&self) -> Vec<String> {
        let mine = &self.holdout[&key(self.chosen)];
        let theirs = &self.holdout[&key(self.chosen.other())];
        mine.iter()
            .filter_map(|(k, &v)| {
                let o = *theirs.get(k)?;
                let worse = if higher_is_better(k) { o > v } else { o < v };
                (worse && (o - v).abs() > 1e-12).then(|| k.clone())
            })
            .collect()
    }

    /// A limitation for the card when the other candidate beat the chosen one on the holdout's primary metric.
    pub fn limitation(&self) -> Option<String> {
        let mine = *self.holdout[&key(self.chosen)].get(&self.metric)?;
        let theirs = *self.holdout[&key(self.chosen.other())].get(&self.metric)?;
        let (g, l) = match self.chosen {
            Candidate::Gbdt => (mine, theirs),
            Candidate::Linear => (theirs, mine),
        };
        if mine == theirs || better(&self.metric, g, l) == self.chosen {
            return None;
        }
        let beaten = self.beaten_on();
        let n = self.holdout[&key(self.chosen)].len();
        Some(format!(
            "The {} beat the registered {} on the holdout: {} {theirs:.4} vs {mine:.4}, better on {} of {n} metrics ({}).{}",
            self.chosen.other().name(),
            self.chosen.name(),
            self.metric,
            beaten.len(),
            beaten.join(", "),
            match self.requested {
                Choice::Auto =>
                    " The choice was made on a validation split; the holdout disagrees, so the two are close.",
                Choice::Gbdt => " Consider --model linear or --model auto.",
                Choice::Linear => " Consider --model gbdt or --model auto.",
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn auto_takes_the_better_candidate_on_validation_and_says_why() {
        let s = Selection::on_metric(
            Choice::Auto,
            primary_metric(Objective::Binary),
            Some(((0.69, 0.73), 400)),
            m(&[("auc", 0.690), ("log_loss", 0.60)]),
            m(&[("auc", 0.736), ("log_loss", 0.55)]),
        );
        assert_eq!(s.chosen, Candidate::Linear);
        assert!(s.reason.contains("validation split of 400"), "{}", s.reason);
        assert_eq!(s.limitation(), None);
        // Regression: lower RMSE wins.
        let s = Selection::on_metric(
            Choice::Auto,
            primary_metric(Objective::Regression),
            Some(((2.0, 3.0), 100)),
            m(&[("rmse", 2.0)]),
            m(&[("rmse", 3.0)]),
        );
        assert_eq!(s.chosen, Candidate::Gbdt);
        assert_eq!(s.limitation(), None);
    }

    #[test]
    fn a_forced_candidate_that_loses_on_the_holdout_is_named_a_limitation() {
        let s = Selection::on_metric(
            Choice::Gbdt,
            primary_metric(Objective::Binary),
            None,
            m(&[("auc", 0.690), ("log_loss", 0.60), ("f1", 0.5)]),
            m(&[("auc", 0.736), ("log_loss", 0.55), ("f1", 0.4)]),
        );
        assert_eq!(s.chosen, Candidate::Gbdt);
        assert_eq!(
            s.beaten_on(),
            vec!["auc".to_string(), "log_loss".to_string()]
        );
        let l = s.limitation().unwrap();
        assert!(
            l.contains("linear baseline beat the registered gradient-boosted trees"),
            "{l}"
        );
        assert!(l.contains("better on 2 of 3 metrics"), "{l}");
        assert!(l.contains("--model linear"), "{l}");
    }
}
