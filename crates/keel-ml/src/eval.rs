//! Honest evaluation of a model on a holdout: point metrics with percentile bootstrap intervals, a threshold
//! table, the calibration curve, the ROC curve, per-slice metrics, fairness metrics for sensitive columns, and
//! a global TreeSHAP summary.

use keel_core::{ColumnData, Frame, MISSING_CODE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::metrics::{self, AtThreshold, CalibrationBin};
use crate::model::{Model, ModelKind};
use crate::{Objective, Result};

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Probability at or above which a row is predicted positive.
    pub threshold: f64,
    /// Number of bootstrap resamples for the intervals (0 = none).
    pub bootstrap: usize,
    pub seed: u64,
    /// Columns whose groups get fairness metrics.
    pub sensitive: Vec<String>,
    /// Further columns whose groups get per-slice metrics.
    pub slices: Vec<String>,
    /// Rows used for the global SHAP summary (sampled deterministically).
    pub shap_rows: usize,
    /// Multiclass: the class labels in class order (the per-class report names them; indices when empty).
    pub class_labels: Vec<String>,
    /// Regression: the loss trained on; its own metric (a deviance, the pinball or Huber loss) joins RMSE and
    /// MAE.
    pub loss: crate::Loss,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            threshold: 0.5,
            bootstrap: 200,
            seed: 0,
            sensitive: Vec::new(),
            slices: Vec::new(),
            shap_rows: 1000,
            class_labels: Vec::new(),
            loss: crate::Loss::L2,
        }
    }
}

/// A metric with its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricCi {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// Metrics of one group of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    pub group: String,
    pub rows: usize,
    /// Classification: positives among the rows.
    pub positives: usize,
    pub auc: Option<f64>,
    pub accuracy: Option<f64>,
    pub selection_rate: Option<f64>,
    pub true_positive_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
    /// Regression: root mean squared error of the group.
    pub rmse: Option<f64>,
}

/// Per-group metrics for one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceReport {
    pub column: String,
    pub groups: Vec<GroupMetrics>,
}

/// Fairness metrics for one sensitive column (classification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessReport {
    pub column: String,
    pub groups: Vec<GroupMetrics>,
    /// max − min selection rate across groups.
    pub demographic_parity_difference: f64,
    /// min / max selection rate across groups (the "80 % rule" ratio).
    pub disparate_impact_ratio: f64,
    /// max − min true-positive rate across groups with positives.
    pub equal_opportunity_difference: f64,
    /// max − min false-positive rate across groups with negatives.
    pub false_positive_rate_difference: f64,
}

/// One class of a multiclass model on the holdout: its support, precision, recall and F1 (one-vs-rest at the
/// predicted class), and the reliability of its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub label: String,
    pub support: usize,
    pub precision: MetricCi,
    pub recall: MetricCi,
    pub f1: f64,
    /// Calibration of this class's probability, one-vs-rest.
    pub calibration: Vec<CalibrationBin>,
    pub expected_calibration_error: f64,
}

/// Mean |SHAP| of each feature over a sample of holdout rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapSummary {
    pub rows: usize,
    pub expected_value: f64,
    /// (feature, mean |SHAP|), largest first.
    pub features: Vec<(String, f64)>,
}

/// Everything measured on the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub objective: Objective,
    pub rows: usize,
    pub positives: Option<usize>,
    pub metrics: BTreeMap<String, MetricCi>,
    pub bootstrap_resamples: usize,
    pub threshold: f64,
    pub threshold_table: Vec<AtThreshold>,
    pub calibration: Vec<CalibrationBin>,
    pub expected_calibration_error: Option<f64>,
    /// (false-positive rate, true-positive rate) points of the ROC curve.
    pub roc_curve: Vec<(f64, f64)>,
    pub slices: Vec<SliceReport>,
    pub fairness: Vec<FairnessReport>,
    pub shap: Option<ShapSummary>,
    /// Multiclass: the report of each class, in class order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassReport>,
    /// Multiclass: rows by true class (outer) and predicted class (inner).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion: Vec<Vec<usize>>,
    /// Regression: the split-conformal prediction interval calibrated on the holdout, and its coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::conformal::Conformal>,
}

impl Evaluation {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).map(|m| m.value)
    }
}

/// Evaluates `model` on encoded rows `x` with labels `y`; `frame` holds the same rows for slicing.
pub fn evaluate(
    model: &Model,
    x: &[f64],
    y: &[f64],
    frame: &Frame,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let pred = model.predict_outputs_rows(x);
    let mut opts = opts.clone();
    if opts.class_labels.is_empty()
        && let Some(labels) = &model.class_labels
    {
        opts.class_labels = labels.clone();
    }
    let mut ev = score(model.objective, y, &pred, frame, &opts)?;
    match &model.kind {
        ModelKind::Gbdt(ens) => {
            ev.shap = Some(shap_summary(model, std::slice::from_ref(ens), x, &opts))
        }
        ModelKind::GbdtMulticlass(v) => ev.shap = Some(shap_summary(model, v, x, &opts)),
        _ => {}
    }
    Ok(ev)
}

/// Evaluates given predictions against labels: probabilities of class 1 (binary), values (regression), or
/// row-major class probabilities, one per class (multiclass, with class indices as labels).
pub fn score(
    objective: Objective,
    y: &[f64],
    pred: &[f64],
    frame: &Frame,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let n = y.len();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x6b65_656c);
    let resamples: Vec<Vec<f64>> = (0..opts.bootstrap)
        .map(|_| {
            let mut w = vec![0.0; n];
            for _ in 0..n {
                w[rng.random_range(0..n)] += 1.0;
            }
            w
        })
        .collect();
    let mut m = BTreeMap::new();
    let ci = |point: f64, f: &dyn Fn(&[f64]) -> Option<f64>| -> MetricCi {
        interval(point, resamples.iter().filter_map(|w| f(w)).collect())
    };
    let mut ev = Evaluation {
        objective,
        rows: n,
        positives: None,
        metrics: BTreeMap::new(),
        bootstrap_resamples: opts.bootstrap,
        threshold: opts.threshold,
        threshold_table: Vec::new(),
        calibration: Vec::new(),
        expected_calibration_error: None,
        roc_curve: Vec::new(),
        slices: Vec::new(),
        fairness: Vec::new(),
        shap: None,
        classes: Vec::new(),
        confusion: Vec::new(),
        interval: None,
    };
    // Multiclass: the most probable class of each row (the prediction slices and groups are judged on).
    let k = if objective == Objective::Multiclass {
        pred.len() / n.max(1)
    } else {
        1
    };
    let predicted: Vec<usize> = if objective == Objective::Multiclass {
        pred.chunks_exact(k).map(crate::argmax).collect()
    } else {
        Vec::new()
    };
    match objective {
        Objective::Multiclass => {
            let loss = metrics::multiclass_log_loss(y, pred, k, None);
            m.insert(
                "log_loss".into(),
                ci(loss, &|w| {
                    Some(metrics::multiclass_log_loss(y, pred, k, Some(w)))
                }),
            );
            m.insert(
                "brier".into(),
                ci(metrics::multiclass_brier(y, pred, k, None), &|w| {
                    Some(metrics::multiclass_brier(y, pred, k, Some(w)))
                }),
            );
            let conf = metrics::confusion(y, &predicted, k, None);
            let (acc, macro_f1, weighted_f1) = metrics::confusion_summary(&conf);
            // One confusion matrix per resample, read by every confusion-based metric below.
            let boot_conf: Vec<Vec<Vec<f64>>> = resamples
                .iter()
                .map(|w| metrics::confusion(y, &predicted, k, Some(w)))
                .collect();
            let summaries: Vec<(f64, f64, f64)> = boot_conf
                .iter()
                .map(|c| metrics::confusion_summary(c))
                .collect();
            m.insert(
                "accuracy".into(),
                interval(acc, summaries.iter().map(|s| s.0).collect()),
            );
            m.insert(
                "macro_f1".into(),
                interval(macro_f1, summaries.iter().map(|s| s.1).collect()),
            );
            m.insert(
                "weighted_f1".into(),
                interval(weighted_f1, summaries.iter().map(|s| s.2).collect()),
            );
            if k >= 3 {
                let top2 = metrics::in_top_k(y, pred, k, 2);
                let mean = |w: Option<&[f64]>| {
                    let (mut hit, mut tot) = (0.0, 0.0);
                    for (i, t) in top2.iter().enumerate() {
                        let wi = w.map_or(1.0, |w| w[i]);
                        tot += wi;
                        if *t {
                            hit += wi;
                        }
                    }
                    hit / tot.max(1e-300)
                };
                m.insert(
                    "top2_accuracy".into(),
                    ci(mean(None), &|w| Some(mean(Some(w)))),
                );
            }
            let scores = metrics::class_scores(&conf);
            let boot: Vec<Vec<metrics::ClassScores>> =
                boot_conf.iter().map(|c| metrics::class_scores(c)).collect();
            ev.classes = (0..k)
                .map(|c| {
                    let iv = |point: f64, f: &dyn Fn(&metrics::ClassScores) -> f64| {
                        interval(point, boot.iter().map(|b| f(&b[c])).collect())
                    };
                    let yc: Vec<f64> = y.iter().map(|v| f64::from(*v as usize == c)).collect();
                    let pc: Vec<f64> = pred.chunks_exact(k).map(|r| r[c]).collect();
                    let curve = metrics::calibration_curve(&yc, &pc, 10);
                    ClassReport {
                        label: opts
                            .class_labels
                            .get(c)
                            .cloned()
                            .unwrap_or_else(|| c.to_string()),
                        support: scores[c].support as usize,
                        precision: iv(scores[c].precision, &|s| s.precision),
                        recall: iv(scores[c].recall, &|s| s.recall),
                        f1: scores[c].f1,
                        expected_calibration_error: metrics::expected_calibration_error(&curve),
                        calibration: curve,
                    }
                })
                .collect();
            ev.confusion = conf
                .iter()
                .map(|r| r.iter().map(|v| *v as usize).collect())
                .collect();
        }
        Objective::Binary => {
            ev.positives = Some(y.iter().filter(|&&v| v == 1.0).count());
            let mut asc: Vec<usize> = (0..n).collect();
            asc.sort_by(|&a, &b| pred[a].total_cmp(&pred[b]));
            let desc: Vec<usize> = asc.iter().rev().copied().collect();
            if let Some(auc) = metrics::roc_auc_sorted(y, pred, &asc, None) {
                m.insert(
                    "auc".into(),
                    ci(auc, &|w| metrics::roc_auc_sorted(y, pred, &asc, Some(w))),
                );
            }
            if let Some(ap) = metrics::pr_auc(y, pred) {
                m.insert(
                    "pr_auc".into(),
                    ci(ap, &|w| metrics::pr_auc_weighted(y, pred, &desc, w)),
                );
            }
            m.insert(
                "log_loss".into(),
                ci(metrics::log_loss(y, pred), &|w| {
                    Some(metrics::log_loss_weighted(y, pred, w))
                }),
            );
            m.insert(
                "brier".into(),
                ci(metrics::brier(y, pred), &|w| {
                    Some(metrics::brier_weighted(y, pred, w))
                }),
            );
            let t = opts.threshold;
            let at = metrics::at_threshold(y, pred, t);
            let atw = |w: &[f64]| metrics::at_threshold_weighted(y, pred, t, Some(w));
            m.insert(
                "accuracy".into(),
                ci(at.accuracy, &|w| Some(atw(w).accuracy)),
            );
            m.insert(
                "precision".into(),
                ci(at.precision, &|w| Some(atw(w).precision)),
            );
            m.insert("recall".into(), ci(at.recall, &|w| Some(atw(w).recall)));
            m.insert("f1".into(), ci(at.f1, &|w| Some(atw(w).f1)));
            ev.threshold_table = (1..20)
                .map(|k| metrics::at_threshold(y, pred, k as f64 * 0.05))
                .collect();
            ev.calibration = metrics::calibration_curve(y, pred, 10);
            ev.expected_calibration_error =
                Some(metrics::expected_calibration_error(&ev.calibration));
            ev.roc_curve = roc_points(y, pred, &desc, 100);
        }
        Objective::Regression => {
            m.insert(
                "rmse".into(),
                ci(metrics::rmse(y, pred, None), &|w| {
                    Some(metrics::rmse(y, pred, Some(w)))
                }),
            );
            m.insert(
                "mae".into(),
                ci(metrics::mae(y, pred, None), &|w| {
                    Some(metrics::mae(y, pred, Some(w)))
                }),
            );
            m.insert(
                "r2".into(),
                ci(metrics::r2(y, pred, None), &|w| {
                    Some(metrics::r2(y, pred, Some(w)))
                }),
            );
            let loss = opts.loss;
            if !matches!(loss, crate::Loss::L2 | crate::Loss::L1) {
                // The loss on the prediction's scale (the mean for log-link losses).
                m.insert(
                    crate::select::regression_metric(loss).into(),
                    ci(metrics::regression_loss(loss, y, pred, None), &|w| {
                        Some(metrics::regression_loss(loss, y, pred, Some(w)))
                    }),
                );
            }
        }
    }
    ev.metrics = m;
    for col in opts.sensitive.iter().chain(&opts.slices) {
        let Some(data) = frame.column(col) else {
            return Err(crate::Error::MissingColumn(col.clone()));
        };
        let groups = group_rows(data);
        let metrics: Vec<GroupMetrics> = groups
            .iter()
            .map(|(g, rows)| group_metrics(objective, g, rows, y, pred, &predicted, opts.threshold))
            .collect();
        if objective == Objective::Binary && opts.sensitive.contains(col) {
            ev.fairness.push(fairness(col, &metrics));
        }
        ev.slices.push(SliceReport {
            column: col.clone(),
            groups: metrics,
        });
    }
    Ok(ev)
}

/// The 95 % percentile interval of bootstrap values around `point` (non-finite values ignored; no values: the
/// point itself).
fn interval(point: f64, mut v: Vec<f64>) -> MetricCi {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return MetricCi {
            value: point,
            lower: point,
            upper: point,
        };
    }
    MetricCi {
        value: point,
        lower: crate_quantile(&v, 0.025),
        upper: crate_quantile(&v, 0.975),
    }
}

fn crate_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// ROC curve points, thinned to about `max_points`.
fn roc_points(y: &[f64], pred: &[f64], desc: &[usize], max_points: usize) -> Vec<(f64, f64)> {
    let pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut k = 0;
    while k < desc.len() {
        let s = pred[desc[k]];
        while k < desc.len() && pred[desc[k]] == s {
            if y[desc[k]] == 1.0 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            k += 1;
        }
        pts.push((fp / neg, tp / pos));
    }
    let step = (pts.len() / max_points).max(1);
    let last = *pts.last().expect("non-empty");
    let mut out: Vec<(f64, f64)> = pts.into_iter().step_by(step).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// Splits rows into named groups: categories for categorical columns, quartile ranges for numeric ones.
pub fn group_rows(col: &ColumnData) -> Vec<(String, Vec<usize>)> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    match col {
        ColumnData::Categorical { codes, levels } => {
            for (i, &c) in codes.iter().enumerate() {
                let g = if c == MISSING_CODE {
                    "(missing)".to_string()
                } else {
                    levels[c as usize].clone()
                };
                groups.entry(g).or_default().push(i);
            }
        }
        ColumnData::Numeric(v) => {
            let mut sorted: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            sorted.sort_by(f64::total_cmp);
            let distinct = {
                let mut d = sorted.clone();
                d.dedup();
                d
            };
            if distinct.len() <= 10 {
                for (i, &x) in v.iter().enumerate() {
                    let g = if x.is_nan() {
                        "(missing)".into()
                    } else {
                        keel_core::frame::format_number(x)
                    };
                    groups.entry(g).or_default().push(i);
                }
            } else {
                let mut edges: Vec<f64> = [0.25, 0.5, 0.75]
                    .iter()
                    .map(|&q| crate_quantile(&sorted, q))
                    .collect();
                edges.dedup();
                let lo = sorted[0];
                let hi = sorted[sorted.len() - 1];
                let mut bounds = vec![lo];
                bounds.extend(edges.iter().copied().filter(|e| *e > lo && *e < hi));
                bounds.push(hi);
                let label = |b: usize| {
                    let f = keel_core::frame::format_number;
                    if b + 2 == bounds.len() {
                        format!("{:>03}. [{}, {}]", b + 1, f(bounds[b]), f(bounds[b + 1]))
                    } else {
                        format!("{:>03}. [{}, {})", b + 1, f(bounds[b]), f(bounds[b + 1]))
                    }
                };
                for (i, &x) in v.iter().enumerate() {
                    let g = if x.is_nan() {
                        "(missing)".into()
                    } else {
                        let b = bounds[1..bounds.len() - 1].partition_point(|&e| e <= x);
                        label(b)
                    };
                    groups.entry(g).or_default().push(i);
                }
            }
        }
        ColumnData::Other(v) => {
            for (i, s) in v.iter().enumerate() {
                groups
                    .entry(s.clone().unwrap_or_else(|| "(missing)".into()))
                    .or_default()
                    .push(i);
            }
        }
    }
    groups.into_iter().collect()
}

fn group_metrics(
    objective: Objective,
    group: &str,
    rows: &[usize],
    y: &[f64],
    pred: &[f64],
    predicted: &[usize],
    t: f64,
) -> GroupMetrics {
    let gy: Vec<f64> = rows.iter().map(|&i| y[i]).collect();
    if objective == Objective::Multiclass {
        let correct = rows
            .iter()
            .filter(|&&i| predicted[i] == y[i] as usize)
            .count();
        return GroupMetrics {
            group: group.to_string(),
            rows: rows.len(),
            positives: 0,
            auc: None,
            accuracy: Some(correct as f64 / rows.len().max(1) as f64),
            selection_rate: None,
            true_positive_rate: None,
            false_positive_rate: None,
            rmse: None,
        };
    }
    let gp: Vec<f64> = rows.iter().map(|&i| pred[i]).collect();
    match objective {
        Objective::Binary => {
            let at = metrics::at_threshold(&gy, &gp, t);
            let positives = gy.iter().filter(|&&v| v == 1.0).count();
            let negatives = gy.len() - positives;
            GroupMetrics {
                group: group.to_string(),
                rows: rows.len(),
                positives,
                auc: metrics::roc_auc(&gy, &gp),
                accuracy: Some(at.accuracy),
                selection_rate: Some(at.selection_rate),
                true_positive_rate: (positives > 0).then_some(at.recall),
                false_positive_rate: (negatives > 0).then_some(at.false_positive_rate),
                rmse: None,
            }
        }
        Objective::Regression => GroupMetrics {
            group: group.to_string(),
            rows: rows.len(),
            positives: 0,
            auc: None,
            accuracy: None,
            selection_rate: None,
            true_positive_rate: None,
            false_positive_rate: None,
            rmse: Some(metrics::rmse(&gy, &gp, None)),
        },
        Objective::Multiclass => unreachable!("handled above"),
    }
}

/// Fairness gaps across the groups of one sensitive column.
pub fn fairness(column: &str, groups: &[GroupMetrics]) -> FairnessReport {
    let spread = |f: &dyn Fn(&GroupMetrics) -> Option<f64>| {
        let v: Vec<f64> = groups.iter().filter_map(f).collect();
        if v.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let max = v.iter().copied().fold(f64::MIN, f64::max);
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        (max - min, min, max)
    };
    let (dp, min_sel, max_sel) = spread(&|g| g.selection_rate);
    let (eo, _, _) = spread(&|g| g.true_positive_rate);
    let (fpr, _, _) = spread(&|g| g.false_positive_rate);
    FairnessReport {
        column: column.to_string(),
        groups: groups.to_vec(),
        demographic_parity_difference: dp,
        disparate_impact_ratio: if max_sel > 0.0 {
            min_sel / max_sel
        } else {
            1.0
        },
        equal_opportunity_difference: eo,
        false_positive_rate_difference: fpr,
    }
}

/// Mean |SHAP| per feature; a multiclass model's is summed over its classes (each class's margin), the usual
/// global importance of a softmax model, and its expected value is the first class's.
fn shap_summary(
    model: &Model,
    ensembles: &[crate::gbdt::Ensemble],
    x: &[f64],
    opts: &EvalOptions,
) -> ShapSummary {
    let nf = model.features.len();
    let n = x.len() / nf;
    let k = opts.shap_rows.min(n);
    let step = (n as f64 / k.max(1) as f64).max(1.0);
    let rows: Vec<usize> = (0..k).map(|i| (i as f64 * step) as usize).collect();
    let mut sum = vec![0.0; nf];
    let mut expected = 0.0;
    for &r in &rows {
        for (c, ens) in ensembles.iter().enumerate() {
            let (phi, e) = ens.shap(&x[r * nf..(r + 1) * nf], nf);
            if c == 0 {
                expected = e;
            }
            for (s, p) in sum.iter_mut().zip(&phi) {
                *s += p.abs();
            }
        }
    }
    let mut features: Vec<(String, f64)> = model
        .features
        .iter()
        .zip(sum)
        .map(|(f, s)| (f.name.clone(), s / k.max(1) as f64))
        .collect();
    features.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ShapSummary {
        rows: k,
        expected_value: expected,
        features,
    }
}
