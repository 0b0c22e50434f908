//! `keel train` and `keel quickstart`: data → validated frame → GBDT (+ linear baseline) → evaluation →
//! registered version with its model card.

use anyhow::{Context, Result};
use keel_core::{ColumnType, Frame, Schema};
use keel_data::infer::InferOptions;
use keel_data::target::{TargetKind, extract_target};
use keel_data::{read_table, schema_file};
use keel_ml::card::{BaselineSummary, DataSummary, Lineage, ModelCard};
use keel_ml::eval::{EvalOptions, Evaluation};
use keel_ml::gbdt::{ClassWeight, GbdtParams};
use keel_ml::linear::LinearParams;
use keel_ml::{Encoder, FeatureSpec, Model, ModelKind, Objective};
use keel_store::{NewVersion, Selector, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{block_on, input_error};
use crate::cli::{QuickstartArgs, TrainArgs};
use crate::output::{bar, print_json, spinner};

/// The code version recorded in lineage.
pub fn code_version() -> String {
    format!(
        "keel {} ({})",
        keel_core::KEEL_VERSION,
        env!("KEEL_GIT_REV")
    )
}

/// Who a CLI action is recorded as (`created_by`, the audit log's `actor`): `KEEL_USER` when set, else the
/// login name from the environment, else the operating-system account of this process (`/etc/passwd`), else
/// `uid:N`. Never "unknown".
pub fn actor() -> String {
    for var in ["KEEL_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v;
        }
    }
    os_user()
}

fn os_user() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid).then(|| name.to_string())
            })
        });
        name.unwrap_or_else(|| format!("uid:{uid}"))
    }
    #[cfg(not(unix))]
    {
        "local user".to_string()
    }
}

pub fn train_cmd(home: &Path, a: &TrainArgs) -> Result<i32> {
    let out = train(home, a)?;
    report(&out, a.json);
    Ok(0)
}

fn report(out: &serde_json::Value, json: bool) {
    if json {
        print_json(out);
        return;
    }
    let m = &out["metrics"];
    let ci = &out["metrics_ci"];
    println!(
        "registered {}@{} ({}){}",
        out["model"].as_str().unwrap_or(""),
        out["version"],
        out["kind"].as_str().unwrap_or(""),
        out["aliases"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| format!(
                " aliases: {}",
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .unwrap_or_default()
    );
    if out["reused"].as_bool() == Some(true) {
        println!("  (an identical version was already registered; use --force to train again)");
    }
    println!(
        "  trained on {} rows, evaluated on {} rows, {} in {:.2} s",
        out["rows_train"],
        out["rows_test"],
        match out["trees"].as_u64() {
            Some(t) => format!("{t} trees"),
            None => "a linear model".to_string(),
        },
        out["train_seconds"].as_f64().unwrap_or(0.0)
    );
    if let Some(reason) = out["selection"]["reason"].as_str() {
        println!("  registered {reason}");
    }
    let other = if out["kind"] == "linear" {
        "trees"
    } else {
        "linear baseline"
    };
    if let Some(obj) = m.as_object() {
        for (k, v) in obj {
            let lo = ci[k]["lower"].as_f64().unwrap_or(f64::NAN);
            let hi = ci[k]["upper"].as_f64().unwrap_or(f64::NAN);
            let base = out["baseline_metrics"][k]
                .as_f64()
                .map(|b| format!("   ({other} {b:.4})"))
                .unwrap_or_default();
            println!(
                "  {k:<10} {:.4}  [{lo:.4}, {hi:.4}]{base}",
                v.as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(top) = out["top_features"].as_array() {
        let names: Vec<&str> = top.iter().filter_map(|f| f.as_str()).collect();
        println!("  top features by mean |SHAP|: {}", names.join(", "));
    }
    for l in out["limitations"].as_array().into_iter().flatten() {
        if let Some(l) = l.as_str().filter(|l| l.contains(" beat the registered ")) {
            println!("  warning: {l}");
        }
    }
    println!("  model card: {}", out["card_html"].as_str().unwrap_or(""));
}

/// The employment quickstart: the same pipeline as `keel train` on the 2015 census rows.
pub fn quickstart(home: &Path, a: &QuickstartArgs) -> Result<i32> {
    let data = crate::assets::employment_reference(a.json)?;
    let args = quickstart_args(data, a.json);
    if !a.force {
        let hash = keel_data::hash::file_sha256(&args.data)?;
        if let Some(out) = existing_identical(home, &args, &hash)? {
            report(&out, a.json);
            return Ok(0);
        }
    }
    // Validate before training: the quickstart data must be clean.
    let table = read_table(&args.data)?;
    let schema = keel_data::infer_schema(
        &table,
        &InferOptions {
            strict_nulls: true,
            ..Default::default()
        },
    );
    let (frame, errors) = keel_data::to_frame(&table, &schema)?;
    let report_ = keel_data::validate(&table, &schema, &frame, &errors, false);
    if !report_.valid {
        return Err(input_error(format!(
            "{}: the quickstart data failed validation ({} invalid rows); run keel data validate on it",
            args.data.display(),
            report_.invalid_rows
        )));
    }
    if !a.json {
        eprintln!(
            "keel: {} validated: {} rows, 0 violations",
            args.data.display(),
            report_.rows
        );
    }
    let out = train(home, &args)?;
    report(&out, a.json);
    Ok(0)
}

fn quickstart_args(data: PathBuf, json: bool) -> TrainArgs {
    TrainArgs {
        data,
        target: "employed".into(),
        name: "employment".into(),
        objective: Some("binary".into()),
        test_size: 0.2,
        test: None,
        seed: 0,
        sensitive: vec!["SEX".into(), "RAC1P".into(), "AGEP".into()],
        slices: vec![],
        drop: vec!["id".into(), "year".into(), "prediction".into(), "predicted_probability".into()],
        schema: None,
        trees: 300,
        learning_rate: 0.05,
        num_leaves: 31,
        early_stopping: None,
        class_weight: None,
        threshold: 0.5,
        alias: vec!["champion".into()],
        model: crate::cli::ModelArg::Auto,
        champion_if_none: true,
        description: Some(
            "Predicts whether a Massachusetts resident is employed, from the 2015 US Census American Community Survey. \
             A demonstration model for Keel's lifecycle (drift, delayed labels, retraining); not for decisions about people."
                .into(),
        ),
        json,
    }
}

/// A registered version trained on the same data with the same parameters by the same code, as output JSON.
fn existing_identical(
    home: &Path,
    args: &TrainArgs,
    dataset_hash: &str,
) -> Result<Option<serde_json::Value>> {
    if !home.join("registry.db").exists() {
        return Ok(None);
    }
    let store = block_on(Store::open(home))?;
    let latest = match block_on(store.get(&args.name, &Selector::Latest)) {
        Ok(v) => v,
        Err(keel_store::Error::UnknownModel(_)) | Err(keel_store::Error::UnknownVersion { .. }) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let params = params_json(args)?;
    // The stored parameters also name the candidate that was registered; the request is the rest.
    let mut stored = latest.params.clone();
    if let Some(o) = stored.as_object_mut() {
        o.remove("model");
    }
    if latest.dataset_hash != dataset_hash
        || stored != params
        || latest.code_version != code_version()
    {
        return Ok(None);
    }
    let card: ModelCard =
        serde_json::from_value(latest.card.clone()).context("reading the stored model card")?;
    let html = write_card_files(home, &card)?;
    let mut out = outcome_json(&card, &latest.aliases, &html);
    out["reused"] = true.into();
    Ok(Some(out))
}

fn objective_of(a: &TrainArgs, frame: &Frame) -> Result<Objective> {
    match a.objective.as_deref() {
        Some("binary") | Some("classification") => Ok(Objective::Binary),
        Some("regression") => Ok(Objective::Regression),
        Some(o) => Err(input_error(format!(
            "unknown objective '{o}' (use binary or regression)"
        ))),
        None => {
            let col = frame.column(&a.target).ok_or_else(|| {
                input_error(format!(
                    "{}: target column '{}' is not in the file",
                    a.data.display(),
                    a.target
                ))
            })?;
            let distinct: std::collections::BTreeSet<String> =
                (0..col.len()).filter_map(|i| col.display(i)).collect();
            Ok(match col {
                keel_core::ColumnData::Numeric(_) if distinct.len() > 2 => Objective::Regression,
                _ => Objective::Binary,
            })
        }
    }
}

fn gbdt_params(a: &TrainArgs) -> Result<GbdtParams> {
    let class_weight = match a.class_weight.as_deref() {
        None | Some("none") => ClassWeight::None,
        Some("balanced") => ClassWeight::Balanced,
        Some(w) => ClassWeight::Positive(w.parse().map_err(|_| {
            input_error(format!(
                "--class-weight '{w}' is neither 'balanced' nor a number"
            ))
        })?),
    };
    let p = GbdtParams {
        n_trees: a.trees,
        learning_rate: a.learning_rate,
        num_leaves: a.num_leaves,
        early_stopping_rounds: a.early_stopping.unwrap_or(0),
        class_weight,
        seed: a.seed,
        ..GbdtParams::default()
    };
    p.validate()?;
    Ok(p)
}

fn params_json(a: &TrainArgs) -> Result<serde_json::Value> {
    Ok(json!({
        "gbdt": gbdt_params(a)?,
        "target": a.target,
        "objective": a.objective,
        "test_size": a.test_size,
        "test": a.test,
        "seed": a.seed,
        "drop": a.drop,
        "sensitive": a.sensitive,
        "threshold": a.threshold,
        "model_requested": keel_ml::select::Choice::from(a.model),
    }))
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

/// Loads a file with the given base schema (inferred, overlaid with a declared one); type errors are fatal.
pub(crate) fn load_frame(
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
        return Err(input_error(format!(
            "{}: {} cells do not match their column type ({}{}); run keel data validate for the full list",
            path.display(),
            errors.len(),
            shown.join("; "),
            if errors.len() > 5 { "; …" } else { "" }
        )));
    }
    Ok((frame, schema))
}

/// Trains, evaluates and registers; returns the output JSON.
pub fn train(home: &Path, a: &TrainArgs) -> Result<serde_json::Value> {
    train_with(home, a, &mut |_, _| true)
}

/// [`train`] reporting progress to `hook(stage, fraction)`; when the hook returns false, training stops
/// with [`keel_ml::Error::Cancelled`] and nothing is registered.
pub fn train_with(
    home: &Path,
    a: &TrainArgs,
    hook: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<serde_json::Value> {
    let quiet = a.json;
    if !(a.test_size > 0.0 && a.test_size < 1.0) && a.test.is_none() {
        return Err(input_error(format!(
            "--test-size must be between 0 and 1 (got {})",
            a.test_size
        )));
    }
    let params = gbdt_params(a)?;
    keel_store::Selector::parse(&a.name)?;
    // Open the registry first: a read-only home fails before any work and before any write.
    let store = block_on(Store::open(home))?;

    let sp = spinner("reading data", quiet);
    let declared = a.schema.as_deref().map(schema_file::load).transpose()?;
    let (frame, schema) = load_frame_for_target(&a.data, declared.as_ref(), &a.target)?;
    let dataset_hash = keel_data::hash::file_sha256(&a.data)?;
    let source = a.data.display().to_string();
    for c in a.drop.iter().chain(&a.sensitive).chain(&a.slices) {
        if frame.index_of(c).is_none() {
            return Err(input_error(format!(
                "{source}: column '{c}' is not in the file (columns: {})",
                frame.names.join(", ")
            )));
        }
    }
    let objective = objective_of(a, &frame)?;
    let kind = match objective {
        Objective::Binary => TargetKind::Binary,
        Objective::Regression => TargetKind::Regression,
    };
    let target = extract_target(&frame, &a.target, kind, &source)?;

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
            Some("timestamp")
        } else {
            None
        };
        match reason {
            Some(r) => dropped.push((name.clone(), r.into())),
            None => features.push(name.clone()),
        }
    }
    if features.is_empty() {
        return Err(input_error(format!(
            "{source}: no feature columns left to train on"
        )));
    }
    for f in &features {
        let col = frame.column(f).expect("feature from schema");
        let mut values = (0..col.len()).filter_map(|i| col.display(i));
        match values.next() {
            None => {
                return Err(input_error(format!(
                    "{source}: feature column '{f}' is entirely empty; drop it with --drop {f}"
                )));
            }
            Some(first) => {
                if values.all(|v| v == first) {
                    return Err(input_error(format!(
                        "{source}: feature column '{f}' has a single value ('{first}') and cannot inform a model; drop it with --drop {f}"
                    )));
                }
            }
        }
    }
    let specs = FeatureSpec::from_frame(&frame, &features)?;
    let encoder = Encoder::new(&specs);

    // Holdout: a separate file, or a (stratified) split.
    let (train_frame, train_y, test_frame, test_y, split_desc, test_hash) = match &a.test {
        Some(test_path) => {
            let needed = Schema {
                target: None,
                columns: schema
                    .columns
                    .iter()
                    .filter(|c| {
                        features.contains(&c.name)
                            || c.name == a.target
                            || a.sensitive.contains(&c.name)
                            || a.slices.contains(&c.name)
                    })
                    .cloned()
                    .collect(),
            };
            let (tf, _) = load_frame(test_path, None, Some(&needed))?;
            let tsrc = test_path.display().to_string();
            let tt = extract_target(&tf, &a.target, kind, &tsrc)?;
            let ty = match (&target.class_labels, &tt.class_labels) {
                (Some(train_labels), Some(test_labels)) => {
                    for l in test_labels {
                        if !train_labels.contains(l) {
                            return Err(input_error(format!(
                                "{tsrc}: target label '{l}' does not occur in the training data ({} / {})",
                                train_labels[0], train_labels[1]
                            )));
                        }
                    }
                    let col = tf.column(&a.target).expect("checked");
                    (0..col.len())
                        .map(|i| {
                            if col.display(i).as_deref() == Some(train_labels[1].as_str()) {
                                1.0
                            } else {
                                0.0
                            }
                        })
                        .collect()
                }
                _ => tt.values,
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
            let stratify = objective == Objective::Binary;
            let (tr, te) =
                keel_ml::split::train_test_split(&target.values, a.test_size, a.seed, stratify);
            let desc = format!(
                "{}{:.0}/{:.0} split, seed {}",
                if stratify { "stratified " } else { "random " },
                (1.0 - a.test_size) * 100.0,
                a.test_size * 100.0,
                a.seed
            );
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
    sp.finish_and_clear();

    let nf = specs.len();
    let choice = keel_ml::select::Choice::from(a.model);
    let linear_params = LinearParams::default();
    let model_of = |kind: ModelKind| Model {
        objective,
        target: a.target.clone(),
        class_labels: target.class_labels.clone(),
        features: specs.clone(),
        kind,
    };
    // `--model auto`: both candidates on 80 % of the training rows, compared on the other 20 % (the holdout
    // plays no part in the choice).
    let validation = if choice == keel_ml::select::Choice::Auto && train_y.len() >= 100 {
        let sp = spinner("choosing between trees and a linear model", quiet);
        let (fit, val) = keel_ml::split::train_test_split(
            &train_y,
            0.2,
            a.seed.wrapping_add(2),
            objective == Objective::Binary,
        );
        let (fx, fy) = take_rows(&x_train, &train_y, &fit, nf);
        let (vx, vy) = take_rows(&x_train, &train_y, &val, nf);
        let (trees, _) = fit_gbdt(&specs, &fx, &fy, objective, &params, a.seed, &mut |_, _| {
            hook("choosing", 0.0)
        })?;
        let linear = keel_ml::linear::train(&specs, &fx, &fy, objective, &linear_params)?;
        let score = |m: &Model| {
            let p = m.predict_rows(&vx);
            match objective {
                Objective::Binary => keel_ml::metrics::roc_auc(&vy, &p).unwrap_or(0.5),
                Objective::Regression => keel_ml::metrics::rmse(&vy, &p, None),
            }
        };
        let g = score(&model_of(ModelKind::Gbdt(trees)));
        let l = score(&model_of(ModelKind::Linear(linear)));
        sp.finish_and_clear();
        Some(((g, l), vy.len()))
    } else {
        None
    };

    let pb = bar(params.n_trees as u64, "training trees", quiet);
    let started = Instant::now();
    let (ensemble, log) = fit_gbdt(
        &specs,
        &x_train,
        &train_y,
        objective,
        &params,
        a.seed,
        &mut |done, total| {
            pb.set_position(done as u64);
            hook("training", done as f64 / total.max(1) as f64)
        },
    )?;
    let gbdt_seconds = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let trees_model = model_of(ModelKind::Gbdt(ensemble));

    if !hook("evaluating", 1.0) {
        return Err(keel_ml::Error::Cancelled.into());
    }
    let sp = spinner("evaluating", quiet);
    let started = Instant::now();
    let linear_model = model_of(ModelKind::Linear(keel_ml::linear::train(
        &specs,
        &x_train,
        &train_y,
        objective,
        &linear_params,
    )?));
    let linear_seconds = started.elapsed().as_secs_f64();
    let eval_opts = EvalOptions {
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
    let flat = |e: &Evaluation| -> std::collections::BTreeMap<String, f64> {
        e.metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.value))
            .collect()
    };
    let (gbdt_brief, linear_brief) = (brief(&trees_model)?, brief(&linear_model)?);
    let selection = keel_ml::select::Selection::new(
        choice,
        objective,
        validation,
        flat(&gbdt_brief),
        flat(&linear_brief),
    );
    let linear_kind = match objective {
        Objective::Binary => "logistic regression (one-hot, L2)",
        Objective::Regression => "ridge regression (one-hot)",
    };
    let trees_kind = format!(
        "gradient-boosted trees ({} trees, {} leaves)",
        trees_model.n_trees(),
        params.num_leaves
    );
    let (model, model_kind, train_seconds, other_kind, other_eval) = match selection.chosen {
        keel_ml::select::Candidate::Gbdt => (
            trees_model,
            trees_kind,
            gbdt_seconds,
            linear_kind.to_string(),
            linear_brief,
        ),
        keel_ml::select::Candidate::Linear => (
            linear_model,
            linear_kind.to_string(),
            linear_seconds,
            trees_kind,
            gbdt_brief,
        ),
    };
    let evaluation: Evaluation =
        keel_ml::eval::evaluate(&model, &x_test, &test_y, &test_frame, &eval_opts)?;
    let profile = keel_data::profile(&frame, &schema);
    sp.finish_and_clear();

    let bytes = model.to_bytes()?;
    let model_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let mut params_value = params_json(a)?;
    params_value["model"] = json!(model.kind_name());
    let mut card = ModelCard {
        model: a.name.clone(),
        version: 0,
        created_at: keel_core::time::now_rfc3339(),
        created_by: actor(),
        kind: model_kind,
        objective,
        target: a.target.clone(),
        class_labels: target.class_labels.clone(),
        intended_use: a.description.clone().unwrap_or_else(|| {
            format!("Predicts '{}' from {} features of {}. Describe the intended use with --description.", a.target, features.len(), source)
        }),
        features: features.clone(),
        data: DataSummary {
            source: source.clone(),
            rows: frame.nrows(),
            train_rows: train_y.len(),
            test_rows: test_y.len(),
            split: split_desc,
            dropped: dropped.clone(),
            profile: serde_json::to_value(&profile)?,
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
            code_version: code_version(),
            seed: a.seed,
            model_sha256: model_sha,
        },
        limitations: keel_ml::card::derive_limitations(&evaluation, train_y.len()),
    };
    if let Some(l) = selection.limitation() {
        card.limitations.push(l);
    }
    if selection.chosen == keel_ml::select::Candidate::Gbdt
        && log.best_iteration != log.trees_trained
    {
        card.limitations.push(format!(
            "Early stopping kept {} of {} trees (validation loss stopped improving).",
            log.best_iteration, log.trees_trained
        ));
    }
    let metrics_value: serde_json::Value = evaluation
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.value)))
        .collect();
    let profile = reference_profile(&model, &x_train, &x_test);
    let new = NewVersion {
        profile,
        model: a.name.clone(),
        description: card.intended_use.clone(),
        kind: model.kind_name().into(),
        objective: serde_json::to_value(objective)?
            .as_str()
            .unwrap_or("")
            .into(),
        model_bytes: bytes,
        params: params_value,
        metrics: metrics_value,
        schema: serde_json::to_value(&schema)?,
        card: serde_json::to_value(&card)?,
        dataset_hash,
        code_version: code_version(),
        created_by: actor(),
        aliases: a.alias.clone(),
        champion_if_none: a.champion_if_none,
    };
    let record = block_on(store.register(new))?;
    card.version = record.version;
    card.created_at = record.created_at.clone();
    let html = write_card_files(home, &card)?;
    block_on(store.close());
    let mut out = outcome_json(&card, &record.aliases, &html);
    out["reused"] = false.into();
    out["early_stopping"] =
        json!({"trees_trained": log.trees_trained, "best_iteration": log.best_iteration});
    Ok(out)
}

fn outcome_json(card: &ModelCard, aliases: &[String], html: &Path) -> serde_json::Value {
    let ev = &card.evaluation;
    let metrics: serde_json::Value = ev
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.value)))
        .collect();
    json!({
        "model": card.model,
        "version": card.version,
        "aliases": aliases,
        "kind": card.selection.as_ref().map_or("gbdt", |s| match s.chosen {
            keel_ml::select::Candidate::Gbdt => "gbdt",
            keel_ml::select::Candidate::Linear => "linear",
        }),
        "objective": card.objective,
        "metrics": metrics,
        "metrics_ci": ev.metrics,
        "baseline_metrics": card.baseline.as_ref().map(|b| &b.metrics),
        "train_seconds": card.train_seconds,
        "trees": card.trees,
        "selection": card.selection,
        "limitations": card.limitations,
        "rows_train": card.data.train_rows,
        "rows_test": card.data.test_rows,
        "dataset_hash": card.lineage.dataset_hash,
        "model_sha256": card.lineage.model_sha256,
        "fairness": ev.fairness.iter().map(|f| json!({
            "column": f.column,
            "demographic_parity_difference": f.demographic_parity_difference,
            "equal_opportunity_difference": f.equal_opportunity_difference,
        })).collect::<Vec<_>>(),
        "top_features": ev.shap.as_ref().map(|s| s.features.iter().take(5).map(|f| f.0.clone()).collect::<Vec<_>>()),
        "card_html": html,
    })
}

/// Writes `cards/NAME/vN.html` and `.json` under the home, atomically; returns the HTML path.
pub fn write_card_files(home: &Path, card: &ModelCard) -> Result<PathBuf> {
    let dir = home.join("cards").join(&card.model);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let html = dir.join(format!("v{}.html", card.version));
    write_atomic(&html, keel_ml::card::render_html(card).as_bytes())?;
    write_atomic(
        &dir.join(format!("v{}.json", card.version)),
        serde_json::to_string_pretty(card)?.as_bytes(),
    )?;
    Ok(std::fs::canonicalize(&html).unwrap_or(html))
}

/// Temporary file (`.NAME.tmp-PID` next to it), fsync, rename. Leftovers of writers that were killed
/// mid-write (their process is gone) are removed first, so a crash never leaves a `.tmp` file for good.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    sweep_stale_tmp(dir);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes `.*.tmp-PID` files in `dir` whose writer process no longer exists.
fn sweep_stale_tmp(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".tmp-"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The monitoring reference of a new version: bins from the training rows (deciles of numeric features,
/// the levels of categorical ones; tenths of the probability, or deciles of a regression's predictions) and the
/// holdout rows' counts over them, predictions included.
fn reference_profile(model: &keel_ml::Model, x_train: &[f64], x_test: &[f64]) -> serde_json::Value {
    use keel_monitor::profile::{BinSpec, ProfileSpec, bin_edges};
    let features: Vec<(String, Option<Vec<String>>)> = model
        .features
        .iter()
        .map(|f| {
            let levels = match &f.kind {
                keel_ml::FeatureKind::Categorical { levels } => Some(levels.clone()),
                keel_ml::FeatureKind::Numeric => None,
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

/// Trains the trees on (x, y); with early stopping, 10 % of those rows are held out to decide when to stop.
fn fit_gbdt(
    specs: &[FeatureSpec],
    x: &[f64],
    y: &[f64],
    objective: Objective,
    params: &GbdtParams,
    seed: u64,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<(keel_ml::gbdt::Ensemble, keel_ml::gbdt::TrainLog)> {
    let nf = specs.len();
    if params.early_stopping_rounds == 0 {
        return Ok(keel_ml::gbdt::train(
            specs, x, y, objective, params, None, progress,
        )?);
    }
    let (tr, va) = keel_ml::split::train_test_split(
        y,
        0.1,
        seed.wrapping_add(1),
        objective == Objective::Binary,
    );
    let (fx, fy) = take_rows(x, y, &tr, nf);
    let (vx, vy) = take_rows(x, y, &va, nf);
    Ok(keel_ml::gbdt::train(
        specs,
        &fx,
        &fy,
        objective,
        params,
        Some((vx.as_slice(), vy.as_slice())),
        progress,
    )?)
}
