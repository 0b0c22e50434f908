//! The encoder path of the injection guard: a small classifier head over frozen MiniLM sentence embeddings
//! (384 dimensions, unit length), trained with candle's autograd and AdamW, and served in plain Rust.
//!
//! Head: `Linear(384 → h) → LayerNorm → GELU → Linear(h → 1)`. The layer norm is written from primitive tensor
//! operations: candle's fused `LayerNorm` has no backward pass, so a model built on it trains its other layers
//! only, silently (a test checks that every parameter tensor moves after one optimiser step).
//!
//! Training is reproducible for a seed: initial weights and batch order come from a seeded ChaCha generator,
//! and the CPU kernels reduce in a fixed order.

use candle_core::{D, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Head training settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadParams {
    pub hidden: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for HeadParams {
    fn default() -> Self {
        HeadParams {
            hidden: 128,
            epochs: 12,
            batch: 64,
            learning_rate: 2e-3,
            weight_decay: 1e-2,
            seed: 7,
        }
    }
}

/// The trained head, stored as plain vectors (row-major, PyTorch's `[out × in]` layout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Head {
    pub d_in: usize,
    pub hidden: usize,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub ln_g: Vec<f32>,
    pub ln_b: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: f32,
}

const LN_EPS: f32 = 1e-5;

fn gelu(x: f32) -> f32 {
    // The tanh approximation: what candle's `gelu` computes in training.
    0.5 * x * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

impl Head {
    /// Checks shapes (a corrupt or hand-edited artifact must not index out of bounds).
    pub fn validate(&self) -> Result<()> {
        let (d, h) = (self.d_in, self.hidden);
        let ok = d > 0
            && h > 0
            && self.w1.len() == d * h
            && self.b1.len() == h
            && self.ln_g.len() == h
            && self.ln_b.len() == h
            && self.w2.len() == h
            && self
                .w1
                .iter()
                .chain(&self.b1)
                .chain(&self.ln_g)
                .chain(&self.ln_b)
                .chain(&self.w2)
                .all(|v| v.is_finite())
            && self.b2.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Model(
                "encoder head: weight shapes do not match its sizes, or a weight is not finite"
                    .into(),
            ))
        }
    }

    /// The head's logit for one embedding.
    pub fn logit(&self, x: &[f32]) -> f32 {
        let h = self.hidden;
        let mut z: Vec<f32> = (0..h)
            .map(|j| {
                let row = &self.w1[j * self.d_in..(j + 1) * self.d_in];
                self.b1[j] + row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
            })
            .collect();
        let mean = z.iter().sum::<f32>() / h as f32;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for (j, v) in z.iter_mut().enumerate() {
            *v = gelu((*v - mean) * inv * self.ln_g[j] + self.ln_b[j]);
        }
        self.b2 + z.iter().zip(&self.w2).map(|(a, b)| a * b).sum::<f32>()
    }
}

/// The head's parameters as candle variables (training only).
pub struct HeadVars {
    pub w1: Var,
    pub b1: Var,
    pub ln_g: Var,
    pub ln_b: Var,
    pub w2: Var,
    pub b2: Var,
}

fn cerr(e: candle_core::Error) -> Error {
    Error::Model(format!("training the encoder head: {e}"))
}

impl HeadVars {
    /// Seeded initialisation (uniform ±1/√fan_in, PyTorch's `Linear` default; layer norm 1 and 0).
    pub fn init(d_in: usize, hidden: usize, seed: u64) -> Result<HeadVars> {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut uni = |n: usize, fan_in: usize| -> Vec<f32> {
            let b = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| rng.random_range(-b..b)).collect()
        };
        let dev = Device::Cpu;
        let var = |v: Vec<f32>, shape: &[usize]| -> Result<Var> {
            Var::from_tensor(&Tensor::from_vec(v, shape, &dev).map_err(cerr)?).map_err(cerr)
        };
        Ok(HeadVars {
            w1: var(uni(hidden * d_in, d_in), &[hidden, d_in])?,
            b1: var(uni(hidden, d_in), &[hidden])?,
            ln_g: var(vec![1.0; hidden], &[hidden])?,
            ln_b: var(vec![0.0; hidden], &[hidden])?,
            w2: var(uni(hidden, hidden), &[1, hidden])?,
            b2: var(uni(1, hidden), &[1])?,
        })
    }

    pub fn all(&self) -> Vec<Var> {
        vec![
            self.w1.clone(),
            self.b1.clone(),
            self.ln_g.clone(),
            self.ln_b.clone(),
            self.w2.clone(),
            self.b2.clone(),
        ]
    }

    /// Logits `[n]` for embeddings `[n × d]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let z = x
            .matmul(&self.w1.as_tensor().t()?)?
            .broadcast_add(self.b1.as_tensor())?;
        // Layer norm from differentiable primitives.
        let h = z.dim(D::Minus1)? as f64;
        let mean = (z.sum_keepdim(D::Minus1)? / h)?;
        let c = z.broadcast_sub(&mean)?;
        let var = (c.sqr()?.sum_keepdim(D::Minus1)? / h)?;
        let n = c.broadcast_div(&(var + LN_EPS as f64)?.sqrt()?)?;
        let n = n
            .broadcast_mul(self.ln_g.as_tensor())?
            .broadcast_add(self.ln_b.as_tensor())?;
        let a = n.gelu()?;
        a.matmul(&self.w2.as_tensor().t()?)?
            .broadcast_add(self.b2.as_tensor())?
            .squeeze(1)
    }

    pub fn to_head(&self) -> Result<Head> {
        let v = |t: &Var| -> Result<Vec<f32>> {
            t.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(cerr)
        };
        let (hidden, d_in) = self.w1.as_tensor().dims2().map_err(cerr)?;
        Ok(Head {
            d_in,
            hidden,
            w1: v(&self.w1)?,
            b1: v(&self.b1)?,
            ln_g: v(&self.ln_g)?,
            ln_b: v(&self.ln_b)?,
            w2: v(&self.w2)?,
            b2: v(&self.b2)?[0],
        })
    }
}

/// Weighted binary cross-entropy on logits, stable: `max(z,0) − z·y + log(1 + e^−|z|)`.
pub fn weighted_bce(z: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let l = ((z.relu()? - (z * y)?)? + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    (l * w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

fn tensors(
    x: &[&[f32]],
    y: &[bool],
    w: &[f32],
    idx: &[usize],
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let d = x[0].len();
    let mut xs = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        xs.extend_from_slice(x[i]);
    }
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(xs, (idx.len(), d), &dev)?,
        Tensor::from_vec(
            idx.iter()
                .map(|&i| if y[i] { 1.0f32 } else { 0.0 })
                .collect::<Vec<_>>(),
            idx.len(),
            &dev,
        )?,
        Tensor::from_vec(
            idx.iter().map(|&i| w[i]).collect::<Vec<_>>(),
            idx.len(),
            &dev,
        )?,
    ))
}

/// Trains the head on embeddings `x` with labels `y` and per-example weights `w`.
pub fn train_head(x: &[&[f32]], y: &[bool], w: &[f32], p: &HeadParams) -> Result<Head> {
    if x.is_empty() || x.len() != y.len() || x.len() != w.len() {
        return Err(Error::Invalid(
            "encoder head: embeddings, labels and weights must be non-empty and of one length"
                .into(),
        ));
    }
    let d = x[0].len();
    if x.iter().any(|v| v.len() != d) {
        return Err(Error::Invalid(
            "encoder head: embeddings differ in length".into(),
        ));
    }
    if p.hidden == 0 || p.batch == 0 || p.epochs == 0 {
        return Err(Error::Invalid(
            "encoder head: hidden, batch and epochs must be positive".into(),
        ));
    }
    let vars = HeadVars::init(d, p.hidden, p.seed)?;
    let mut opt = AdamW::new(
        vars.all(),
        ParamsAdamW {
            lr: p.learning_rate,
            weight_decay: p.weight_decay,
            ..Default::default()
        },
    )
    .map_err(cerr)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(p.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..x.len()).collect();
    let steps = p.epochs * x.len().div_ceil(p.batch);
    let mut step = 0usize;
    for _ in 0..p.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(p.batch) {
            // Cosine decay to a tenth of the rate.
            let t = step as f64 / steps.max(1) as f64;
            opt.set_learning_rate(
                p.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())),
            );
            let (xb, yb, wb) = tensors(x, y, w, chunk).map_err(cerr)?;
            let loss = weighted_bce(&vars.forward(&xb).map_err(cerr)?, &yb, &wb).map_err(cerr)?;
            opt.backward_step(&loss).map_err(cerr)?;
            step += 1;
        }
    }
    let head = vars.to_head()?;
    head.validate()?;
    Ok(head)
}

/// A logistic model over a few scores (stacking and Platt calibration in one): `sigmoid(w·x + b)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Logistic {
    pub w: Vec<f32>,
    pub b: f32,
}

impl Logistic {
    pub fn prob(&self, x: &[f32]) -> f32 {
        let z = self.b + self.w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }

    /// Fits by L-BFGS on the weighted log-loss with a light L2 penalty (weights only).
    pub fn fit(x: &[Vec<f32>], y: &[bool], w: &[f32]) -> Logistic {
        let k = x.first().map_or(0, Vec::len);
        let total: f64 = w.iter().map(|&v| v as f64).sum::<f64>().max(1e-12);
        let f = |p: &[f64], g: &mut [f64]| -> f64 {
            g.iter_mut().for_each(|v| *v = 0.0);
            let mut loss = 0.0;
            for ((xi, &yi), &wi) in x.iter().zip(y).zip(w) {
                let wi = wi as f64 / total;
                let z = p[k] + xi.iter().zip(p).map(|(a, b)| *a as f64 * b).sum::<f64>();
                let yv = if yi { 1.0 } else { 0.0 };
                loss += wi
                    * (if z > 0.0 {
                        z + (-z).exp().ln_1p()
                    } else {
                        z.exp().ln_1p()
                    } - yv * z);
                let d = wi * (1.0 / (1.0 + (-z).exp()) - yv);
                for j in 0..k {
                    g[j] += d * xi[j] as f64;
                }
                g[k] += d;
            }
            for j in 0..k {
                loss += 0.5e-4 * p[j] * p[j];
                g[j] += 1e-4 * p[j];
            }
            loss
        };
        let p = keel_ml::linear::lbfgs(f, vec![0.0; k + 1], 200);
        Logistic {
            w: p[..k].iter().map(|&v| v as f32).collect(),
            b: p[k] as f32,
        }
    }
}

/// Logit of a probability, clamped away from 0 and 1.
pub fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// Expected calibration error over ten equal-width probability bins, and the Brier score.
pub fn calibration_error(probs: &[f32], labels: &[bool]) -> (f64, f64) {
    let mut bins = [(0.0f64, 0.0f64, 0usize); 10];
    let mut brier = 0.0;
    for (&p, &l) in probs.iter().zip(labels) {
        let y = if l { 1.0 } else { 0.0 };
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += p as f64;
        bins[b].1 += y;
        bins[b].2 += 1;
        brier += (p as f64 - y).powi(2);
    }
    let n = probs.len().max(1) as f64;
    let ece = bins
        .iter()
        .filter(|b| b.2 > 0)
        .map(|b| (b.0 - b.1).abs() / n)
        .sum();
    (ece, brier / n)
}

/// Sample weights that give each (corpus, label) group the same total weight (capped so a group of a
/// handful of rows does not dominate): corpora of very different sizes count alike.
pub fn balanced_weights(groups: &[(usize, bool)]) -> Vec<f32> {
    let mut counts = std::collections::HashMap::<(usize, bool), usize>::new();
    for g in groups {
        *counts.entry(*g).or_default() += 1;
    }
    let mean = groups.len() as f64 / counts.len().max(1) as f64;
    groups
        .iter()
        .map(|g| (mean / counts[g] as f64).clamp(0.2, 5.0) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, d: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<bool>) {
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let label = i % 2 == 0;
            let v: Vec<f32> = (0..d)
                .map(|j| rng.random_range(-1.0f32..1.0) + if label && j < 4 { 0.8 } else { 0.0 })
                .collect();
            x.push(v);
            y.push(label);
        }
        (x, y)
    }

    #[test]
    fn one_optimiser_step_changes_every_parameter_tensor() {
        let (x, y) = toy(32, 16, 1);
        let refs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
        let w = vec![1.0f32; 32];
        let vars = HeadVars::init(16, 8, 3).unwrap();
        let before: Vec<Vec<f32>> = vars
            .all()
            .iter()
            .map(|v| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect();
        let mut opt = AdamW::new(vars.all(), ParamsAdamW::default()).unwrap();
        let idx: Vec<usize> = (0..32).collect();
        let (xb, yb, wb) = tensors(&refs, &y, &w, &idx).unwrap();
        let loss = weighted_bce(&vars.forward(&xb).unwrap(), &yb, &wb).unwrap();
        // Every parameter gets a gradient, and the step moves every tensor.
        let grads = loss.backward().unwrap();
        for (i, v) in vars.all().iter().enumerate() {
            assert!(
                grads.get(v.as_tensor()).is_some(),
                "parameter {i} has no gradient"
            );
        }
        opt.step(&grads).unwrap();
        for (i, (v, b)) in vars.all().iter().zip(&before).enumerate() {
            let after = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(
                after.iter().zip(b).any(|(a, b)| a != b),
                "parameter tensor {i} did not change after one step"
            );
        }
    }

    #[test]
    fn the_head_learns_and_rust_inference_matches_candle() {
        let (x, y) = toy(400, 16, 2);
        let refs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
        let w = vec![1.0f32; x.len()];
        let p = HeadParams {
            hidden: 8,
            epochs: 20,
            ..Default::default()
        };
        let head = train_head(&refs, &y, &w, &p).unwrap();
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(v, l)| (head.logit(v) > 0.0) == **l)
            .count();
        assert!(correct > 360, "{correct} of 400");
        // Same seed, same bytes.
        let again = train_head(&refs, &y, &w, &p).unwrap();
        assert_eq!(head, again);
        let other = train_head(&refs, &y, &w, &HeadParams { seed: 8, ..p }).unwrap();
        assert_ne!(head, other);
        // The plain-Rust forward pass is the trained network.
        let vars = HeadVars {
            w1: Var::from_tensor(
                &Tensor::from_vec(head.w1.clone(), (8, 16), &Device::Cpu).unwrap(),
            )
            .unwrap(),
            b1: Var::from_tensor(&Tensor::from_vec(head.b1.clone(), 8, &Device::Cpu).unwrap())
                .unwrap(),
            ln_g: Var::from_tensor(&Tensor::from_vec(head.ln_g.clone(), 8, &Device::Cpu).unwrap())
                .unwrap(),
            ln_b: Var::from_tensor(&Tensor::from_vec(head.ln_b.clone(), 8, &Device::Cpu).unwrap())
                .unwrap(),
            w2: Var::from_tensor(&Tensor::from_vec(head.w2.clone(), (1, 8), &Device::Cpu).unwrap())
                .unwrap(),
            b2: Var::from_tensor(&Tensor::from_vec(vec![head.b2], 1, &Device::Cpu).unwrap())
                .unwrap(),
        };
        let xt = Tensor::from_vec(x[..10].concat(), (10, 16), &Device::Cpu).unwrap();
        let z = vars.forward(&xt).unwrap().to_vec1::<f32>().unwrap();
        for (i, zc) in z.iter().enumerate() {
            assert!(
                (head.logit(&x[i]) - zc).abs() < 1e-4,
                "{} vs {zc}",
                head.logit(&x[i])
            );
        }
    }

    #[test]
    fn logistic_calibration_fits_held_out_data() {
        // Scores whose true probability is sigmoid(2s - 1): Platt scaling recovers it.
        use rand::Rng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let gen_ = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for _ in 0..n {
                let s: f32 = rng.random_range(-3.0..3.0);
                let p = 1.0 / (1.0 + (-(2.0 * s - 1.0)).exp());
                x.push(vec![s]);
                y.push(rng.random_range(0.0f32..1.0) < p);
            }
            (x, y)
        };
        let (xf, yf) = gen_(&mut rng, 4000);
        let (xh, yh) = gen_(&mut rng, 4000);
        let m = Logistic::fit(&xf, &yf, &vec![1.0; xf.len()]);
        assert!(
            (m.w[0] - 2.0).abs() < 0.25 && (m.b + 1.0).abs() < 0.25,
            "{m:?}"
        );
        let probs: Vec<f32> = xh.iter().map(|x| m.prob(x)).collect();
        let (ece, _) = calibration_error(&probs, &yh);
        assert!(ece < 0.03, "held-out ECE {ece}");
        // An uncalibrated score (probability = the raw sigmoid of 5s) is visibly worse.
        let raw: Vec<f32> = xh
            .iter()
            .map(|x| 1.0 / (1.0 + (-5.0 * x[0]).exp()))
            .collect();
        assert!(calibration_error(&raw, &yh).0 > ece + 0.03);
    }
}
