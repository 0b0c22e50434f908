//! Split-conformal prediction intervals for regression: the holdout is split in two (seeded); the absolute
//! residuals of one half set the interval's half-width at the requested level (the ⌈(n + 1)·level⌉-th smallest,
//! which guarantees at least that coverage for exchangeable rows), and the other half measures the coverage
//! the card reports. Serving answers `prediction ± half_width`; monitoring checks the coverage on fresh labels.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A calibrated interval and its measured coverage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conformal {
    /// The coverage asked for (0.9: nine in ten targets inside).
    pub level: f64,
    /// The interval is the prediction ± this.
    pub half_width: f64,
    pub calibration_rows: usize,
    /// Share of the other half's targets inside their interval.
    pub coverage: f64,
    pub coverage_rows: usize,
    /// 95 % Wilson interval of that share.
    pub coverage_interval: [f64; 2],
}

/// Fewest holdout rows a split-conformal interval is computed from (each half needs enough to mean anything).
pub const MIN_ROWS: usize = 40;

/// Calibrates on one half of `(y, pred)` and measures on the other; `None` with fewer than [`MIN_ROWS`] rows,
/// or when the level asks for more than the calibration half can give (an infinite interval).
pub fn split(y: &[f64], pred: &[f64], level: f64, seed: u64) -> Option<Conformal> {
    let n = y.len();
    if n < MIN_ROWS || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x636f_6e66));
    let (cal, test) = order.split_at(n / 2);
    let mut residuals: Vec<f64> = cal.iter().map(|&i| (y[i] - pred[i]).abs()).collect();
    residuals.sort_by(f64::total_cmp);
    let k = ((cal.len() + 1) as f64 * level).ceil() as usize;
    if k > cal.len() {
        return None;
    }
    let half_width = residuals[k - 1];
    let inside = test
        .iter()
        .filter(|&&i| (y[i] - pred[i]).abs() <= half_width)
        .count();
    Some(Conformal {
        level,
        half_width,
        calibration_rows: cal.len(),
        coverage: inside as f64 / test.len() as f64,
        coverage_rows: test.len(),
        coverage_interval: wilson(inside, test.len()),
    })
}

/// 95 % Wilson score interval of `k` successes in `n`.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (z, nf) = (1.96f64, n as f64);
    let p = k as f64 / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_half_width_is_the_calibration_quantile_and_coverage_is_measured_apart() {
        // Residuals 0, 1, …: the 90 % half-width of 100 calibration rows is the 91st smallest.
        let y: Vec<f64> = (0..200).map(|i| (i / 2) as f64).collect();
        let pred = vec![0.0; 200];
        let c = split(&y, &pred, 0.9, 1).unwrap();
        assert_eq!((c.calibration_rows, c.coverage_rows), (100, 100));
        assert!(c.coverage > 0.8 && c.coverage < 1.0, "{c:?}");
        assert!(c.coverage_interval[0] < c.coverage && c.coverage < c.coverage_interval[1]);
        assert!(split(&y[..20], &pred[..20], 0.9, 1).is_none());
        // 0.999 of 20 calibration rows would need the 21st: no finite interval.
        assert!(split(&y[..40], &pred[..40], 0.999, 1).is_none());
    }
}
