//! Drift between a reference and a current sample, column by column.
//!
//! Numeric columns are binned once on the reference's quantiles (100 fine bins, from a strided sample of at
//! most [`EDGE_SAMPLE`] values); both samples are then counted in one pass each. From the counts: the
//! Kolmogorov–Smirnov statistic at the bin edges with its asymptotic p-value, the Wasserstein-1 distance
//! (normalised by the reference's standard deviation), and, on ten decile bins plus a missing bin, the
//! population stability index and the Jensen–Shannon distance. A change in the missing rate is tested with a
//! two-proportion z-test. Categorical columns get a chi² test of homogeneity with Cramér's V, PSI and
//! Jensen–Shannon on the level frequencies (missing as its own level).
//!
//! The decision needs both: a p-value that stays below `alpha` after Holm's correction over all the tests,
//! and an effect size at or above its threshold (PSI, or KS / missing-rate change / Cramér's V). With a
//! million rows a test finds differences nobody cares about; the effect gate keeps two samples of the same
//! distribution quiet, while the test keeps small noisy samples from alarming on a large but chance effect.

use keel_core::{ColumnData, Frame, MISSING_CODE};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use crate::{Error, Result};

/// Largest reference sample used to place the bin edges.
pub const EDGE_SAMPLE: usize = 200_000;
const FINE_BINS: usize = 100;
/// Bins for PSI, JS and the chart: the served-traffic profiles' count ([`crate::profile::bin_edges`]).
const COARSE_BINS: usize = 10;
/// Proportion floor in PSI and JS, so an empty bin on one side gives a large but finite value.
const FLOOR: f64 = 1e-4;

/// Thresholds of the drift decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftOptions {
    /// Family-wise significance level (Holm's correction over every column tested).
    pub alpha: f64,
    /// PSI at or above this is a meaningful shift (0.1 is the usual "moderate" line).
    pub psi_threshold: f64,
    /// KS statistic, missing-rate change or Cramér's V at or above this is a meaningful shift.
    pub effect_threshold: f64,
    /// Fewer non-missing values than this on either side: "insufficient data", no verdict.
    pub min_rows: usize,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            alpha: 0.05,
            psi_threshold: 0.1,
            effect_threshold: 0.1,
            min_rows: 100,
        }
    }
}

/// One column's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// Both significant (after correction) and large enough. `false` when there was too little data.
    pub drifted: bool,
    /// Why the verdict is what it is, in words.
    pub reason: String,
    /// `ks` (numeric) or `chi2` (categorical).
    pub test: String,
    /// The test statistic (KS D, or chi²).
    pub statistic: Option<f64>,
    /// The column's p-value (numeric columns: the smaller of KS and the missing-rate test, doubled).
    pub p_value: Option<f64>,
    /// After Holm's correction over every column.
    pub p_value_adjusted: Option<f64>,
    pub psi: Option<f64>,
    /// Jensen–Shannon distance (base 2, in [0, 1]).
    pub js: Option<f64>,
    /// Wasserstein-1 distance divided by the reference's standard deviation (numeric only).
    pub wasserstein: Option<f64>,
    /// Cramér's V (categorical only).
    pub cramers_v: Option<f64>,
    pub reference_rows: usize,
    pub current_rows: usize,
    pub reference_missing: f64,
    pub current_missing: f64,
    /// What the charts draw: bin labels and each side's proportions (missing last, when present).
    pub histogram: Histogram,
}

/// Proportions of each side over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Histogram {
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub columns: Vec<ColumnDrift>,
    pub drifted_columns: usize,
    pub options: DriftOptions,
    /// Columns present on one side only.
    pub unmatched: Vec<String>,
}

/// Statistics of one column before the multiple-testing step.
pub(crate) struct Raw {
    pub(crate) drift: ColumnDrift,
    /// The effect passes its threshold.
    pub(crate) large: bool,
}

/// Compares every column the two frames share. Columns of different kinds on the two sides are an error;
/// columns on one side only are listed in `unmatched`.
pub fn compare(reference: &Frame, current: &Frame, opts: &DriftOptions) -> Result<DriftReport> {
    if !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return Err(Error::Invalid("alpha must be in (0, 1)".into()));
    }
    let mut pairs = Vec::new();
    let mut unmatched = Vec::new();
    for (name, r) in reference.names.iter().zip(&reference.columns) {
        match current.column(name) {
            Some(c) => pairs.push((name.clone(), r, c)),
            None => unmatched.push(name.clone()),
        }
    }
    for name in &current.names {
        if reference.column(name).is_none() {
            unmatched.push(name.clone());
        }
    }
    for (name, r, c) in &pairs {
        let kind = |d: &ColumnData| match d {
            ColumnData::Numeric(_) => "numeric",
            ColumnData::Categorical { .. } => "categorical",
            ColumnData::Other(_) => "text",
        };
        if kind(r) != kind(c) {
            return Err(Error::Invalid(format!(
                "column '{name}' is {} in the reference but {} in the current data",
                kind(r),
                kind(c)
            )));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut raws: Vec<(usize, Raw)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((name, r, c)) = pairs.get(k) else {
                            break;
                        };
                        let raw = match (r, c) {
                            (ColumnData::Numeric(a), ColumnData::Numeric(b)) => {
                                Some(numeric(name, a, b, opts))
                            }
                            (
                                ColumnData::Categorical {
                                    codes: a,
                                    levels: la,
                                },
                                ColumnData::Categorical {
                                    codes: b,
                                    levels: lb,
                                },
                            ) => Some(categorical(name, a, la, b, lb, opts)),
                            _ => None,
                        };
                        if let Some(raw) = raw {
                            out.push((k, raw));
                        }
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("drift worker panicked"))
            .collect()
    });
    raws.sort_by_key(|(k, _)| *k);
    Ok(decide(
        raws.into_iter().map(|(_, r)| r).collect(),
        opts,
        unmatched,
    ))
}

/// Holm's step-down correction over the columns that have a p-value, then the verdict of each column.
pub(crate) fn decide(
    mut raws: Vec<Raw>,
    opts: &DriftOptions,
    unmatched: Vec<String>,
) -> DriftReport {
    // Holm's step-down correction over the columns that have a p-value.
    let mut order: Vec<usize> = (0..raws.len())
        .filter(|&i| raws[i].drift.p_value.is_some())
        .collect();
    order.sort_by(|&a, &b| {
        raws[a]
            .drift
            .p_value
            .unwrap()
            .total_cmp(&raws[b].drift.p_value.unwrap())
    });
    let m = order.len();
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let p = raws[i].drift.p_value.unwrap();
        running = running.max(((m - rank) as f64 * p).min(1.0));
        raws[i].drift.p_value_adjusted = Some(running);
    }
    for r in &mut raws {
        let Some(p) = r.drift.p_value_adjusted else {
            continue;
        };
        let significant = p < opts.alpha;
        r.drift.drifted = significant && r.large;
        r.drift.reason = match (significant, r.large) {
            (true, true) => format!("significant (adjusted p = {}) and large enough", short(p)),
            (true, false) => format!(
                "significant (adjusted p = {}) but too small to matter",
                short(p)
            ),
            (false, true) => format!(
                "large but not significant (adjusted p = {}): too little data to tell",
                short(p)
            ),
            (false, false) => "no meaningful change".into(),
        };
    }
    let drifted_columns = raws.iter().filter(|r| r.drift.drifted).count();
    DriftReport {
        columns: raws.into_iter().map(|r| r.drift).collect(),
        drifted_columns,
        options: *opts,
        unmatched,
    }
}

fn short(p: f64) -> String {
    if p == 0.0 {
        "< 1e-300".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

pub(crate) fn empty_drift(name: &str, kind: &str, test: &str) -> ColumnDrift {
    ColumnDrift {
        name: name.to_string(),
        kind: kind.into(),
        drifted: false,
        reason: String::new(),
        test: test.into(),
        statistic: None,
        p_value: None,
        p_value_adjusted: None,
        psi: None,
        js: None,
        wasserstein: None,
        cramers_v: None,
        reference_rows: 0,
        current_rows: 0,
        reference_missing: 0.0,
        current_missing: 0.0,
        histogram: Histogram::default(),
    }
}

/// PSI and Jensen–Shannon distance of two count vectors over the same bins.
pub fn psi_js(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (ta, tb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    let mut psi = 0.0;
    let mut js = 0.0;
    for (&x, &y) in a.iter().zip(b) {
        if x == 0.0 && y == 0.0 {
            continue;
        }
        let (p, q) = ((x / ta).max(FLOOR), (y / tb).max(FLOOR));
        psi += (q - p) * (q / p).ln();
        let (p0, q0) = (x / ta, y / tb);
        let mid = 0.5 * (p0 + q0);
        if p0 > 0.0 {
            js += 0.5 * p0 * (p0 / mid).log2();
        }
        if q0 > 0.0 {
            js += 0.5 * q0 * (q0 / mid).log2();
        }
    }
    (psi, js.max(0.0).sqrt())
}

/// Chi² statistic of homogeneity for two count vectors, and its degrees of freedom.
pub fn chi2_homogeneity(a: &[f64], b: &[f64]) -> (f64, usize) {
    let (ta, tb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    let n = ta + tb;
    let mut stat = 0.0;
    let mut cells = 0usize;
    for (&x, &y) in a.iter().zip(b) {
        let col = x + y;
        if col == 0.0 {
            continue;
        }
        cells += 1;
        let (ea, eb) = (ta * col / n, tb * col / n);
        stat += (x - ea).powi(2) / ea + (y - eb).powi(2) / eb;
    }
    (stat, cells.saturating_sub(1))
}

pub(crate) fn chi2_sf(stat: f64, df: usize) -> f64 {
    if df == 0 {
        return 1.0;
    }
    ChiSquared::new(df as f64).map_or(1.0, |d| d.sf(stat))
}

/// Survival function of the Kolmogorov distribution: P(K > λ).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // The series below converges slowly here; use the complementary form.
        let y = (-std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda)).exp();
        let s = (2.0 * std::f64::consts::PI).sqrt() / lambda
            * (y + y.powi(9) + y.powi(25) + y.powi(49));
        return (1.0 - s).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = 2.0 * (-1f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-16 {
            break;
        }
    }
    sum.clamp(0.0, 1.0)
}

/// Asymptotic two-sample KS p-value for statistic `d` and sample sizes `n`, `m`.
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    let ne = (n as f64 * m as f64) / (n as f64 + m as f64);
    let s = ne.sqrt();
    kolmogorov_sf((s + 0.12 + 0.11 / s) * d)
}

/// Two-sided p-value of a difference between two proportions (pooled z-test).
fn two_proportion_p(x1: usize, n1: usize, x2: usize, n2: usize) -> f64 {
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = ((p1 - p2) / se).abs();
    2.0 * Normal::standard().sf(z)
}

/// Fine bin edges: reference quantiles at 1 %, 2 %, … 99 % from a strided sample, together with the coarse
/// bins of [`crate::profile::bin_edges`] on the same sample (the bins PSI, JS and the chart use, the same as
/// served-traffic profiles), sorted and deduplicated; and the coarse edges. Every coarse edge is a fine edge,
/// so each fine bin lies inside one coarse bin.
fn edges(values: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let finite = values.iter().filter(|x| !x.is_nan()).count();
    let stride = finite.div_ceil(EDGE_SAMPLE).max(1);
    let mut sample: Vec<f64> = values
        .iter()
        .filter(|x| !x.is_nan())
        .step_by(stride)
        .copied()
        .collect();
    sample.sort_unstable_by(f64::total_cmp);
    if sample.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let coarse = crate::profile::bin_edges_sorted(&sample, COARSE_BINS);
    let mut e: Vec<f64> = (1..FINE_BINS)
        .map(|i| sample[(i * sample.len() / FINE_BINS).min(sample.len() - 1)])
        .chain(coarse.iter().copied())
        .collect();
    e.sort_unstable_by(f64::total_cmp);
    e.dedup();
    (e, coarse)
}

/// Counts per fine bin (`edges.len() + 1` bins; bin i holds values in (e[i-1], e[i]]) plus missing, and the
/// sum and sum of squares of the non-missing values.
fn count(values: &[f64], edges: &[f64]) -> (Vec<u64>, u64, f64, f64, f64, f64) {
    let mut counts = vec![0u64; edges.len() + 1];
    let mut missing = 0u64;
    let (mut sum, mut sq, mut lo, mut hi) = (0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for &x in values {
        if x.is_nan() {
            missing += 1;
            continue;
        }
        counts[edges.partition_point(|&e| e < x)] += 1;
        sum += x;
        sq += x * x;
        lo = lo.min(x);
        hi = hi.max(x);
    }
    (counts, missing, sum, sq, lo, hi)
}

fn numeric(name: &str, a: &[f64], b: &[f64], opts: &DriftOptions) -> Raw {
    let mut d = empty_drift(name, "numeric", "ks");
    d.reference_rows = a.len();
    d.current_rows = b.len();
    let (e, coarse) = edges(a);
    let (ca, ma, sum_a, sq_a, lo_a, hi_a) = count(a, &e);
    let (cb, mb, _, _, lo_b, hi_b) = count(b, &e);
    d.reference_missing = ma as f64 / a.len().max(1) as f64;
    d.current_missing = mb as f64 / b.len().max(1) as f64;
    let (na, nb) = (a.len() - ma as usize, b.len() - mb as usize);
    if na < opts.min_rows || nb < opts.min_rows {
        d.reason = format!(
            "insufficient data: {na} reference and {nb} current values (at least {} each)",
            opts.min_rows
        );
        return Raw {
            drift: d,
            large: false,
        };
    }
    // KS at every edge; Wasserstein-1 as the trapezoid integral of the CDF gap over the edges, the gap falling
    // to zero at the smallest and largest value seen.
    let (mut fa, mut fb, mut ks) = (0.0f64, 0.0f64, 0.0f64);
    let mut gaps = Vec::with_capacity(e.len());
    for i in 0..e.len() {
        fa += ca[i] as f64 / na as f64;
        fb += cb[i] as f64 / nb as f64;
        let gap = (fa - fb).abs();
        ks = ks.max(gap);
        gaps.push(gap);
    }
    let lo = lo_a.min(lo_b);
    let hi = hi_a.max(hi_b);
    let mut w = 0.0;
    if let (Some(&first), Some(&last)) = (e.first(), e.last()) {
        w += 0.5 * gaps[0] * (first - lo).max(0.0);
        w += 0.5 * gaps[gaps.len() - 1] * (hi - last).max(0.0);
        for i in 0..e.len() - 1 {
            w += 0.5 * (gaps[i] + gaps[i + 1]) * (e[i + 1] - e[i]);
        }
    }
    let mean = sum_a / na as f64;
    let sd = (sq_a / na as f64 - mean * mean).max(0.0).sqrt();
    let w_norm = if sd > 0.0 { w / sd } else { 0.0 };
    // Coarse bins plus missing, for PSI, JS and the chart: fine bin i, (e[i-1], e[i]], lies in the coarse bin
    // of e[i]; the fine bin above the last edge in the coarse bin above the last coarse edge.
    let coarse_of = |i: usize| match e.get(i) {
        Some(&x) => coarse.partition_point(|&c| c < x),
        None => coarse.len(),
    };
    let n_coarse = coarse.len() + 1;
    let mut pa = vec![0.0; n_coarse + 1];
    let mut pb = vec![0.0; n_coarse + 1];
    for i in 0..ca.len() {
        pa[coarse_of(i)] += ca[i] as f64;
        pb[coarse_of(i)] += cb[i] as f64;
    }
    pa[n_coarse] = ma as f64;
    pb[n_coarse] = mb as f64;
    let (psi, js) = psi_js(&pa, &pb);
    let p_ks = ks_p_value(ks, na, nb);
    let missing_gap = (d.reference_missing - d.current_missing).abs();
    let p = if ma + mb > 0 {
        let p_miss = two_proportion_p(ma as usize, a.len(), mb as usize, b.len());
        (2.0 * p_ks.min(p_miss)).min(1.0)
    } else {
        p_ks
    };
    let mut labels = crate::profile::numeric_labels(&coarse);
    labels.pop(); // "missing", added below when there are missing values.
    let (ta, tb) = (a.len() as f64, b.len() as f64);
    let mut hist = Histogram {
        labels,
        reference: pa.iter().map(|x| x / ta).collect(),
        current: pb.iter().map(|x| x / tb).collect(),
    };
    if ma + mb > 0 {
        hist.labels.push("missing".into());
    } else {
        hist.reference.pop();
        hist.current.pop();
    }
    d.statistic = Some(ks);
    d.p_value = Some(p);
    d.psi = Some(psi);
    d.js = Some(js);
    d.wasserstein = Some(w_norm);
    d.histogram = hist;
    let large = psi >= opts.psi_threshold
        || ks >= opts.effect_threshold
        || missing_gap >= opts.effect_threshold;
    Raw { drift: d, large }
}

fn categorical(
    name: &str,
    a: &[u32],
    la: &[String],
    b: &[u32],
    lb: &[String],
    opts: &DriftOptions,
) -> Raw {
    let mut d = empty_drift(name, "categorical", "chi2");
    d.reference_rows = a.len();
    d.current_rows = b.len();
    // Union of the labels, reference first; missing last.
    let mut labels: Vec<String> = la.to_vec();
    let mut index: std::collections::HashMap<&str, usize> = la
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let remap_b: Vec<usize> = lb
        .iter()
        .map(|l| {
            *index.entry(l.as_str()).or_insert_with(|| {
                labels.push(l.clone());
                labels.len() - 1
            })
        })
        .collect();
    let k = labels.len();
    let mut ca = vec![0.0; k + 1];
    let mut cb = vec![0.0; k + 1];
    let mut raw_a = vec![0u64; la.len()];
    let mut raw_b = vec![0u64; lb.len()];
    let (mut ma, mut mb) = (0u64, 0u64);
    for &c in a {
        if c == MISSING_CODE {
            ma += 1;
        } else {
            raw_a[c as usize] += 1;
        }
    }
    for &c in b {
        if c == MISSING_CODE {
            mb += 1;
        } else {
            raw_b[c as usize] += 1;
        }
    }
    for (i, &n) in raw_a.iter().enumerate() {
        ca[i] += n as f64;
    }
    for (i, &n) in raw_b.iter().enumerate() {
        cb[remap_b[i]] += n as f64;
    }
    ca[k] = ma as f64;
    cb[k] = mb as f64;
    d.reference_missing = ma as f64 / a.len().max(1) as f64;
    d.current_missing = mb as f64 / b.len().max(1) as f64;
    if a.len() < opts.min_rows || b.len() < opts.min_rows {
        d.reason = format!(
            "insufficient data: {} reference and {} current rows (at least {} each)",
            a.len(),
            b.len(),
            opts.min_rows
        );
        return Raw {
            drift: d,
            large: false,
        };
    }
    let (stat, df) = chi2_homogeneity(&ca, &cb);
    let n = (a.len() + b.len()) as f64;
    let v = (stat / n).sqrt();
    let (psi, js) = psi_js(&ca, &cb);
    d.statistic = Some(stat);
    d.p_value = Some(chi2_sf(stat, df));
    d.psi = Some(psi);
    d.js = Some(js);
    d.cramers_v = Some(v);
    // The chart: the 20 most frequent labels of the reference, the rest together, then missing.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| (ca[y] + cb[y]).total_cmp(&(ca[x] + cb[x])));
    let (ta, tb) = (a.len() as f64, b.len() as f64);
    let mut hist = Histogram::default();
    for &i in order.iter().take(20) {
        hist.labels.push(labels[i].clone());
        hist.reference.push(ca[i] / ta);
        hist.current.push(cb[i] / tb);
    }
    if k > 20 {
        let rest = |c: &[f64]| order[20..].iter().map(|&i| c[i]).sum::<f64>();
        hist.labels.push(format!("{} others", k - 20));
        hist.reference.push(rest(&ca) / ta);
        hist.current.push(rest(&cb) / tb);
    }
    if ma + mb > 0 {
        hist.labels.push("missing".into());
        hist.reference.push(ma as f64 / ta);
        hist.current.push(mb as f64 / tb);
    }
    d.histogram = hist;
    let large = psi >= opts.psi_threshold || v >= opts.effect_threshold;
    Raw { drift: d, large }
}
