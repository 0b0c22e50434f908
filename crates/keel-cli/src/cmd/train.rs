//! `keel train` and `keel quickstart`: flags → a typed [`keel_app::train::TrainSpec`], the training use case
//! with a progress bar, and the outcome for a person or as JSON.

use anyhow::Result;
use keel_app::train::{Progress, TrainOutcome, TrainSettings, TrainSpec, stage};
use keel_data::infer::InferOptions;
use keel_data::read_table;
use keel_ml::Objective;
use keel_ml::gbdt::{ClassWeight, GbdtParams, Loss};
use keel_store::Store;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{block_on, input_error};
use crate::cli::{QuickstartArgs, TrainArgs};
use crate::output::{bar, print_json, spinner};

pub use keel_app::files::{write_atomic, write_card_files};
pub use keel_app::train::code_version;

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

/// The typed training request for these flags; a declared schema file is read here.
pub fn spec_of(a: &TrainArgs) -> Result<TrainSpec> {
    let (objective, loss) = match a.objective.as_deref() {
        None => (None, Loss::L2),
        Some("binary") | Some("classification") => (Some(Objective::Binary), Loss::L2),
        Some("multiclass") => (Some(Objective::Multiclass), Loss::L2),
        Some(o) => {
            let loss = match o {
                "regression" | "l2" => Loss::L2,
                "l1" => Loss::L1,
                "huber" => Loss::Huber {
                    delta: a.huber_delta,
                },
                "poisson" => Loss::Poisson,
                "gamma" => Loss::Gamma,
                "tweedie" => Loss::Tweedie {
                    variance_power: a.tweedie_variance_power,
                },
                "quantile" => Loss::Quantile {
                    alpha: a.quantile_alpha,
                },
                _ => {
                    return Err(input_error(format!(
                        "unknown objective '{o}' (use binary, multiclass, regression, l1, huber, poisson, gamma, tweedie or quantile)"
                    )));
                }
            };
            (Some(Objective::Regression), loss)
        }
    };
    let time_split = match a.split.as_str() {
        "random" => None,
        s => match s.strip_prefix("time:") {
            Some(c) if !c.is_empty() => Some(c.to_string()),
            _ => {
                return Err(input_error(format!(
                    "--split '{s}' is neither 'random' nor 'time:COLUMN'"
                )));
            }
        },
    };
    let time_features = a
        .time_features
        .iter()
        .map(|t| parse_time_features(t))
        .collect::<Result<Vec<_>>>()?;
    let mut monotone_constraints = std::collections::BTreeMap::new();
    for m in &a.monotone {
        let (name, dir) = m.rsplit_once(':').ok_or_else(|| {
            input_error(format!(
                "--monotone '{m}': expected FEATURE:+1 or FEATURE:-1"
            ))
        })?;
        let c: i8 = match dir {
            "+1" | "1" | "increasing" => 1,
            "-1" | "decreasing" => -1,
            "0" | "none" => 0,
            _ => {
                return Err(input_error(format!(
                    "--monotone '{m}': the direction '{dir}' is neither +1 nor -1"
                )));
            }
        };
        monotone_constraints.insert(name.to_string(), c);
    }
    let class_weight = match a.class_weight.as_deref() {
        None | Some("none") => ClassWeight::None,
        Some("balanced") => ClassWeight::Balanced,
        Some(w) => ClassWeight::Positive(w.parse().map_err(|_| {
            input_error(format!(
                "--class-weight '{w}' is neither 'balanced' nor a number"
            ))
        })?),
    };
    let schema = a
        .schema
        .as_deref()
        .map(keel_data::schema_file::load)
        .transpose()?;
    Ok(TrainSpec {
        data: a.data.clone(),
        name: a.name.clone(),
        settings: TrainSettings {
            target: a.target.clone(),
            objective,
            test_size: a.test_size,
            seed: a.seed,
            drop: a.drop.clone(),
            sensitive: a.sensitive.clone(),
            slices: a.slices.clone(),
            schema,
            gbdt: GbdtParams {
                n_trees: a.trees,
                learning_rate: a.learning_rate,
                num_leaves: a.num_leaves,
                max_depth: a.max_depth,
                min_data_in_leaf: a.min_data_in_leaf,
                feature_fraction: a.feature_fraction,
                bagging_fraction: a.bagging_fraction,
                lambda_l1: a.lambda_l1,
                lambda_l2: a.lambda_l2,
                min_gain_to_split: a.min_gain_to_split,
                max_bins: a.max_bins,
                early_stopping_rounds: a.early_stopping.unwrap_or(0),
                class_weight,
                loss,
                monotone_constraints,
                num_threads: a.threads,
                seed: a.seed,
                ..GbdtParams::default()
            },
            threshold: a.threshold,
            model: a.model.into(),
            interval_level: a.interval_level,
            time_split,
            time_features,
        },
        test: a.test.clone(),
        aliases: a.alias.clone(),
        champion_if_none: a.champion_if_none,
        description: a.description.clone(),
        reuse_identical: false,
        register: !a.no_register,
        run: keel_app::runs::RunOptions {
            experiment: a.experiment.clone(),
            name: a.run_name.clone(),
            tags: super::runs::parse_tags(&a.tags)?,
        },
    })
}

/// `COLUMN` or `COLUMN:PART,PART` (`--time-features`).
fn parse_time_features(t: &str) -> Result<keel_app::train::TimeFeatures> {
    let (column, parts) = match t.split_once(':') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    if column.trim().is_empty() {
        return Err(input_error(format!(
            "--time-features '{t}' names no column (COLUMN or COLUMN:hour,day_of_week)"
        )));
    }
    let parts = parts
        .into_iter()
        .flat_map(|p| p.split(','))
        .map(|p| {
            keel_core::time::TimePart::parse(p).ok_or_else(|| {
                let known: Vec<&str> = keel_core::time::TimePart::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect();
                input_error(format!(
                    "--time-features '{t}': unknown part '{p}' (parts: {})",
                    known.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(keel_app::train::TimeFeatures {
        column: column.trim().to_string(),
        parts,
    })
}

/// Trains, evaluates and registers with a progress display on stderr.
pub fn train(home: &Path, a: &TrainArgs) -> Result<TrainOutcome> {
    let spec = spec_of(a)?;
    run_spec(home, spec, a.json)
}

fn run_spec(home: &Path, spec: TrainSpec, quiet: bool) -> Result<TrainOutcome> {
    let ui = TerminalProgress::new(spec.settings.gbdt.n_trees as u64, quiet);
    let out = block_on(async {
        let store = Store::open(home).await?;
        let r = keel_app::train::train(&store, spec, &actor(), ui.hook()).await;
        store.close().await;
        anyhow::Ok(r?)
    });
    ui.finish();
    out
}

/// Progress of a training on the terminal: a spinner per stage, a bar over the trees.
pub struct TerminalProgress {
    state: Arc<Mutex<(String, indicatif::ProgressBar)>>,
    trees: u64,
    quiet: bool,
}

impl TerminalProgress {
    pub fn new(trees: u64, quiet: bool) -> Self {
        TerminalProgress {
            state: Arc::new(Mutex::new((
                String::new(),
                indicatif::ProgressBar::hidden(),
            ))),
            trees,
            quiet,
        }
    }

    pub fn hook(&self) -> Progress {
        let (state, trees, quiet) = (self.state.clone(), self.trees, self.quiet);
        Arc::new(move |st: &str, f: f64| {
            let mut g = state.lock().expect("progress state");
            if g.0 != st {
                g.1.finish_and_clear();
                g.1 = match st {
                    stage::TRAINING => bar(trees, "training trees", quiet),
                    stage::READING => spinner("reading data", quiet),
                    stage::CHOOSING => spinner("choosing between trees and a linear model", quiet),
                    other => spinner(other, quiet),
                };
                g.0 = st.to_string();
            }
            if st == stage::TRAINING {
                g.1.set_position((f * trees as f64) as u64);
            }
            true
        })
    }

    pub fn finish(&self) {
        self.state
            .lock()
            .expect("progress state")
            .1
            .finish_and_clear();
    }
}

fn report(out: &TrainOutcome, json: bool) {
    let v = serde_json::to_value(out).expect("outcomes serialise");
    let out = &v;
    if json {
        print_json(out);
        return;
    }
    let m = &out["metrics"];
    let ci = &out["metrics_ci"];
    let run = out["run_id"].as_str().unwrap_or("");
    if out["version"].is_null() {
        println!(
            "recorded run {run} ({}, not registered: keel runs show {})",
            out["kind"].as_str().unwrap_or(""),
            &run[..12.min(run.len())]
        );
    } else {
        println!(
            "registered {}@{} ({}){}{}",
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
                .unwrap_or_default(),
            if run.is_empty() {
                String::new()
            } else {
                format!(", run {}", &run[..12.min(run.len())])
            }
        );
    }
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
    for w in out["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            println!("  warning: {w}");
        }
    }
    println!("  model card: {}", out["card_html"].as_str().unwrap_or(""));
}

/// The employment quickstart: the same pipeline as `keel train` on the 2015 census rows.
pub fn quickstart(home: &Path, a: &QuickstartArgs) -> Result<i32> {
    let data = crate::assets::employment_reference(a.json)?;
    let args = quickstart_args(data, a.json);
    let mut spec = spec_of(&args)?;
    if !a.force {
        spec.reuse_identical = true;
        if home.join("registry.db").exists() {
            let out = block_on(async {
                let store = Store::open(home).await?;
                let r = keel_app::train::existing_identical(&store, &spec).await;
                store.close().await;
                anyhow::Ok(r?)
            })?;
            if let Some(out) = out {
                report(&out, a.json);
                return Ok(0);
            }
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
    let out = run_spec(home, spec, a.json)?;
    report(&out, a.json);
    Ok(0)
}

fn quickstart_args(data: PathBuf, json: bool) -> TrainArgs {
    TrainArgs {
        objective: Some("binary".into()),
        sensitive: vec!["SEX".into(), "RAC1P".into(), "AGEP".into()],
        drop: vec!["id".into(), "year".into(), "prediction".into(), "predicted_probability".into()],
        alias: vec!["champion".into()],
        model: crate::cli::ModelArg::Auto,
        champion_if_none: true,
        description: Some(
            "Predicts whether a Massachusetts resident is employed, from the 2015 US Census American Community Survey. \
             A demonstration model for Keel's lifecycle (drift, delayed labels, retraining); not for decisions about people."
                .into(),
        ),
        json,
        ..TrainArgs::defaults(data, "employed", "employment")
    }
}
