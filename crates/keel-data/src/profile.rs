//! Dataset profiles: per column counts, nulls, distinct values, numeric summaries (min, max, mean, standard
//! deviation, quantiles, histogram) and top categories. Profiles feed model cards and, later, drift baselines.

use keel_core::{ColumnData, ColumnType, Frame, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The profile of one dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub rows: usize,
    pub columns: Vec<ColumnProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    pub count: usize,
    pub nulls: usize,
    pub null_fraction: f64,
    pub distinct: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericSummary>,
    /// Most frequent values with their counts (categorical, boolean, text and timestamp columns).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub top: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumericSummary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
    /// (quantile, value) for 1, 5, 25, 50, 75, 95 and 99 %.
    pub quantiles: Vec<(f64, f64)>,
    pub histogram: Vec<HistogramBin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistogramBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
}

const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const HIST_BINS: usize = 20;
const TOP_K: usize = 10;

/// Profiles every column of the frame; `schema` gives the logical types.
pub fn profile(frame: &Frame, schema: &Schema) -> Profile {
    let columns = frame
        .names
        .iter()
        .zip(&frame.columns)
        .map(|(name, col)| {
            let ty = schema
                .column(name)
                .map_or(ColumnType::Text, |c| c.column_type);
            profile_column(name, ty, col)
        })
        .collect();
    Profile {
        rows: frame.nrows(),
        columns,
    }
}

fn profile_column(name: &str, ty: ColumnType, col: &ColumnData) -> ColumnProfile {
    let count = col.len();
    let (nulls, distinct, numeric, top) = match col {
        ColumnData::Numeric(v) => {
            let mut x: Vec<f64> = v.iter().copied().filter(|f| !f.is_nan()).collect();
            let nulls = count - x.len();
            x.sort_by(f64::total_cmp);
            let mut distinct = 0;
            for i in 0..x.len() {
                if i == 0 || x[i] != x[i - 1] {
                    distinct += 1;
                }
            }
            let top = if ty == ColumnType::Boolean {
                let ones = x.iter().filter(|&&f| f == 1.0).count();
                vec![("true".into(), ones), ("false".into(), x.len() - ones)]
            } else {
                Vec::new()
            };
            (nulls, distinct, numeric_summary(&x), top)
        }
        ColumnData::Categorical { codes, levels } => {
            let mut counts = vec![0usize; levels.len()];
            let mut nulls = 0;
            for &c in codes {
                if c == keel_core::MISSING_CODE {
                    nulls += 1;
                } else {
                    counts[c as usize] += 1;
                }
            }
            let distinct = counts.iter().filter(|&&c| c > 0).count();
            let mut top: Vec<(String, usize)> = levels
                .iter()
                .cloned()
                .zip(counts)
                .filter(|(_, c)| *c > 0)
                .collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(TOP_K);
            (nulls, distinct, None, top)
        }
        ColumnData::Other(v) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            let mut nulls = 0;
            for s in v {
                match s {
                    Some(s) => *counts.entry(s.as_str()).or_default() += 1,
                    None => nulls += 1,
                }
            }
            let distinct = counts.len();
            let mut top: Vec<(String, usize)> = counts
                .into_iter()
                .map(|(k, c)| (k.to_string(), c))
                .collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            top.truncate(TOP_K);
            (nulls, distinct, None, top)
        }
    };
    ColumnProfile {
        name: name.to_string(),
        column_type: ty,
        count,
        nulls,
        null_fraction: if count > 0 {
            nulls as f64 / count as f64
        } else {
            0.0
        },
        distinct,
        numeric,
        top,
    }
}

/// Summary of sorted, non-missing values.
fn numeric_summary(x: &[f64]) -> Option<NumericSummary> {
    if x.is_empty() {
        return None;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let (min, max) = (x[0], x[x.len() - 1]);
    let quantiles = QUANTILES
        .iter()
        .map(|&q| (q, quantile_sorted(x, q)))
        .collect();
    let mut histogram = Vec::new();
    if max > min && min.is_finite() && max.is_finite() {
        let width = (max - min) / HIST_BINS as f64;
        let mut counts = vec![0usize; HIST_BINS];
        for &v in x {
            counts[(((v - min) / width) as usize).min(HIST_BINS - 1)] += 1;
        }
        for (b, c) in counts.into_iter().enumerate() {
            histogram.push(HistogramBin {
                lower: min + b as f64 * width,
                upper: min + (b + 1) as f64 * width,
                count: c,
            });
        }
    } else {
        histogram.push(HistogramBin {
            lower: min,
            upper: max,
            count: x.len(),
        });
    }
    Some(NumericSummary {
        min,
        max,
        mean,
        std: var.sqrt(),
        quantiles,
        histogram,
    })
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile_sorted(x: &[f64], q: f64) -> f64 {
    let pos = q * (x.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    x[lo] + (x[hi] - x[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_profile_matches_hand_values() {
        let frame = Frame {
            names: vec!["x".into()],
            columns: vec![ColumnData::Numeric(vec![1.0, 2.0, 3.0, 4.0, f64::NAN])],
        };
        let mut schema = Schema::default();
        schema
            .columns
            .push(keel_core::ColumnSchema::new("x", ColumnType::Numeric));
        let p = profile(&frame, &schema);
        let c = &p.columns[0];
        assert_eq!((c.count, c.nulls, c.distinct), (5, 1, 4));
        let n = c.numeric.as_ref().unwrap();
        assert_eq!((n.min, n.max, n.mean), (1.0, 4.0, 2.5));
        assert!((n.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(n.histogram.iter().map(|b| b.count).sum::<usize>(), 4);
    }
}
