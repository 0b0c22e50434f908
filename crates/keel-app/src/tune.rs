//! Tuning: a typed [`TuneSpec`] in (a training request plus the search's size), every trial recorded as a run
//! under one parent run, the best parameters out, and the best registered only when asked (by training it
//! the normal way: holdout evaluation with intervals, card, SHAP, monitoring reference). See
//! [`keel_ml::tune`] for the search (k-fold cross-validation, successive halving) and why it is not TPE.

use keel_ml::gbdt::GbdtParams;
use keel_ml::tune::{TuneConfig, TuneData, TuneEvent, TuneResult};
use keel_store::{MetricPoint, NewRun, RunBatch, RunStatus, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::train::{TrainOutcome, TrainSpec};
use crate::{Error, Result};

/// One tuning request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneSpec {
    /// The data, target, task and base parameters (the defaults the search starts from and compares with);
    /// `register` says whether the best is registered under `name` afterwards.
    pub train: TrainSpec,
    /// Configurations to try, the base parameters included.
    pub trials: usize,
    pub folds: usize,
    /// Stop starting new evaluations after this many seconds (then the search is not deterministic).
    pub time_budget_seconds: Option<f64>,
}

/// One trial as the outcome reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSummary {
    pub trial: usize,
    pub run_id: String,
    /// The searched parameters.
    pub params: BTreeMap<String, f64>,
    /// Trees at the highest rung it reached, and its cross-validated score there.
    pub trees: usize,
    pub score: f64,
    pub baseline: bool,
}

/// What a tuning found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneOutcome {
    /// The run that holds the search (its trials are runs tagged with it).
    pub run_id: String,
    pub experiment: String,
    pub metric: String,
    pub higher_is_better: bool,
    pub folds: usize,
    /// Trees per rung of successive halving.
    pub rungs: Vec<usize>,
    pub trials: Vec<TrialSummary>,
    pub best_trial: usize,
    /// The best parameters in full.
    pub best_params: GbdtParams,
    /// Cross-validated score of the best parameters and of the base ones (same folds, same trees), with the
    /// standard error over folds.
    pub best_score: f64,
    pub best_std_error: f64,
    pub baseline_score: Option<f64>,
    /// Whether the best beats the base parameters; `false` means the defaults were as good as anything tried.
    pub improved: bool,
    pub stopped_early: bool,
    pub seconds: f64,
    /// The version trained with the best parameters, when registering was asked for.
    pub registered: Option<Box<TrainOutcome>>,
}

/// The parameters the search varies, by name.
fn searched(p: &GbdtParams) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("num_leaves".to_string(), p.num_leaves as f64),
        ("learning_rate".to_string(), p.learning_rate),
        ("min_data_in_leaf".to_string(), p.min_data_in_leaf as f64),
        ("feature_fraction".to_string(), p.feature_fraction),
        ("bagging_fraction".to_string(), p.bagging_fraction),
        ("lambda_l2".to_string(), p.lambda_l2),
    ])
}

/// Receives each scored trial (what the terminal shows: the trial, its score, the best so far); returning
/// false cancels.
pub type TuneProgress = std::sync::Arc<dyn Fn(&TuneEvent) -> bool + Send + Sync>;

/// Runs the search, records the parent run and one run per trial, and registers the best when asked.
pub async fn tune(
    store: &Store,
    spec: TuneSpec,
    actor: &str,
    progress: TuneProgress,
    train_progress: crate::train::Progress,
) -> Result<TuneOutcome> {
    spec.train.validate()?;
    if !(2..=20).contains(&spec.folds) {
        return Err(Error::input(format!(
            "folds must be between 2 and 20 (got {})",
            spec.folds
        )));
    }
    if !(1..=1000).contains(&spec.trials) {
        return Err(Error::input(format!(
            "trials must be between 1 and 1000 (got {})",
            spec.trials
        )));
    }
    if let Some(s) = spec.time_budget_seconds
        && !(s > 0.0 && s.is_finite())
    {
        return Err(Error::input(format!(
            "the time budget must be a positive number of seconds (got {s})"
        )));
    }
    let started_ms = keel_core::time::now_unix_ms();
    let started = std::time::Instant::now();
    let s2 = spec.clone();
    let (result, dataset_hash) = tokio::task::spawn_blocking(move || {
        let prepared = crate::train::prepare(&s2.train)?;
        let x = prepared.encoder.encode(&prepared.frame)?;
        let data = TuneData {
            specs: &prepared.specs,
            x: &x,
            y: &prepared.target.values,
            objective: prepared.objective,
            n_classes: prepared.target.class_labels.as_ref().map_or(1, Vec::len),
        };
        let base = &s2.train.settings.gbdt;
        let cfg = TuneConfig {
            trials: s2.trials,
            folds: s2.folds,
            seed: s2.train.settings.seed,
            max_trees: base.n_trees,
            time_budget: s2.time_budget_seconds.map(Duration::from_secs_f64),
            ..TuneConfig::default()
        };
        let r = keel_ml::tune::tune(&data, base, &cfg, &mut |ev| progress(ev))?;
        Ok::<_, Error>((r, prepared.dataset_hash))
    })
    .await
    .map_err(|e| Error::Internal(format!("tuning task: {e}")))??;
    let seconds = started.elapsed().as_secs_f64();
    let experiment = spec
        .train
        .run
        .experiment
        .clone()
        .unwrap_or_else(|| spec.train.name.clone());
    let parent = record(
        store,
        &spec,
        &result,
        &experiment,
        &dataset_hash,
        started_ms,
        actor,
    )
    .await?;
    let best = result.best_trial();
    let last = best.last().cloned().ok_or_else(|| {
        Error::Input(
            "the time budget ran out before any trial was scored; give it more time".into(),
        )
    })?;
    let baseline_score = result.baseline_score();
    let better = |a: f64, b: f64| {
        if result.higher_is_better {
            a > b
        } else {
            a < b
        }
    };
    let improved = baseline_score.is_some_and(|b| better(last.mean, b));
    let mut trials = Vec::with_capacity(result.trials.len());
    for (t, run_id) in result.trials.iter().zip(&parent.1) {
        if let Some(r) = t.last() {
            trials.push(TrialSummary {
                trial: t.id,
                run_id: run_id.clone(),
                params: searched(&t.params),
                trees: r.trees,
                score: r.mean,
                baseline: t.baseline,
            });
        }
    }
    let registered = if spec.train.register {
        let mut train = spec.train.clone();
        train.settings.gbdt = best.params.clone();
        train.run.tags.insert("tuning_run".into(), parent.0.clone());
        Some(Box::new(
            crate::train::train(store, train, actor, train_progress).await?,
        ))
    } else {
        None
    };
    Ok(TuneOutcome {
        run_id: parent.0,
        experiment,
        metric: result.metric.clone(),
        higher_is_better: result.higher_is_better,
        folds: spec.folds,
        rungs: result.rungs.clone(),
        trials,
        best_trial: best.id,
        best_params: best.params.clone(),
        best_score: last.mean,
        best_std_error: last.std_error(),
        baseline_score,
        improved,
        stopped_early: result.stopped_early,
        seconds,
        registered,
    })
}

/// A cross-validated score as a metric: its step is the rung's trees, its interval ±1.96 standard errors
/// over the folds.
fn cv_point(key: &str, s: &keel_ml::tune::RungScore) -> MetricPoint {
    let se = s.std_error();
    MetricPoint {
        key: key.to_string(),
        value: s.mean,
        step: s.trees as i64,
        timestamp: None,
        lower: Some(s.mean - 1.96 * se),
        upper: Some(s.mean + 1.96 * se),
    }
}

/// The parent run (the search's settings, the best score and parameters) and one finished run per trial
/// (its parameters, its score at each rung as the metric's steps, by trees). Returns (parent id, trial ids).
async fn record(
    store: &Store,
    spec: &TuneSpec,
    r: &TuneResult,
    experiment: &str,
    dataset_hash: &str,
    started_ms: i64,
    actor: &str,
) -> Result<(String, Vec<String>)> {
    let now = keel_core::time::now_unix_ms();
    let best = r.best_trial();
    let point = |key: &str, value: f64, step: i64| MetricPoint {
        key: key.to_string(),
        value,
        step,
        timestamp: None,
        lower: None,
        upper: None,
    };
    let cv = format!("cv_{}", r.metric);
    let mut params: Vec<(String, String)> = vec![
        ("trials".into(), spec.trials.to_string()),
        ("folds".into(), spec.folds.to_string()),
        ("rungs".into(), format!("{:?}", r.rungs)),
        (
            "search".into(),
            "successive halving over random configurations".into(),
        ),
        ("target".into(), spec.train.settings.target.clone()),
    ];
    params.extend(
        searched(&best.params)
            .into_iter()
            .map(|(k, v)| (format!("best.{k}"), v.to_string())),
    );
    let mut metrics = Vec::new();
    if let Some(last) = best.last() {
        metrics.push(cv_point(&cv, last));
    }
    if let Some(b) = r.baseline_score() {
        metrics.push(point(&format!("baseline.{cv}"), b, 0));
    }
    let mut tags = vec![("kind".to_string(), "tuning".to_string())];
    tags.extend(spec.train.run.tags.clone());
    let parent = store
        .create_run(NewRun {
            experiment: experiment.to_string(),
            name: spec
                .train
                .run
                .name
                .clone()
                .unwrap_or_else(|| format!("tune {}", spec.train.name)),
            source: "tune".into(),
            created_by: actor.to_string(),
            data_hash: Some(dataset_hash.to_string()),
            seed: Some(spec.train.settings.seed as i64),
            start_ms: Some(started_ms),
            batch: RunBatch {
                params,
                metrics,
                tags,
            },
            ended: Some((RunStatus::Finished, now)),
            ..NewRun::default()
        })
        .await?;
    let mut ids = Vec::with_capacity(r.trials.len());
    for t in &r.trials {
        let mut metrics: Vec<MetricPoint> = t.rungs.iter().map(|s| cv_point(&cv, s)).collect();
        if let Some(s) = t.last() {
            metrics.push(point("trees", s.trees as f64, 0));
        }
        let run = store
            .create_run(NewRun {
                experiment: experiment.to_string(),
                name: format!(
                    "trial {}{}",
                    t.id,
                    if t.baseline { " (defaults)" } else { "" }
                ),
                source: "tune".into(),
                created_by: actor.to_string(),
                data_hash: Some(dataset_hash.to_string()),
                seed: Some(spec.train.settings.seed as i64),
                start_ms: Some(started_ms),
                batch: RunBatch {
                    params: searched(&t.params)
                        .into_iter()
                        .map(|(k, v)| (k, v.to_string()))
                        .collect(),
                    metrics,
                    tags: vec![
                        ("tuning_run".into(), parent.id.clone()),
                        ("trial".into(), t.id.to_string()),
                        ("best".into(), (t.id == best.id).to_string()),
                    ],
                },
                ended: Some((RunStatus::Finished, now)),
                ..NewRun::default()
            })
            .await?;
        ids.push(run.id);
    }
    Ok((parent.id, ids))
}
