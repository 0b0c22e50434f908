//! Hyperparameter search for the gradient-boosted trees: random configurations scored by k-fold
//! cross-validation, pruned by successive halving.
//!
//! Why successive halving over random configurations, not TPE: every configuration of a rung is independent
//! of the others' scores, so the search is deterministic for a seed whatever the timing, its cost is known
//! before it starts (a rung of `n` trials on `t` trees costs `n·t` trees per fold), and it spends most of the
//! budget on the configurations that look best, which is where TPE's gain comes from on budgets of tens of
//! trials. TPE's sequential model needs many more trials than a tabular user runs before it pays off.
//!
//! The default parameters are always trial 0 and are always carried to the last rung, so the outcome says by
//! how much the best configuration beats them on the same folds, or that it did not.

use crate::Objective;
use crate::Result;
use crate::features::FeatureSpec;
use crate::gbdt::{GbdtParams, Loss};
use crate::model::{Model, ModelKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What the search varies and over which ranges (inclusive; log scale where a range spans decades).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    pub num_leaves: (usize, usize),
    pub learning_rate: (f64, f64),
    pub min_data_in_leaf: (usize, usize),
    pub feature_fraction: (f64, f64),
    pub bagging_fraction: (f64, f64),
    pub lambda_l2: (f64, f64),
}

impl Default for SearchSpace {
    fn default() -> Self {
        SearchSpace {
            num_leaves: (8, 128),
            learning_rate: (0.02, 0.3),
            min_data_in_leaf: (5, 200),
            feature_fraction: (0.5, 1.0),
            bagging_fraction: (0.5, 1.0),
            lambda_l2: (1e-3, 10.0),
        }
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo.ln()..=hi.ln())).exp()
}

impl SearchSpace {
    /// One configuration: `base` with the searched parameters drawn.
    pub fn sample(&self, base: &GbdtParams, rng: &mut ChaCha8Rng) -> GbdtParams {
        let mut p = base.clone();
        let round = |x: f64, digits: i32| {
            let m = 10f64.powi(digits);
            (x * m).round() / m
        };
        p.num_leaves =
            log_uniform(rng, self.num_leaves.0 as f64, self.num_leaves.1 as f64).round() as usize;
        p.learning_rate = round(
            log_uniform(rng, self.learning_rate.0, self.learning_rate.1),
            4,
        );
        p.min_data_in_leaf = log_uniform(
            rng,
            self.min_data_in_leaf.0 as f64,
            self.min_data_in_leaf.1 as f64,
        )
        .round() as usize;
        p.feature_fraction = round(
            rng.random_range(self.feature_fraction.0..=self.feature_fraction.1),
            2,
        );
        p.bagging_fraction = round(
            rng.random_range(self.bagging_fraction.0..=self.bagging_fraction.1),
            2,
        );
        // A quarter of the configurations without L2, the rest on a log scale.
        p.lambda_l2 = if rng.random_bool(0.25) {
            0.0
        } else {
            round(log_uniform(rng, self.lambda_l2.0, self.lambda_l2.1), 4)
        };
        p
    }
}

/// How the search runs.
#[derive(Debug, Clone)]
pub struct TuneConfig {
    /// Configurations to try, the defaults (trial 0) included.
    pub trials: usize,
    pub folds: usize,
    pub seed: u64,
    /// Trees at the last rung (the base parameters' `n_trees`).
    pub max_trees: usize,
    /// Each rung keeps 1/`eta` of the trials and gives them `eta` times the trees.
    pub eta: usize,
    /// Stop starting new evaluations after this long (the result is then the best the search got to; the
    /// search is deterministic only without a time budget).
    pub time_budget: Option<std::time::Duration>,
    pub space: SearchSpace,
}

impl Default for TuneConfig {
    fn default() -> Self {
        TuneConfig {
            trials: 20,
            folds: 5,
            seed: 0,
            max_trees: 300,
            eta: 3,
            time_budget: None,
            space: SearchSpace::default(),
        }
    }
}

/// The cross-validated score of one trial at one rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungScore {
    pub trees: usize,
    /// The mean over folds, and each fold's score.
    pub mean: f64,
    pub folds: Vec<f64>,
}

impl RungScore {
    /// The standard error of the mean over folds.
    pub fn std_error(&self) -> f64 {
        let k = self.folds.len() as f64;
        if k < 2.0 {
            return 0.0;
        }
        let var = self
            .folds
            .iter()
            .map(|s| (s - self.mean).powi(2))
            .sum::<f64>()
            / (k - 1.0);
        (var / k).sqrt()
    }
}

/// One configuration and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: usize,
    pub params: GbdtParams,
    pub rungs: Vec<RungScore>,
    /// The default parameters (kept to the last rung as the reference).
    pub baseline: bool,
}

impl Trial {
    pub fn last(&self) -> Option<&RungScore> {
        self.rungs.last()
    }
}

/// The search's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneResult {
    /// `auc` (higher is better), `log_loss` or the regression loss's deviance (lower is better).
    pub metric: String,
    pub higher_is_better: bool,
    pub trials: Vec<Trial>,
    /// The best trial at the highest rung reached.
    pub best: usize,
    /// Trees per rung.
    pub rungs: Vec<usize>,
    /// Whether the time budget cut the search short.
    pub stopped_early: bool,
}

impl TuneResult {
    pub fn best_trial(&self) -> &Trial {
        &self.trials[self.best]
    }

    /// The defaults' score at the last rung, when they got there.
    pub fn baseline_score(&self) -> Option<f64> {
        let last = *self.rungs.last()?;
        self.trials
            .iter()
            .find(|t| t.baseline)
            .and_then(|t| t.rungs.iter().find(|r| r.trees == last))
            .map(|r| r.mean)
    }
}

/// What the search reports as it goes: a trial scored at a rung, with the best so far at that rung.
#[derive(Debug, Clone)]
pub struct TuneEvent {
    pub trial: usize,
    pub rung: usize,
    pub trees: usize,
    pub score: f64,
    pub best_so_far: f64,
    /// Evaluations done and planned in all.
    pub done: usize,
    pub total: usize,
}

/// Row indexes of each fold: stratified by class for classification, shuffled with `seed`.
pub fn kfold(y: &[f64], k: usize, seed: u64, stratify: bool) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, &v) in y.iter().enumerate() {
        let key = if stratify { v.to_bits() } else { 0 };
        groups.entry(key).or_default().push(i);
    }
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for (_, mut g) in groups {
        g.shuffle(&mut rng);
        for i in g {
            folds[next % k].push(i);
            next += 1;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    folds
}

/// The data and task the search scores on.
pub struct TuneData<'a> {
    pub specs: &'a [FeatureSpec],
    /// Row-major, `specs.len()` values per row.
    pub x: &'a [f64],
    pub y: &'a [f64],
    pub objective: Objective,
    pub n_classes: usize,
}

/// The metric a task is tuned on: (name, higher is better).
pub fn metric_of(objective: Objective, loss: Loss) -> (String, bool) {
    match objective {
        Objective::Binary => ("auc".into(), true),
        Objective::Multiclass => ("log_loss".into(), false),
        Objective::Regression => (crate::select::regression_metric(loss).to_string(), false),
    }
}

/// Scores `params` on `trees` trees by k-fold cross-validation.
fn cross_validate(
    data: &TuneData,
    folds: &[Vec<usize>],
    params: &GbdtParams,
    trees: usize,
) -> Result<RungScore> {
    let nf = data.specs.len();
    let mut p = params.clone();
    p.n_trees = trees;
    p.early_stopping_rounds = 0;
    let mut scores = Vec::with_capacity(folds.len());
    let mut in_fold = vec![usize::MAX; data.y.len()];
    for (f, rows) in folds.iter().enumerate() {
        for &r in rows {
            in_fold[r] = f;
        }
    }
    for (f, valid) in folds.iter().enumerate() {
        let mut tx = Vec::with_capacity((data.y.len() - valid.len()) * nf);
        let mut ty = Vec::with_capacity(data.y.len() - valid.len());
        for (r, _) in in_fold.iter().enumerate().filter(|(_, k)| **k != f) {
            tx.extend_from_slice(&data.x[r * nf..(r + 1) * nf]);
            ty.push(data.y[r]);
        }
        let vy: Vec<f64> = valid.iter().map(|&r| data.y[r]).collect();
        let mut vx = Vec::with_capacity(valid.len() * nf);
        for &r in valid {
            vx.extend_from_slice(&data.x[r * nf..(r + 1) * nf]);
        }
        let kind = match data.objective {
            Objective::Multiclass => ModelKind::GbdtMulticlass(
                crate::gbdt::train_multiclass(
                    data.specs,
                    &tx,
                    &ty,
                    data.n_classes,
                    &p,
                    None,
                    &mut |_, _| true,
                )?
                .0,
            ),
            objective => ModelKind::Gbdt(
                crate::gbdt::train(data.specs, &tx, &ty, objective, &p, None, &mut |_, _| true)?.0,
            ),
        };
        let model = Model {
            objective: data.objective,
            target: String::new(),
            class_labels: None,
            features: data.specs.to_vec(),
            kind,
            link: crate::model::Link::of_training(data.objective, p.loss),
            numerics: crate::model::Numerics::F64,
        };
        let out = model.predict_outputs_rows(&vx);
        let score = match data.objective {
            Objective::Binary => crate::metrics::roc_auc(&vy, &out).unwrap_or(0.5),
            Objective::Multiclass => {
                crate::metrics::multiclass_log_loss(&vy, &out, data.n_classes, None)
            }
            Objective::Regression => crate::metrics::regression_loss(p.loss, &vy, &out, None),
        };
        scores.push(score);
    }
    Ok(RungScore {
        trees,
        mean: scores.iter().sum::<f64>() / scores.len() as f64,
        folds: scores,
    })
}

/// Trees per rung: the last rung has `max_trees`, each earlier one `eta` times fewer (at least 10).
pub fn rung_trees(trials: usize, eta: usize, max_trees: usize) -> Vec<usize> {
    let mut n = trials.max(1);
    let mut rungs = 1;
    while n > 1 {
        n = n.div_ceil(eta);
        rungs += 1;
    }
    let mut out: Vec<usize> = (0..rungs)
        .map(|i| (max_trees / eta.pow((rungs - 1 - i) as u32)).max(10.min(max_trees)))
        .collect();
    out.dedup();
    out
}

/// Runs the search. `progress` returning false cancels it.
pub fn tune(
    data: &TuneData,
    base: &GbdtParams,
    cfg: &TuneConfig,
    progress: &mut dyn FnMut(&TuneEvent) -> bool,
) -> Result<TuneResult> {
    if cfg.folds < 2 || cfg.folds > data.y.len() {
        return Err(crate::Error::InvalidParams(format!(
            "folds must be between 2 and the number of rows ({}); got {}",
            data.y.len(),
            cfg.folds
        )));
    }
    if cfg.trials == 0 || cfg.eta < 2 {
        return Err(crate::Error::InvalidParams(
            "tuning needs at least one trial and eta of at least 2".into(),
        ));
    }
    let started = std::time::Instant::now();
    let (metric, higher) = metric_of(data.objective, base.loss);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut trials: Vec<Trial> = (0..cfg.trials)
        .map(|id| Trial {
            id,
            params: if id == 0 {
                base.clone()
            } else {
                cfg.space.sample(base, &mut rng)
            },
            rungs: vec![],
            baseline: id == 0,
        })
        .collect();
    let folds = kfold(
        data.y,
        cfg.folds,
        cfg.seed,
        data.objective.is_classification(),
    );
    let rungs = rung_trees(cfg.trials, cfg.eta, cfg.max_trees);
    // Planned evaluations: each rung's survivors (and the baseline, always carried).
    let mut total = 0;
    let mut n = cfg.trials;
    for i in 0..rungs.len() {
        total += n + usize::from(i > 0);
        n = n.div_ceil(cfg.eta);
    }
    let better = |a: f64, b: f64| if higher { a > b } else { a < b };
    let mut alive: Vec<usize> = (0..cfg.trials).collect();
    let mut done = 0;
    let mut stopped_early = false;
    'rungs: for (ri, &trees) in rungs.iter().enumerate() {
        let mut best = if higher {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        for &t in &alive {
            if cfg.time_budget.is_some_and(|b| started.elapsed() >= b) {
                stopped_early = true;
                break 'rungs;
            }
            let s = cross_validate(data, &folds, &trials[t].params, trees)?;
            if better(s.mean, best) {
                best = s.mean;
            }
            done += 1;
            let ev = TuneEvent {
                trial: t,
                rung: ri,
                trees,
                score: s.mean,
                best_so_far: best,
                done,
                total,
            };
            trials[t].rungs.push(s);
            if !progress(&ev) {
                return Err(crate::Error::Cancelled);
            }
        }
        if ri + 1 == rungs.len() {
            break;
        }
        // Keep the best 1/eta (ties by trial id), and the baseline.
        let keep = alive.len().div_ceil(cfg.eta);
        let mut ranked = alive.clone();
        ranked.sort_by(|&a, &b| {
            let (sa, sb) = (trials[a].rungs[ri].mean, trials[b].rungs[ri].mean);
            let o = sa.total_cmp(&sb);
            (if higher { o.reverse() } else { o }).then(a.cmp(&b))
        });
        ranked.truncate(keep);
        if !ranked.contains(&0) {
            ranked.push(0);
        }
        ranked.sort_unstable();
        alive = ranked;
    }
    // The best trial among those scored at the highest rung any trial reached.
    let top = trials.iter().map(|t| t.rungs.len()).max().unwrap_or(0);
    let best = trials
        .iter()
        .filter(|t| t.rungs.len() == top && top > 0)
        .min_by(|a, b| {
            let (sa, sb) = (a.rungs[top - 1].mean, b.rungs[top - 1].mean);
            let o = sa.total_cmp(&sb);
            (if higher { o.reverse() } else { o }).then(a.id.cmp(&b.id))
        })
        .map_or(0, |t| t.id);
    Ok(TuneResult {
        metric,
        higher_is_better: higher,
        trials,
        best,
        rungs,
        stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_triple_the_trees_up_to_the_budget() {
        assert_eq!(rung_trees(27, 3, 300), vec![11, 33, 100, 300]);
        assert_eq!(rung_trees(9, 3, 300), vec![33, 100, 300]);
        assert_eq!(rung_trees(1, 3, 300), vec![300]);
        // Never fewer than 10 trees, and no rung twice.
        assert_eq!(rung_trees(81, 3, 90), vec![10, 30, 90]);
    }

    #[test]
    fn folds_partition_the_rows_and_keep_the_class_balance() {
        let y: Vec<f64> = (0..1000).map(|i| f64::from(i % 10 == 0)).collect();
        let folds = kfold(&y, 5, 3, true);
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        for f in &folds {
            assert_eq!(f.len(), 200);
            assert_eq!(f.iter().filter(|&&i| y[i] == 1.0).count(), 20);
        }
        assert_eq!(kfold(&y, 5, 3, true), folds);
        assert_ne!(kfold(&y, 5, 4, true), folds);
    }
}
