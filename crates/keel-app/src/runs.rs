//! Runs and experiments: what `keel train` and `keel tune` record, what a user's own code logs over HTTP, and
//! the side-by-side comparison (`keel runs compare`, `GET /v1/runs/compare`) that shows only what differs.

use keel_ml::card::ModelCard;
use keel_store::{MetricPoint, NewRun, RunBatch, RunMetric, RunRecord, RunStatus, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, Result};

/// Where a run is filed and how it is labelled (every `keel train` is a run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// The experiment; the model's name when absent.
    pub experiment: Option<String>,
    /// The run's name; the model's name when absent.
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Flattens a JSON object into dotted keys with string values (what a run's parameters are). Arrays and
/// a value past the parameter limit is cut short.
pub fn flatten_params(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            x => {
                let text = x.to_string();
                let text = if text.len() > 6000 {
                    let mut cut = 5990;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    format!("{}…", &text[..cut])
                } else {
                    text
                };
                out.push((prefix.to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.retain(|(k, _)| !k.is_empty());
    out
}

/// What a finished training hands to [`record_training`].
pub(crate) struct TrainingRun<'a> {
    pub card: &'a ModelCard,
    pub opts: &'a RunOptions,
    pub seed: u64,
    pub started_ms: i64,
    /// The version registered, if any.
    pub registered: Option<i64>,
    /// The model file, attached when nothing was registered.
    pub model_bytes: Option<Vec<u8>>,
    pub actor: &'a str,
}

/// The run `keel train` records: its settings as parameters, holdout metrics with their bootstrap intervals
/// (the other candidate's as `baseline.*`), the card as an artifact (and the model itself when nothing was
/// registered), one transaction.
pub(crate) async fn record_training(store: &Store, t: TrainingRun<'_>) -> Result<RunRecord> {
    let TrainingRun {
        card,
        opts,
        seed,
        started_ms,
        registered,
        model_bytes,
        actor,
    } = t;
    let mut metrics: Vec<MetricPoint> = card
        .evaluation
        .metrics
        .iter()
        .filter(|(_, m)| m.value.is_finite())
        .map(|(k, m)| MetricPoint {
            key: k.clone(),
            value: m.value,
            step: 0,
            timestamp: None,
            lower: m.lower.is_finite().then_some(m.lower),
            upper: m.upper.is_finite().then_some(m.upper),
        })
        .collect();
    if let Some(b) = &card.baseline {
        metrics.extend(
            b.metrics
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| point(&format!("baseline.{k}"), *v)),
        );
    }
    metrics.push(point("train_seconds", card.train_seconds));
    metrics.push(point("rows_train", card.data.train_rows as f64));
    metrics.push(point("rows_test", card.data.test_rows as f64));
    if let Some(t) = card.trees {
        metrics.push(point("trees", t as f64));
    }
    let mut params = flatten_params(&card.params);
    params.retain(|(k, _)| !k.starts_with("schema"));
    let mut tags: BTreeMap<String, String> = BTreeMap::from([
        ("model".to_string(), card.model.clone()),
        ("kind".to_string(), card.kind.clone()),
        (
            "objective".to_string(),
            format!("{:?}", card.objective).to_lowercase(),
        ),
        (
            "code_version".to_string(),
            card.lineage.code_version.clone(),
        ),
    ]);
    tags.extend(opts.tags.clone());
    let card_json = serde_json::to_vec_pretty(card)
        .map_err(|e| Error::Internal(format!("serialising the model card: {e}")))?;
    let mut artifacts = vec![("card.json".to_string(), card_json)];
    if let Some(bytes) = model_bytes {
        artifacts.push(("model.keel".to_string(), bytes));
    }
    let batch = RunBatch {
        params,
        metrics,
        tags: tags.into_iter().collect(),
    };
    Ok(store
        .create_run(NewRun {
            experiment: opts
                .experiment
                .clone()
                .unwrap_or_else(|| card.model.clone()),
            name: opts.name.clone().unwrap_or_else(|| card.model.clone()),
            source: "train".into(),
            created_by: actor.to_string(),
            data_hash: Some(card.lineage.dataset_hash.clone()),
            seed: Some(seed as i64),
            start_ms: Some(started_ms),
            batch,
            artifacts,
            ended: Some((RunStatus::Finished, keel_core::time::now_unix_ms())),
            version: registered.map(|v| (card.model.clone(), v)),
        })
        .await?)
}

fn point(key: &str, value: f64) -> MetricPoint {
    MetricPoint {
        key: key.to_string(),
        value,
        step: 0,
        timestamp: None,
        lower: None,
        upper: None,
    }
}

/// A run to start from the user's own code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StartRun {
    /// The experiment (created on first use); `default` when absent.
    pub experiment: Option<String>,
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Start time in milliseconds since the epoch; now when absent.
    pub start_time: Option<i64>,
    pub seed: Option<i64>,
    /// A hash of the training data, when the caller has one.
    pub data_hash: Option<String>,
}

/// Starts a run for the user's own code (`source: client`).
pub async fn start(store: &Store, req: StartRun, actor: &str) -> Result<RunRecord> {
    Ok(store
        .create_run(NewRun {
            experiment: req.experiment.unwrap_or_else(|| "default".into()),
            name: req.name.unwrap_or_default(),
            source: "client".into(),
            created_by: actor.to_string(),
            data_hash: req.data_hash,
            seed: req.seed,
            start_ms: req.start_time,
            batch: RunBatch {
                tags: req.tags.into_iter().collect(),
                ..RunBatch::default()
            },
            ..NewRun::default()
        })
        .await?)
}

/// How runs differ: a column per run, a row per parameter, metric or attribute whose values are not all
/// equal. What every run shares is counted, not shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    pub runs: Vec<RunColumn>,
    /// Attributes that differ (experiment, source, status, data hash, seed, registered version, duration).
    pub attributes: Vec<DiffRow<String>>,
    pub params: Vec<DiffRow<String>>,
    pub metrics: Vec<DiffRow<RunMetric>>,
    pub tags: Vec<DiffRow<String>>,
    /// Parameters, metrics and tags with the same value in every run (not listed).
    pub identical: usize,
}

/// One compared run's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunColumn {
    pub id: String,
    pub name: String,
}

/// One row of a comparison: a key and each run's value (absent where a run has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffRow<T> {
    pub key: String,
    pub values: Vec<Option<T>>,
}

fn diff<T: Clone + PartialEq>(
    maps: &[BTreeMap<String, T>],
    same: impl Fn(&T, &T) -> bool,
    identical: &mut usize,
) -> Vec<DiffRow<T>> {
    let keys: BTreeSet<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    let mut rows = Vec::new();
    for k in keys {
        let values: Vec<Option<T>> = maps.iter().map(|m| m.get(k).cloned()).collect();
        let all_same = values.windows(2).all(|w| match (&w[0], &w[1]) {
            (Some(a), Some(b)) => same(a, b),
            (None, None) => true,
            _ => false,
        });
        if all_same {
            *identical += 1;
        } else {
            rows.push(DiffRow {
                key: k.clone(),
                values,
            });
        }
    }
    rows
}

/// Compares two or more runs (ids, or unique prefixes of at least 6 characters).
pub async fn compare(store: &Store, ids: &[String]) -> Result<RunComparison> {
    if ids.len() < 2 {
        return Err(Error::input(
            "name at least two runs to compare (keel runs list shows their ids)",
        ));
    }
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        runs.push(resolve(store, id).await?);
    }
    let attrs: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|r| {
            let mut m = BTreeMap::from([
                ("experiment".to_string(), r.experiment.clone()),
                ("source".to_string(), r.source.clone()),
                ("status".to_string(), r.status.as_str().to_string()),
                (
                    "duration_s".to_string(),
                    format!("{:.1}", r.duration_seconds()),
                ),
            ]);
            if let Some(h) = &r.data_hash {
                m.insert("data_hash".into(), h.clone());
            }
            if let Some(s) = r.seed {
                m.insert("seed".into(), s.to_string());
            }
            if let Some(v) = &r.registered {
                m.insert("registered".into(), v.clone());
            }
            m
        })
        .collect();
    let mut ignored = 0;
    let attributes = diff(&attrs, |a, b| a == b, &mut ignored);
    let mut identical = 0;
    let params = diff(
        &runs.iter().map(|r| r.params.clone()).collect::<Vec<_>>(),
        |a, b| a == b,
        &mut identical,
    );
    let metrics = diff(
        &runs.iter().map(|r| r.metrics.clone()).collect::<Vec<_>>(),
        |a, b| a.value == b.value,
        &mut identical,
    );
    let tags = diff(
        &runs.iter().map(|r| r.tags.clone()).collect::<Vec<_>>(),
        |a, b| a == b,
        &mut identical,
    );
    Ok(RunComparison {
        runs: runs
            .iter()
            .map(|r| RunColumn {
                id: r.id.clone(),
                name: r.name.clone(),
            })
            .collect(),
        attributes,
        params,
        metrics,
        tags,
        identical,
    })
}

/// A run by id or by a unique id prefix (at least 6 characters), as `git` resolves commits.
pub async fn resolve(store: &Store, id: &str) -> Result<RunRecord> {
    match store.run(id).await {
        Ok(r) => return Ok(r),
        Err(keel_store::Error::UnknownRun(_)) if id.len() >= 6 => {}
        Err(e) => return Err(e.into()),
    }
    let matches = store.run_ids_with_prefix(id).await?;
    match matches.as_slice() {
        [one] => Ok(store.run(one).await?),
        [] => Err(keel_store::Error::UnknownRun(id.to_string()).into()),
        many => Err(Error::input(format!(
            "'{id}' matches {} runs ({}…); give more of the id",
            many.len(),
            many.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}
