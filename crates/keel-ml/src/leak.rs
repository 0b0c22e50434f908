//! Cheap leakage checks run by every training: a feature that alone predicts the holdout's target almost
//! perfectly (an outcome recorded after the fact, an identifier that encodes the label), and holdout rows that
//! also appear among the training rows (duplicates make the holdout metrics optimistic).
//!
//! The single-feature check bins the feature on the training rows (up to 100 quantile bins of a numeric feature,
//! one bin per category, missing values their own bin), learns the target's mean (or most frequent class) per
//! bin there, and scores that lookup table on the holdout: ROC-AUC for a binary target, R² for a regression,
//! accuracy for a multiclass one.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::features::{FeatureKind, FeatureSpec};
use crate::{Objective, metrics};

/// One feature that predicts the holdout's target on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspectFeature {
    pub feature: String,
    /// `auc`, `r2` or `accuracy`.
    pub metric: String,
    pub value: f64,
}

/// What the checks found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LeakReport {
    pub suspects: Vec<SuspectFeature>,
    /// Holdout rows identical (features and label) to a training row.
    pub shared_rows: usize,
    pub holdout_rows: usize,
}

impl LeakReport {
    /// One sentence per finding, for the card's limitations and the training output.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .suspects
            .iter()
            .map(|s| {
                format!(
                    "Possible leak: '{}' alone predicts the holdout's target ({} {:.4}); check that it is known at prediction time, or drop it with --drop {}.",
                    s.feature, s.metric, s.value, s.feature
                )
            })
            .collect();
        if self.shared_rows > 0 {
            out.push(format!(
                "{} of the {} holdout rows also appear among the training rows (same features and label); the holdout metrics are optimistic — deduplicate the data or split by an identifier or by time.",
                self.shared_rows, self.holdout_rows
            ));
        }
        out
    }
}

/// A single-feature score at or above this (R²: `R2_LEAK`) is reported.
pub const SCORE_LEAK: f64 = 0.99;
pub const R2_LEAK: f64 = 0.98;

/// Runs both checks on encoded rows (`specs.len()` columns, row-major). `y` holds 0/1, values or class indices.
pub fn check(
    specs: &[FeatureSpec],
    objective: Objective,
    train: (&[f64], &[f64]),
    test: (&[f64], &[f64]),
) -> LeakReport {
    let nf = specs.len();
    let (xt, yt) = train;
    let (xh, yh) = test;
    if nf == 0 || yt.is_empty() || yh.len() < 20 {
        return LeakReport {
            holdout_rows: yh.len(),
            ..Default::default()
        };
    }
    let k = match objective {
        Objective::Multiclass => yt.iter().chain(yh).fold(0.0f64, |m, v| m.max(*v)) as usize + 1,
        _ => 1,
    };
    let mut suspects = Vec::new();
    for (j, s) in specs.iter().enumerate() {
        let col = |x: &[f64]| -> Vec<f64> { x.chunks_exact(nf).map(|r| r[j]).collect() };
        let (ct, ch) = (col(xt), col(xh));
        let bin = binner(&s.kind, &ct);
        let pred = fit_lookup(&bin, &ct, yt, &ch, objective, k);
        let (metric, value, limit) = match objective {
            Objective::Binary => {
                let auc = metrics::roc_auc(yh, &pred).unwrap_or(0.5);
                ("auc", auc.max(1.0 - auc), SCORE_LEAK)
            }
            Objective::Regression => ("r2", metrics::r2(yh, &pred, None), R2_LEAK),
            Objective::Multiclass => {
                let hits = pred.iter().zip(yh).filter(|(p, y)| p == y).count();
                ("accuracy", hits as f64 / yh.len() as f64, SCORE_LEAK)
            }
        };
        if value >= limit {
            suspects.push(SuspectFeature {
                feature: s.name.clone(),
                metric: metric.into(),
                value,
            });
        }
    }
    let key = |row: &[f64], y: f64| {
        let mut h = DefaultHasher::new();
        for v in row.iter().chain([&y]) {
            // NaN payloads differ; every NaN is one missing value.
            let bits = if v.is_nan() { u64::MAX } else { v.to_bits() };
            bits.hash(&mut h);
        }
        h.finish()
    };
    let seen: HashSet<u64> = xt
        .chunks_exact(nf)
        .zip(yt)
        .map(|(r, y)| key(r, *y))
        .collect();
    let shared_rows = xh
        .chunks_exact(nf)
        .zip(yh)
        .filter(|(r, y)| seen.contains(&key(r, **y)))
        .count();
    LeakReport {
        suspects,
        shared_rows,
        holdout_rows: yh.len(),
    }
}

/// Maps a value to its bin: categories by code, numbers by up to 100 quantile edges of the training values;
/// missing values to a bin of their own.
fn binner(kind: &FeatureKind, train: &[f64]) -> impl Fn(f64) -> u64 {
    let edges: Vec<f64> = match kind {
        FeatureKind::Categorical { .. } => Vec::new(),
        FeatureKind::Numeric | FeatureKind::Time { .. } => {
            let mut v: Vec<f64> = train.iter().copied().filter(|x| !x.is_nan()).collect();
            v.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = (1..100)
                .filter_map(|q| v.get(q * v.len() / 100).copied())
                .collect();
            e.dedup();
            e
        }
    };
    let categorical = matches!(kind, FeatureKind::Categorical { .. });
    move |x: f64| {
        if x.is_nan() {
            u64::MAX
        } else if categorical {
            x as u64
        } else {
            edges.partition_point(|&e| e < x) as u64
        }
    }
}

/// Learns the target per bin on the training values and predicts the holdout's: the mean (binary: the positive
/// rate) or the most frequent class; unseen bins get the overall mean or class.
fn fit_lookup(
    bin: &impl Fn(f64) -> u64,
    train: &[f64],
    y: &[f64],
    test: &[f64],
    objective: Objective,
    k: usize,
) -> Vec<f64> {
    if objective == Objective::Multiclass {
        let mut counts: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut all = vec![0usize; k];
        for (x, c) in train.iter().zip(y) {
            counts.entry(bin(*x)).or_insert_with(|| vec![0; k])[*c as usize] += 1;
            all[*c as usize] += 1;
        }
        let top = |v: &[usize]| {
            (0..k)
                .max_by_key(|&c| (v[c], std::cmp::Reverse(c)))
                .unwrap_or(0) as f64
        };
        let fallback = top(&all);
        return test
            .iter()
            .map(|x| counts.get(&bin(*x)).map_or(fallback, |v| top(v)))
            .collect();
    }
    let mut sums: HashMap<u64, (f64, f64)> = HashMap::new();
    for (x, v) in train.iter().zip(y) {
        let e = sums.entry(bin(*x)).or_insert((0.0, 0.0));
        e.0 += v;
        e.1 += 1.0;
    }
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    test.iter()
        .map(|x| sums.get(&bin(*x)).map_or(mean, |(s, n)| s / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(name: &str) -> FeatureSpec {
        FeatureSpec {
            name: name.into(),
            kind: FeatureKind::Numeric,
        }
    }

    #[test]
    fn a_feature_copied_from_the_label_and_duplicated_rows_are_reported() {
        // x0: a distinct value per row (no natural duplicates); x1: the label plus a little noise (a leak).
        let n = 2000;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let label = ((i * 7919) % 13 < 6) as u8 as f64;
            x.extend_from_slice(&[i as f64 * 0.37, label * 10.0 + (i % 5) as f64 * 0.1]);
            y.push(label);
        }
        let specs = [numeric("noise"), numeric("outcome")];
        let (xt, yt) = (&x[..1500 * 2], &y[..1500]);
        let mut xh = x[1500 * 2..].to_vec();
        let yh = &y[1500..];
        // The first ten holdout rows copied from training rows.
        for r in 0..10 {
            xh[r * 2..r * 2 + 2].copy_from_slice(&xt[r * 2..r * 2 + 2]);
        }
        let mut yh = yh.to_vec();
        yh[..10].copy_from_slice(&yt[..10]);
        let rep = check(&specs, Objective::Binary, (xt, yt), (&xh, &yh));
        assert_eq!(rep.suspects.len(), 1, "{rep:?}");
        assert_eq!(rep.suspects[0].feature, "outcome");
        assert_eq!(rep.shared_rows, 10, "{rep:?}");
        let w = rep.warnings();
        assert!(
            w[0].contains("--drop outcome") && w[1].contains("of the 500 holdout rows"),
            "{w:?}"
        );
    }
}
