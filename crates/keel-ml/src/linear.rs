//! Linear baselines: L2-regularised logistic regression (classification) and ridge regression, over
//! standardised numeric features (missing → mean) plus decile indicators of each numeric feature (so a
//! non-monotone effect such as age is representable), and one-hot categorical features, fitted with L-BFGS.
//! They are the honest yardstick a GBDT must beat.

use serde::{Deserialize, Serialize};

use crate::features::{FeatureKind, FeatureSpec};
use crate::{Error, Objective, Result};

/// A fitted linear model over encoded rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub objective: Objective,
    /// Per feature: (mean, standard deviation) for numeric features, `None` for categorical ones.
    pub scaling: Vec<Option<(f64, f64)>>,
    /// Per numeric feature: inner decile edges; its weights are the linear term, then one per bin.
    pub edges: Vec<Vec<f64>>,
    /// Per feature: the first weight index of the feature (numeric: linear term then bins; categorical: one
    /// per level).
    pub offsets: Vec<usize>,
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// Options of the linear baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// L2 penalty on the weights (not the bias), per row.
    pub l2: f64,
    pub max_iter: usize,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams {
            l2: 1e-4,
            max_iter: 200,
        }
    }
}

impl LinearModel {
    #[inline]
    pub fn predict_margin(&self, row: &[f64]) -> f64 {
        let mut s = self.bias;
        for (j, x) in row.iter().enumerate() {
            match self.scaling[j] {
                Some((mean, sd)) => {
                    if !x.is_nan() {
                        let o = self.offsets[j];
                        s += self.weights[o] * (x - mean) / sd;
                        if !self.edges[j].is_empty() {
                            s += self.weights[o + 1 + bin_of(&self.edges[j], *x)];
                        }
                    }
                }
                None => {
                    if !x.is_nan() {
                        let k = *x as usize;
                        let width = self.offsets[j + 1] - self.offsets[j];
                        if k < width {
                            s += self.weights[self.offsets[j] + k];
                        }
                    }
                }
            }
        }
        s
    }
}

/// One row's design vector: (weight index, value) pairs.
type SparseRow = Vec<(u32, f64)>;

/// The encoding of a linear model (scaling, decile edges, weight offsets, zero weights), each row's sparse
/// design vector, and the number of weights.
fn design(
    specs: &[FeatureSpec],
    x: &[f64],
    n: usize,
    objective: Objective,
) -> Result<(LinearModel, Vec<SparseRow>, usize)> {
    let nf = specs.len();
    if n == 0 || nf == 0 || x.len() != n * nf {
        return Err(Error::InvalidInput("empty training matrix".into()));
    }
    let mut scaling = Vec::with_capacity(nf);
    let mut edges = Vec::with_capacity(nf);
    let mut offsets = Vec::with_capacity(nf + 1);
    let mut dim = 0usize;
    for (j, s) in specs.iter().enumerate() {
        offsets.push(dim);
        match &s.kind {
            FeatureKind::Numeric | FeatureKind::Time { .. } => {
                let vals: Vec<f64> = (0..n)
                    .map(|i| x[i * nf + j])
                    .filter(|v| !v.is_nan())
                    .collect();
                let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
                let var =
                    vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len().max(1) as f64;
                let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
                scaling.push(Some((mean, sd)));
                let mut sorted = vals;
                sorted.sort_by(f64::total_cmp);
                let mut e: Vec<f64> = if sorted.is_empty() {
                    Vec::new()
                } else {
                    (1..10)
                        .map(|k| sorted[k * (sorted.len() - 1) / 10])
                        .collect()
                };
                e.dedup();
                dim += 1 + if e.is_empty() { 0 } else { e.len() + 1 };
                edges.push(e);
            }
            FeatureKind::Categorical { levels } => {
                scaling.push(None);
                edges.push(Vec::new());
                dim += levels.len();
            }
        }
    }
    offsets.push(dim);
    let model = LinearModel {
        objective,
        scaling,
        edges,
        offsets,
        weights: vec![0.0; dim],
        bias: 0.0,
    };
    let rows: Vec<SparseRow> = (0..n)
        .map(|i| {
            let mut r = Vec::with_capacity(nf);
            for j in 0..nf {
                let v = x[i * nf + j];
                if v.is_nan() {
                    continue;
                }
                match model.scaling[j] {
                    Some((m, sd)) => {
                        r.push((model.offsets[j] as u32, (v - m) / sd));
                        if !model.edges[j].is_empty() {
                            r.push((
                                (model.offsets[j] + 1 + bin_of(&model.edges[j], v)) as u32,
                                1.0,
                            ));
                        }
                    }
                    None => {
                        let k = v as usize;
                        if k < model.offsets[j + 1] - model.offsets[j] {
                            r.push(((model.offsets[j] + k) as u32, 1.0));
                        }
                    }
                }
            }
            r
        })
        .collect();
    Ok((model, rows, dim))
}

/// Fits the baseline on row-major encoded rows.
pub fn train(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    params: &LinearParams,
) -> Result<LinearModel> {
    if objective == Objective::Multiclass {
        return Err(Error::InvalidParams(
            "a multiclass target trains with train_multiclass".into(),
        ));
    }
    let n = y.len();
    let (mut model, rows, dim) = design(specs, x, n, objective)?;
    let l2 = params.l2;
    let objective_fn = |w: &[f64], g: &mut [f64]| -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let bias = w[dim];
        let mut loss = 0.0;
        for (i, r) in rows.iter().enumerate() {
            let mut z = bias;
            for &(k, v) in r {
                z += w[k as usize] * v;
            }
            let d = match objective {
                Objective::Binary => {
                    // Numerically stable log(1 + e^z) − y z.
                    loss += if z > 0.0 {
                        z + (-z).exp().ln_1p()
                    } else {
                        z.exp().ln_1p()
                    } - y[i] * z;
                    crate::sigmoid(z) - y[i]
                }
                Objective::Regression | Objective::Multiclass => {
                    let e = z - y[i];
                    loss += 0.5 * e * e;
                    e
                }
            };
            for &(k, v) in r {
                g[k as usize] += d * v;
            }
            g[dim] += d;
        }
        let nn = n as f64;
        let mut reg = 0.0;
        for k in 0..dim {
            g[k] = g[k] / nn + l2 * w[k];
            reg += 0.5 * l2 * w[k] * w[k];
        }
        g[dim] /= nn;
        loss / nn + reg
    };
    let mut w0 = vec![0.0; dim + 1];
    w0[dim] = match objective {
        Objective::Binary => {
            let p = (y.iter().sum::<f64>() / n as f64).clamp(1e-6, 1.0 - 1e-6);
            (p / (1.0 - p)).ln()
        }
        Objective::Regression | Objective::Multiclass => y.iter().sum::<f64>() / n as f64,
    };
    let w = lbfgs(objective_fn, w0, params.max_iter);
    model.bias = w[dim];
    model.weights = w[..dim].to_vec();
    Ok(model)
}

/// Fits a multinomial logistic regression (softmax over `k` classes, L2 on the weights) on the same encoding as
/// the binary baseline. `y` holds class indices. Returns one linear model per class; their margins' softmax is
/// the probability.
pub fn train_multiclass(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    k: usize,
    params: &LinearParams,
) -> Result<Vec<LinearModel>> {
    let n = y.len();
    let (template, rows, dim) = design(specs, x, n, Objective::Multiclass)?;
    let stride = dim + 1;
    let l2 = params.l2;
    let labels: Vec<usize> = y.iter().map(|&c| c as usize).collect();
    if let Some(i) = labels.iter().position(|&c| c >= k) {
        return Err(Error::InvalidInput(format!(
            "row {}: class index {} is not one of 0..{k}",
            i + 1,
            labels[i]
        )));
    }
    let objective_fn = |w: &[f64], g: &mut [f64]| -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        let mut loss = 0.0;
        let mut z = vec![0.0; k];
        for (i, r) in rows.iter().enumerate() {
            for (c, zc) in z.iter_mut().enumerate() {
                let wc = &w[c * stride..(c + 1) * stride];
                let mut s = wc[dim];
                for &(j, v) in r {
                    s += wc[j as usize] * v;
                }
                *zc = s;
            }
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += lse - z[labels[i]];
            for (c, &zc) in z.iter().enumerate() {
                let d = (zc - lse).exp() - if c == labels[i] { 1.0 } else { 0.0 };
                let gc = &mut g[c * stride..(c + 1) * stride];
                for &(j, v) in r {
                    gc[j as usize] += d * v;
                }
                gc[dim] += d;
            }
        }
        let nn = n as f64;
        let mut reg = 0.0;
        for c in 0..k {
            for j in 0..stride {
                let idx = c * stride + j;
                g[idx] /= nn;
                if j < dim {
                    g[idx] += l2 * w[idx];
                    reg += 0.5 * l2 * w[idx] * w[idx];
                }
            }
        }
        loss / nn + reg
    };
    // Start from the class priors.
    let mut w0 = vec![0.0; k * stride];
    let mut count = vec![0.0f64; k];
    for &c in &labels {
        count[c] += 1.0;
    }
    for c in 0..k {
        w0[c * stride + dim] = (count[c] / n as f64).max(1e-6).ln();
    }
    let w = lbfgs(objective_fn, w0, params.max_iter);
    Ok((0..k)
        .map(|c| {
            let wc = &w[c * stride..(c + 1) * stride];
            LinearModel {
                weights: wc[..dim].to_vec(),
                bias: wc[dim],
                ..template.clone()
            }
        })
        .collect())
}

/// Index of the bin of `x` among bins split at `edges` (x ≤ edge goes left).
fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e < x)
}

/// Limited-memory BFGS with a backtracking Armijo line search.
/// Also used by `keel-guard` for its sparse logistic regression.
pub fn lbfgs(f: impl Fn(&[f64], &mut [f64]) -> f64, mut x: Vec<f64>, max_iter: usize) -> Vec<f64> {
    const M: usize = 10;
    let d = x.len();
    let mut g = vec![0.0; d];
    let mut fx = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut g_new = vec![0.0; d];
    for _ in 0..max_iter {
        let gnorm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if gnorm < 1e-7 {
            break;
        }
        // Two-loop recursion for the search direction.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            axpy(-alpha[i], &y_hist[i], &mut q);
        }
        if k > 0 {
            let gamma = dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1]);
            q.iter_mut().for_each(|v| *v *= gamma);
        } else {
            let scale = 1.0 / gnorm.max(1.0);
            q.iter_mut().for_each(|v| *v *= scale);
        }
        for i in 0..k {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            axpy(alpha[i] - beta, &s_hist[i], &mut q);
        }
        let dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let slope = dot(&g, &dir);
        if slope >= 0.0 {
            s_hist.clear();
            y_hist.clear();
            continue;
        }
        let mut step = 1.0;
        let mut x_new = x.clone();
        let mut f_new;
        loop {
            for i in 0..d {
                x_new[i] = x[i] + step * dir[i];
            }
            f_new = f(&x_new, &mut g_new);
            if f_new <= fx + 1e-4 * step * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = (0..d).map(|i| x_new[i] - x[i]).collect();
        let yv: Vec<f64> = (0..d).map(|i| g_new[i] - g[i]).collect();
        let converged = (fx - f_new).abs() < 1e-10 * fx.abs().max(1.0);
        if dot(&s, &yv) > 1e-12 {
            if s_hist.len() == M {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
        }
        x = x_new.clone();
        g.copy_from_slice(&g_new);
        fx = f_new;
        if converged {
            break;
        }
    }
    x
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_function() {
        let specs = vec![FeatureSpec {
            name: "x".into(),
            kind: FeatureKind::Numeric,
        }];
        let x: Vec<f64> = (0..200).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v + 1.0).collect();
        let m = train(
            &specs,
            &x,
            &y,
            Objective::Regression,
            &LinearParams {
                l2: 0.0,
                max_iter: 500,
            },
        )
        .unwrap();
        for (xi, yi) in x.iter().zip(&y) {
            assert!((m.predict_margin(&[*xi]) - yi).abs() < 1e-3);
        }
    }
}

/// A linear model imported from ONNX (LinearRegressor, LinearClassifier), evaluated in f32 as ONNX Runtime's
/// batched path computes it: a Scaler in front applied as `(x - offset) * scale`, then the dot product as a
/// chain of fused multiply-adds in feature order from zero (MLAS's GEMM kernel), then the intercept.
/// (ONNX Runtime's single-row path sums in another order and differs from its own batched result in the last
/// bit on about half the rows; Keel matches the batched result.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLinear {
    pub coefficients: Vec<f32>,
    pub intercept: f32,
    /// Per feature `(offset, scale)` of a Scaler before the model.
    pub scaler: Option<Vec<(f32, f32)>>,
}

impl ImportedLinear {
    /// The score of one row, in f32.
    #[inline]
    pub fn margin_f32(&self, row: &[f64]) -> f32 {
        let mut acc = 0f32;
        for (j, (&c, &x)) in self.coefficients.iter().zip(row).enumerate() {
            let mut v = x as f32;
            if let Some(s) = &self.scaler {
                let (offset, scale) = s[j];
                v = (v - offset) * scale;
            }
            acc = v.mul_add(c, acc);
        }
        acc + self.intercept
    }
}
