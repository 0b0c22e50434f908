//! Mergeable profiles: counts over fixed bins, so serving can summarise every prediction in a few increments
//! and drift can be computed later without raw data.
//!
//! A [`ProfileSpec`] fixes the bins once per model version (at training time): quantile edges of each numeric
//! feature on the training data, the level count of each categorical feature, and fixed edges for the
//! prediction. A [`Profile`] is counts over those bins (missing last); profiles of one spec add up
//! element-wise, so merging is associative and commutative across windows and replicas (property-tested).

use serde::{Deserialize, Serialize};

use crate::drift::{self, DriftOptions, DriftReport, Histogram};
use crate::{Error, Result};

/// How one feature is binned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BinSpec {
    /// Bin i holds values in (edges[i-1], edges[i]]; one more bin above the last edge; then missing.
    Numeric { edges: Vec<f64> },
    /// One bin per level code; then unseen-or-missing.
    Categorical { levels: Vec<String> },
}

impl BinSpec {
    /// Number of bins, the missing bin included.
    pub fn bins(&self) -> usize {
        match self {
            BinSpec::Numeric { edges } => edges.len() + 2,
            BinSpec::Categorical { levels } => levels.len() + 1,
        }
    }

    /// The bin of an encoded value (categorical values are level codes; NaN is missing).
    #[inline]
    pub fn bin(&self, x: f64) -> usize {
        match self {
            BinSpec::Numeric { edges } => {
                if x.is_nan() {
                    edges.len() + 1
                } else {
                    edges.partition_point(|&e| e < x)
                }
            }
            BinSpec::Categorical { levels } => {
                if x >= 0.0 && (x as usize) < levels.len() {
                    x as usize
                } else {
                    levels.len()
                }
            }
        }
    }

    fn labels(&self) -> Vec<String> {
        match self {
            BinSpec::Numeric { edges } => numeric_labels(edges),
            BinSpec::Categorical { levels } => {
                let mut v = levels.clone();
                v.push("missing or unseen".into());
                v
            }
        }
    }
}

/// Labels of numeric bins (missing last). Edges of a discrete column (see [`bin_edges`]: the first edge just
/// below the smallest value) label each bin with its value, "< smallest" and "> largest"; quantile edges label
/// ranges.
pub fn numeric_labels(edges: &[f64]) -> Vec<String> {
    let f = keel_core::frame::format_number;
    let discrete = edges.len() >= 2 && edges[0] == edges[1].next_down();
    let mut v = Vec::with_capacity(edges.len() + 2);
    for i in 0..=edges.len() {
        v.push(match (i.checked_sub(1).map(|j| edges[j]), edges.get(i)) {
            (None, Some(_)) if discrete => format!("< {}", f(edges[1])),
            (None, Some(&hi)) => format!("≤ {}", f(hi)),
            (Some(_), Some(&hi)) if discrete => f(hi),
            (Some(lo), Some(&hi)) => format!("{}–{}", f(lo), f(hi)),
            (Some(lo), None) => format!("> {}", f(lo)),
            (None, None) => "all".into(),
        });
    }
    v.push("missing".into());
    v
}

/// The bins of one model version: its features (in the model's order) and its prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSpec {
    pub features: Vec<(String, BinSpec)>,
    pub prediction: BinSpec,
}

/// Counts over a spec's bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    /// One vector per feature, `spec.features[j].1.bins()` long.
    pub features: Vec<Vec<u64>>,
    pub prediction: Vec<u64>,
}

/// Bin edges of a numeric column, the one binning both drift paths use (served-traffic profiles and file
/// comparisons), so they agree. Bin i holds (edges[i-1], edges[i]]; the first bin holds everything up to
/// `edges[0]`, one more bin everything above the last edge.
///
/// - A column with at most `bins` distinct values (integers, ordinals, 0/1 flags, constants) gets one bin per
///   value, plus a bin below the smallest and one above the largest, so values the reference never had (a 7
///   where it had 1–3) land in a bin of their own.
/// - Otherwise: quantile edges (`bins` − 1 of them, deduplicated) of the non-missing values; the largest value
///   is not an edge (it would leave the top bin empty by construction).
pub fn bin_edges(values: &[f64], bins: usize) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    bin_edges_sorted(&v, bins)
}

/// [`bin_edges`] of values already sorted, without missing ones.
pub fn bin_edges_sorted(v: &[f64], bins: usize) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    let mut distinct = v.to_vec();
    distinct.dedup();
    if distinct.len() <= bins.max(1) {
        let mut e = Vec::with_capacity(distinct.len() + 1);
        e.push(distinct[0].next_down());
        e.extend(distinct);
        return e;
    }
    let mut e: Vec<f64> = (1..bins)
        .map(|i| v[(i * v.len() / bins).min(v.len() - 1)])
        .collect();
    e.dedup();
    if e.last() == v.last() {
        e.pop();
    }
    e
}

impl ProfileSpec {
    /// Bins from training rows (row-major, encoded): `features` names each feature with its levels
    /// (categorical) or `None` (numeric, binned on `bins` quantiles).
    pub fn from_training(
        features: &[(String, Option<Vec<String>>)],
        rows: &[f64],
        bins: usize,
        prediction: BinSpec,
    ) -> ProfileSpec {
        let nf = features.len();
        let spec = features
            .iter()
            .enumerate()
            .map(|(j, (name, levels))| {
                let b = match levels {
                    Some(l) => BinSpec::Categorical { levels: l.clone() },
                    None => {
                        let col: Vec<f64> =
                            rows.iter().skip(j).step_by(nf.max(1)).copied().collect();
                        BinSpec::Numeric {
                            edges: bin_edges(&col, bins),
                        }
                    }
                };
                (name.clone(), b)
            })
            .collect();
        ProfileSpec {
            features: spec,
            prediction,
        }
    }

    /// Fixed prediction edges for probabilities: tenths.
    pub fn probability_bins() -> BinSpec {
        BinSpec::Numeric {
            edges: (1..10).map(|i| i as f64 / 10.0).collect(),
        }
    }

    pub fn empty(&self) -> Profile {
        Profile {
            rows: 0,
            features: self
                .features
                .iter()
                .map(|(_, b)| vec![0; b.bins()])
                .collect(),
            prediction: vec![0; self.prediction.bins()],
        }
    }

    /// Counts encoded rows (row-major, `features.len()` wide) and their predictions.
    pub fn profile(&self, rows: &[f64], predictions: &[f64]) -> Profile {
        let mut p = self.empty();
        p.record(self, rows, predictions);
        p
    }
}

impl Profile {
    /// Adds encoded rows and their predictions.
    #[inline]
    pub fn record(&mut self, spec: &ProfileSpec, rows: &[f64], predictions: &[f64]) {
        let nf = spec.features.len();
        if nf > 0 {
            for row in rows.chunks_exact(nf) {
                for ((_, b), (counts, &x)) in
                    spec.features.iter().zip(self.features.iter_mut().zip(row))
                {
                    counts[b.bin(x)] += 1;
                }
            }
        }
        for &y in predictions {
            self.prediction[spec.prediction.bin(y)] += 1;
        }
        self.rows += predictions.len() as u64;
    }

    /// Adds another profile of the same spec.
    pub fn merge(&mut self, other: &Profile) -> Result<()> {
        let same = self.features.len() == other.features.len()
            && self.prediction.len() == other.prediction.len()
            && self
                .features
                .iter()
                .zip(&other.features)
                .all(|(a, b)| a.len() == b.len());
        if !same {
            return Err(Error::Invalid(
                "profiles of different model versions cannot be merged".into(),
            ));
        }
        self.rows += other.rows;
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (x, y) in self.prediction.iter_mut().zip(&other.prediction) {
            *x += y;
        }
        Ok(())
    }
}

/// Drift of a current profile against the reference profile of the same spec, feature by feature and on the
/// prediction, with the same decision rule as [`drift::compare`]: chi² on the bins (Holm-corrected) and PSI /
/// KS-on-bins / Cramér's V as the effect size. Columns with fewer than `opts.min_rows` rows say
/// "insufficient data".
pub fn compare_profiles(
    spec: &ProfileSpec,
    reference: &Profile,
    current: &Profile,
    opts: &DriftOptions,
) -> Result<DriftReport> {
    let mut cols = Vec::new();
    let names = spec
        .features
        .iter()
        .map(|(n, b)| (n.as_str(), b))
        .chain(std::iter::once(("prediction", &spec.prediction)));
    let counts = reference
        .features
        .iter()
        .chain(std::iter::once(&reference.prediction))
        .zip(
            current
                .features
                .iter()
                .chain(std::iter::once(&current.prediction)),
        );
    for ((name, bins), (a, b)) in names.zip(counts) {
        if a.len() != bins.bins() || b.len() != bins.bins() {
            return Err(Error::Invalid(format!(
                "profile of '{name}' does not match its bins"
            )));
        }
        cols.push(binned(name, bins, a, b, opts));
    }
    Ok(drift::decide(cols, opts, Vec::new()))
}

fn binned(name: &str, bins: &BinSpec, a: &[u64], b: &[u64], opts: &DriftOptions) -> drift::Raw {
    let fa: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    let fb: Vec<f64> = b.iter().map(|&x| x as f64).collect();
    let (ta, tb) = (fa.iter().sum::<f64>(), fb.iter().sum::<f64>());
    let numeric = matches!(bins, BinSpec::Numeric { .. });
    let mut d = drift::empty_drift(
        name,
        if numeric { "numeric" } else { "categorical" },
        "chi2",
    );
    d.reference_rows = ta as usize;
    d.current_rows = tb as usize;
    let last = fa.len() - 1;
    d.reference_missing = if ta > 0.0 { fa[last] / ta } else { 0.0 };
    d.current_missing = if tb > 0.0 { fb[last] / tb } else { 0.0 };
    d.histogram = Histogram {
        labels: bins.labels(),
        reference: fa.iter().map(|x| x / ta.max(1.0)).collect(),
        current: fb.iter().map(|x| x / tb.max(1.0)).collect(),
    };
    if (ta as usize) < opts.min_rows || (tb as usize) < opts.min_rows {
        d.reason = format!(
            "insufficient data: {} reference and {} current rows (at least {} each)",
            ta, tb, opts.min_rows
        );
        return drift::Raw {
            drift: d,
            large: false,
        };
    }
    let (stat, df) = drift::chi2_homogeneity(&fa, &fb);
    let (psi, js) = drift::psi_js(&fa, &fb);
    let v = (stat / (ta + tb)).sqrt();
    // KS on the ordered bins (numeric only; missing excluded).
    let ks = if numeric {
        let (na, nb) = (ta - fa[last], tb - fb[last]);
        let (mut ca, mut cb, mut m) = (0.0, 0.0, 0.0f64);
        for i in 0..last {
            ca += fa[i] / na.max(1.0);
            cb += fb[i] / nb.max(1.0);
            m = m.max((ca - cb).abs());
        }
        Some(m)
    } else {
        None
    };
    d.statistic = Some(stat);
    d.p_value = Some(drift::chi2_sf(stat, df));
    d.psi = Some(psi);
    d.js = Some(js);
    d.cramers_v = Some(v);
    let missing_gap = (d.reference_missing - d.current_missing).abs();
    let large = psi >= opts.psi_threshold
        || v >= opts.effect_threshold
        || ks.is_some_and(|k| k >= opts.effect_threshold)
        || missing_gap >= opts.effect_threshold;
    drift::Raw { drift: d, large }
}
