//! Importing a model trained elsewhere: a typed [`ImportSpec`] in, a registered version and its
//! [`ImportOutcome`] out. The file is parsed into Keel's own trees ([`keel_ml::import`]); given labelled
//! reference data, the version gets the same holdout evaluation (intervals, calibration, slices, fairness,
//! SHAP) and monitoring reference as a trained one; given a holdout, it is gated against the champion and
//! canaried or shadowed as a retrained challenger is. A file that does not parse registers nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_core::{ColumnSchema, ColumnType, Schema};
use keel_ml::card::{DataSummary, Lineage, ModelCard};
use keel_ml::eval::{EvalOptions, Evaluation};
use keel_ml::import::{Format, Source};
use keel_ml::{FeatureKind, Model, Objective};
use keel_store::{NewVersion, Selector, Store};
use serde::{Deserialize, Serialize};

use crate::retrain::{GateSpec, RetrainOutcome};
use crate::train::{Progress, code_version, to_json};
use crate::{Error, Result};

/// One import request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    /// The model file (LightGBM text, XGBoost JSON or UBJSON).
    pub file: PathBuf,
    /// The registered model's name.
    pub name: String,
    /// The file's format; detected from its first bytes when absent.
    #[serde(default)]
    pub format: Option<Format>,
    /// Labelled rows the model did not train on: the card's evaluation and the monitoring reference.
    #[serde(default)]
    pub reference: Option<PathBuf>,
    /// The label column of the reference data (and the name of what the model predicts).
    #[serde(default)]
    pub target: Option<String>,
    /// The model's feature names in input order, for files that store none (ONNX reads a positional tensor).
    /// By default an ONNX model's features are the reference data's columns other than the target, in file
    /// order (`f0`, `f1`, … without reference data).
    #[serde(default)]
    pub feature_names: Vec<String>,
    /// Columns whose groups get fairness metrics.
    #[serde(default)]
    pub sensitive: Vec<String>,
    /// Columns whose groups get their own metrics.
    #[serde(default)]
    pub slices: Vec<String>,
    /// Probability at or above which a row is the positive class (binary models).
    #[serde(default = "half")]
    pub threshold: f64,
    /// Aliases to point at the new version.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Make the new version the champion when the model has none yet.
    #[serde(default)]
    pub champion_if_none: bool,
    /// The intended use, shown on the model card.
    #[serde(default)]
    pub description: Option<String>,
    /// Gate the imported version against the current champion on this holdout (and start its canary or
    /// shadow when it passes), as a retrained challenger is.
    #[serde(default)]
    pub gate: Option<GateSpec>,
}

fn half() -> f64 {
    0.5
}

/// What an import registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub model: String,
    pub version: i64,
    pub aliases: Vec<String>,
    pub source: Source,
    pub objective: Objective,
    pub features: Vec<String>,
    /// Reference rows the card's metrics were measured on (0 without reference data).
    pub evaluated_rows: usize,
    pub metrics: BTreeMap<String, f64>,
    /// What the version lacks for want of reference data.
    pub missing: Vec<String>,
    pub card_html: PathBuf,
    /// The gate's decision, when the spec named a holdout.
    pub gate: Option<RetrainOutcome>,
}

impl ImportSpec {
    pub fn validate(&self) -> Result<()> {
        keel_store::Selector::parse(&self.name)?;
        for a in &self.aliases {
            keel_store::validate_alias(a)?;
        }
        if self.reference.is_some() && self.target.is_none() {
            return Err(Error::input(
                "reference data needs --target: the column that holds the labels",
            ));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(Error::input(format!(
                "threshold {} must be in (0, 1)",
                self.threshold
            )));
        }
        if !self.file.is_file() {
            return Err(Error::NotFound(format!(
                "model file {}: no such file",
                self.file.display()
            )));
        }
        if let Some(r) = &self.reference
            && !r.is_file()
        {
            return Err(Error::NotFound(format!(
                "reference data {}: no such file",
                r.display()
            )));
        }
        if let Some(g) = &self.gate {
            g.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.feature_names {
            if n.trim().is_empty() {
                return Err(Error::input("--features: a feature name is empty"));
            }
            if !seen.insert(n) {
                return Err(Error::input(format!("--features: '{n}' is named twice")));
            }
        }
        Ok(())
    }
}

/// Imports, evaluates and registers as `actor`; see the module docs.
pub async fn import(
    store: &Store,
    spec: ImportSpec,
    actor: &str,
    progress: Progress,
) -> Result<ImportOutcome> {
    spec.validate()?;
    // The champion is read before registering: the gate compares against the version serving now.
    let champion = match &spec.gate {
        Some(_) => Some(
            store
                .get(&spec.name, &Selector::Alias(keel_store::CHAMPION.into()))
                .await
                .map_err(|e| match e {
                    keel_store::Error::UnknownModel(_) | keel_store::Error::UnknownVersion { .. } => {
                        Error::input(format!(
                            "{}: there is no champion to gate against; import without a holdout, or set a champion first",
                            spec.name
                        ))
                    }
                    e => e.into(),
                })?,
        ),
        None => None,
    };
    let code = code_version();
    let (spec2, actor2, hook) = (spec.clone(), actor.to_string(), progress.clone());
    let prepared = tokio::task::spawn_blocking(move || prepare(&spec2, &code, &actor2, &*hook))
        .await
        .map_err(|e| Error::Internal(format!("import task: {e}")))??;
    let Prepared {
        new,
        mut card,
        source,
        trees,
    } = prepared;
    if !progress(STAGE_REGISTERING, 0.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let record = store.register(new).await?;
    card.version = record.version;
    card.created_at = record.created_at.clone();
    let home = store.home().to_path_buf();
    let card2 = card.clone();
    let html = tokio::task::spawn_blocking(move || crate::files::write_card_files(&home, &card2))
        .await
        .map_err(|e| Error::Internal(format!("writing the card: {e}")))??;
    progress(STAGE_REGISTERING, 1.0);
    let gate = match (&spec.gate, &champion) {
        (Some(g), Some(c)) => {
            Some(crate::retrain::gate_challenger(store, c, record.version, g, None, actor).await?)
        }
        _ => None,
    };
    let aliases = store
        .get(&spec.name, &Selector::Version(record.version))
        .await?
        .aliases;
    Ok(ImportOutcome {
        model: spec.name.clone(),
        version: record.version,
        aliases,
        source,
        objective: card.objective,
        features: card.features.clone(),
        evaluated_rows: card.evaluation.rows,
        metrics: card
            .evaluation
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect(),
        missing: missing(&card, trees),
        card_html: html,
        gate,
    })
}

use crate::train::stage::{
    EVALUATING as STAGE_EVALUATING, READING as STAGE_READING, REGISTERING as STAGE_REGISTERING,
};

struct Prepared {
    new: NewVersion,
    card: ModelCard,
    source: Source,
    /// The model is a tree ensemble (its split thresholds can bin a first served window).
    trees: bool,
}

fn missing(card: &ModelCard, trees: bool) -> Vec<String> {
    if card.evaluation.rows > 0 {
        return Vec::new();
    }
    vec![
        "holdout metrics with intervals, calibration, slices and fairness (import with --reference DATA --target COL)".into(),
        "a SHAP summary of what drives the model".into(),
        if trees {
            "a monitoring reference: drift is measured against the first served window instead".into()
        } else {
            "a monitoring reference: a model without trees has no split points to bin its inputs by, so drift is not measured until it is imported with --reference".into()
        },
    ]
}

/// The CPU part: read and parse the file, evaluate on the reference data, build the version to register.
fn prepare(
    spec: &ImportSpec,
    code: &str,
    actor: &str,
    hook: &(dyn Fn(&str, f64) -> bool + Send + Sync),
) -> Result<Prepared> {
    hook(STAGE_READING, 0.0);
    let bytes = std::fs::read(&spec.file).map_err(|e| Error::io(&spec.file, e))?;
    let file_name = spec.file.display().to_string();
    let target = spec.target.clone().unwrap_or_else(|| "label".to_string());
    let imported = keel_ml::import::import(&bytes, spec.format, &target)
        .map_err(|e| Error::input(format!("{file_name}: {e}")))?;
    let mut model = imported.model;
    let source = imported.source;
    let positional = source.format == keel_ml::import::Format::Onnx;
    if !spec.feature_names.is_empty() {
        name_features(&mut model, &spec.feature_names, "--features")
            .map_err(|e| Error::input(format!("{file_name}: {e}")))?;
    }
    if !hook(STAGE_EVALUATING, 0.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let (evaluation, schema, data, profile, dataset_hash) = match &spec.reference {
        Some(path) => evaluate_reference(
            spec,
            &mut model,
            path,
            &target,
            positional && spec.feature_names.is_empty(),
            positional,
        )?,
        None => (
            empty_evaluation(model.objective, spec.threshold),
            schema_of(&model),
            DataSummary {
                source: "none (imported without reference data)".into(),
                rows: 0,
                train_rows: 0,
                test_rows: 0,
                split: "none".into(),
                dropped: vec![],
                profile: serde_json::Value::Null,
            },
            first_window_reference(&model),
            String::new(),
        ),
    };
    if !hook(STAGE_EVALUATING, 1.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let model_bytes = model.to_bytes()?;
    let model_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&model_bytes))
    };
    let params = serde_json::json!({
        "target": target,
        "threshold": spec.threshold,
        "sensitive": spec.sensitive,
        "slices": spec.slices,
        "imported": source,
        "file": file_name,
    });
    let mut limitations = if evaluation.rows > 0 {
        vec![format!(
            "Imported from {}: Keel did not train it, so what it was trained on is unknown here. Evaluated on {} reference rows supplied at import ({}); if the model saw those rows in training, the metrics are optimistic.",
            source.library, evaluation.rows, data.source
        )]
    } else {
        vec![format!(
            "Imported from {} without reference data: no holdout metrics, SHAP summary, fairness or monitoring reference. Import again with --reference DATA --target COL to get them.",
            source.library
        )]
    };
    if evaluation.rows > 0 {
        limitations.extend(
            keel_ml::card::derive_limitations(&evaluation, 0)
                .into_iter()
                .skip(1),
        );
    }
    if !is_trees(&model) {
        limitations.push(match model.kind {
            keel_ml::ModelKind::Neural(_) => "No SHAP explanations: TreeSHAP applies to trees, and this is a neural network run by ONNX Runtime; predictions, monitoring, the gate and canaries work as for any version.".to_string(),
            _ => "No SHAP explanations: TreeSHAP applies to trees, and this is a linear model (its coefficients are in the imported file).".to_string(),
        });
    }
    let card = ModelCard {
        model: spec.name.clone(),
        version: 0,
        created_at: keel_core::time::now_rfc3339(),
        created_by: actor.to_string(),
        kind: if matches!(model.kind, keel_ml::ModelKind::Neural(_)) {
            format!("ONNX {} run by ONNX Runtime (imported)", source.objective)
        } else if matches!(model.kind, keel_ml::ModelKind::ImportedLinear(_)) {
            format!("ONNX linear model ({}, imported)", source.objective)
        } else if positional {
            format!(
                "ONNX tree ensemble ({}, {} trees, imported)",
                source.objective, source.trees
            )
        } else {
            format!(
                "{} gradient-boosted trees ({} trees, imported)",
                source.library, source.trees
            )
        },
        objective: model.objective,
        target: target.clone(),
        class_labels: model.class_labels.clone(),
        intended_use: spec.description.clone().unwrap_or_else(|| {
            format!(
                "Predicts '{target}' from {} features; imported from {}. Describe the intended use with --description.",
                model.features.len(),
                file_name
            )
        }),
        features: model.features.iter().map(|f| f.name.clone()).collect(),
        data,
        params: params.clone(),
        train_seconds: 0.0,
        evaluation: evaluation.clone(),
        baseline: None,
        selection: None,
        trees: Some(source.trees),
        lineage: Lineage {
            dataset_hash: dataset_hash.clone(),
            test_dataset_hash: None,
            code_version: code.to_string(),
            seed: 0,
            model_sha256: model_sha,
        },
        limitations,
        leakage: None,
        imported: Some(keel_ml::card::ImportedFrom {
            file: file_name,
            source: source.clone(),
        }),
    };
    let metrics: serde_json::Value = evaluation
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v.value)))
        .collect();
    let new = NewVersion {
        profile,
        model: spec.name.clone(),
        description: card.intended_use.clone(),
        kind: model.kind_name().into(),
        objective: model.objective.name().into(),
        model_bytes,
        params,
        metrics,
        schema: to_json(&schema)?,
        card: to_json(&card)?,
        dataset_hash,
        code_version: code.to_string(),
        created_by: actor.to_string(),
        aliases: spec.aliases.clone(),
        champion_if_none: spec.champion_if_none,
    };
    Ok(Prepared {
        new,
        card,
        source,
        trees: is_trees(&model),
    })
}

/// Whether the model is a tree ensemble (one, or one per class): TreeSHAP explains it.
fn is_trees(model: &Model) -> bool {
    matches!(
        model.kind,
        keel_ml::ModelKind::Gbdt(_) | keel_ml::ModelKind::GbdtMulticlass(_)
    )
}

type Reference = (Evaluation, Schema, DataSummary, serde_json::Value, String);

/// Reads the reference data with the model's feature types, checks its columns, evaluates the model on it
/// and builds the monitoring reference from it. The class labels of a binary model become the data's own.
fn evaluate_reference(
    spec: &ImportSpec,
    model: &mut Model,
    path: &Path,
    target: &str,
    names_from_data: bool,
    recount_covers: bool,
) -> Result<Reference> {
    let source = path.display().to_string();
    let table = keel_data::read::read_table(path)?;
    let mut schema = keel_data::infer_schema(&table, &keel_data::InferOptions::default());
    keel_data::target::keep_target_labels(&mut schema, target);
    let columns: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    if names_from_data {
        // A positional model (ONNX): its inputs are the data's columns other than the target, in order.
        let names: Vec<String> = columns.iter().filter(|c| *c != target).cloned().collect();
        name_features(model, &names, &source).map_err(|e| {
            Error::input(format!(
                "{e}; name the model's inputs in order with --features A,B,…"
            ))
        })?;
    }
    let absent: Vec<&str> = model
        .features
        .iter()
        .map(|f| f.name.as_str())
        .chain([target])
        .chain(spec.sensitive.iter().map(String::as_str))
        .chain(spec.slices.iter().map(String::as_str))
        .filter(|n| !columns.iter().any(|c| c == n))
        .collect();
    if !absent.is_empty() {
        return Err(Error::input(format!(
            "{source}: the model needs column(s) {} that the reference data lacks (it has: {})",
            absent.join(", "),
            columns.join(", ")
        )));
    }
    // The model decides how a feature is read: numbers (codes included) or its own categories.
    for f in &model.features {
        let c = schema.column_mut(&f.name).expect("checked above");
        c.column_type = match f.kind {
            FeatureKind::Numeric | FeatureKind::Time { .. } => ColumnType::Numeric,
            FeatureKind::Categorical { .. } => ColumnType::Categorical,
        };
        c.unique = false;
        c.nullable = true;
    }
    let (frame, schema) = keel_data::to_frame(&table, &schema)
        .map_err(Error::from)
        .and_then(|(frame, errors)| match errors.first() {
            None => Ok((frame, schema)),
            Some(e) => Err(Error::input(format!(
                "{source}: {} cells do not match the model's feature types (first: row {}, column '{}': '{}')",
                errors.len(),
                e.row + 1,
                e.column,
                e.value
            ))),
        })?;
    let labels = match (model.objective, &model.class_labels) {
        // A multiclass model's classes are its own (indices 0..k, or the labels the file names): the
        // reference rows must hold them.
        (Objective::Multiclass, Some(classes)) => keel_data::target::Target {
            values: keel_data::target::map_labels(&frame, target, classes, &source)?,
            class_labels: Some(classes.clone()),
        },
        (objective, _) => {
            let kind = match objective {
                Objective::Regression => keel_data::target::TargetKind::Regression,
                _ => keel_data::target::TargetKind::Binary,
            };
            keel_data::target::extract_target(&frame, target, kind, &source)?
        }
    };
    if labels.class_labels.is_some() {
        model.class_labels = labels.class_labels.clone();
    }
    let x = model.encoder().encode(&frame)?;
    if recount_covers {
        // The file has no training counts; TreeSHAP weighs paths by how the reference rows flow.
        let nf = model.features.len();
        let ensembles: Vec<&mut keel_ml::gbdt::Ensemble> = match &mut model.kind {
            keel_ml::ModelKind::Gbdt(e) => vec![e],
            keel_ml::ModelKind::GbdtMulticlass(v) => v.iter_mut().collect(),
            _ => vec![],
        };
        for e in ensembles {
            let mut trees = std::mem::take(&mut e.trees);
            for t in &mut trees {
                t.recount_covers(&x, nf);
            }
            *e = keel_ml::gbdt::Ensemble::new(e.objective, e.init_score, trees);
        }
    }
    let evaluation = keel_ml::eval::evaluate(
        model,
        &x,
        &labels.values,
        &frame,
        &EvalOptions {
            threshold: spec.threshold,
            sensitive: spec.sensitive.clone(),
            slices: spec.slices.clone(),
            ..Default::default()
        },
    )?;
    let profile = keel_data::profile(&frame, &schema);
    let reference = crate::train::reference_profile(model, &x, &x);
    let hash = keel_data::hash::file_sha256(path)?;
    // The request schema: the model's features and the label column (for feedback), nothing else.
    let mut served = schema.clone();
    served
        .columns
        .retain(|c| c.name == target || model.features.iter().any(|f| f.name == c.name));
    served.target = Some(target.to_string());
    let data = DataSummary {
        source,
        rows: frame.nrows(),
        train_rows: 0,
        test_rows: frame.nrows(),
        split: "reference data supplied at import (the model was trained elsewhere)".into(),
        dropped: vec![],
        profile: to_json(&profile)?,
    };
    Ok((evaluation, served, data, reference, hash))
}

/// The monitoring bins of a model imported without data, with no counts: numeric features binned on the
/// deciles of the model's own split thresholds (where its behaviour changes), categories by level, and the
/// output on tenths of the probability or of the range the trees can reach. Monitoring takes the first served
/// window as the reference counts.
fn first_window_reference(model: &Model) -> serde_json::Value {
    use keel_monitor::profile::{BinSpec, ProfileSpec, bin_edges};
    let ensembles: Vec<&keel_ml::gbdt::Ensemble> = match &model.kind {
        keel_ml::ModelKind::Gbdt(e) => vec![e],
        keel_ml::ModelKind::GbdtMulticlass(v) => v.iter().collect(),
        _ => return serde_json::Value::Null,
    };
    let ens = ensembles[0];
    let mut thresholds: Vec<Vec<f64>> = vec![Vec::new(); model.features.len()];
    for n in ensembles
        .iter()
        .flat_map(|e| &e.trees)
        .flat_map(|t| &t.nodes)
    {
        if n.flags & keel_ml::tree::FLAG_CATEGORICAL == 0 && n.threshold.is_finite() {
            thresholds[n.feature as usize].push(n.threshold);
        }
    }
    let features = model
        .features
        .iter()
        .zip(&thresholds)
        .map(|(f, t)| {
            let bins = match &f.kind {
                FeatureKind::Categorical { levels } => BinSpec::Categorical {
                    levels: levels.clone(),
                },
                FeatureKind::Numeric | FeatureKind::Time { .. } => BinSpec::Numeric {
                    edges: bin_edges(t, 10),
                },
            };
            (f.name.clone(), bins)
        })
        .collect();
    let prediction = match model.objective {
        Objective::Binary => ProfileSpec::probability_bins(),
        Objective::Multiclass => BinSpec::Categorical {
            levels: model.class_labels.clone().unwrap_or_default(),
        },
        Objective::Regression => {
            let (lo, hi) =
                ens.trees
                    .iter()
                    .fold((ens.init_score, ens.init_score), |(lo, hi), t| {
                        let min = t.leaf_values.iter().copied().fold(f64::INFINITY, f64::min);
                        let max = t
                            .leaf_values
                            .iter()
                            .copied()
                            .fold(f64::NEG_INFINITY, f64::max);
                        (lo + min, hi + max)
                    });
            let edges: Vec<f64> = (1..10)
                .map(|i| model.link.apply(lo + (hi - lo) * i as f64 / 10.0))
                .filter(|e| e.is_finite())
                .collect();
            BinSpec::Numeric { edges }
        }
    };
    let spec = ProfileSpec {
        features,
        prediction,
    };
    let reference = spec.empty();
    serde_json::json!({"spec": spec, "reference": reference})
}

/// The request schema of a model imported without data: its features, nullable, categories as listed.
fn schema_of(model: &Model) -> Schema {
    Schema {
        target: Some(model.target.clone()),
        columns: model
            .features
            .iter()
            .map(|f| ColumnSchema {
                name: f.name.clone(),
                column_type: match f.kind {
                    FeatureKind::Numeric | FeatureKind::Time { .. } => ColumnType::Numeric,
                    FeatureKind::Categorical { .. } => ColumnType::Categorical,
                },
                nullable: true,
                min: None,
                max: None,
                allowed: match &f.kind {
                    FeatureKind::Categorical { levels } => Some(levels.clone()),
                    FeatureKind::Numeric | FeatureKind::Time { .. } => None,
                },
                unique: false,
            })
            .collect(),
    }
}

/// The card's evaluation when there was nothing to evaluate on.
fn empty_evaluation(objective: Objective, threshold: f64) -> Evaluation {
    Evaluation {
        objective,
        rows: 0,
        positives: None,
        metrics: BTreeMap::new(),
        bootstrap_resamples: 0,
        threshold,
        threshold_table: vec![],
        calibration: vec![],
        expected_calibration_error: None,
        roc_curve: vec![],
        slices: vec![],
        fairness: vec![],
        shap: None,
        classes: vec![],
        confusion: vec![],
        interval: None,
    }
}

/// Renames a model's features (in input order) to `names`, which must be as many.
fn name_features(
    model: &mut Model,
    names: &[String],
    from: &str,
) -> std::result::Result<(), String> {
    if names.len() != model.features.len() {
        return Err(format!(
            "the model reads {} features but {from} names {} ({})",
            model.features.len(),
            names.len(),
            names.join(", ")
        ));
    }
    for (f, n) in model.features.iter_mut().zip(names) {
        f.name = n.clone();
    }
    Ok(())
}
