//! Metrics for binary and multiclass classification and regression, with weighted variants so bootstrap
//! resamples cost one pass each. Probabilities are in [0, 1]; scores for ranking metrics may be any monotone transform.

use serde::{Deserialize, Serialize};

use crate::Objective;

const CLIP: f64 = 1e-15;

/// Mean loss of raw margins: log loss for classification, mean squared error for regression. Multiclass margins
/// are class-major, as training holds them: class `c`'s margins are `c * n .. (c + 1) * n`.
pub fn loss(objective: Objective, y: &[f64], margin: &[f64]) -> f64 {
    match objective {
        Objective::Multiclass => {
            let n = y.len();
            let k = margin.len() / n.max(1);
            let mut row = vec![0.0; k];
            let mut total = 0.0;
            for (i, c) in y.iter().enumerate() {
                for (g, v) in row.iter_mut().enumerate() {
                    *v = margin[g * n + i];
                }
                crate::softmax(&mut row);
                total -= row[*c as usize].clamp(CLIP, 1.0).ln();
            }
            total / n.max(1) as f64
        }
        Objective::Binary => {
            let p: Vec<f64> = margin.iter().map(|&m| crate::sigmoid(m)).collect();
            log_loss(y, &p)
        }
        Objective::Regression => {
            y.iter()
                .zip(margin)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                / y.len().max(1) as f64
        }
    }
}

/// Area under the ROC curve; ties count half. `None` when only one class is present.
pub fn roc_auc(y: &[f64], score: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    roc_auc_sorted(y, score, &order, None)
}

/// AUC over rows already sorted by ascending score, with optional per-row weights (bootstrap multiplicities).
pub fn roc_auc_sorted(y: &[f64], score: &[f64], order: &[usize], w: Option<&[f64]>) -> Option<f64> {
    let (mut pos, mut neg) = (0.0, 0.0);
    for &i in order {
        let wi = w.map_or(1.0, |w| w[i]);
        if y[i] == 1.0 { pos += wi } else { neg += wi }
    }
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Sum over positives of (negatives below + half the tied negatives).
    let mut neg_below = 0.0;
    let mut acc = 0.0;
    let mut k = 0;
    while k < order.len() {
        let s = score[order[k]];
        let mut j = k;
        let (mut tp, mut tn) = (0.0, 0.0);
        while j < order.len() && score[order[j]] == s {
            let i = order[j];
            let wi = w.map_or(1.0, |w| w[i]);
            if y[i] == 1.0 {
                tp += wi
            } else {
                tn += wi
            }
            j += 1;
        }
        acc += tp * (neg_below + tn / 2.0);
        neg_below += tn;
        k = j;
    }
    Some(acc / (pos * neg))
}

/// Average precision (area under the precision–recall curve, step-wise).
pub fn pr_auc(y: &[f64], score: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    pr_auc_sorted_desc(y, score, &order, None)
}

fn pr_auc_sorted_desc(y: &[f64], score: &[f64], order: &[usize], w: Option<&[f64]>) -> Option<f64> {
    let total_pos: f64 = order
        .iter()
        .filter(|&&i| y[i] == 1.0)
        .map(|&i| w.map_or(1.0, |w| w[i]))
        .sum();
    if total_pos == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut k = 0;
    while k < order.len() {
        let s = score[order[k]];
        while k < order.len() && score[order[k]] == s {
            let i = order[k];
            let wi = w.map_or(1.0, |w| w[i]);
            if y[i] == 1.0 {
                tp += wi
            } else {
                fp += wi
            }
            k += 1;
        }
        let recall = tp / total_pos;
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

pub fn log_loss(y: &[f64], p: &[f64]) -> f64 {
    weighted_mean(y.len(), None, |i| {
        let q = p[i].clamp(CLIP, 1.0 - CLIP);
        -(y[i] * q.ln() + (1.0 - y[i]) * (1.0 - q).ln())
    })
}

pub fn brier(y: &[f64], p: &[f64]) -> f64 {
    weighted_mean(y.len(), None, |i| (p[i] - y[i]).powi(2))
}

fn weighted_mean(n: usize, w: Option<&[f64]>, f: impl Fn(usize) -> f64) -> f64 {
    let (mut s, mut ws) = (0.0, 0.0);
    for i in 0..n {
        let wi = w.map_or(1.0, |w| w[i]);
        if wi != 0.0 {
            s += wi * f(i);
            ws += wi;
        }
    }
    if ws == 0.0 { f64::NAN } else { s / ws }
}

/// Confusion-matrix metrics at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AtThreshold {
    pub threshold: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Share of rows predicted positive.
    pub selection_rate: f64,
    pub false_positive_rate: f64,
    pub tp: f64,
    pub fp: f64,
    pub tn: f64,
    pub fn_: f64,
}

pub fn at_threshold(y: &[f64], p: &[f64], threshold: f64) -> AtThreshold {
    at_threshold_weighted(y, p, threshold, None)
}

pub fn at_threshold_weighted(
    y: &[f64],
    p: &[f64],
    threshold: f64,
    w: Option<&[f64]>,
) -> AtThreshold {
    let (mut tp, mut fp, mut tn, mut fn_) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..y.len() {
        let wi = w.map_or(1.0, |w| w[i]);
        match (p[i] >= threshold, y[i] == 1.0) {
            (true, true) => tp += wi,
            (true, false) => fp += wi,
            (false, false) => tn += wi,
            (false, true) => fn_ += wi,
        }
    }
    let n = tp + fp + tn + fn_;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    AtThreshold {
        threshold,
        accuracy: ratio(tp + tn, n),
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        selection_rate: ratio(tp + fp, n),
        false_positive_rate: ratio(fp, fp + tn),
        tp,
        fp,
        tn,
        fn_,
    }
}

/// One bin of a reliability (calibration) curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Reliability curve over `n_bins` equal-width probability bins (empty bins omitted).
pub fn calibration_curve(y: &[f64], p: &[f64], n_bins: usize) -> Vec<CalibrationBin> {
    let mut sum_p = vec![0.0; n_bins];
    let mut sum_y = vec![0.0; n_bins];
    let mut cnt = vec![0usize; n_bins];
    for i in 0..y.len() {
        let b = ((p[i] * n_bins as f64) as usize).min(n_bins - 1);
        sum_p[b] += p[i];
        sum_y[b] += y[i];
        cnt[b] += 1;
    }
    (0..n_bins)
        .filter(|&b| cnt[b] > 0)
        .map(|b| CalibrationBin {
            lower: b as f64 / n_bins as f64,
            upper: (b + 1) as f64 / n_bins as f64,
            count: cnt[b],
            mean_predicted: sum_p[b] / cnt[b] as f64,
            observed_rate: sum_y[b] / cnt[b] as f64,
        })
        .collect()
}

/// Expected calibration error: count-weighted mean |observed − predicted| over the curve's bins.
pub fn expected_calibration_error(curve: &[CalibrationBin]) -> f64 {
    let n: usize = curve.iter().map(|b| b.count).sum();
    curve
        .iter()
        .map(|b| b.count as f64 * (b.observed_rate - b.mean_predicted).abs())
        .sum::<f64>()
        / n.max(1) as f64
}

/// Regression metrics.
pub fn rmse(y: &[f64], p: &[f64], w: Option<&[f64]>) -> f64 {
    weighted_mean(y.len(), w, |i| (y[i] - p[i]).powi(2)).sqrt()
}

pub fn mae(y: &[f64], p: &[f64], w: Option<&[f64]>) -> f64 {
    weighted_mean(y.len(), w, |i| (y[i] - p[i]).abs())
}

pub fn r2(y: &[f64], p: &[f64], w: Option<&[f64]>) -> f64 {
    let mean = weighted_mean(y.len(), w, |i| y[i]);
    let ss_res = weighted_mean(y.len(), w, |i| (y[i] - p[i]).powi(2));
    let ss_tot = weighted_mean(y.len(), w, |i| (y[i] - mean).powi(2));
    if ss_tot == 0.0 {
        f64::NAN
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Weighted log loss and Brier score (for bootstrap resamples).
pub fn log_loss_weighted(y: &[f64], p: &[f64], w: &[f64]) -> f64 {
    weighted_mean(y.len(), Some(w), |i| {
        let q = p[i].clamp(CLIP, 1.0 - CLIP);
        -(y[i] * q.ln() + (1.0 - y[i]) * (1.0 - q).ln())
    })
}

pub fn brier_weighted(y: &[f64], p: &[f64], w: &[f64]) -> f64 {
    weighted_mean(y.len(), Some(w), |i| (p[i] - y[i]).powi(2))
}

pub fn pr_auc_weighted(y: &[f64], score: &[f64], order_desc: &[usize], w: &[f64]) -> Option<f64> {
    pr_auc_sorted_desc(y, score, order_desc, Some(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computation() {
        // Pairs (pos, neg): 0.9>0.1, 0.9>0.4, 0.35<0.4, 0.35>0.1 → 3/4.
        let y = [1.0, 0.0, 1.0, 0.0];
        let s = [0.9, 0.1, 0.35, 0.4];
        assert!((roc_auc(&y, &s).unwrap() - 0.75).abs() < 1e-12);
        // Ties count half.
        assert!((roc_auc(&[1.0, 0.0], &[0.5, 0.5]).unwrap() - 0.5).abs() < 1e-12);
        assert!(roc_auc(&[1.0, 1.0], &[0.1, 0.2]).is_none());
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranked: 0.9 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg): AP = 0.5*1 + 0.5*(2/3).
        let y = [1.0, 0.0, 1.0, 0.0];
        let s = [0.9, 0.1, 0.35, 0.4];
        assert!((pr_auc(&y, &s).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn threshold_metrics() {
        let y = [1.0, 0.0, 1.0, 0.0];
        let p = [0.9, 0.6, 0.3, 0.1];
        let m = at_threshold(&y, &p, 0.5);
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (1.0, 1.0, 1.0, 1.0));
        assert!((m.f1 - 0.5).abs() < 1e-12);
        assert!((m.selection_rate - 0.5).abs() < 1e-12);
    }

    #[test]
    fn regression_metrics() {
        let y = [1.0, 2.0, 3.0];
        let p = [1.0, 2.0, 4.0];
        assert!((rmse(&y, &p, None) - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((mae(&y, &p, None) - 1.0 / 3.0).abs() < 1e-12);
        assert!((r2(&y, &p, None) - 0.5).abs() < 1e-12);
    }
}

/// Multiclass log loss of row-major probabilities `p` (`k` per row) for class indices `y`, optionally weighted.
pub fn multiclass_log_loss(y: &[f64], p: &[f64], k: usize, w: Option<&[f64]>) -> f64 {
    let (mut total, mut wsum) = (0.0, 0.0);
    for (i, c) in y.iter().enumerate() {
        let wi = w.map_or(1.0, |w| w[i]);
        total -= wi * p[i * k + *c as usize].clamp(CLIP, 1.0).ln();
        wsum += wi;
    }
    total / wsum.max(f64::MIN_POSITIVE)
}

/// Multiclass Brier score: the mean over rows of the squared distance between the probability vector and the
/// one-hot label (0 is perfect, 2 the worst).
pub fn multiclass_brier(y: &[f64], p: &[f64], k: usize, w: Option<&[f64]>) -> f64 {
    let (mut total, mut wsum) = (0.0, 0.0);
    for (i, c) in y.iter().enumerate() {
        let wi = w.map_or(1.0, |w| w[i]);
        let row = &p[i * k..(i + 1) * k];
        let d: f64 = row
            .iter()
            .enumerate()
            .map(|(j, v)| (v - if j == *c as usize { 1.0 } else { 0.0 }).powi(2))
            .sum();
        total += wi * d;
        wsum += wi;
    }
    total / wsum.max(f64::MIN_POSITIVE)
}

/// The confusion matrix of class indices: `m[true][predicted]`, optionally weighted.
pub fn confusion(y: &[f64], predicted: &[usize], k: usize, w: Option<&[f64]>) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; k]; k];
    for (i, (c, p)) in y.iter().zip(predicted).enumerate() {
        m[*c as usize][*p] += w.map_or(1.0, |w| w[i]);
    }
    m
}

/// Precision, recall and F1 of one class and its support (rows truly in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: f64,
}

/// Per-class scores from a confusion matrix; a class never predicted has precision 0, one never present recall 0.
pub fn class_scores(m: &[Vec<f64>]) -> Vec<ClassScores> {
    let k = m.len();
    (0..k)
        .map(|c| {
            let tp = m[c][c];
            let support: f64 = m[c].iter().sum();
            let predicted: f64 = (0..k).map(|r| m[r][c]).sum();
            let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let recall = if support > 0.0 { tp / support } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

/// Summary scores of a confusion matrix: (accuracy, macro F1 over classes present, support-weighted F1).
pub fn confusion_summary(m: &[Vec<f64>]) -> (f64, f64, f64) {
    let scores = class_scores(m);
    let total: f64 = scores.iter().map(|s| s.support).sum();
    let correct: f64 = (0..m.len()).map(|c| m[c][c]).sum();
    let present: Vec<&ClassScores> = scores.iter().filter(|s| s.support > 0.0).collect();
    let macro_f1 = present.iter().map(|s| s.f1).sum::<f64>() / present.len().max(1) as f64;
    let weighted_f1 = scores.iter().map(|s| s.f1 * s.support).sum::<f64>() / total.max(1e-300);
    (correct / total.max(1e-300), macro_f1, weighted_f1)
}

/// Whether each row's true class is among its `top` most probable ones.
pub fn in_top_k(y: &[f64], p: &[f64], k: usize, top: usize) -> Vec<bool> {
    y.iter()
        .enumerate()
        .map(|(i, c)| {
            let row = &p[i * k..(i + 1) * k];
            let pc = row[*c as usize];
            // Rows ranked strictly above the true class; ties count in its favour.
            row.iter().filter(|&&v| v > pc).count() < top
        })
        .collect()
}

/// A regression's metric for `loss` on predictions `p` (the output scale), optionally weighted: RMSE for squared
/// error, MAE for absolute error, else the mean deviance (log-link losses), pinball or Huber loss. Lower is better;
/// [`crate::select::regression_metric`] names it.
pub fn regression_loss(loss: crate::Loss, y: &[f64], p: &[f64], w: Option<&[f64]>) -> f64 {
    match loss {
        crate::Loss::L2 => rmse(y, p, w),
        crate::Loss::L1 => mae(y, p, w),
        _ => {
            let (mut t, mut ws) = (0.0, 0.0);
            for i in 0..y.len() {
                let wi = w.map_or(1.0, |w| w[i]);
                let v = match loss {
                    crate::Loss::Huber { .. } | crate::Loss::Quantile { .. } => {
                        loss.mean_loss(&y[i..=i], &p[i..=i])
                    }
                    _ => crate::gbdt::unit_deviance(loss, y[i], p[i]),
                };
                t += wi * v;
                ws += wi;
            }
            t / ws.max(1e-300)
        }
    }
}
