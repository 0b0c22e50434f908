//! Keel's histogram gradient-boosted decision trees, in the manner of LightGBM: features are binned once,
//! trees grow leaf-wise (best gain first) from gradient/hessian histograms with the sibling-subtraction trick,
//! categorical features get many-vs-many splits (categories ordered by gradient statistics), missing values learn
//! their direction. Bins are kept row-major for histograms (LightGBM's row-wise layout) and column-major for
//! partitions (branch-free). Work over many rows is cut into blocks of 4,096 rows (8,192 from a million rows)
//! that `num_threads` threads share: a large leaf's histogram is the sum, in block order, of its blocks' partial
//! histograms; a large leaf's partition joins its blocks' left and right parts in block order; gradients are
//! computed per block; a multiclass round's class trees grow at once; split search may share features. The
//! boosting loop runs on a thread of the training pool whose other workers stay awake meanwhile, so shared work
//! starts at once. A seed gives bit-identical trees whatever the thread count. The result is compiled into
//! Keel's [`Tree`] layout.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::binning::BinMapper;
use crate::features::{FeatureKind, FeatureSpec};
use crate::tree::{
    FLAG_CATEGORICAL, FLAG_DEFAULT_LEFT, FLAG_LEFT_LEAF, FLAG_RIGHT_LEAF, Node, Tree,
};
use crate::{Error, Objective, Result};

const EPSILON: f64 = 1e-15;

/// How classes are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every row counts once.
    #[default]
    None,
    /// Positives and negatives weigh inversely to their frequency.
    Balanced,
    /// Positive rows weigh this much; negatives weigh 1.
    Positive(f64),
}

/// Training parameters. Defaults follow LightGBM's, with 300 trees at learning rate 0.05.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbdtParams {
    pub n_trees: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    /// Maximum depth; 0 means unlimited.
    pub max_depth: usize,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian_in_leaf: f64,
    /// L1 regularisation of leaf values (LightGBM's `lambda_l1`).
    pub lambda_l1: f64,
    pub lambda_l2: f64,
    pub min_gain_to_split: f64,
    pub max_bins: usize,
    /// Categorical features with at most this many categories get one-vs-rest splits.
    pub max_cat_to_onehot: usize,
    /// At most this many categories go to the left side of a categorical split.
    pub max_cat_threshold: usize,
    /// Extra L2 regularisation on categorical splits.
    pub cat_l2: f64,
    /// Smoothing of the per-category gradient ratio; categories with fewer rows are ignored.
    pub cat_smooth: f64,
    /// Minimum rows per group of categories on each side of a categorical split.
    pub min_data_per_group: usize,
    /// Fraction of features considered for each tree.
    pub feature_fraction: f64,
    /// Fraction of rows used for each tree.
    pub bagging_fraction: f64,
    /// Stop when the validation loss has not improved for this many trees (0 = no early stopping).
    pub early_stopping_rounds: usize,
    pub class_weight: ClassWeight,
    /// The loss of a regression (ignored for classification).
    pub loss: Loss,
    /// Training threads (0: every core). The trees are identical for a seed whatever the count. Default 1 for
    /// library callers and server jobs, which share the machine with serving (idle training threads spin while a
    /// training runs); `keel train` uses every core.
    pub num_threads: usize,
    /// Monotone constraints by feature name: `1` the prediction never decreases as the feature grows, `-1` it
    /// never increases (numeric features only; LightGBM's basic method).
    pub monotone_constraints: std::collections::BTreeMap<String, i8>,
    pub seed: u64,
}

/// The loss a regression minimises, LightGBM's regression objectives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Squared error: the mean.
    #[default]
    L2,
    /// Absolute error: the median (leaves refit to the median residual).
    L1,
    /// Squared within `delta` of the target, absolute beyond it.
    Huber { delta: f64 },
    /// Poisson deviance on a log link: counts.
    Poisson,
    /// Gamma deviance on a log link: positive, right-skewed amounts.
    Gamma,
    /// Tweedie deviance on a log link, `1 < variance_power < 2`: zeros and positive amounts.
    Tweedie { variance_power: f64 },
    /// Pinball loss: the `alpha` quantile (leaves refit to the quantile of the residuals).
    Quantile { alpha: f64 },
}

/// LightGBM's `poisson_max_delta_step`: the Poisson hessian is taken at `score + 0.7`, which keeps early
/// steps from overshooting on a log link.
const POISSON_MAX_DELTA_STEP: f64 = 0.7;

impl Loss {
    /// The name LightGBM gives the objective.
    pub fn name(self) -> &'static str {
        match self {
            Loss::L2 => "l2",
            Loss::L1 => "l1",
            Loss::Huber { .. } => "huber",
            Loss::Poisson => "poisson",
            Loss::Gamma => "gamma",
            Loss::Tweedie { .. } => "tweedie",
            Loss::Quantile { .. } => "quantile",
        }
    }

    /// Whether the model's raw score is the log of its prediction.
    pub fn log_link(self) -> bool {
        matches!(self, Loss::Poisson | Loss::Gamma | Loss::Tweedie { .. })
    }

    /// The quantile leaves are refit to (L1: the median).
    fn renew_alpha(self) -> Option<f64> {
        match self {
            Loss::L1 => Some(0.5),
            Loss::Quantile { alpha } => Some(alpha),
            _ => None,
        }
    }

    fn validate(self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidParams(m));
        match self {
            Loss::Huber { delta } if !(delta > 0.0 && delta.is_finite()) => bad(format!(
                "huber delta must be a positive number, got {delta}"
            )),
            Loss::Tweedie { variance_power } if !(variance_power > 1.0 && variance_power < 2.0) => {
                bad(format!(
                    "tweedie variance_power must be in (1, 2), got {variance_power}"
                ))
            }
            Loss::Quantile { alpha } if !(alpha > 0.0 && alpha < 1.0) => {
                bad(format!("quantile alpha must be in (0, 1), got {alpha}"))
            }
            _ => Ok(()),
        }
    }

    /// Checks the labels the loss needs: counts and Tweedie amounts non-negative with a positive mean, Gamma
    /// amounts positive. Names the first bad row (1-based).
    pub fn check_labels(self, y: &[f64]) -> Result<()> {
        let first = |pred: &dyn Fn(f64) -> bool| y.iter().position(|v| pred(*v));
        let (bad_row, need) = match self {
            Loss::Poisson | Loss::Tweedie { .. } => (first(&|v| v < 0.0), "non-negative"),
            Loss::Gamma => (first(&|v| v <= 0.0), "positive"),
            _ => (None, ""),
        };
        if let Some(i) = bad_row {
            return Err(Error::InvalidInput(format!(
                "row {}: the {} loss needs {need} targets, found {}",
                i + 1,
                self.name(),
                y[i]
            )));
        }
        if self.log_link() && y.iter().sum::<f64>() <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "the {} loss needs a positive mean target (every target is 0)",
                self.name()
            )));
        }
        Ok(())
    }

    /// Mean loss of raw scores `s` against `y`: the deviance (Poisson, Gamma, Tweedie), the pinball, Huber,
    /// absolute or squared error. What early stopping watches.
    pub fn mean_loss(self, y: &[f64], s: &[f64]) -> f64 {
        let n = y.len().max(1) as f64;
        let total: f64 = y
            .iter()
            .zip(s)
            .map(|(&y, &s)| match self {
                Loss::L2 => (s - y).powi(2),
                Loss::L1 => (s - y).abs(),
                Loss::Huber { delta } => {
                    let d = (s - y).abs();
                    if d <= delta {
                        0.5 * d * d
                    } else {
                        delta * (d - 0.5 * delta)
                    }
                }
                Loss::Quantile { alpha } => {
                    let d = y - s;
                    if d >= 0.0 {
                        alpha * d
                    } else {
                        (alpha - 1.0) * d
                    }
                }
                Loss::Poisson | Loss::Gamma | Loss::Tweedie { .. } => {
                    unit_deviance(self, y, s.exp())
                }
            })
            .sum();
        total / n
    }
}

/// The unit deviance of a log-link loss at the prediction `mu` (> 0).
pub fn unit_deviance(loss: Loss, y: f64, mu: f64) -> f64 {
    let mu = mu.max(1e-300);
    match loss {
        Loss::Poisson => {
            let a = if y > 0.0 { y * (y / mu).ln() } else { 0.0 };
            2.0 * (a - (y - mu))
        }
        Loss::Gamma => 2.0 * (-(y / mu).ln() + (y - mu) / mu),
        Loss::Tweedie { variance_power: p } => {
            let a = if y > 0.0 {
                y.powf(2.0 - p) / ((1.0 - p) * (2.0 - p))
            } else {
                0.0
            };
            2.0 * (a - y * mu.powf(1.0 - p) / (1.0 - p) + mu.powf(2.0 - p) / (2.0 - p))
        }
        _ => (y - mu).powi(2),
    }
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            n_trees: 300,
            learning_rate: 0.05,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_bins: 255,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_l2: 10.0,
            cat_smooth: 10.0,
            min_data_per_group: 100,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            early_stopping_rounds: 0,
            class_weight: ClassWeight::None,
            loss: Loss::L2,
            monotone_constraints: Default::default(),
            num_threads: 1,
            seed: 0,
        }
    }
}

impl GbdtParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidParams(m.to_string()));
        if self.n_trees == 0 {
            return bad("n_trees must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate must be a positive number");
        }
        if self.num_leaves < 2 {
            return bad("num_leaves must be at least 2");
        }
        if !(2..=256).contains(&self.max_bins) {
            return bad("max_bins must be between 2 and 256");
        }
        if !(self.feature_fraction > 0.0 && self.feature_fraction <= 1.0) {
            return bad("feature_fraction must be in (0, 1]");
        }
        if !(self.bagging_fraction > 0.0 && self.bagging_fraction <= 1.0) {
            return bad("bagging_fraction must be in (0, 1]");
        }
        if let ClassWeight::Positive(w) = self.class_weight
            && !(w > 0.0 && w.is_finite())
        {
            return bad("positive class weight must be a positive number");
        }
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        if !non_negative(self.lambda_l1) || !non_negative(self.lambda_l2) {
            return bad("lambda_l1 and lambda_l2 must be non-negative numbers");
        }
        if !(self.min_gain_to_split >= 0.0 && self.min_gain_to_split.is_finite()) {
            return bad("min_gain_to_split must be a non-negative number");
        }
        if let Some((f, c)) = self
            .monotone_constraints
            .iter()
            .find(|(_, c)| !matches!(c, -1..=1))
        {
            return Err(Error::InvalidParams(format!(
                "monotone constraint {c} on '{f}': use 1 (increasing), -1 (decreasing) or 0"
            )));
        }
        if self.min_data_in_leaf == 0 {
            return bad("min_data_in_leaf must be at least 1");
        }
        self.loss.validate()
    }
}

/// A trained boosted ensemble in Keel's compiled layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ensemble {
    pub objective: Objective,
    /// Raw score before any tree (log-odds of the base rate, or the mean).
    pub init_score: f64,
    pub trees: Vec<Tree>,
    /// The inference arena, compiled from `trees` on first use (not persisted).
    #[serde(skip)]
    pub forest: std::sync::OnceLock<crate::forest::Forest>,
}

/// Equality of the persisted parts; the compiled arena is derived from them.
impl PartialEq for Ensemble {
    fn eq(&self, other: &Self) -> bool {
        self.objective == other.objective
            && self.init_score == other.init_score
            && self.trees == other.trees
    }
}

impl Ensemble {
    pub fn new(objective: Objective, init_score: f64, trees: Vec<Tree>) -> Self {
        Ensemble {
            objective,
            init_score,
            trees,
            forest: std::sync::OnceLock::new(),
        }
    }

    /// The compiled inference arena.
    pub fn forest(&self) -> &crate::forest::Forest {
        self.forest
            .get_or_init(|| crate::forest::Forest::compile(&self.trees))
    }

    /// Raw margin (log-odds for classification) of one encoded row.
    #[inline]
    pub fn predict_margin(&self, row: &[f64]) -> f64 {
        self.forest().predict(row, self.init_score)
    }

    /// The same margin, tree by tree on the node layout (the reference the arena must match bit for bit).
    pub fn predict_margin_by_tree(&self, row: &[f64]) -> f64 {
        let mut s = self.init_score;
        for t in &self.trees {
            s += t.predict(row);
        }
        s
    }

    /// The margin in f32, as XGBoost sums it: the initial score as f32, then each tree's leaf as f32, in order.
    #[inline]
    pub fn predict_margin_f32(&self, row: &[f64]) -> f32 {
        self.forest().predict_f32(row, self.init_score as f32)
    }

    /// The margin as ONNX Runtime sums a tree ensemble: leaves in f32 from zero in tree order, the initial
    /// score (the base value) added last.
    #[inline]
    pub fn predict_margin_onnx(&self, row: &[f64]) -> f32 {
        self.forest().predict_f32(row, 0.0) + self.init_score as f32
    }

    /// The same f32 margin, tree by tree on the node layout.
    pub fn predict_margin_f32_by_tree(&self, row: &[f64]) -> f32 {
        let mut s = self.init_score as f32;
        for t in &self.trees {
            s += t.predict(row) as f32;
        }
        s
    }

    /// SHAP values of one row (one per feature) and the expected value they are relative to.
    pub fn shap(&self, row: &[f64], n_features: usize) -> (Vec<f64>, f64) {
        let mut phi = vec![0.0; n_features];
        let mut expected = self.init_score;
        for t in &self.trees {
            crate::shap::tree_shap(t, row, &mut phi);
            expected += t.expected_value();
        }
        (phi, expected)
    }
}

/// What happened during training, for reports.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainLog {
    pub trees_trained: usize,
    pub best_iteration: usize,
    /// Validation loss after each tree, when early stopping was on.
    pub validation_loss: Vec<f64>,
}

/// Progress callback: called with (trees done, trees planned).
/// Called after each tree with (trees done, trees planned); returning `false` stops training with
/// [`Error::Cancelled`].
pub type Progress<'a> = &'a mut (dyn FnMut(usize, usize) -> bool + Send);

/// Trains an ensemble on row-major encoded rows `x` (`n × specs.len()`) with labels `y` (0/1 for binary
/// classification, the value for regression). `valid` is an optional early-stopping set (rows, labels).
pub fn train(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    params: &GbdtParams,
    valid: Option<(&[f64], &[f64])>,
    progress: Progress<'_>,
) -> Result<(Ensemble, TrainLog)> {
    if objective == Objective::Multiclass {
        return Err(Error::InvalidParams(
            "a multiclass target trains with train_multiclass".into(),
        ));
    }
    let (mut groups, log) = train_groups(specs, x, y, objective, 1, params, valid, progress)?;
    Ok((groups.pop().expect("one group"), log))
}

/// Trains a softmax multiclass ensemble, LightGBM's `multiclass` objective: each round grows one tree per class
/// on that class's softmax gradients. `y` holds class indices `0..n_classes`. Returns one ensemble per class.
pub fn train_multiclass(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    n_classes: usize,
    params: &GbdtParams,
    valid: Option<(&[f64], &[f64])>,
    progress: Progress<'_>,
) -> Result<(Vec<Ensemble>, TrainLog)> {
    if n_classes < 3 {
        return Err(Error::InvalidParams(format!(
            "multiclass training needs at least 3 classes, got {n_classes}"
        )));
    }
    if let Some((i, v)) = y
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.fract() == 0.0 && **v >= 0.0 && (**v as usize) < n_classes))
    {
        return Err(Error::InvalidInput(format!(
            "row {}: class index {v} is not one of 0..{n_classes}",
            i + 1
        )));
    }
    train_groups(
        specs,
        x,
        y,
        Objective::Multiclass,
        n_classes,
        params,
        valid,
        progress,
    )
}

/// The training loop for `k` score groups (1, or one per class).
#[allow(clippy::too_many_arguments)]
fn train_groups(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    k: usize,
    params: &GbdtParams,
    valid: Option<(&[f64], &[f64])>,
    progress: Progress<'_>,
) -> Result<(Vec<Ensemble>, TrainLog)> {
    params.validate()?;
    let nf = specs.len();
    let n = y.len();
    if nf == 0 {
        return Err(Error::InvalidInput("no features to train on".into()));
    }
    if n == 0 || x.len() != n * nf {
        return Err(Error::InvalidInput(format!(
            "training matrix has {} values for {n} rows and {nf} features",
            x.len()
        )));
    }

    // Bin every feature once. Numeric bins come from at most BIN_SAMPLE evenly spaced rows (LightGBM's
    // `bin_construct_sample_cnt`): sorting millions of values per feature costs more than it buys.
    let step = n.div_ceil(BIN_SAMPLE).max(1);
    let mappers: Vec<BinMapper> = specs
        .iter()
        .enumerate()
        .map(|(j, s)| match &s.kind {
            FeatureKind::Numeric | FeatureKind::Time { .. } => {
                BinMapper::numeric((0..n).step_by(step).map(|i| x[i * nf + j]), params.max_bins)
            }
            FeatureKind::Categorical { levels } => {
                let codes: Vec<u32> = (0..n)
                    .map(|i| {
                        let v = x[i * nf + j];
                        if v.is_nan() { u32::MAX } else { v as u32 }
                    })
                    .collect();
                BinMapper::categorical(&codes, levels.len(), params.max_bins)
            }
        })
        .collect();
    let mut offsets = Vec::with_capacity(nf + 1);
    let mut total_bins = 0usize;
    for m in &mappers {
        offsets.push(total_bins);
        total_bins += m.n_bins();
    }
    offsets.push(total_bins);
    // Twice: row-major for histograms (a row's bins share a cache line, and its gradient is read once for all
    // features), column-major for partitions (a split reads one feature's bytes).
    let mut bins_by_row = vec![0u8; n * nf];
    for (i, row) in bins_by_row.chunks_exact_mut(nf).enumerate() {
        for (j, b) in row.iter_mut().enumerate() {
            *b = mappers[j].bin(x[i * nf + j]) as u8;
        }
    }
    let mut bins = vec![0u8; n * nf];
    for (j, col) in bins.chunks_exact_mut(n).enumerate() {
        for (i, b) in col.iter_mut().enumerate() {
            *b = bins_by_row[i * nf + j];
        }
    }

    // Row weights and the initial scores.
    let weights = row_weights(y, objective, k, params.class_weight)?;
    let wsum: f64 = weights.iter().sum();
    let init: Vec<f64> = match objective {
        Objective::Binary => {
            let p = y.iter().zip(&weights).map(|(y, w)| y * w).sum::<f64>() / wsum;
            vec![(p / (1.0 - p)).ln()]
        }
        Objective::Regression => {
            params.loss.check_labels(y)?;
            let mean = y.iter().zip(&weights).map(|(y, w)| y * w).sum::<f64>() / wsum;
            vec![match params.loss {
                Loss::L2 | Loss::Huber { .. } => mean,
                Loss::L1 => weighted_quantile(y.iter().copied().zip(weights.iter().copied()), 0.5),
                Loss::Quantile { alpha } => {
                    weighted_quantile(y.iter().copied().zip(weights.iter().copied()), alpha)
                }
                Loss::Poisson | Loss::Gamma | Loss::Tweedie { .. } => mean.ln(),
            }]
        }
        Objective::Multiclass => {
            let mut p = vec![0.0; k];
            for (c, w) in y.iter().zip(&weights) {
                p[*c as usize] += w;
            }
            p.iter().map(|v| (v / wsum).max(1e-15).ln()).collect()
        }
    };

    let monotone: Vec<i8> = if params.monotone_constraints.values().all(|c| *c == 0) {
        Vec::new()
    } else {
        for (name, c) in &params.monotone_constraints {
            match specs.iter().find(|s| &s.name == name) {
                None => {
                    return Err(Error::InvalidParams(format!(
                        "monotone constraint on '{name}', which is not a feature"
                    )));
                }
                Some(s) if *c != 0 && matches!(s.kind, FeatureKind::Categorical { .. }) => {
                    return Err(Error::InvalidParams(format!(
                        "monotone constraint on '{name}', a categorical feature (categories have no order)"
                    )));
                }
                Some(_) => {}
            }
        }
        specs
            .iter()
            .map(|s| {
                params
                    .monotone_constraints
                    .get(&s.name)
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    };
    let threads = match params.num_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let pool = if threads > 1 {
        Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::Internal(format!("training threads: {e}")))?,
        )
    } else {
        None
    };
    let ctx = Ctx {
        nf,
        n,
        block: if n >= 1 << 20 {
            BLOCK_ROWS_LARGE
        } else {
            BLOCK_ROWS
        },
        bins: &bins,
        bins_by_row: &bins_by_row,
        mappers: &mappers,
        offsets: &offsets,
        params,
        monotone,
        pool: pool.as_ref(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    // Scores, gradients and hessians are class-major: group g's rows are `g * n .. (g + 1) * n`.
    let mut scores: Vec<f64> = init
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, n))
        .collect();
    let mut grad = vec![0.0f64; n * k];
    let mut hess = vec![0.0f64; n * k];
    let mut trees: Vec<Vec<Tree>> = (0..k).map(|_| Vec::with_capacity(params.n_trees)).collect();
    let mut log = TrainLog::default();
    let mut growers: Vec<Grower> = (0..k)
        .map(|_| Grower::new(n, total_bins, params.num_leaves))
        .collect();

    let mut valid_scores: Option<Vec<f64>> = valid.map(|(_, vy)| {
        init.iter()
            .flat_map(|&s| std::iter::repeat_n(s, vy.len()))
            .collect()
    });
    let mut best_loss = f64::INFINITY;
    let mut best_iter = 0usize;

    // The whole loop runs on a thread of the training pool, so the work it shares is handed to threads that
    // are already awake, not from outside the pool per histogram.
    let mut boost = || -> Result<()> {
        for iter in 0..params.n_trees {
            // Row by row, so blocks of rows can go to threads (single-output tasks; a row's gradient does not
            // depend on how the rows are divided).
            let block = ctx.block;
            match pool.as_ref().filter(|_| k == 1 && n >= 2 * block) {
                Some(pool) => {
                    use rayon::prelude::*;
                    pool.install(|| {
                        grad.par_chunks_mut(block)
                            .zip(hess.par_chunks_mut(block))
                            .enumerate()
                            .for_each(|(b, (g, h))| {
                                let rows = b * block..b * block + g.len();
                                gradients(
                                    objective,
                                    params.loss,
                                    1,
                                    &y[rows.clone()],
                                    &scores[rows.clone()],
                                    &weights[rows],
                                    g,
                                    h,
                                );
                            })
                    });
                }
                None => gradients(
                    objective,
                    params.loss,
                    k,
                    y,
                    &scores,
                    &weights,
                    &mut grad,
                    &mut hess,
                ),
            }

            let rows: Vec<u32> = if params.bagging_fraction < 1.0 {
                let mut r: Vec<u32> = (0..n as u32).collect();
                r.shuffle(&mut rng);
                r.truncate(((n as f64) * params.bagging_fraction).ceil() as usize);
                r.sort_unstable();
                r
            } else {
                (0..n as u32).collect()
            };
            let features: Vec<bool> = if params.feature_fraction < 1.0 {
                let kf = ((nf as f64) * params.feature_fraction).ceil().max(1.0) as usize;
                let mut idx: Vec<usize> = (0..nf).collect();
                idx.shuffle(&mut rng);
                let mut f = vec![false; nf];
                for &j in &idx[..kf] {
                    f[j] = true;
                }
                f
            } else {
                vec![true; nf]
            };

            // One tree per score group; a multiclass round's class trees are independent (each reads only its
            // class's gradients and writes only its class's scores), so the training threads grow them at once.
            let nv = valid.map_or(0, |(_, vy)| vy.len());
            let mut valid_groups: Vec<Option<&mut [f64]>> = match valid_scores.as_mut() {
                Some(vs) => vs.chunks_mut(nv.max(1)).map(Some).collect(),
                None => (0..k).map(|_| None).collect(),
            };
            let jobs: Vec<GroupJob> = growers
                .iter_mut()
                .zip(scores.chunks_mut(n))
                .zip(grad.chunks(n).zip(hess.chunks(n)))
                .zip(valid_groups.iter_mut().zip(trees.iter_mut()))
                .map(
                    |(((grower, scores), (grad, hess)), (valid, trees))| GroupJob {
                        grower,
                        scores,
                        grad,
                        hess,
                        valid,
                        trees,
                    },
                )
                .collect();
            let step = |job: GroupJob| {
                let GroupJob {
                    grower,
                    scores,
                    grad,
                    hess,
                    valid: vs,
                    trees,
                } = job;
                let mut tree = grower.grow(&ctx, rows.clone(), grad, hess, &features);
                // L1 and quantile: each leaf's value becomes the (weighted) quantile of its rows' residuals, as
                // LightGBM renews them; the gradient step only chose the splits.
                if let (Objective::Regression, Some(alpha)) = (objective, params.loss.renew_alpha())
                {
                    for (leaf, range) in grower.leaf_ranges.iter().enumerate() {
                        let rows = &grower.indices[range.0..range.1];
                        if rows.is_empty() {
                            continue;
                        }
                        let residuals = rows.iter().map(|&r| {
                            let r = r as usize;
                            (y[r] - scores[r], weights[r])
                        });
                        tree.leaf_values[leaf] =
                            weighted_quantile(residuals, alpha) * params.learning_rate;
                    }
                }
                // Update training scores: rows in the bag from the leaf partition, the others by walking the tree.
                if params.bagging_fraction < 1.0 {
                    for (i, s) in scores.iter_mut().enumerate() {
                        *s += tree.predict(&x[i * nf..(i + 1) * nf]);
                    }
                } else {
                    // Every row is in the tree: add its leaf's value, in row order (on the threads in blocks).
                    let values = &tree.leaf_values;
                    let add = |(s, l): (&mut [f64], &[AtomicU32])| {
                        for (s, l) in s.iter_mut().zip(l) {
                            *s += values[l.load(Ordering::Relaxed) as usize];
                        }
                    };
                    let pairs = scores
                        .chunks_mut(ctx.block)
                        .zip(grower.leaf_of.chunks(ctx.block));
                    match ctx.pool.filter(|_| n >= BLOCKED_BLOCKS * ctx.block) {
                        Some(pool) => {
                            use rayon::prelude::*;
                            let pairs: Vec<_> = pairs.collect();
                            pool.install(|| pairs.into_par_iter().for_each(add));
                        }
                        None => pairs.for_each(add),
                    }
                }
                if let (Some((vx, _)), Some(vs)) = (valid, vs.as_deref_mut()) {
                    for (i, s) in vs.iter_mut().enumerate() {
                        *s += tree.predict(&vx[i * nf..(i + 1) * nf]);
                    }
                }
                trees.push(tree);
            };
            match pool.as_ref().filter(|_| k > 1) {
                Some(pool) => {
                    use rayon::prelude::*;
                    pool.install(|| jobs.into_par_iter().with_max_len(1).for_each(step));
                }
                None => jobs.into_iter().for_each(step),
            }
            if let (Some((_, vy)), Some(vs)) = (valid, valid_scores.as_ref()) {
                let loss = match objective {
                    Objective::Regression => params.loss.mean_loss(vy, vs),
                    _ => crate::metrics::loss(objective, vy, vs),
                };
                log.validation_loss.push(loss);
                if loss < best_loss - 1e-12 {
                    best_loss = loss;
                    best_iter = iter + 1;
                }
            }
            if !progress(iter + 1, params.n_trees) {
                return Err(Error::Cancelled);
            }
            if valid.is_some()
                && params.early_stopping_rounds > 0
                && iter + 1 >= best_iter + params.early_stopping_rounds
            {
                break;
            }
        }
        Ok(())
    };
    match &pool {
        Some(p) => p.install(|| with_awake_workers(p.current_num_threads(), &mut boost))?,
        None => boost()?,
    }
    log.trees_trained = trees[0].len();
    if valid.is_some() && params.early_stopping_rounds > 0 && best_iter > 0 {
        for t in &mut trees {
            t.truncate(best_iter);
        }
        log.best_iteration = best_iter;
    } else {
        log.best_iteration = trees[0].len();
    }
    Ok((
        init.into_iter()
            .zip(trees)
            .map(|(s, t)| Ensemble::new(objective, s, t))
            .collect(),
        log,
    ))
}

fn row_weights(y: &[f64], objective: Objective, k: usize, cw: ClassWeight) -> Result<Vec<f64>> {
    match (objective, cw) {
        (_, ClassWeight::None) => Ok(vec![1.0; y.len()]),
        (Objective::Regression, _) => Err(Error::InvalidParams(
            "class weights apply to classification only".into(),
        )),
        (Objective::Binary, ClassWeight::Balanced) => {
            let pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
            let neg = y.len() as f64 - pos;
            let (wp, wn) = (y.len() as f64 / (2.0 * pos), y.len() as f64 / (2.0 * neg));
            Ok(y.iter().map(|&v| if v == 1.0 { wp } else { wn }).collect())
        }
        (Objective::Binary, ClassWeight::Positive(w)) => {
            Ok(y.iter().map(|&v| if v == 1.0 { w } else { 1.0 }).collect())
        }
        (Objective::Multiclass, ClassWeight::Balanced) => {
            // Each class weighs n / (k · its count), so every class carries the same total weight.
            let mut count = vec![0.0f64; k];
            for c in y {
                count[*c as usize] += 1.0;
            }
            let n = y.len() as f64;
            Ok(y
                .iter()
                .map(|c| n / (k as f64 * count[*c as usize]))
                .collect())
        }
        (Objective::Multiclass, ClassWeight::Positive(_)) => Err(Error::InvalidParams(
            "a positive-class weight needs a binary target; a multiclass target takes balanced class weights"
                .into(),
        )),
    }
}

/// The weighted `alpha` quantile of (value, weight) pairs: the smallest value whose cumulative weight reaches
/// `alpha` of the total (LightGBM's weighted percentile, without interpolation).
fn weighted_quantile(items: impl Iterator<Item = (f64, f64)>, alpha: f64) -> f64 {
    let mut v: Vec<(f64, f64)> = items.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|p| p.1).sum();
    let mut acc = 0.0;
    for (x, w) in &v {
        acc += w;
        if acc >= alpha * total {
            return *x;
        }
    }
    v[v.len() - 1].0
}

/// Gradients and hessians of the loss at the current scores (class-major for `k` groups).
#[allow(clippy::too_many_arguments)]
fn gradients(
    objective: Objective,
    loss: Loss,
    k: usize,
    y: &[f64],
    s: &[f64],
    w: &[f64],
    g: &mut [f64],
    h: &mut [f64],
) {
    let n = y.len();
    match objective {
        Objective::Binary => {
            for i in 0..n {
                let p = 1.0 / (1.0 + (-s[i]).exp());
                g[i] = (p - y[i]) * w[i];
                h[i] = (p * (1.0 - p)).max(1e-16) * w[i];
            }
        }
        Objective::Regression => {
            for i in 0..n {
                let (gi, hi) = match loss {
                    Loss::L2 => (s[i] - y[i], 1.0),
                    Loss::L1 => ((s[i] - y[i]).signum(), 1.0),
                    Loss::Huber { delta } => ((s[i] - y[i]).clamp(-delta, delta), 1.0),
                    Loss::Quantile { alpha } => (
                        if s[i] - y[i] >= 0.0 {
                            1.0 - alpha
                        } else {
                            -alpha
                        },
                        1.0,
                    ),
                    Loss::Poisson => (s[i].exp() - y[i], (s[i] + POISSON_MAX_DELTA_STEP).exp()),
                    Loss::Gamma => {
                        let e = y[i] * (-s[i]).exp();
                        (1.0 - e, e.max(1e-16))
                    }
                    Loss::Tweedie {
                        variance_power: rho,
                    } => {
                        let a = ((1.0 - rho) * s[i]).exp();
                        let b = ((2.0 - rho) * s[i]).exp();
                        (
                            -y[i] * a + b,
                            (-y[i] * (1.0 - rho) * a + (2.0 - rho) * b).max(1e-16),
                        )
                    }
                };
                g[i] = gi * w[i];
                h[i] = hi * w[i];
            }
        }
        Objective::Multiclass => {
            // LightGBM's softmax gradients, with its hessian factor k / (k − 1).
            let factor = k as f64 / (k as f64 - 1.0);
            let mut p = vec![0.0; k];
            for i in 0..n {
                for (c, v) in p.iter_mut().enumerate() {
                    *v = s[c * n + i];
                }
                crate::softmax(&mut p);
                let label = y[i] as usize;
                for (c, &pc) in p.iter().enumerate() {
                    let target = if c == label { 1.0 } else { 0.0 };
                    g[c * n + i] = (pc - target) * w[i];
                    h[c * n + i] = (factor * pc * (1.0 - pc)).max(1e-16) * w[i];
                }
            }
        }
    }
}

/// Runs `work` on the current pool thread while the pool's other `threads - 1` workers stay awake, taking the
/// blocks `work` shares as soon as they are queued (OpenMP's active wait, which LightGBM relies on): a sleeping
/// worker takes tens of microseconds to wake, longer than a medium leaf's histogram block takes to build.
fn with_awake_workers<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    rayon::scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| {
                started.fetch_add(1, Ordering::AcqRel);
                while !stop.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Wait (without taking work, so this thread never runs a spinner itself) until the other workers hold
        // the spinners; then they are out of every queue.
        while started.load(Ordering::Acquire) < threads - 1 {
            std::hint::spin_loop();
        }
        let out = work();
        stop.store(true, Ordering::Release);
        out
    })
}

/// One score group's share of a boosting round: its grower, scores, gradients, validation scores and trees.
struct GroupJob<'a, 'v> {
    grower: &'a mut Grower,
    scores: &'a mut [f64],
    grad: &'a [f64],
    hess: &'a [f64],
    valid: &'a mut Option<&'v mut [f64]>,
    trees: &'a mut Vec<Tree>,
}

struct Ctx<'a> {
    nf: usize,
    /// Training rows.
    n: usize,
    /// Rows per block of shared work (from the data's size alone, so sums never depend on the thread count).
    block: usize,
    /// Column-major bins (`bins[feature * n + row]`).
    bins: &'a [u8],
    /// Row-major bins (`bins_by_row[row * nf + feature]`).
    bins_by_row: &'a [u8],
    mappers: &'a [BinMapper],
    offsets: &'a [usize],
    params: &'a GbdtParams,
    /// Per feature: 1, -1 or 0; empty when the model has no monotone constraints (the unconstrained path,
    /// bit for bit what it was).
    monotone: Vec<i8>,
    /// The training's own threads (absent: sequential).
    pool: Option<&'a rayon::ThreadPool>,
}

/// A split candidate for one leaf.
#[derive(Clone)]
struct Split {
    feature: usize,
    gain: f64,
    /// `go_left[bin]` for the split feature's bins.
    go_left: Vec<bool>,
    threshold_bin: usize,
    categorical: bool,
    default_left: bool,
    left_g: f64,
    left_h: f64,
    /// The children's outputs (before the learning rate), for monotone bounds.
    left_out: f64,
    right_out: f64,
}

struct Leaf {
    start: usize,
    end: usize,
    sum_g: f64,
    sum_h: f64,
    depth: usize,
    hist: Vec<[f64; 2]>,
    best: Option<Split>,
    /// Where this leaf hangs: (node index, is left child). `None` for the root.
    parent: Option<(usize, bool)>,
    /// Bounds on this leaf's output from monotone splits above it (±∞ without constraints).
    min_out: f64,
    max_out: f64,
}

struct Grower {
    indices: Vec<u32>,
    scratch: Vec<u32>,
    /// Each training row's leaf in the tree being grown (rows are disjoint per leaf, so the partition's blocks
    /// write them from the threads).
    leaf_of: Vec<AtomicU32>,
    leaf_ranges: Vec<(usize, usize)>,
    spare_hists: Vec<Vec<[f64; 2]>>,
    total_bins: usize,
}

impl Grower {
    fn new(n: usize, total_bins: usize, num_leaves: usize) -> Self {
        Grower {
            indices: Vec::with_capacity(n),
            scratch: vec![0; n],
            leaf_of: (0..n).map(|_| AtomicU32::new(0)).collect(),
            leaf_ranges: Vec::with_capacity(num_leaves),
            spare_hists: Vec::new(),
            total_bins,
        }
    }

    fn take_hist(&mut self) -> Vec<[f64; 2]> {
        match self.spare_hists.pop() {
            Some(mut h) => {
                h.iter_mut().for_each(|e| *e = [0.0; 2]);
                h
            }
            None => vec![[0.0; 2]; self.total_bins],
        }
    }

    fn grow(
        &mut self,
        ctx: &Ctx,
        rows: Vec<u32>,
        grad: &[f64],
        hess: &[f64],
        features: &[bool],
    ) -> Tree {
        let p = ctx.params;
        self.indices = rows;
        let n = self.indices.len();
        // Every row starts in the root (leaf 0).
        let reset = |c: &[AtomicU32]| c.iter().for_each(|a| a.store(0, Ordering::Relaxed));
        match ctx.pool.filter(|_| n >= BLOCKED_BLOCKS * ctx.block) {
            Some(pool) if n == ctx.n => {
                use rayon::prelude::*;
                pool.install(|| self.leaf_of.par_chunks(ctx.block).for_each(reset));
            }
            _ if n == ctx.n => reset(&self.leaf_of),
            _ => self
                .indices
                .iter()
                .for_each(|&r| self.leaf_of[r as usize].store(0, Ordering::Relaxed)),
        }
        let mut root_hist = self.take_hist();
        build_hist(&mut root_hist, ctx, &self.indices, grad, hess);
        let (mut sg, mut sh) = (0.0, 0.0);
        for &r in &self.indices {
            sg += grad[r as usize];
            sh += hess[r as usize];
        }
        let mut leaves = vec![Leaf {
            start: 0,
            end: n,
            sum_g: sg,
            sum_h: sh,
            depth: 0,
            hist: root_hist,
            best: None,
            parent: None,
            min_out: f64::NEG_INFINITY,
            max_out: f64::INFINITY,
        }];
        leaves[0].best = find_best_split(ctx, &leaves[0], features);
        let mut nodes: Vec<Node> = Vec::new();
        let mut node_splits: Vec<(usize, Vec<bool>)> = Vec::new();

        while leaves.len() < p.num_leaves {
            // The leaf with the best positive gain.
            let mut best: Option<(usize, f64)> = None;
            for (i, l) in leaves.iter().enumerate() {
                if let Some(s) = &l.best
                    && s.gain > p.min_gain_to_split
                    && (p.max_depth == 0 || l.depth < p.max_depth)
                    && best.is_none_or(|(_, g)| s.gain > g)
                {
                    best = Some((i, s.gain));
                }
            }
            let Some((li, _)) = best else { break };
            let split = leaves[li].best.take().expect("best split present");
            let (start, end) = (leaves[li].start, leaves[li].end);

            // Stable partition of the leaf's rows, without branches (the direction of a row is a coin flip
            // to the branch predictor): each row is written to both sides and only its side's count moves.
            let f = split.feature;
            let col = &ctx.bins[f * ctx.n..(f + 1) * ctx.n];
            let mut go = [false; 256];
            go[..split.go_left.len()].copy_from_slice(&split.go_left);
            let nl = partition(
                &mut self.indices[start..end],
                &mut self.scratch[..end - start],
                Side {
                    col,
                    go: &go,
                    leaf_of: &self.leaf_of,
                    ids: [leaves.len() as u32, li as u32],
                },
                ctx.pool,
                ctx.block,
            );
            let nr = end - start - nl;
            let mid = start + nl;

            // New internal node replaces the leaf in its parent.
            let node_idx = nodes.len();
            let parent_sum_g = leaves[li].sum_g;
            let parent_sum_h = leaves[li].sum_h;
            let mut flags = 0u8;
            if split.categorical {
                flags |= FLAG_CATEGORICAL;
            }
            if split.default_left {
                flags |= FLAG_DEFAULT_LEFT;
            }
            nodes.push(Node {
                threshold: 0.0,
                cover: (end - start) as f64,
                feature: f as u32,
                left: li as u32,
                right: leaves.len() as u32,
                cat_offset: 0,
                cat_words: 0,
                flags: flags | FLAG_LEFT_LEAF | FLAG_RIGHT_LEAF,
            });
            node_splits.push((split.threshold_bin, split.go_left.clone()));
            if let Some((pn, is_left)) = leaves[li].parent {
                let pnode = &mut nodes[pn];
                if is_left {
                    pnode.left = node_idx as u32;
                    pnode.flags &= !FLAG_LEFT_LEAF;
                } else {
                    pnode.right = node_idx as u32;
                    pnode.flags &= !FLAG_RIGHT_LEAF;
                }
            }

            // Histograms: build the smaller child, subtract for the larger.
            let mut small_hist = self.take_hist();
            let left_smaller = nl <= nr;
            let small_rows = if left_smaller {
                &self.indices[start..mid]
            } else {
                &self.indices[mid..end]
            };
            build_hist(&mut small_hist, ctx, small_rows, grad, hess);
            let mut big_hist = std::mem::take(&mut leaves[li].hist);
            for (b, s) in big_hist.iter_mut().zip(&small_hist) {
                b[0] -= s[0];
                b[1] -= s[1];
            }
            let (left_hist, right_hist) = if left_smaller {
                (small_hist, big_hist)
            } else {
                (big_hist, small_hist)
            };
            let depth = leaves[li].depth + 1;
            // Children inherit the bounds; a monotone split also puts the midpoint of its outputs between them.
            let (mut l_bounds, mut r_bounds) = (
                (leaves[li].min_out, leaves[li].max_out),
                (leaves[li].min_out, leaves[li].max_out),
            );
            match ctx.monotone.get(f).copied().unwrap_or(0) {
                1 => {
                    let mid = (split.left_out + split.right_out) / 2.0;
                    l_bounds.1 = l_bounds.1.min(mid);
                    r_bounds.0 = r_bounds.0.max(mid);
                }
                -1 => {
                    let mid = (split.left_out + split.right_out) / 2.0;
                    l_bounds.0 = l_bounds.0.max(mid);
                    r_bounds.1 = r_bounds.1.min(mid);
                }
                _ => {}
            }
            let left = Leaf {
                start,
                end: mid,
                sum_g: split.left_g,
                sum_h: split.left_h,
                depth,
                hist: left_hist,
                best: None,
                parent: Some((node_idx, true)),
                min_out: l_bounds.0,
                max_out: l_bounds.1,
            };
            let right = Leaf {
                start: mid,
                end,
                sum_g: parent_sum_g - split.left_g,
                sum_h: parent_sum_h - split.left_h,
                depth,
                hist: right_hist,
                best: None,
                parent: Some((node_idx, false)),
                min_out: r_bounds.0,
                max_out: r_bounds.1,
            };
            leaves[li] = left;
            leaves.push(right);
            let ri = leaves.len() - 1;
            if leaves.len() < p.num_leaves {
                leaves[li].best = find_best_split(ctx, &leaves[li], features);
                leaves[ri].best = find_best_split(ctx, &leaves[ri], features);
            }
        }

        // Leaf outputs, covers and the row ranges the caller uses to update scores.
        self.leaf_ranges.clear();
        let mut leaf_values = Vec::with_capacity(leaves.len());
        let mut leaf_covers = Vec::with_capacity(leaves.len());
        for l in leaves.iter_mut() {
            let v = leaf_output(l.sum_g, l.sum_h, p, l.min_out, l.max_out) * p.learning_rate;
            leaf_values.push(v);
            leaf_covers.push((l.end - l.start) as f64);
            self.leaf_ranges.push((l.start, l.end));
            self.spare_hists.push(std::mem::take(&mut l.hist));
        }
        compile(ctx, nodes, node_splits, leaf_values, leaf_covers)
    }
}

/// Turns bin-level splits into raw-value decisions: numeric thresholds and level bitsets.
fn compile(
    ctx: &Ctx,
    mut nodes: Vec<Node>,
    node_splits: Vec<(usize, Vec<bool>)>,
    leaf_values: Vec<f64>,
    leaf_covers: Vec<f64>,
) -> Tree {
    let mut cat_bits = Vec::new();
    for (node, (tbin, go_left)) in nodes.iter_mut().zip(node_splits) {
        match &ctx.mappers[node.feature as usize] {
            BinMapper::Numeric { upper } => node.threshold = upper[tbin],
            BinMapper::Categorical { level_bin, .. } => {
                let words = level_bin.len().div_ceil(64).max(1);
                node.cat_offset = cat_bits.len() as u32;
                node.cat_words = words as u32;
                let mut bits = vec![0u64; words];
                for (level, &b) in level_bin.iter().enumerate() {
                    if go_left[b as usize] {
                        bits[level / 64] |= 1 << (level % 64);
                    }
                }
                cat_bits.extend(bits);
            }
        }
    }
    Tree {
        nodes,
        leaf_values,
        leaf_covers,
        cat_bits,
    }
}

/// Fewest (rows × features) a leaf must hold before its features' split search is shared among threads.
const PARALLEL_CELLS: usize = 1 << 20;

/// Rows per block of shared work (histograms, partitions, gradients).
const BLOCK_ROWS: usize = 4_096;
/// Rows per block from a million training rows (fewer partial histograms to add up).
const BLOCK_ROWS_LARGE: usize = 8_192;
/// Fewest blocks a leaf must hold before its histogram and partition are built in blocks (which threads share).
const BLOCKED_BLOCKS: usize = 2;

/// Rows sampled to place the numeric bin edges (LightGBM's default `bin_construct_sample_cnt`).
const BIN_SAMPLE: usize = 200_000;

/// How a split sends rows: the split feature's column of bins, each bin's side, and the leaf id each side's rows
/// take (`ids[0]` right, `ids[1]` left).
struct Side<'a> {
    col: &'a [u8],
    go: &'a [bool; 256],
    leaf_of: &'a [AtomicU32],
    ids: [u32; 2],
}

/// Partitions `idx` stably by `go[bin]` (left first) and returns the number of left rows; `scratch` is as
/// long as `idx`. A large range is partitioned in blocks (on the training threads when there are several) whose
/// left and right parts are then joined in block order: the same result as one pass.
fn partition(
    idx: &mut [u32],
    scratch: &mut [u32],
    side: Side,
    pool: Option<&rayon::ThreadPool>,
    block: usize,
) -> usize {
    let Side {
        col,
        go,
        leaf_of,
        ids,
    } = side;
    // Without branches (a row's side is a coin flip to the branch predictor): each row is written to both
    // sides and only its side's count moves; its leaf id becomes its side's.
    let one = |idx: &mut [u32], scratch: &mut [u32]| {
        let (mut nl, mut nr) = (0usize, 0usize);
        for k in 0..idx.len() {
            let r = idx[k];
            let left = go[col[r as usize] as usize];
            leaf_of[r as usize].store(ids[usize::from(left)], Ordering::Relaxed);
            idx[nl] = r;
            scratch[nr] = r;
            nl += usize::from(left);
            nr += usize::from(!left);
        }
        nl
    };
    let n = idx.len();
    let Some(pool) = pool.filter(|_| n >= BLOCKED_BLOCKS * block) else {
        let nl = one(idx, scratch);
        idx[nl..].copy_from_slice(&scratch[..n - nl]);
        return nl;
    };
    use rayon::prelude::*;
    let lefts: Vec<usize> = pool.install(|| {
        idx.par_chunks_mut(block)
            .zip(scratch.par_chunks_mut(block))
            .map(|(i, s)| one(i, s))
            .collect()
    });
    // Left parts forward (each moves to or before where it is), then the right parts from the scratch.
    let mut at = 0;
    for (b, &nl) in lefts.iter().enumerate() {
        idx.copy_within(b * block..b * block + nl, at);
        at += nl;
    }
    let total_left = at;
    for (b, &nl) in lefts.iter().enumerate() {
        let len = block.min(n - b * block);
        let right = &scratch[b * block..b * block + len - nl];
        idx[at..at + right.len()].copy_from_slice(right);
        at += right.len();
    }
    total_left
}

/// Builds the histogram of `rows`, row by row (LightGBM's row-wise way). A large leaf's histogram is the sum, in
/// block order, of its row blocks' partial histograms, built on the training threads when there are several;
/// the blocks depend only on the rows, so the sums are the same whatever the thread count.
fn build_hist(hist: &mut [[f64; 2]], ctx: &Ctx, rows: &[u32], grad: &[f64], hess: &[f64]) {
    let nf = ctx.nf;
    if rows.len() < BLOCKED_BLOCKS * ctx.block {
        accumulate(hist, ctx, 0..nf, rows, grad, hess);
        return;
    }
    let partial = |block: &[u32]| {
        let mut h = vec![[0.0f64; 2]; hist.len()];
        accumulate(&mut h, ctx, 0..nf, block, grad, hess);
        h
    };
    let parts: Vec<Vec<[f64; 2]>> = match ctx.pool {
        Some(pool) => {
            use rayon::prelude::*;
            pool.install(|| rows.par_chunks(ctx.block).map(partial).collect())
        }
        None => rows.chunks(ctx.block).map(partial).collect(),
    };
    for part in &parts {
        for (e, v) in hist.iter_mut().zip(part) {
            e[0] += v[0];
            e[1] += v[1];
        }
    }
}

/// Adds the rows' gradients and hessians to the bins of features `fs` (`hist` holds exactly their bins). This
/// is the hot loop of training.
fn accumulate(
    hist: &mut [[f64; 2]],
    ctx: &Ctx,
    fs: std::ops::Range<usize>,
    rows: &[u32],
    grad: &[f64],
    hess: &[f64],
) {
    let nf = ctx.nf;
    let base = ctx.offsets[fs.start];
    let offsets: Vec<usize> = ctx.offsets[fs.clone()].iter().map(|o| o - base).collect();
    for &r in rows {
        let r = r as usize;
        let gh = [grad[r], hess[r]];
        let b = &ctx.bins_by_row[r * nf + fs.start..r * nf + fs.end];
        for (bb, &off) in b.iter().zip(&offsets) {
            let e = &mut hist[off + *bb as usize];
            e[0] += gh[0];
            e[1] += gh[1];
        }
    }
}

/// LightGBM's L1 shrinkage of a gradient sum: towards zero by `l1`, never past it.
#[inline]
fn threshold_l1(g: f64, l1: f64) -> f64 {
    g.signum() * (g.abs() - l1).max(0.0)
}

/// A leaf's output before the learning rate, within its monotone bounds.
#[inline]
fn leaf_output(g: f64, h: f64, p: &GbdtParams, min_out: f64, max_out: f64) -> f64 {
    (-threshold_l1(g, p.lambda_l1) / (h + p.lambda_l2 + EPSILON)).clamp(min_out, max_out)
}

/// The gain of a leaf whose output is held at `out` (the unconstrained optimum gives [`leaf_gain`]).
#[inline]
fn gain_at(g: f64, h: f64, p: &GbdtParams, out: f64) -> f64 {
    -(2.0 * threshold_l1(g, p.lambda_l1) * out + (h + p.lambda_l2 + EPSILON) * out * out)
}

#[inline]
fn leaf_gain(g: f64, h: f64, l1: f64, l2: f64) -> f64 {
    let g = threshold_l1(g, l1);
    g * g / (h + l2 + EPSILON)
}

fn find_best_split(ctx: &Ctx, leaf: &Leaf, features: &[bool]) -> Option<Split> {
    let p = ctx.params;
    let count = (leaf.end - leaf.start) as f64;
    if count < 2.0 * p.min_data_in_leaf as f64 {
        return None;
    }
    let cnt_factor = count / leaf.sum_h.max(EPSILON);
    let candidate = |f: usize| {
        let h = &leaf.hist[ctx.offsets[f]..ctx.offsets[f + 1]];
        if ctx.mappers[f].is_categorical() {
            best_categorical(p, f, h, leaf, cnt_factor)
        } else {
            best_numeric(p, f, h, leaf, cnt_factor, &ctx.monotone)
        }
    };
    let used: Vec<usize> = (0..features.len()).filter(|&f| features[f]).collect();
    // Candidates in feature order (in parallel for large leaves), then the first of the largest gain: the same
    // choice whatever the thread count.
    let cands: Vec<Option<Split>> = match ctx
        .pool
        .filter(|_| (leaf.end - leaf.start) * used.len() >= PARALLEL_CELLS)
    {
        Some(pool) => {
            use rayon::prelude::*;
            pool.install(|| used.par_iter().map(|&f| candidate(f)).collect())
        }
        None => used.iter().map(|&f| candidate(f)).collect(),
    };
    let mut best: Option<Split> = None;
    for c in cands.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| c.gain > b.gain) {
            best = Some(c);
        }
    }
    best
}

fn best_numeric(
    p: &GbdtParams,
    f: usize,
    h: &[[f64; 2]],
    leaf: &Leaf,
    cnt_factor: f64,
    monotone: &[i8],
) -> Option<Split> {
    // With monotone constraints anywhere, outputs are held within the leaf's bounds and gains are taken at
    // those outputs; a split on a constrained feature whose children's outputs go the wrong way is skipped.
    let constrained = !monotone.is_empty();
    let mono = monotone.get(f).copied().unwrap_or(0);
    let out = |g: f64, h: f64| leaf_output(g, h, p, leaf.min_out, leaf.max_out);
    let nb = h.len();
    let miss = h[nb - 1];
    let value_bins = nb - 1;
    if value_bins < 2 {
        return None;
    }
    let l2 = p.lambda_l2;
    let parent_gain = if constrained {
        gain_at(leaf.sum_g, leaf.sum_h, p, out(leaf.sum_g, leaf.sum_h))
    } else {
        leaf_gain(leaf.sum_g, leaf.sum_h, p.lambda_l1, l2)
    };
    let total_cnt = (leaf.end - leaf.start) as f64;
    let min_cnt = p.min_data_in_leaf as f64;
    let has_missing = miss[1] > 0.0;
    let mut best: Option<(f64, usize, bool, f64, f64)> = None;
    for missing_left in [false, true] {
        if missing_left && !has_missing {
            break;
        }
        let (mut gl, mut hl) = if missing_left {
            (miss[0], miss[1])
        } else {
            (0.0, 0.0)
        };
        for (t, bin) in h.iter().enumerate().take(value_bins - 1) {
            gl += bin[0];
            hl += bin[1];
            let cl = (hl * cnt_factor).round();
            if cl < min_cnt || hl < p.min_sum_hessian_in_leaf {
                continue;
            }
            let gr = leaf.sum_g - gl;
            let hr = leaf.sum_h - hl;
            let cr = total_cnt - cl;
            if cr < min_cnt || hr < p.min_sum_hessian_in_leaf {
                break;
            }
            let gain = if constrained {
                let (ol, or) = (out(gl, hl), out(gr, hr));
                if (mono > 0 && ol > or) || (mono < 0 && ol < or) {
                    continue;
                }
                gain_at(gl, hl, p, ol) + gain_at(gr, hr, p, or) - parent_gain
            } else {
                leaf_gain(gl, hl, p.lambda_l1, l2) + leaf_gain(gr, hr, p.lambda_l1, l2)
                    - parent_gain
            };
            if best.is_none_or(|b| gain > b.0) {
                best = Some((gain, t, missing_left, gl, hl));
            }
        }
    }
    let (gain, t, missing_left, gl, hl) = best?;
    // Without missing values in training, unseen missing values follow the larger side.
    let default_left = if has_missing {
        missing_left
    } else {
        hl >= leaf.sum_h - hl
    };
    let mut go_left: Vec<bool> = (0..nb).map(|b| b <= t).collect();
    go_left[nb - 1] = default_left;
    let (gl, hl) = if !has_missing || missing_left == default_left {
        (gl, hl)
    } else {
        (gl + miss[0], hl + miss[1])
    };
    Some(Split {
        feature: f,
        gain,
        go_left,
        threshold_bin: t,
        categorical: false,
        default_left,
        left_g: gl,
        left_h: hl,
        left_out: out(gl, hl),
        right_out: out(leaf.sum_g - gl, leaf.sum_h - hl),
    })
}

fn best_categorical(
    p: &GbdtParams,
    f: usize,
    h: &[[f64; 2]],
    leaf: &Leaf,
    cnt_factor: f64,
) -> Option<Split> {
    let nb = h.len();
    let total_cnt = (leaf.end - leaf.start) as f64;
    let min_cnt = p.min_data_in_leaf as f64;
    let used: Vec<usize> = (0..nb).filter(|&b| h[b][1] > 0.0).collect();
    if used.len() < 2 {
        return None;
    }
    let mut best: Option<(f64, Vec<usize>, f64, f64)> = None;
    if used.len() <= p.max_cat_to_onehot {
        let l2 = p.lambda_l2;
        let parent_gain = leaf_gain(leaf.sum_g, leaf.sum_h, p.lambda_l1, l2);
        for &b in &used {
            let (gl, hl) = (h[b][0], h[b][1]);
            let cl = (hl * cnt_factor).round();
            let (gr, hr) = (leaf.sum_g - gl, leaf.sum_h - hl);
            let cr = total_cnt - cl;
            if cl < min_cnt
                || cr < min_cnt
                || hl < p.min_sum_hessian_in_leaf
                || hr < p.min_sum_hessian_in_leaf
            {
                continue;
            }
            let gain = leaf_gain(gl, hl, p.lambda_l1, l2) + leaf_gain(gr, hr, p.lambda_l1, l2)
                - parent_gain;
            if best.as_ref().is_none_or(|x| gain > x.0) {
                best = Some((gain, vec![b], gl, hl));
            }
        }
    } else {
        let l2 = p.lambda_l2 + p.cat_l2;
        let parent_gain = leaf_gain(leaf.sum_g, leaf.sum_h, p.lambda_l1, l2);
        let mut sorted: Vec<usize> = used
            .iter()
            .copied()
            .filter(|&b| (h[b][1] * cnt_factor).round() >= p.cat_smooth)
            .collect();
        sorted.sort_by(|&a, &b| {
            let ra = h[a][0] / (h[a][1] + p.cat_smooth);
            let rb = h[b][0] / (h[b][1] + p.cat_smooth);
            ra.total_cmp(&rb).then(a.cmp(&b))
        });
        let max_num_cat = p.max_cat_threshold.min(sorted.len().div_ceil(2));
        for reverse in [false, true] {
            let order: Vec<usize> = if reverse {
                sorted.iter().rev().copied().collect()
            } else {
                sorted.clone()
            };
            let (mut gl, mut hl) = (0.0, 0.0);
            let mut group_cnt = 0.0;
            for (i, &b) in order.iter().enumerate().take(max_num_cat) {
                gl += h[b][0];
                hl += h[b][1];
                let bc = (h[b][1] * cnt_factor).round();
                group_cnt += bc;
                let cl = (hl * cnt_factor).round();
                if cl < min_cnt || hl < p.min_sum_hessian_in_leaf {
                    continue;
                }
                let cr = total_cnt - cl;
                let (gr, hr) = (leaf.sum_g - gl, leaf.sum_h - hl);
                if cr < min_cnt
                    || cr < p.min_data_per_group as f64
                    || hr < p.min_sum_hessian_in_leaf
                {
                    break;
                }
                if group_cnt < p.min_data_per_group as f64 {
                    continue;
                }
                group_cnt = 0.0;
                let gain = leaf_gain(gl, hl, p.lambda_l1, l2) + leaf_gain(gr, hr, p.lambda_l1, l2)
                    - parent_gain;
                if best.as_ref().is_none_or(|x| gain > x.0) {
                    best = Some((gain, order[..=i].to_vec(), gl, hl));
                }
            }
        }
    }
    let (gain, left_bins, gl, hl) = best?;
    let mut go_left = vec![false; nb];
    for b in left_bins {
        go_left[b] = true;
    }
    let default_left = go_left[nb - 1];
    Some(Split {
        feature: f,
        gain,
        go_left,
        threshold_bin: 0,
        categorical: true,
        default_left,
        left_g: gl,
        left_h: hl,
        // Categorical features take no constraint; the children inherit the leaf's bounds.
        left_out: 0.0,
        right_out: 0.0,
    })
}
