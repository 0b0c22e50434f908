//! Live monitoring of a served version: every prediction adds its encoded row and output to the current
//! window's profile (counts over the version's training bins, no raw data), sharded so concurrent requests
//! rarely touch the same lock. The server flushes each window's running total to the store now and then;
//! windows from every replica merge at read time, and the report compares them with the training reference.

/// Share of requests `keel serve` writes to the prediction log unless configured otherwise.
pub const DEFAULT_PREDICTION_LOG_RATE: f64 = 0.02;

use keel_monitor::{DriftOptions, DriftReport, Profile, ProfileSpec};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Error, Result};

const SHARDS: usize = 8;

/// The training-time bins and counts of a version, as stored with it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct Reference {
    pub spec: ProfileSpec,
    pub reference: Profile,
}

impl Reference {
    /// The reference stored with a version, when it has one.
    pub fn of(record: &keel_store::VersionRecord) -> Option<Reference> {
        serde_json::from_value(record.profile.clone()).ok()
    }
}

/// Per-version window profiles being filled by requests.
#[derive(Debug)]
pub struct LiveProfile {
    pub reference: Reference,
    pub window_seconds: i64,
    shards: Vec<Mutex<HashMap<i64, Profile>>>,
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    SHARD.with(|s| *s)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl LiveProfile {
    pub fn new(reference: Reference, window_seconds: i64) -> LiveProfile {
        LiveProfile {
            reference,
            window_seconds: window_seconds.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn window_of(&self, t: i64) -> i64 {
        t - t.rem_euclid(self.window_seconds)
    }

    /// Adds encoded rows and their outputs (probability or value) to the current window.
    #[inline]
    pub fn record(&self, rows: &[f64], outputs: &[f64]) {
        let w = self.window_of(now_unix());
        let spec = &self.reference.spec;
        let mut shard = self.shards[shard_index()].lock().expect("profile shard");
        shard
            .entry(w)
            .or_insert_with(|| spec.empty())
            .record(spec, rows, outputs);
    }

    /// Takes what requests recorded since the last call: the counts added to each window, to be added to
    /// the store. Counts are deltas, never running totals, so a version that is reloaded (an alias moved away and
    /// back, a rollback, a restart) adds to what was stored instead of replacing it.
    pub fn drain(&self) -> Vec<(i64, Profile)> {
        let mut fresh: HashMap<i64, Profile> = HashMap::new();
        for s in &self.shards {
            let taken = std::mem::take(&mut *s.lock().expect("profile shard"));
            for (w, p) in taken {
                match fresh.get_mut(&w) {
                    Some(acc) => acc.merge(&p).expect("same spec"),
                    None => {
                        fresh.insert(w, p);
                    }
                }
            }
        }
        let mut changed: Vec<(i64, Profile)> = fresh.into_iter().collect();
        changed.sort_by_key(|(w, _)| *w);
        changed
    }

    /// Puts back counts that [`LiveProfile::drain`] took but that could not be stored, so the next flush
    /// carries them.
    pub fn restore(&self, window: i64, counts: &Profile) {
        let mut shard = self.shards[0].lock().expect("profile shard");
        match shard.get_mut(&window) {
            Some(acc) => acc.merge(counts).expect("same spec"),
            None => {
                shard.insert(window, counts.clone());
            }
        }
    }
}

/// Adds what `live` recorded since the last flush to the stored windows of `name@version` under `replica`:
/// each stored window grows by exactly the new counts (read, add, write in one transaction), so nothing
/// already flushed is ever replaced by a smaller count. Counts that could not be stored are kept for the next
/// flush. Returns the windows written.
pub async fn flush(
    store: &keel_store::Store,
    name: &str,
    version: i64,
    live: &LiveProfile,
    replica: &str,
) -> Result<usize> {
    let mut written = 0;
    let mut failed = None;
    for (window, delta) in live.drain() {
        if failed.is_some() {
            live.restore(window, &delta);
            continue;
        }
        let merge = |stored: Option<&str>| -> std::result::Result<String, String> {
            let mut total = match stored {
                Some(s) => serde_json::from_str::<Profile>(s).map_err(|e| e.to_string())?,
                None => live.reference.spec.empty(),
            };
            total.merge(&delta).map_err(|e| e.to_string())?;
            serde_json::to_string(&total).map_err(|e| e.to_string())
        };
        match store
            .add_profile(name, version, window, replica, merge)
            .await
        {
            Ok(()) => written += 1,
            Err(e) => {
                live.restore(window, &delta);
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(written),
    }
}

/// One stored window, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    pub window_start: i64,
    pub rows: u64,
}

/// Realized performance of one window, once labels arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Realized {
    pub window_start: i64,
    /// Labelled predictions in the window.
    pub labelled: usize,
    /// `None` with a reason when the window has too few labels (or one class only).
    pub roc_auc: Option<f64>,
    /// 95 % interval of the ROC-AUC (Hanley–McNeil standard error).
    pub roc_auc_interval: Option<[f64; 2]>,
    pub log_loss: Option<f64>,
    pub accuracy: Option<f64>,
    /// 95 % Wilson interval of the accuracy.
    pub accuracy_interval: Option<[f64; 2]>,
    /// Mean predicted probability minus the observed positive rate (calibration in the large).
    pub calibration_gap: Option<f64>,
    /// Regression: root mean squared error.
    pub rmse: Option<f64>,
    /// Regression with a prediction interval: the share of labels inside their served interval (the card's
    /// coverage, checked on fresh labels), and its 95 % Wilson interval.
    pub interval_coverage: Option<f64>,
    pub interval_coverage_interval: Option<[f64; 2]>,
    /// Per sensitive column: per-group metrics (the slices) and the fairness gaps between groups.
    pub fairness: Vec<keel_ml::eval::FairnessReport>,
    pub note: Option<String>,
}

/// A sensitive feature as it appears in logged rows: its name, its position in the encoded row, and its
/// levels when categorical (logged values are level codes).
#[derive(Debug, Clone, PartialEq)]
pub struct SensitiveColumn {
    pub name: String,
    pub index: usize,
    pub levels: Option<Vec<String>>,
}

impl SensitiveColumn {
    /// The model's sensitive columns (from its training parameters) located in its monitoring spec.
    pub fn of(record: &keel_store::VersionRecord, spec: &ProfileSpec) -> Vec<SensitiveColumn> {
        let names: Vec<String> = record.params["sensitive"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names
            .into_iter()
            .filter_map(|n| {
                let index = spec.features.iter().position(|(f, _)| *f == n)?;
                let levels = match &spec.features[index].1 {
                    keel_monitor::BinSpec::Categorical { levels } => Some(levels.clone()),
                    keel_monitor::BinSpec::Numeric { .. } => None,
                };
                Some(SensitiveColumn {
                    name: n,
                    index,
                    levels,
                })
            })
            .collect()
    }
}

/// Per-group metrics and gaps of one window's labelled rows (`rows`: indexes into `labelled`).
fn window_fairness(
    labelled: &[&keel_store::Labelled],
    sensitive: &[SensitiveColumn],
    objective: keel_ml::Objective,
    threshold: f64,
) -> Vec<keel_ml::eval::FairnessReport> {
    if sensitive.is_empty() {
        return Vec::new();
    }
    let value = |l: &keel_store::Labelled, j: usize| l.features.get(j).copied().unwrap_or(f64::NAN);
    let columns = sensitive
        .iter()
        .map(|c| match &c.levels {
            Some(levels) => keel_core::ColumnData::Categorical {
                codes: labelled
                    .iter()
                    .map(|l| {
                        let v = value(l, c.index);
                        if v.is_nan() || v < 0.0 || v as usize >= levels.len() {
                            keel_core::MISSING_CODE
                        } else {
                            v as u32
                        }
                    })
                    .collect(),
                levels: levels.clone(),
            },
            None => {
                keel_core::ColumnData::Numeric(labelled.iter().map(|l| value(l, c.index)).collect())
            }
        })
        .collect();
    let frame = keel_core::Frame {
        names: sensitive.iter().map(|c| c.name.clone()).collect(),
        columns,
    };
    let y: Vec<f64> = labelled.iter().map(|l| l.label).collect();
    let p: Vec<f64> = labelled.iter().map(|l| l.output).collect();
    let opts = keel_ml::eval::EvalOptions {
        threshold,
        bootstrap: 0,
        sensitive: frame.names.clone(),
        ..Default::default()
    };
    keel_ml::eval::score(objective, &y, &p, &frame, &opts)
        .map(|e| e.fairness)
        .unwrap_or_default()
}

/// Fewer labels than this in a window: "insufficient data" instead of numbers.
pub const MIN_LABELS: usize = 50;

/// Realized metrics per window from labelled predictions (`output` is the probability for binary
/// classification, the predicted class index for multiclass, the value for regression).
pub fn realized(
    labelled: &[keel_store::Labelled],
    window_seconds: i64,
    objective: keel_ml::Objective,
    threshold: f64,
    sensitive: &[SensitiveColumn],
    interval_half_width: Option<f64>,
) -> Vec<Realized> {
    let mut by_window: std::collections::BTreeMap<i64, Vec<&keel_store::Labelled>> =
        Default::default();
    for l in labelled {
        let t = l.at_ms.div_euclid(1000);
        let w = t - t.rem_euclid(window_seconds.max(1));
        by_window.entry(w).or_default().push(l);
    }
    by_window
        .into_iter()
        .map(|(w, rows)| {
            let y: Vec<f64> = rows.iter().map(|l| l.label).collect();
            let p: Vec<f64> = rows.iter().map(|l| l.output).collect();
            let mut r = Realized {
                window_start: w,
                labelled: y.len(),
                roc_auc: None,
                roc_auc_interval: None,
                log_loss: None,
                accuracy: None,
                accuracy_interval: None,
                calibration_gap: None,
                rmse: None,
                interval_coverage: None,
                interval_coverage_interval: None,
                fairness: Vec::new(),
                note: None,
            };
            if y.len() < MIN_LABELS {
                r.note = Some(format!(
                    "insufficient data: {} labels (at least {MIN_LABELS})",
                    y.len()
                ));
                return r;
            }
            match objective {
                keel_ml::Objective::Binary => {
                    r.roc_auc = keel_ml::metrics::roc_auc(&y, &p);
                    let positives = y.iter().filter(|&&v| v >= 0.5).count();
                    r.roc_auc_interval = r
                        .roc_auc
                        .map(|a| auc_interval(a, positives, y.len() - positives));
                    if r.roc_auc.is_none() {
                        r.note = Some("one class only among the labels: no ROC-AUC".into());
                    }
                    r.log_loss = Some(keel_ml::metrics::log_loss(&y, &p));
                    let hits = y
                        .iter()
                        .zip(&p)
                        .filter(|(yy, pp)| (**pp >= threshold) == (**yy >= 0.5))
                        .count();
                    r.accuracy = Some(hits as f64 / y.len() as f64);
                    r.accuracy_interval = Some(wilson(hits, y.len()));
                    let n = y.len() as f64;
                    r.calibration_gap = Some(p.iter().sum::<f64>() / n - y.iter().sum::<f64>() / n);
                    r.fairness = window_fairness(&rows, sensitive, objective, threshold);
                }
                keel_ml::Objective::Regression => {
                    let mse = y.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
                        / y.len() as f64;
                    r.rmse = Some(mse.sqrt());
                    if let Some(w) = interval_half_width {
                        let inside = y
                            .iter()
                            .zip(&p)
                            .filter(|(a, b)| (*a - *b).abs() <= w)
                            .count();
                        r.interval_coverage = Some(inside as f64 / y.len() as f64);
                        r.interval_coverage_interval =
                            Some(keel_ml::conformal::wilson(inside, y.len()));
                    }
                }
                keel_ml::Objective::Multiclass => {
                    // The log holds the predicted class: accuracy (with its Wilson interval) is what the
                    // labels can judge.
                    let hits = y.iter().zip(&p).filter(|(yy, pp)| yy == pp).count();
                    r.accuracy = Some(hits as f64 / y.len() as f64);
                    r.accuracy_interval = Some(wilson(hits, y.len()));
                }
            }
            r
        })
        .collect()
}

/// 95 % interval of a ROC-AUC from `pos` positives and `neg` negatives (Hanley & McNeil 1982), clipped to
/// [0, 1].
pub fn auc_interval(auc: f64, pos: usize, neg: usize) -> [f64; 2] {
    let (np, nn) = (pos as f64, neg as f64);
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let var = (auc * (1.0 - auc) + (np - 1.0) * (q1 - auc * auc) + (nn - 1.0) * (q2 - auc * auc))
        / (np * nn).max(1.0);
    let se = var.max(0.0).sqrt();
    [(auc - 1.96 * se).max(0.0), (auc + 1.96 * se).min(1.0)]
}

/// 95 % Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (p, n, z) = (k as f64 / n as f64, n as f64, 1.96f64);
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

impl MonitorReport {
    /// The report as one HTML page: realized performance per window (with intervals) and the drift of every
    /// column against the training reference.
    pub fn html(&self) -> String {
        let title = format!(
            "{}@{}: {} rows served in {} window(s) vs the training reference",
            self.model,
            self.version,
            self.rows,
            self.windows.len()
        );
        let rows: Vec<keel_monitor::report::RealizedRow> = self
            .realized
            .iter()
            .map(|w| {
                let (metric, value) = match (w.roc_auc, w.roc_auc_interval, w.rmse) {
                    (Some(a), Some([lo, hi]), _) => ("ROC-AUC", Some((a, lo, hi))),
                    (_, _, Some(r)) => ("RMSE", Some((r, r, r))),
                    _ => ("ROC-AUC", None),
                };
                keel_monitor::report::RealizedRow {
                    window: keel_core::time::unix_to_display(w.window_start),
                    labelled: w.labelled,
                    metric: metric.into(),
                    value,
                    accuracy: w
                        .accuracy
                        .zip(w.accuracy_interval)
                        .map(|(a, [lo, hi])| (a, lo, hi)),
                    note: w.note.clone(),
                }
            })
            .collect();
        keel_monitor::report::html_with_realized(&self.drift, &title, &rows)
    }
}

/// The monitoring report of one version over recent windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorReport {
    pub model: String,
    pub version: i64,
    /// Windows included (all replicas merged), oldest first.
    pub windows: Vec<WindowSummary>,
    pub rows: u64,
    pub drift: DriftReport,
    /// Realized performance per window of the labelled predictions of this version.
    pub realized: Vec<Realized>,
}

/// Reads a version's stored windows since `since` (unix seconds), merges them, and compares them with the
/// version's training reference; adds realized performance per `window_seconds` from the labels that arrived.
pub async fn report(
    store: &keel_store::Store,
    record: &keel_store::VersionRecord,
    since: i64,
    window_seconds: i64,
    opts: &DriftOptions,
) -> Result<MonitorReport> {
    let (reference, first) = effective_reference(store, record).await?;
    let stored = store.profiles(&record.model, record.version, since).await?;
    let mut current = reference.spec.empty();
    let mut windows: Vec<WindowSummary> = Vec::new();
    for (w, v) in stored {
        if Some(w) == first {
            continue;
        }
        let p: Profile = serde_json::from_value(v).map_err(|e| {
            Error::Invalid(format!("stored profile of window {w} is unreadable: {e}"))
        })?;
        current
            .merge(&p)
            .map_err(|e| Error::Invalid(format!("window {w}: {e}")))?;
        match windows.last_mut() {
            Some(last) if last.window_start == w => last.rows += p.rows,
            _ => windows.push(WindowSummary {
                window_start: w,
                rows: p.rows,
            }),
        }
    }
    let drift =
        keel_monitor::compare_profiles(&reference.spec, &reference.reference, &current, opts)
            .map_err(|e| Error::Invalid(e.to_string()))?;
    let labelled: Vec<keel_store::Labelled> = store
        .labelled(&record.model, since * 1000)
        .await?
        .into_iter()
        .filter(|l| l.version == record.version)
        .collect();
    let objective = keel_ml::Objective::from_record(&record.objective);
    let threshold = record
        .params
        .get("threshold")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.5);
    Ok(MonitorReport {
        model: record.model.clone(),
        version: record.version,
        rows: current.rows,
        windows,
        drift,
        realized: realized(
            &labelled,
            window_seconds,
            objective,
            threshold,
            &SensitiveColumn::of(record, &reference.spec),
            record
                .params
                .get("prediction_interval")
                .and_then(serde_json::Value::as_f64),
        ),
    })
}

/// The reference drift is measured against, and the window it was taken from when it is the version's first
/// served window (a model imported without reference data stores bins but no counts: its first window of
/// traffic becomes the reference, and later windows are compared with it).
async fn effective_reference(
    store: &keel_store::Store,
    record: &keel_store::VersionRecord,
) -> Result<(Reference, Option<i64>)> {
    let mut reference = reference_of(record)?;
    if reference.reference.rows > 0 {
        return Ok((reference, None));
    }
    let stored = store.profiles(&record.model, record.version, 0).await?;
    let Some(first) = stored.first().map(|(w, _)| *w) else {
        return Err(Error::NoReference(format!(
            "{}@{} was registered without reference data: its first served window becomes the reference, and it has served none yet",
            record.model, record.version
        )));
    };
    let mut merged = reference.spec.empty();
    for (w, v) in stored.into_iter().take_while(|(w, _)| *w == first) {
        let p: Profile = serde_json::from_value(v).map_err(|e| {
            Error::Invalid(format!("stored profile of window {w} is unreadable: {e}"))
        })?;
        merged
            .merge(&p)
            .map_err(|e| Error::Invalid(format!("window {w}: {e}")))?;
    }
    reference.reference = merged;
    Ok((reference, Some(first)))
}

/// The version's monitoring reference, or why there is none.
fn reference_of(record: &keel_store::VersionRecord) -> Result<Reference> {
    Reference::of(record).ok_or_else(|| {
        Error::NoReference(format!(
            "{}@{} has no monitoring reference (it was registered before Keel kept one); retrain it to monitor it",
            record.model, record.version
        ))
    })
}

/// Drift of one window against the training reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowDrift {
    /// Unix seconds at the window's start.
    pub window_start: i64,
    pub rows: u64,
    pub drifted_columns: usize,
    /// The columns that drifted in this window.
    pub drifted: Vec<String>,
    /// The largest population stability index of any column (absent when no column had one).
    pub max_psi: Option<f64>,
}

/// Drift per stored window since `since` (unix seconds), oldest first, each window's replicas merged and
/// compared with the version's training reference on its own.
pub async fn drift_history(
    store: &keel_store::Store,
    record: &keel_store::VersionRecord,
    since: i64,
    opts: &DriftOptions,
) -> Result<Vec<WindowDrift>> {
    let (reference, first) = effective_reference(store, record).await?;
    let stored = store.profiles(&record.model, record.version, since).await?;
    let mut windows: Vec<(i64, Profile)> = Vec::new();
    for (w, v) in stored {
        if Some(w) == first {
            continue;
        }
        let p: Profile = serde_json::from_value(v).map_err(|e| {
            Error::Invalid(format!("stored profile of window {w} is unreadable: {e}"))
        })?;
        match windows.last_mut() {
            Some((last, merged)) if *last == w => merged
                .merge(&p)
                .map_err(|e| Error::Invalid(format!("window {w}: {e}")))?,
            _ => {
                let mut merged = reference.spec.empty();
                merged
                    .merge(&p)
                    .map_err(|e| Error::Invalid(format!("window {w}: {e}")))?;
                windows.push((w, merged));
            }
        }
    }
    windows
        .into_iter()
        .map(|(w, p)| {
            let d = keel_monitor::compare_profiles(&reference.spec, &reference.reference, &p, opts)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            Ok(WindowDrift {
                window_start: w,
                rows: p.rows,
                drifted_columns: d.drifted_columns,
                drifted: d
                    .columns
                    .iter()
                    .filter(|c| c.drifted)
                    .map(|c| c.name.clone())
                    .collect(),
                max_psi: d
                    .columns
                    .iter()
                    .filter_map(|c| c.psi)
                    .filter(|p| p.is_finite())
                    .reduce(f64::max),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(colour: f64, output: f64, label: f64, at_ms: i64) -> keel_store::Labelled {
        keel_store::Labelled {
            version: 1,
            at_ms,
            features: vec![40.0, colour],
            output,
            label,
            shadow: None,
            probabilities: None,
            shadow_probabilities: None,
        }
    }

    #[test]
    fn realized_windows_carry_per_group_metrics_and_fairness_gaps() {
        let colour = SensitiveColumn {
            name: "colour".into(),
            index: 1,
            levels: Some(vec!["blue".into(), "red".into()]),
        };
        // Window 0: 60 blue rows predicted positive half the time, 60 red rows never.
        // Selection rates 0.5 and 0 → demographic parity difference 0.5.
        let mut rows = Vec::new();
        for i in 0..60 {
            let pos = i % 2 == 0;
            rows.push(row(
                0.0,
                if pos { 0.9 } else { 0.1 },
                if pos { 1.0 } else { 0.0 },
                1000,
            ));
            rows.push(row(1.0, 0.2, if i % 3 == 0 { 1.0 } else { 0.0 }, 1000));
        }
        // Window 1 (10 s later): too few labels.
        rows.push(row(0.0, 0.9, 1.0, 11_000));
        let r = realized(&rows, 10, keel_ml::Objective::Binary, 0.5, &[colour], None);
        assert_eq!(r.len(), 2);
        let f = &r[0].fairness[0];
        assert_eq!(f.column, "colour");
        assert!(
            (f.demographic_parity_difference - 0.5).abs() < 1e-12,
            "{f:?}"
        );
        // Blue positives are all caught, red ones never: equal opportunity difference 1.
        assert!(
            (f.equal_opportunity_difference - 1.0).abs() < 1e-12,
            "{f:?}"
        );
        let groups: Vec<(&str, usize)> = f
            .groups
            .iter()
            .map(|g| (g.group.as_str(), g.rows))
            .collect();
        assert_eq!(groups, [("blue", 60), ("red", 60)]);
        assert!(r[1].fairness.is_empty());
        assert!(r[1].note.as_deref().unwrap().contains("insufficient data"));
    }
}
