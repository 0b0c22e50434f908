//! Training: a typed [`TrainSpec`] in, a registered version and its [`TrainOutcome`] out. Data → validated
//! frame → GBDT and a linear baseline (the better one chosen on a validation split of the training rows, or
//! the one asked for) → evaluation on the holdout → registered version with its model card and monitoring
//! reference. The CPU work runs on the blocking pool; progress is reported to a hook that can cancel.

use crate::{Error, Result};
use keel_core::time::TimePart;
use keel_core::{ColumnType, Frame, Schema};
use keel_data::infer::InferOptions;
use keel_data::target::{TargetKind, extract_target};
use keel_data::{read_table, schema_file};
use keel_ml::card::{BaselineSummary, DataSummary, Lineage, ModelCard};
use keel_ml::eval::{EvalOptions, Evaluation, MetricCi};
use keel_ml::gbdt::GbdtParams;
use keel_ml::linear::LinearParams;
use keel_ml::select::{Candidate, Choice, Selection};
use keel_ml::{Encoder, FeatureSpec, Model, ModelKind, Objective};
use keel_store::{NewVersion, Selector, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The code version recorded in lineage: the crate version and the git revision it was built from.
pub fn code_version() -> String {
    format!(
        "keel {} ({})",
        keel_core::KEEL_VERSION,
        env!("KEEL_GIT_REV")
    )
}

/// How a model is trained, apart from which data and under which name. A version stores these (its
/// `params`), so retraining reproduces the champion exactly: declared schema and slices included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// The column to predict.
    pub target: String,
    /// `None`: binary when the target has two values, multiclass when a non-numeric target has more, else
    /// regression.
    pub objective: Option<Objective>,
    /// Share of rows held out for evaluation when there is no separate test file.
    pub test_size: f64,
    pub seed: u64,
    /// Columns never used as features.
    pub drop: Vec<String>,
    /// Columns whose groups get fairness metrics.
    pub sensitive: Vec<String>,
    /// Columns whose groups get their own metrics.
    pub slices: Vec<String>,
    /// A declared schema laid over the inferred one (types, allowed values, ranges).
    pub schema: Option<Schema>,
    pub gbdt: GbdtParams,
    /// Classification threshold for the threshold metrics.
    pub threshold: f64,
    /// Which candidate to register.
    #[serde(rename = "model_requested")]
    pub model: Choice,
    /// Regression: the coverage of the served prediction intervals (split conformal on the holdout).
    pub interval_level: f64,
    /// Split by time instead of at random: train on the earliest rows of this timestamp column and evaluate on
    /// the latest `test_size` share.
    pub time_split: Option<String>,
    /// Timestamp columns to take features from (year, month, …); other timestamps are not used.
    pub time_features: Vec<TimeFeatures>,
}

/// Features taken from one timestamp column: `COLUMN.PART` for each part (a part with one value in the
/// training data is left out, with why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeFeatures {
    pub column: String,
    /// Empty: every part ([`TimePart::ALL`]).
    #[serde(default)]
    pub parts: Vec<TimePart>,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            target: String::new(),
            objective: None,
            test_size: 0.2,
            seed: 0,
            drop: vec![],
            sensitive: vec![],
            slices: vec![],
            schema: None,
            gbdt: GbdtParams::default(),
            threshold: 0.5,
            model: Choice::Auto,
            interval_level: 0.9,
            time_split: None,
            time_features: vec![],
        }
    }
}

/// What a registered version stores as its parameters: the settings and the candidate that won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredParams {
    #[serde(flatten)]
    pub settings: TrainSettings,
    /// `gbdt` or `linear`.
    #[serde(default)]
    pub model: Option<String>,
    /// Regression: the half-width of the served prediction interval (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_interval: Option<f64>,
}

/// One training request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Training data: a CSV or Parquet file the process can read.
    pub data: PathBuf,
    /// The registered model's name.
    pub name: String,
    #[serde(flatten)]
    pub settings: TrainSettings,
    /// A separate labelled test file instead of a split.
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Aliases to point at the new version.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Make the new version the champion when the model has none yet.
    #[serde(default)]
    pub champion_if_none: bool,
    /// The intended use, shown on the model card.
    #[serde(default)]
    pub description: Option<String>,
    /// Return the latest version instead of training when it was trained on the same data with the same
    /// settings by the same code.
    #[serde(default)]
    pub reuse_identical: bool,
    /// Register the trained model as a version (otherwise only the run is recorded, with the model file as
    /// its artifact).
    #[serde(default = "yes")]
    pub register: bool,
    /// The run this training records.
    #[serde(default)]
    pub run: crate::runs::RunOptions,
}

fn yes() -> bool {
    true
}

/// Fairness of the registered model on the holdout, per sensitive column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairnessSummary {
    pub column: String,
    pub demographic_parity_difference: f64,
    pub equal_opportunity_difference: f64,
}

/// How many trees early stopping kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub trees_trained: usize,
    pub best_iteration: usize,
}

/// What training registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub model: String,
    /// The registered version (absent when the training was recorded as a run only).
    pub version: Option<i64>,
    /// The run this training recorded (absent on an identical version that was reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub aliases: Vec<String>,
    /// `gbdt` or `linear`.
    pub kind: String,
    pub objective: Objective,
    /// Holdout metrics of the registered model.
    pub metrics: BTreeMap<String, f64>,
    /// The same with bootstrap intervals.
    pub metrics_ci: BTreeMap<String, MetricCi>,
    /// The other candidate's holdout metrics.
    pub baseline_metrics: Option<BTreeMap<String, f64>>,
    pub train_seconds: f64,
    pub trees: Option<usize>,
    pub selection: Option<Selection>,
    pub limitations: Vec<String>,
    pub rows_train: usize,
    pub rows_test: usize,
    pub dataset_hash: String,
    pub model_sha256: String,
    pub fairness: Vec<FairnessSummary>,
    /// The five features with the largest mean |SHAP|.
    pub top_features: Option<Vec<String>>,
    pub card_html: PathBuf,
    /// An identical version existed and was returned instead of training.
    pub reused: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub early_stopping: Option<EarlyStopping>,
    /// What the leakage checks found, one sentence each (also among the card's limitations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Training stages reported to the progress hook, in order.
pub mod stage {
    pub const READING: &str = "reading";
    pub const CHOOSING: &str = "choosing";
    pub const TRAINING: &str = "training";
    pub const EVALUATING: &str = "evaluating";
    pub const REGISTERING: &str = "registering";
}

/// Receives `(stage, fraction of the stage done)`; returning false cancels (nothing is registered). Shared,
/// so one hook can follow a job through training and what comes after.
pub type Progress = std::sync::Arc<dyn Fn(&str, f64) -> bool + Send + Sync>;

/// A progress hook that never cancels and reports nowhere.
pub fn no_progress() -> Progress {
    std::sync::Arc::new(|_, _| true)
}

impl TrainSpec {
    /// Checks what can be checked without reading the data.
    pub fn validate(&self) -> Result<()> {
        let s = &self.settings;
        if s.target.trim().is_empty() {
            return Err(Error::input("the target column is empty"));
        }
        if !(s.test_size > 0.0 && s.test_size < 1.0) && self.test.is_none() {
            return Err(Error::input(format!(
                "test_size must be between 0 and 1 (got {})",
                s.test_size
            )));
        }
        if !(0.0..=1.0).contains(&s.threshold) {
            return Err(Error::input(format!(
                "threshold must be between 0 and 1 (got {})",
                s.threshold
            )));
        }
        if !(s.interval_level > 0.0 && s.interval_level < 1.0) {
            return Err(Error::input(format!(
                "interval_level must be between 0 and 1 (got {})",
                s.interval_level
            )));
        }
        s.gbdt.validate()?;
        Selector::parse(&self.name)?;
        for a in &self.aliases {
            keel_store::validate_alias(a)?;
        }
        Ok(())
    }
}

/// Trains, evaluates and registers as `actor`; see the module docs.
pub async fn train(
    store: &Store,
    spec: TrainSpec,
    actor: &str,
    progress: Progress,
) -> Result<TrainOutcome> {
    spec.validate()?;
    if spec.reuse_identical
        && let Some(out) = existing_identical(store, &spec).await?
    {
        return Ok(out);
    }
    let started_ms = keel_core::time::now_unix_ms();
    let code = code_version();
    let actor_owned = actor.to_string();
    let hook = progress.clone();
    let (register, run_opts, seed) = (spec.register, spec.run.clone(), spec.settings.seed);
    let fitted = tokio::task::spawn_blocking(move || fit(&spec, &code, &actor_owned, &*hook))
        .await
        .map_err(|e| Error::Internal(format!("training task: {e}")))?;
    let Fitted {
        new,
        mut card,
        log,
        chosen,
    } = fitted?;
    if !progress(stage::REGISTERING, 0.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let (aliases, registered, model_bytes) = if register {
        let record = store.register(new).await?;
        card.version = record.version;
        card.created_at = record.created_at.clone();
        (record.aliases, Some(record.version), None)
    } else {
        card.version = 0;
        card.created_at = keel_core::time::now_rfc3339();
        (vec![], None, Some(new.model_bytes))
    };
    let run = crate::runs::record_training(
        store,
        crate::runs::TrainingRun {
            card: &card,
            opts: &run_opts,
            seed,
            started_ms,
            registered,
            model_bytes,
            actor,
        },
    )
    .await?;
    let home = store.home().to_path_buf();
    let card2 = card.clone();
    let run_id = run.id.clone();
    let html = tokio::task::spawn_blocking(move || {
        if register {
            crate::files::write_card_files(&home, &card2)
        } else {
            crate::files::write_run_card(&home, &run_id, &card2)
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("writing the card: {e}")))??;
    let mut out = outcome(&card, &aliases, html);
    out.version = register.then_some(card.version);
    out.run_id = Some(run.id);
    out.reused = false;
    out.early_stopping = (chosen == Candidate::Gbdt).then_some(EarlyStopping {
        trees_trained: log.trees_trained,
        best_iteration: log.best_iteration,
    });
    progress(stage::REGISTERING, 1.0);
    Ok(out)
}

/// The latest version, when it was trained on the same data with the same settings by the same code (its
/// card files are rewritten, so they exist).
pub async fn existing_identical(store: &Store, spec: &TrainSpec) -> Result<Option<TrainOutcome>> {
    let latest = match store.get(&spec.name, &Selector::Latest).await {
        Ok(v) => v,
        Err(keel_store::Error::UnknownModel(_)) | Err(keel_store::Error::UnknownVersion { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let data = spec.data.clone();
    let hash = tokio::task::spawn_blocking(move || keel_data::hash::file_sha256(&data))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let Ok(stored) = serde_json::from_value::<StoredParams>(latest.params.clone()) else {
        return Ok(None);
    };
    let card: ModelCard = serde_json::from_value(latest.card.clone())
        .map_err(|e| Error::Internal(format!("reading the stored model card: {e}")))?;
    if latest.dataset_hash != hash
        || stored.settings != spec.settings
        || latest.code_version != code_version()
        || (spec.test.is_some() != card.lineage.test_dataset_hash.is_some())
    {
        return Ok(None);
    }
    let html = crate::files::write_card_files(store.home(), &card)?;
    let mut out = outcome(&card, &latest.aliases, html);
    out.reused = true;
    Ok(Some(out))
}

fn outcome(card: &ModelCard, aliases: &[String], card_html: PathBuf) -> TrainOutcome {
    let ev = &card.evaluation;
    TrainOutcome {
        model: card.model.clone(),
        version: Some(card.version),
        run_id: None,
        aliases: aliases.to_vec(),
        kind: card
            .selection
            .as_ref()
            .map_or("gbdt", |s| match s.chosen {
                Candidate::Gbdt => "gbdt",
                Candidate::Linear => "linear",
            })
            .to_string(),
        objective: card.objective,
        metrics: ev
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect(),
        metrics_ci: ev.metrics.clone(),
        baseline_metrics: card.baseline.as_ref().map(|b| b.metrics.clone()),
        train_seconds: card.train_seconds,
        trees: card.trees,
        selection: card.selection.clone(),
        limitations: card.limitations.clone(),
        rows_train: card.data.train_rows,
        rows_test: card.data.test_rows,
        dataset_hash: card.lineage.dataset_hash.clone(),
        model_sha256: card.lineage.model_sha256.clone(),
        fairness: ev
            .fairness
            .iter()
            .map(|f| FairnessSummary {
                column: f.column.clone(),
                demographic_parity_difference: f.demographic_parity_difference,
                equal_opportunity_difference: f.equal_opportunity_difference,
            })
            .collect(),
        top_features: ev
            .shap
            .as_ref()
            .map(|s| s.features.iter().take(5).map(|f| f.0.clone()).collect()),
        card_html,
        reused: false,
        early_stopping: None,
        warnings: card
            .leakage
            .as_ref()
            .map(keel_ml::leak::LeakReport::warnings)
            .unwrap_or_default(),
    }
}

/// Loads a training file: inferred schema, the declared overlay, and a classification target that keeps the
/// file's own labels (`yes`/`no` stay words, not 0/1) unless the declared schema says otherwise.
fn load_frame_for_target(
    path: &Path,
    declared: Option<&Schema>,
    target: &str,
) -> Result<(Frame, Schema)> {
    let table = read_table(path)?;
    let mut schema = keel_data::infer_schema(&table, &InferOptions::default());
    keel_data::target::keep_target_labels(&mut schema, target);
    if let Some(d) = declared {
        schema = schema_file::overlay(&schema, d);
    }
    load_table(path, table, schema)
}

/// Loads a file with the given base schema (inferred when `None`), overlaid with a declared one; cells that do
/// not match their column type are an input error naming rows and columns.
pub fn load_frame(
    path: &Path,
    declared: Option<&Schema>,
    base: Option<&Schema>,
) -> Result<(Frame, Schema)> {
    let table = read_table(path)?;
    let mut schema = match base {
        Some(b) => b.clone(),
        None => keel_data::infer_schema(&table, &InferOptions::default()),
    };
    if let Some(d) = declared {
        schema = schema_file::overlay(&schema, d);
    }
    load_table(path, table, schema)
}

fn load_table(path: &Path, table: keel_data::RawTable, schema: Schema) -> Result<(Frame, Schema)> {
    let (frame, errors) = keel_data::to_frame(&table, &schema)?;
    if !errors.is_empty() {
        let shown: Vec<String> = errors
            .iter()
            .take(5)
            .map(|e| format!("row {}, column '{}': '{}'", e.row + 1, e.column, e.value))
            .collect();
        return Err(Error::input(format!(
            "{}: {} cells do not match their column type ({}{}); run keel data validate for the full list",
            path.display(),
            errors.len(),
            shown.join("; "),
            if errors.len() > 5 { "; …" } else { "" }
        )));
    }
    Ok((frame, schema))
}

fn objective_of(spec: &TrainSpec, frame: &Frame) -> Result<Objective> {
    if let Some(o) = spec.settings.objective {
        return Ok(o);
    }
    let target = &spec.settings.target;
    let col = frame.column(target).ok_or_else(|| {
        Error::input(format!(
            "{}: target column '{target}' is not in the file",
            spec.data.display()
        ))
    })?;
    let distinct: std::collections::BTreeSet<String> =
        (0..col.len()).filter_map(|i| col.display(i)).collect();
    Ok(match col {
        keel_core::ColumnData::Numeric(_) if distinct.len() > 2 => Objective::Regression,
        _ if distinct.len() > 2 => Objective::Multiclass,
        _ => Objective::Binary,
    })
}

struct Fitted {
    new: NewVersion,
    card: ModelCard,
    log: keel_ml::gbdt::TrainLog,
    chosen: Candidate,
}

/// The training file read, its task decided and its features chosen: what training and tuning share.
pub(crate) struct Prepared {
    pub frame: Frame,
    pub schema: Schema,
    pub dataset_hash: String,
    /// The file, as error messages name it.
    pub source: String,
    pub objective: Objective,
    pub kind: TargetKind,
    pub target: keel_data::target::Target,
    pub features: Vec<String>,
    /// Columns not used, with why.
    pub dropped: Vec<(String, String)>,
    pub specs: Vec<FeatureSpec>,
    pub encoder: Encoder,
}

/// Reads the training file and chooses the features: everything but the target, dropped columns,
/// identifiers, text and timestamps, then the parts of the timestamps named by `time_features`; a column that
/// is empty or holds one value is refused with what to do (a time part with one value is left out).
pub(crate) fn prepare(spec: &TrainSpec) -> Result<Prepared> {
    let a = &spec.settings;
    let params = &a.gbdt;
    let (frame, schema) = load_frame_for_target(&spec.data, a.schema.as_ref(), &a.target)?;
    let dataset_hash = keel_data::hash::file_sha256(&spec.data)?;
    let source = spec.data.display().to_string();
    let time_columns = a.time_features.iter().map(|t| &t.column);
    for c in a
        .drop
        .iter()
        .chain(&a.sensitive)
        .chain(&a.slices)
        .chain(time_columns)
    {
        if frame.index_of(c).is_none() {
            return Err(Error::input(format!(
                "{source}: column '{c}' is not in the file (columns: {})",
                frame.names.join(", ")
            )));
        }
    }
    let objective = objective_of(spec, &frame)?;
    let kind = match objective {
        Objective::Binary => TargetKind::Binary,
        Objective::Regression => TargetKind::Regression,
        Objective::Multiclass => TargetKind::Multiclass,
    };
    let target = extract_target(&frame, &a.target, kind, &source)?;
    if objective == Objective::Regression {
        // Checked on the whole file, so the row named is the file's (not the training split's).
        params.loss.check_labels(&target.values).map_err(|e| {
            Error::input(format!(
                "{source}: target column '{}': {e} (choose another --objective)",
                a.target
            ))
        })?;
    }

    // Features: everything but the target, dropped columns, identifiers, text and timestamps.
    let mut dropped: Vec<(String, String)> = Vec::new();
    let mut features: Vec<String> = Vec::new();
    for cs in &schema.columns {
        let name = &cs.name;
        if *name == a.target {
            continue;
        }
        let reason = if a.drop.contains(name) {
            Some("dropped by --drop")
        } else if cs.unique {
            Some("identifier (every value distinct)")
        } else if cs.column_type == ColumnType::Text {
            Some("free text")
        } else if cs.column_type == ColumnType::Timestamp {
            Some(if a.time_features.iter().any(|t| t.column == *name) {
                "timestamp (its parts are features)"
            } else {
                "timestamp (use --time-features to learn from it)"
            })
        } else {
            None
        };
        match reason {
            Some(r) => dropped.push((name.clone(), r.into())),
            None => features.push(name.clone()),
        }
    }
    let time_specs = time_feature_specs(&frame, &schema, a, &source, &mut dropped)?;
    if features.is_empty() && time_specs.is_empty() {
        return Err(Error::input(format!(
            "{source}: no feature columns left to train on"
        )));
    }
    for f in &features {
        let col = frame.column(f).expect("feature from schema");
        let mut values = (0..col.len()).filter_map(|i| col.display(i));
        match values.next() {
            None => {
                return Err(Error::input(format!(
                    "{source}: feature column '{f}' is entirely empty; drop it with --drop {f}"
                )));
            }
            Some(first) => {
                if values.all(|v| v == first) {
                    return Err(Error::input(format!(
                        "{source}: feature column '{f}' has a single value ('{first}') and cannot inform a model; drop it with --drop {f}"
                    )));
                }
            }
        }
    }
    let mut specs = FeatureSpec::from_frame(&frame, &features)?;
    features.extend(time_specs.iter().map(|s| s.name.clone()));
    specs.extend(time_specs);
    let encoder = Encoder::new(&specs);
    Ok(Prepared {
        frame,
        schema,
        dataset_hash,
        source,
        objective,
        kind,
        target,
        features,
        dropped,
        specs,
        encoder,
    })
}

/// The features `time_features` asks for: each must name a timestamp column; a part that holds one value
/// over the file (the hour of a date-only column) is left out and listed in `dropped`.
fn time_feature_specs(
    frame: &Frame,
    schema: &Schema,
    a: &TrainSettings,
    source: &str,
    dropped: &mut Vec<(String, String)>,
) -> Result<Vec<FeatureSpec>> {
    let mut specs = Vec::new();
    for tf in &a.time_features {
        let c = &tf.column;
        let cs = schema
            .column(c)
            .expect("checked against the file's columns");
        if *c == a.target {
            return Err(Error::input(format!(
                "{source}: --time-features {c}: '{c}' is the target"
            )));
        }
        if cs.column_type != ColumnType::Timestamp {
            return Err(Error::input(format!(
                "{source}: --time-features {c}: the column is {}, not a timestamp (values such as 2024-03-01 12:00:00)",
                cs.column_type.as_str()
            )));
        }
        let parts: &[TimePart] = if tf.parts.is_empty() {
            &TimePart::ALL
        } else {
            &tf.parts
        };
        let times = match frame.column(c) {
            Some(keel_core::ColumnData::Other(v)) => keel_core::time::parse_column(v).map_err(|(i, t)| {
                Error::input(format!(
                    "{source}: row {}: column '{c}': '{t}' is not a timestamp (e.g. 2024-03-01 12:00:00)",
                    i + 1
                ))
            })?,
            _ => {
                return Err(Error::input(format!(
                    "{source}: --time-features {c}: the column was not read as timestamps"
                )));
            }
        };
        for &part in parts {
            let spec = FeatureSpec::time(c, part);
            if specs.iter().any(|s: &FeatureSpec| s.name == spec.name)
                || frame.index_of(&spec.name).is_some()
            {
                return Err(Error::input(format!(
                    "{source}: --time-features {c}: the feature '{}' is named twice (a part listed twice, or a column of that name)",
                    spec.name
                )));
            }
            let mut present = times.iter().flatten().map(|t| part.of(t));
            let distinct = match present.next() {
                None => false,
                Some(first) => present.any(|v| v != first),
            };
            if distinct {
                specs.push(spec);
            } else {
                dropped.push((spec.name, "time part with a single value".into()));
            }
        }
    }
    Ok(specs)
}

/// The CPU part: read, split, train both candidates, choose, evaluate, build the version to register.
fn fit(
    spec: &TrainSpec,
    code: &str,
    actor: &str,
    hook: &(dyn Fn(&str, f64) -> bool + Send + Sync),
) -> Result<Fitted> {
    let a = &spec.settings;
    let params = a.gbdt.clone();
    hook(stage::READING, 0.0);
    let Prepared {
        frame,
        schema,
        dataset_hash,
        source,
        objective,
        kind,
        target,
        features,
        dropped,
        specs,
        encoder,
    } = prepare(spec)?;

    // Holdout: a separate file, or a (stratified) split.
    let (train_frame, train_y, test_frame, test_y, split_desc, test_hash) = match &spec.test {
        Some(test_path) => {
            let needed = Schema {
                target: None,
                columns: schema
                    .columns
                    .iter()
                    .filter(|c| {
                        features.contains(&c.name)
                            || a.time_features.iter().any(|t| t.column == c.name)
                            || c.name == a.target
                            || a.sensitive.contains(&c.name)
                            || a.slices.contains(&c.name)
                    })
                    .cloned()
                    .collect(),
            };
            let (tf, _) = load_frame(test_path, None, Some(&needed))?;
            let tsrc = test_path.display().to_string();
            // A test file may hold fewer classes than the training file (a multiclass test file is read as
            // labels and mapped onto the training classes).
            let test_kind = match kind {
                TargetKind::Multiclass => TargetKind::Binary,
                k => k,
            };
            let ty = match &target.class_labels {
                Some(train_labels) => {
                    let col = tf.column(&a.target).ok_or_else(|| {
                        Error::input(format!(
                            "{tsrc}: target column '{}' is not in the file",
                            a.target
                        ))
                    })?;
                    let mut ty = Vec::with_capacity(col.len());
                    for i in 0..col.len() {
                        let Some(l) = col.display(i) else {
                            return Err(Error::input(format!(
                                "{tsrc}: row {}: target column '{}' is empty",
                                i + 1,
                                a.target
                            )));
                        };
                        let Some(c) = train_labels.iter().position(|t| *t == l) else {
                            return Err(Error::input(format!(
                                "{tsrc}: row {}: target label '{l}' does not occur in the training data ({})",
                                i + 1,
                                train_labels.join(" / ")
                            )));
                        };
                        ty.push(c as f64);
                    }
                    ty
                }
                None => extract_target(&tf, &a.target, test_kind, &tsrc)?.values,
            };
            let hash = keel_data::hash::file_sha256(test_path)?;
            (
                frame.clone(),
                target.values.clone(),
                tf,
                ty,
                format!("separate test file {tsrc}"),
                Some(hash),
            )
        }
        None => {
            let (tr, te, desc) = match a.time_split.as_deref() {
                Some(column) => time_split(&frame, column, a.test_size, &source)?,
                None => {
                    let stratify = objective.is_classification();
                    let (tr, te) = keel_ml::split::train_test_split(
                        &target.values,
                        a.test_size,
                        a.seed,
                        stratify,
                    );
                    let desc = format!(
                        "{}{:.0}/{:.0} split, seed {}",
                        if stratify { "stratified " } else { "random " },
                        (1.0 - a.test_size) * 100.0,
                        a.test_size * 100.0,
                        a.seed
                    );
                    (tr, te, desc)
                }
            };
            (
                frame.take(&tr),
                tr.iter().map(|&i| target.values[i]).collect::<Vec<f64>>(),
                frame.take(&te),
                te.iter().map(|&i| target.values[i]).collect::<Vec<f64>>(),
                desc,
                None,
            )
        }
    };
    let x_train = encoder.encode(&train_frame)?;
    let x_test = encoder.encode(&test_frame)?;
    let leakage = keel_ml::leak::check(&specs, objective, (&x_train, &train_y), (&x_test, &test_y));
    if !hook(stage::READING, 1.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }

    let nf = specs.len();
    let n_classes = target.class_labels.as_ref().map_or(1, Vec::len);
    // The linear baseline cannot honour monotone constraints (its decile terms bend): with constraints the trees
    // are registered, and asking for the linear model is refused.
    let constrained = params.monotone_constraints.values().any(|c| *c != 0);
    let choice = match (a.model, constrained) {
        (Choice::Linear, true) => {
            return Err(Error::input(
                "monotone constraints apply to gradient-boosted trees; the linear baseline cannot honour them (use --model gbdt or auto)",
            ));
        }
        (Choice::Auto, true) => Choice::Gbdt,
        (c, _) => c,
    };
    let linear_params = LinearParams::default();
    let model_of = |kind: ModelKind| Model {
        objective,
        target: a.target.clone(),
        class_labels: target.class_labels.clone(),
        features: specs.clone(),
        kind,
        link: keel_ml::model::Link::of_training(objective, params.loss),
        numerics: keel_ml::model::Numerics::F64,
    };
    // Auto: both candidates on 80 % of the training rows, compared on the other 20 % (the holdout plays no
    // part in the choice).
    let validation = if choice == Choice::Auto && train_y.len() >= 100 {
        let (fit_rows, val) = keel_ml::split::train_test_split(
            &train_y,
            0.2,
            a.seed.wrapping_add(2),
            objective.is_classification(),
        );
        let (fx, fy) = take_rows(&x_train, &train_y, &fit_rows, nf);
        let (vx, vy) = take_rows(&x_train, &train_y, &val, nf);
        let (trees, _) = fit_gbdt(
            &specs,
            &fx,
            &fy,
            objective,
            n_classes,
            &params,
            a.seed,
            &mut |done, total| hook(stage::CHOOSING, done as f64 / total.max(1) as f64),
        )?;
        let linear = fit_linear(&specs, &fx, &fy, objective, n_classes, &linear_params)?;
        let score = |m: &Model| {
            let p = m.predict_outputs_rows(&vx);
            match objective {
                Objective::Binary => keel_ml::metrics::roc_auc(&vy, &p).unwrap_or(0.5),
                Objective::Regression => {
                    keel_ml::metrics::regression_loss(params.loss, &vy, &p, None)
                }
                Objective::Multiclass => {
                    keel_ml::metrics::multiclass_log_loss(&vy, &p, n_classes, None)
                }
            }
        };
        let g = score(&model_of(trees));
        let l = score(&model_of(linear));
        Some(((g, l), vy.len()))
    } else {
        None
    };

    let started = Instant::now();
    let (ensemble, log) = fit_gbdt(
        &specs,
        &x_train,
        &train_y,
        objective,
        n_classes,
        &params,
        a.seed,
        &mut |done, total| hook(stage::TRAINING, done as f64 / total.max(1) as f64),
    )?;
    let gbdt_seconds = started.elapsed().as_secs_f64();
    let trees_model = model_of(ensemble);

    if !hook(stage::EVALUATING, 0.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let started = Instant::now();
    let linear_model = model_of(fit_linear(
        &specs,
        &x_train,
        &train_y,
        objective,
        n_classes,
        &linear_params,
    )?);
    let linear_seconds = started.elapsed().as_secs_f64();
    let eval_opts = EvalOptions {
        loss: params.loss,
        threshold: a.threshold,
        seed: a.seed,
        sensitive: a.sensitive.clone(),
        slices: a.slices.clone(),
        ..Default::default()
    };
    let brief = |m: &Model| {
        keel_ml::eval::evaluate(
            m,
            &x_test,
            &test_y,
            &test_frame,
            &EvalOptions {
                bootstrap: 0,
                sensitive: vec![],
                slices: vec![],
                ..eval_opts.clone()
            },
        )
    };
    let flat = |e: &Evaluation| -> BTreeMap<String, f64> {
        e.metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect()
    };
    let (gbdt_brief, linear_brief) = (brief(&trees_model)?, brief(&linear_model)?);
    let metric = match objective {
        Objective::Regression => keel_ml::select::regression_metric(params.loss),
        o => keel_ml::select::primary_metric(o),
    };
    let selection = Selection::on_metric(
        choice,
        metric,
        validation,
        flat(&gbdt_brief),
        flat(&linear_brief),
    );
    let linear_kind = match objective {
        Objective::Binary => "logistic regression (one-hot, L2)",
        Objective::Regression => "ridge regression (one-hot)",
        Objective::Multiclass => "multinomial logistic regression (one-hot, L2)",
    };
    let trees_kind = if objective == Objective::Multiclass {
        format!(
            "gradient-boosted trees, softmax ({} rounds × {n_classes} classes, {} leaves)",
            trees_model.n_trees() / n_classes.max(1),
            params.num_leaves
        )
    } else if objective == Objective::Regression && params.loss != keel_ml::Loss::L2 {
        format!(
            "gradient-boosted trees, {} loss ({} trees, {} leaves)",
            params.loss.name(),
            trees_model.n_trees(),
            params.num_leaves
        )
    } else {
        format!(
            "gradient-boosted trees ({} trees, {} leaves)",
            trees_model.n_trees(),
            params.num_leaves
        )
    };
    let (model, model_kind, train_seconds, other_kind, other_eval) = match selection.chosen {
        Candidate::Gbdt => (
            trees_model,
            trees_kind,
            gbdt_seconds,
            linear_kind.to_string(),
            linear_brief,
        ),
        Candidate::Linear => (
            linear_model,
            linear_kind.to_string(),
            linear_seconds,
            trees_kind,
            gbdt_brief,
        ),
    };
    let mut evaluation: Evaluation =
        keel_ml::eval::evaluate(&model, &x_test, &test_y, &test_frame, &eval_opts)?;
    if objective == Objective::Regression {
        let pred = model.predict_rows(&x_test);
        evaluation.interval = keel_ml::conformal::split(&test_y, &pred, a.interval_level, a.seed);
    }
    let profile = keel_data::profile(&frame, &schema);
    if !hook(stage::EVALUATING, 1.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }

    let bytes = model.to_bytes()?;
    let model_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let params_value = serde_json::to_value(StoredParams {
        settings: a.clone(),
        model: Some(model.kind_name().to_string()),
        prediction_interval: evaluation.interval.map(|c| c.half_width),
    })
    .map_err(|e| Error::Internal(format!("serialising parameters: {e}")))?;
    let mut card = ModelCard {
        model: spec.name.clone(),
        version: 0,
        created_at: keel_core::time::now_rfc3339(),
        created_by: actor.to_string(),
        kind: model_kind,
        objective,
        target: a.target.clone(),
        class_labels: target.class_labels.clone(),
        intended_use: spec.description.clone().unwrap_or_else(|| {
            format!(
                "Predicts '{}' from {} features of {}. Describe the intended use with --description.",
                a.target,
                features.len(),
                source
            )
        }),
        features: features.clone(),
        data: DataSummary {
            source: source.clone(),
            rows: frame.nrows(),
            train_rows: train_y.len(),
            test_rows: test_y.len(),
            split: split_desc,
            dropped: dropped.clone(),
            profile: to_json(&profile)?,
        },
        params: params_value.clone(),
        train_seconds,
        evaluation: evaluation.clone(),
        baseline: Some(BaselineSummary {
            kind: other_kind,
            metrics: flat(&other_eval),
        }),
        trees: (model.n_trees() > 0).then(|| model.n_trees()),
        selection: Some(selection.clone()),
        lineage: Lineage {
            dataset_hash: dataset_hash.clone(),
            test_dataset_hash: test_hash,
            code_version: code.to_string(),
            seed: a.seed,
            model_sha256: model_sha,
        },
        limitations: keel_ml::card::derive_limitations(&evaluation, train_y.len()),
        leakage: Some(leakage.clone()),
        imported: None,
    };
    card.limitations.extend(leakage.warnings());
    if constrained {
        let list: Vec<String> = params
            .monotone_constraints
            .iter()
            .filter(|(_, c)| **c != 0)
            .map(|(f, c)| format!("{f} {}", if *c > 0 { "increasing" } else { "decreasing" }))
            .collect();
        card.limitations.push(format!(
            "Monotone constraints ({}) hold for the trees; the linear baseline, which cannot honour them, was not a candidate.",
            list.join(", ")
        ));
    }
    if let Some(l) = selection.limitation() {
        card.limitations.push(l);
    }
    if selection.chosen == Candidate::Gbdt && log.best_iteration != log.trees_trained {
        card.limitations.push(format!(
            "Early stopping kept {} of {} trees (validation loss stopped improving).",
            log.best_iteration, log.trees_trained
        ));
    }
    let metrics_value: serde_json::Value = evaluation
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v.value)))
        .collect();
    let profile = reference_profile(&model, &x_train, &x_test);
    let new = NewVersion {
        profile,
        model: spec.name.clone(),
        description: card.intended_use.clone(),
        kind: model.kind_name().into(),
        objective: objective.name().into(),
        model_bytes: bytes,
        params: params_value,
        metrics: metrics_value,
        schema: to_json(&schema)?,
        card: to_json(&card)?,
        dataset_hash,
        code_version: code.to_string(),
        created_by: actor.to_string(),
        aliases: spec.aliases.clone(),
        champion_if_none: spec.champion_if_none,
    };
    Ok(Fitted {
        new,
        card,
        log,
        chosen: selection.chosen,
    })
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("serialising: {e}")))
}

/// The monitoring reference of a new version: bins from the training rows (deciles of numeric features,
/// the levels of categorical ones; tenths of the probability, or deciles of a regression's predictions) and the
/// holdout rows' counts over them, predictions included.
pub(crate) fn reference_profile(
    model: &Model,
    x_train: &[f64],
    x_test: &[f64],
) -> serde_json::Value {
    use keel_monitor::profile::{BinSpec, ProfileSpec, bin_edges};
    let features: Vec<(String, Option<Vec<String>>)> = model
        .features
        .iter()
        .map(|f| {
            let levels = match &f.kind {
                keel_ml::FeatureKind::Categorical { levels } => Some(levels.clone()),
                keel_ml::FeatureKind::Numeric | keel_ml::FeatureKind::Time { .. } => None,
            };
            (f.name.clone(), levels)
        })
        .collect();
    let predictions = model.predict_rows(x_test);
    let prediction = match model.objective {
        Objective::Binary => ProfileSpec::probability_bins(),
        Objective::Regression => BinSpec::Numeric {
            edges: bin_edges(&predictions, 10),
        },
        // The predicted class (the most probable one), as a category.
        Objective::Multiclass => BinSpec::Categorical {
            levels: model.class_labels.clone().unwrap_or_default(),
        },
    };
    let spec = ProfileSpec::from_training(&features, x_train, 10, prediction);
    let reference = spec.profile(x_test, &predictions);
    serde_json::json!({"spec": spec, "reference": reference})
}

/// The rows `rows` of row-major `x` (`nf` columns) and their labels.
fn take_rows(x: &[f64], y: &[f64], rows: &[usize], nf: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(rows.len() * nf);
    for &r in rows {
        out.extend_from_slice(&x[r * nf..(r + 1) * nf]);
    }
    (out, rows.iter().map(|&r| y[r]).collect())
}

/// Rows ordered by the timestamp column `column`: the earliest `1 - test_size` train, the latest evaluate. Every
/// row needs a readable timestamp (the row and value are named otherwise). Returns (train rows, test rows, a
/// description with the two periods).
fn time_split(
    frame: &keel_core::Frame,
    column: &str,
    test_size: f64,
    source: &str,
) -> Result<(Vec<usize>, Vec<usize>, String)> {
    let col = frame.column(column).ok_or_else(|| {
        Error::input(format!(
            "{source}: --split time:{column}: no such column (columns: {})",
            frame.names.join(", ")
        ))
    })?;
    let mut keyed: Vec<(chrono::NaiveDateTime, usize)> = Vec::with_capacity(col.len());
    for i in 0..col.len() {
        let v = col.display(i).ok_or_else(|| {
            Error::input(format!(
                "{source}: row {}: --split time:{column}: the timestamp is empty",
                i + 1
            ))
        })?;
        let t = keel_data::infer::parse_timestamp(&v).ok_or_else(|| {
            Error::input(format!(
                "{source}: row {}: --split time:{column}: '{v}' is not a timestamp (e.g. 2024-03-01 12:00:00)",
                i + 1
            ))
        })?;
        keyed.push((t, i));
    }
    keyed.sort();
    let n_test = ((keyed.len() as f64) * test_size).round() as usize;
    if n_test == 0 || n_test >= keyed.len() {
        return Err(Error::input(format!(
            "{source}: --split time:{column}: {} rows cannot give a holdout of {:.0} %",
            keyed.len(),
            test_size * 100.0
        )));
    }
    let cut = keyed.len() - n_test;
    let (train, test) = keyed.split_at(cut);
    let desc = format!(
        "time split on '{column}': trained on {} rows from {} to {}, evaluated on the latest {:.0} % ({} rows, {} to {})",
        train.len(),
        train[0].0,
        train[train.len() - 1].0,
        test_size * 100.0,
        test.len(),
        test[0].0,
        test[test.len() - 1].0
    );
    let mut tr: Vec<usize> = train.iter().map(|k| k.1).collect();
    let mut te: Vec<usize> = test.iter().map(|k| k.1).collect();
    tr.sort_unstable();
    te.sort_unstable();
    Ok((tr, te, desc))
}

/// The linear baseline: logistic or ridge regression, or a multinomial logistic regression over `n_classes`.
fn fit_linear(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    n_classes: usize,
    params: &LinearParams,
) -> Result<ModelKind> {
    Ok(match objective {
        Objective::Multiclass => ModelKind::LinearMulticlass(keel_ml::linear::train_multiclass(
            specs, x, y, n_classes, params,
        )?),
        _ => ModelKind::Linear(keel_ml::linear::train(specs, x, y, objective, params)?),
    })
}

/// Trains the trees on (x, y); with early stopping, 10 % of those rows are held out to decide when to stop.
#[allow(clippy::too_many_arguments)] // the data, the task (objective, classes) and the run's knobs
fn fit_gbdt(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    n_classes: usize,
    params: &GbdtParams,
    seed: u64,
    progress: &mut (dyn FnMut(usize, usize) -> bool + Send),
) -> Result<(ModelKind, keel_ml::gbdt::TrainLog)> {
    let nf = specs.len();
    let split;
    let valid = if params.early_stopping_rounds == 0 {
        None
    } else {
        let (tr, va) = keel_ml::split::train_test_split(
            y,
            0.1,
            seed.wrapping_add(1),
            objective.is_classification(),
        );
        split = (take_rows(x, y, &tr, nf), take_rows(x, y, &va, nf));
        Some(split)
    };
    let (fx, fy, vxy) = match &valid {
        None => (x, y, None),
        Some(((fx, fy), (vx, vy))) => (
            fx.as_slice(),
            fy.as_slice(),
            Some((vx.as_slice(), vy.as_slice())),
        ),
    };
    Ok(match objective {
        Objective::Multiclass => {
            let (v, log) =
                keel_ml::gbdt::train_multiclass(specs, fx, fy, n_classes, params, vxy, progress)?;
            (ModelKind::GbdtMulticlass(v), log)
        }
        _ => {
            let (e, log) = keel_ml::gbdt::train(specs, fx, fy, objective, params, vxy, progress)?;
            (ModelKind::Gbdt(e), log)
        }
    })
}
