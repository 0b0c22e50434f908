//! The champion/challenger gate: both models scored on the same fresh labelled holdout, the metric delta
//! with a paired bootstrap interval, and fairness gaps compared per sensitive column. Pure: the caller loads
//! the models and the holdout, and records the report (it is the evidence of the decision).

use keel_core::Frame;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::eval::{EvalOptions, score};
use crate::metrics;
use crate::model::Model;
use crate::{Error, Objective, Result};

/// How strict the gate is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateOptions {
    /// The challenger's point estimate must beat the champion's by at least this much (0 = not worse).
    pub min_delta: f64,
    /// The lower end of the 95 % interval of the delta may sit at most this far below zero: a challenger that
    /// is probably worse does not pass on a lucky point estimate.
    pub max_regression: f64,
    /// Paired bootstrap resamples for the interval.
    pub bootstrap: usize,
    pub seed: u64,
    /// Columns whose fairness gaps are compared.
    pub sensitive: Vec<String>,
    /// A challenger's gap (demographic parity or equal opportunity difference) may exceed the champion's by
    /// at most this much.
    pub fairness_tolerance: f64,
    /// Probability at or above which a row counts as predicted positive (for the fairness gaps).
    pub threshold: f64,
    /// Regression: the champion's loss; the gate judges on its metric (RMSE for squared error, the mean absolute
    /// error, deviance, pinball or Huber loss otherwise).
    #[serde(default)]
    pub loss: crate::Loss,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            min_delta: 0.0,
            max_regression: 0.005,
            bootstrap: 200,
            seed: 0,
            sensitive: Vec::new(),
            fairness_tolerance: 0.02,
            threshold: 0.5,
            loss: crate::Loss::L2,
        }
    }
}

/// One fairness gap of both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessCheck {
    pub column: String,
    pub gap: String,
    pub champion: f64,
    pub challenger: f64,
    pub ok: bool,
}

/// What the gate measured and decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub metric: String,
    pub rows: usize,
    pub champion: f64,
    pub challenger: f64,
    /// challenger − champion (for rmse and log loss, champion − challenger: positive is always better).
    pub delta: f64,
    pub delta_lower: f64,
    pub delta_upper: f64,
    pub fairness: Vec<FairnessCheck>,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    pub options: GateOptions,
}

/// Scores both models on `holdout` (labels `y`: 0/1 for binary classification, class indices for multiclass,
/// values for regression) and decides: ROC-AUC, multiclass log loss or RMSE, with a paired bootstrap interval.
pub fn compare(
    champion: &Model,
    challenger: &Model,
    holdout: &Frame,
    y: &[f64],
    opts: &GateOptions,
) -> Result<GateReport> {
    if champion.objective != challenger.objective {
        return Err(Error::InvalidInput(format!(
            "the champion is {:?} and the challenger {:?}; the gate compares models of one objective",
            champion.objective, challenger.objective
        )));
    }
    let n = y.len();
    if n < 50 {
        return Err(Error::InvalidInput(format!(
            "the holdout has {n} labelled rows; the gate needs at least 50"
        )));
    }
    if champion.n_outputs() != challenger.n_outputs() {
        return Err(Error::InvalidInput(format!(
            "the champion predicts {} classes and the challenger {}; the gate compares models of one set of classes",
            champion.n_outputs(),
            challenger.n_outputs()
        )));
    }
    let p_old = champion.predict_outputs_rows(&champion.encoder().encode(holdout)?);
    let p_new = challenger.predict_outputs_rows(&challenger.encoder().encode(holdout)?);
    let binary = champion.objective == Objective::Binary;
    let multiclass = champion.objective == Objective::Multiclass;
    let k = champion.n_outputs();
    if binary && (y.iter().all(|&v| v == 1.0) || y.iter().all(|&v| v != 1.0)) {
        return Err(Error::InvalidInput(
            "the holdout's labels are all one class; AUC needs both".into(),
        ));
    }
    let sorted = |p: &[f64]| {
        let mut o: Vec<usize> = (0..n).collect();
        if binary {
            o.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
        }
        o
    };
    let (o_old, o_new) = (sorted(&p_old), sorted(&p_new));
    // "Better" is positive for every metric: AUC, minus the multiclass log loss, minus the regression's loss.
    let loss = opts.loss;
    let metric = |p: &[f64], o: &[usize], w: Option<&[f64]>| -> f64 {
        if binary {
            metrics::roc_auc_sorted(y, p, o, w).unwrap_or(f64::NAN)
        } else if multiclass {
            -metrics::multiclass_log_loss(y, p, k, w)
        } else {
            -metrics::regression_loss(loss, y, p, w)
        }
    };
    let old = metric(&p_old, &o_old, None);
    let new = metric(&p_new, &o_new, None);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x6761_7465);
    let mut deltas: Vec<f64> = (0..opts.bootstrap)
        .map(|_| {
            let mut w = vec![0.0; n];
            for _ in 0..n {
                w[rng.random_range(0..n)] += 1.0;
            }
            metric(&p_new, &o_new, Some(&w)) - metric(&p_old, &o_old, Some(&w))
        })
        .filter(|d| d.is_finite())
        .collect();
    deltas.sort_by(f64::total_cmp);
    let q = |f: f64| {
        if deltas.is_empty() {
            new - old
        } else {
            deltas[((deltas.len() - 1) as f64 * f).round() as usize]
        }
    };
    let (lower, upper) = (q(0.025), q(0.975));
    let delta = new - old;
    let name = if binary {
        "roc_auc"
    } else if multiclass {
        "log_loss"
    } else {
        crate::select::regression_metric(loss)
    };
    let shown = |v: f64| if binary { v } else { -v };
    let mut reasons = Vec::new();
    if delta < opts.min_delta {
        reasons.push(format!(
            "{name}: the challenger's {:.4} does not beat the champion's {:.4} by {} (delta {delta:+.4})",
            shown(new),
            shown(old),
            opts.min_delta
        ));
    }
    if lower < -opts.max_regression {
        reasons.push(format!(
            "{name}: the 95 % interval of the delta [{lower:+.4}, {upper:+.4}] reaches below −{}: the challenger may be worse",
            opts.max_regression
        ));
    }
    let mut fairness = Vec::new();
    if binary && !opts.sensitive.is_empty() {
        let eo = EvalOptions {
            threshold: opts.threshold,
            bootstrap: 0,
            seed: opts.seed,
            sensitive: opts.sensitive.clone(),
            slices: Vec::new(),
            shap_rows: 0,
            ..Default::default()
        };
        let f_old = score(champion.objective, y, &p_old, holdout, &eo)?.fairness;
        let f_new = score(challenger.objective, y, &p_new, holdout, &eo)?.fairness;
        for (a, b) in f_old.iter().zip(&f_new) {
            for (gap, va, vb) in [
                (
                    "demographic_parity_difference",
                    a.demographic_parity_difference,
                    b.demographic_parity_difference,
                ),
                (
                    "equal_opportunity_difference",
                    a.equal_opportunity_difference,
                    b.equal_opportunity_difference,
                ),
            ] {
                let ok = vb <= va + opts.fairness_tolerance;
                if !ok {
                    reasons.push(format!(
                        "{} on {}: the challenger's {vb:.4} exceeds the champion's {va:.4} by more than {}",
                        gap, a.column, opts.fairness_tolerance
                    ));
                }
                fairness.push(FairnessCheck {
                    column: a.column.clone(),
                    gap: gap.into(),
                    champion: va,
                    challenger: vb,
                    ok,
                });
            }
        }
    }
    Ok(GateReport {
        metric: name.into(),
        rows: n,
        champion: shown(old),
        challenger: shown(new),
        delta,
        delta_lower: lower,
        delta_upper: upper,
        fairness,
        passed: reasons.is_empty(),
        reasons,
        options: opts.clone(),
    })
}
