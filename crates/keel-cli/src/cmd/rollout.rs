//! The closed loop from the command line: `keel retrain` (a persisted job: train a challenger, gate it
//! against the champion, start its canary or shadow), `keel jobs`, `keel deploy` and `keel rollback`; and the
//! job worker that `keel serve` runs next to the server.

use anyhow::{Context, Result};
use keel_core::Schema;
use keel_engine::rollout::{RetrainSpec, RolloutPolicy};
use keel_ml::gate::{GateOptions, GateReport};
use keel_store::{AuditEvent, JobRecord, JobState, Selector, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

use super::{block_on, input_error};
use crate::cli::{DeployArgs, JobsCommand, RetrainArgs, RollbackArgs};
use crate::output::{bar, print_json};

/// Jobs whose worker has not reported for this long are marked failed.
const STALE_MS: i64 = 120_000;

pub fn retrain_cmd(home: &Path, a: &RetrainArgs) -> Result<i32> {
    if let Some(c) = a.canary
        && !(c > 0.0 && c <= 100.0)
    {
        return Err(input_error(format!(
            "--canary {c} must be a percentage in (0, 100]"
        )));
    }
    for (flag, p) in [("--data", &a.data), ("--holdout", &a.holdout)] {
        if !p.exists() {
            return Err(input_error(format!("{flag} {}: no such file", p.display())));
        }
    }
    let spec = RetrainSpec {
        data: std::path::absolute(&a.data)?,
        holdout: std::path::absolute(&a.holdout)?,
        canary: a.canary.map(|c| c / 100.0),
        shadow: a.shadow,
        gate: GateOptions {
            min_delta: a.min_delta,
            max_regression: a.max_regression,
            fairness_tolerance: a.fairness_tolerance,
            seed: a.seed,
            ..GateOptions::default()
        },
        trees: a.trees,
    };
    let store = block_on(Store::open(home))?;
    // The champion must exist before anything is queued.
    block_on(store.get(&a.model, &Selector::Alias("champion".into()))).map_err(|e| {
        input_error(format!(
            "{e}: retraining gates a challenger against '{}@champion'",
            a.model
        ))
    })?;
    let job = block_on(store.enqueue_job(
        "retrain",
        &a.model,
        &serde_json::to_value(&spec)?,
        &super::train::actor(),
    ))?;
    if a.queue {
        block_on(store.close());
        if a.json {
            print_json(&job);
        } else {
            println!(
                "queued job {} (retrain {}); a running `keel serve` or `keel jobs work` picks it up",
                job.id, a.model
            );
        }
        return Ok(0);
    }
    let job = block_on(store.claim_job_id(job.id, &keel_store::worker_id()))?
        .context("the job was claimed by another worker")?;
    block_on(store.close());
    let done = run_job(home, job, a.json)?;
    report_job(&done, a.json);
    Ok(if done.state == JobState::Succeeded {
        0
    } else {
        1
    })
}

fn report_job(j: &JobRecord, json: bool) {
    if json {
        print_json(j);
        return;
    }
    println!(
        "job {} ({} {}): {}",
        j.id,
        j.kind,
        j.model,
        j.state.as_str()
    );
    for line in j.message.lines() {
        println!("  {line}");
    }
    if let Some(reasons) = j.result["gate"]["reasons"].as_array() {
        for r in reasons {
            println!("  - {}", r.as_str().unwrap_or_default());
        }
    }
}

/// Runs a claimed job to its end and records the outcome; returns the final record.
pub fn run_job(home: &Path, job: JobRecord, quiet: bool) -> Result<JobRecord> {
    let outcome = match job.kind.as_str() {
        "retrain" => retrain(home, &job, quiet),
        other => Err(input_error(format!("unknown job kind '{other}'"))),
    };
    let store = block_on(Store::open(home))?;
    let (state, message, result) = match outcome {
        Ok((message, result)) => (JobState::Succeeded, message, result),
        Err(e)
            if e.downcast_ref::<keel_ml::Error>()
                .is_some_and(|e| matches!(e, keel_ml::Error::Cancelled)) =>
        {
            (
                JobState::Cancelled,
                "cancelled while training; nothing was registered".to_string(),
                Value::Null,
            )
        }
        Err(e) => (JobState::Failed, format!("{e:#}"), Value::Null),
    };
    block_on(store.finish_job(job.id, state, &message, &result))?;
    let done = block_on(store.job(job.id))?;
    block_on(store.close());
    Ok(done)
}

/// The champion's training settings, applied to new data.
fn challenger_args(
    champion: &keel_store::VersionRecord,
    spec: &RetrainSpec,
    data_columns: &[String],
    quiet: bool,
) -> Result<crate::cli::TrainArgs> {
    let p = &champion.params;
    let g = &p["gbdt"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let class_weight = match &g["class_weight"] {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("positive").map(|w| w.to_string()),
        _ => None,
    };
    let target = p["target"]
        .as_str()
        .context("the champion's parameters name no target")?
        .to_string();
    Ok(crate::cli::TrainArgs {
        data: spec.data.clone(),
        target,
        name: champion.model.clone(),
        objective: Some(champion.objective.clone()),
        test_size: 0.2,
        test: Some(spec.holdout.clone()),
        seed: p["seed"].as_u64().unwrap_or(0),
        sensitive: strings(&p["sensitive"]),
        slices: vec![],
        // Columns the champion dropped that the new data lacks need no dropping.
        drop: strings(&p["drop"])
            .into_iter()
            .filter(|c| data_columns.contains(c))
            .collect(),
        schema: None,
        trees: spec
            .trees
            .unwrap_or_else(|| g["n_trees"].as_u64().unwrap_or(300) as usize),
        learning_rate: g["learning_rate"].as_f64().unwrap_or(0.05),
        num_leaves: g["num_leaves"].as_u64().unwrap_or(31) as usize,
        early_stopping: g["early_stopping_rounds"]
            .as_u64()
            .filter(|&r| r > 0)
            .map(|r| r as usize),
        class_weight,
        threshold: p["threshold"].as_f64().unwrap_or(0.5),
        alias: vec![],
        // The champion's kind, not a fresh choice: the gate compares like with like.
        model: match p["model"].as_str() {
            Some("linear") => crate::cli::ModelArg::Linear,
            _ => crate::cli::ModelArg::Gbdt,
        },
        champion_if_none: false,
        description: Some(format!(
            "Challenger to {}@{} retrained on {}.",
            champion.model,
            champion.version,
            spec.data.display()
        )),
        json: quiet,
    })
}

/// Loads a labelled file with a model's training schema: (frame, labels as 0/1 or values).
fn labelled_frame(
    path: &Path,
    record: &keel_store::VersionRecord,
    target: &str,
    class_labels: &Option<[String; 2]>,
) -> Result<(keel_core::Frame, Vec<f64>)> {
    let schema: Schema =
        serde_json::from_value(record.schema.clone()).context("reading the champion's schema")?;
    let (frame, _) = super::train::load_frame(path, None, Some(&schema))?;
    let col = frame.column(target).ok_or_else(|| {
        input_error(format!(
            "{}: the target column '{target}' is not in the holdout",
            path.display()
        ))
    })?;
    let mut y = Vec::with_capacity(col.len());
    for i in 0..col.len() {
        let v = col.display(i).ok_or_else(|| {
            input_error(format!(
                "{}: row {}: the label '{target}' is missing; the gate needs every holdout row labelled",
                path.display(),
                i + 1
            ))
        })?;
        y.push(match class_labels {
            Some(l) => {
                if v == l[1] {
                    1.0
                } else if v == l[0] {
                    0.0
                } else {
                    return Err(input_error(format!(
                        "{}: row {}: label '{v}' is neither '{}' nor '{}'",
                        path.display(),
                        i + 1,
                        l[0],
                        l[1]
                    )));
                }
            }
            None => v.parse().map_err(|_| {
                input_error(format!(
                    "{}: row {}: '{v}' is not a number",
                    path.display(),
                    i + 1
                ))
            })?,
        });
    }
    Ok((frame, y))
}

fn load_model(store: &Store, v: &keel_store::VersionRecord) -> Result<keel_ml::Model> {
    Ok(keel_ml::Model::from_bytes(&block_on(
        store.model_bytes(v),
    )?)?)
}

/// The retraining job: train, gate, record the decision, start the rollout.
fn retrain(home: &Path, job: &JobRecord, quiet: bool) -> Result<(String, Value)> {
    let spec: RetrainSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| input_error(format!("job {}: the spec is invalid: {e}", job.id)))?;
    let store = block_on(Store::open(home))?;
    let champion = block_on(store.get(&job.model, &Selector::Alias("champion".into())))?;
    let columns: Vec<String> = keel_data::read::read_table(&spec.data)?
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let args = challenger_args(&champion, &spec, &columns, true)?;
    let pb = bar(1000, &format!("retraining {}", job.model), quiet);
    let mut last = std::time::Instant::now() - Duration::from_secs(10);
    let id = job.id;
    let out = super::train::train_with(home, &args, &mut |stage, frac| {
        pb.set_position((frac * 1000.0) as u64);
        if frac >= 0.5 {
            keel_store::failpoint("retrain.training");
        }
        if last.elapsed() < Duration::from_millis(500) && frac < 1.0 {
            return true;
        }
        last = std::time::Instant::now();
        // The store is async; a short runtime per report keeps training itself synchronous.
        block_on(async {
            let s = Store::open(home).await?;
            let r = s.job_progress(id, 0.05 + 0.8 * frac, stage).await;
            s.close().await;
            r
        })
        .map(|cancel| !cancel)
        .unwrap_or(true)
    })?;
    pb.finish_and_clear();
    let version = out["version"]
        .as_i64()
        .context("training reported no version")?;
    block_on(store.job_progress(id, 0.9, "gating"))?;
    let challenger = block_on(store.get(&job.model, &Selector::Version(version)))?;
    let (m_old, m_new) = (
        load_model(&store, &champion)?,
        load_model(&store, &challenger)?,
    );
    let (holdout, y) = labelled_frame(&spec.holdout, &champion, &args.target, &m_old.class_labels)?;
    let opts = GateOptions {
        sensitive: if spec.gate.sensitive.is_empty() {
            args.sensitive.clone()
        } else {
            spec.gate.sensitive.clone()
        },
        threshold: args.threshold,
        ..spec.gate.clone()
    };
    let report: GateReport = keel_ml::gate::compare(&m_old, &m_new, &holdout, &y, &opts)?;
    let holdout_hash = keel_data::hash::file_sha256(&spec.holdout)?;
    // Holdout rows the challenger trained on make the gate optimistic; row hashes find them cheaply.
    let shared_rows = keel_data::hash::shared_rows(
        &keel_data::read::read_table(&spec.data)?,
        &keel_data::read::read_table(&spec.holdout)?,
    )?;
    let evidence = json!({
        "job": id,
        "champion": champion.version,
        "challenger": version,
        "holdout": spec.holdout,
        "holdout_sha256": holdout_hash,
        "data": spec.data,
        "holdout_rows_in_training_data": shared_rows,
        "gate": report,
    });
    let actor = format!("{} (job {id})", job.created_by);
    block_on(
        store.audit(
            AuditEvent::new(
                &actor,
                "retrain.decision",
                &format!("{}@{version}", job.model),
            )
            .after(json!({"passed": report.passed}))
            .evidence(evidence.clone()),
        ),
    )?;
    let mut result = json!({
        "champion": champion.version,
        "challenger": version,
        "passed": report.passed,
        "holdout_rows_in_training_data": shared_rows,
        "gate": report,
    });
    let comparison = format!(
        "{} {:.4} vs champion v{} {:.4}, delta {:+.4} [{:+.4}, {:+.4}]",
        report.metric,
        report.challenger,
        champion.version,
        report.champion,
        report.delta,
        report.delta_lower,
        report.delta_upper
    );
    let message = if report.passed {
        block_on(store.set_alias(&job.model, "challenger", version, &actor))?;
        let mut started = Vec::new();
        if let Some(w) = spec.canary {
            block_on(store.deploy(&job.model, version, Some(w), &actor, evidence.clone()))?;
            started.push(format!("canary at {:.0} %", w * 100.0));
        }
        if spec.shadow {
            block_on(store.deploy(&job.model, version, None, &actor, evidence.clone()))?;
            started.push("shadow".to_string());
        }
        result["rollout"] = json!(started);
        format!(
            "challenger {}@{version} passed the gate ({}){}",
            job.model,
            comparison,
            if started.is_empty() {
                String::new()
            } else {
                format!("; started {}", started.join(" and "))
            }
        )
    } else {
        format!(
            "challenger {}@{version} was rejected by the gate ({comparison}): {}",
            job.model,
            report.reasons.join("; ")
        )
    };
    let message = match shared_rows {
        0 => message,
        n => format!(
            "{message}\nwarning: {n} rows of the holdout also occur in the training data {}: the gate's comparison is optimistic for the challenger; use a holdout the challenger never saw",
            spec.data.display()
        ),
    };
    block_on(store.close());
    Ok((message, result))
}

/// `keel jobs ...`
pub fn jobs_cmd(home: &Path, c: &JobsCommand) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let recovered = block_on(store.recover_jobs(STALE_MS))?;
    for id in &recovered {
        eprintln!("keel: job {id} was interrupted (its worker stopped); marked failed");
    }
    match c {
        JobsCommand::List(a) => {
            let jobs = block_on(store.jobs(a.limit))?;
            if a.json {
                print_json(&json!({"jobs": jobs}));
            } else {
                for j in jobs {
                    println!(
                        "{:>4}  {:<8} {:<20} {:<10} {:>5.0} %  {}",
                        j.id,
                        j.kind,
                        j.model,
                        j.state.as_str(),
                        j.progress * 100.0,
                        if j.message.is_empty() {
                            &j.stage
                        } else {
                            &j.message
                        }
                    );
                }
            }
        }
        JobsCommand::Show(a) => {
            let j = block_on(store.job(a.id))?;
            report_job(&j, a.json);
        }
        JobsCommand::Cancel(a) => {
            let j = block_on(store.cancel_job(a.id, &super::train::actor()))?;
            if a.json {
                print_json(&j);
            } else if j.state == JobState::Cancelled {
                println!("job {} cancelled", j.id);
            } else {
                println!("job {} will stop at its next progress report", j.id);
            }
        }
        JobsCommand::Work(a) => {
            block_on(store.close());
            let n = work(home, a.forever, a.json)?;
            if !a.forever && a.json {
                print_json(&json!({"ran": n}));
            }
            return Ok(0);
        }
    }
    block_on(store.close());
    Ok(0)
}

/// Runs queued jobs: until none is left, or forever (polling once a second).
pub fn work(home: &Path, forever: bool, quiet: bool) -> Result<usize> {
    work_with(home, forever, quiet, &|| {})
}

/// [`work`], calling `alive` each time the worker has polled the queue successfully.
fn work_with(home: &Path, forever: bool, quiet: bool, alive: &dyn Fn()) -> Result<usize> {
    let worker = keel_store::worker_id();
    let mut n = 0;
    loop {
        keel_store::panicpoint("worker.poll");
        let store = block_on(Store::open(home))?;
        block_on(store.recover_jobs(STALE_MS))?;
        let job = block_on(store.claim_job(&worker))?;
        block_on(store.close());
        alive();
        match job {
            Some(j) => {
                tracing::info!(job = j.id, kind = %j.kind, model = %j.model, "job started");
                let done = run_job(home, j, true)?;
                tracing::info!(job = done.id, state = done.state.as_str(), message = %done.message, "job finished");
                if !quiet && !forever {
                    report_job(&done, false);
                }
                n += 1;
            }
            None if forever => std::thread::sleep(Duration::from_secs(1)),
            None => return Ok(n),
        }
    }
}

/// Starts the job worker on its own thread (for `keel serve`). It survives transient failures, errors and
/// panics alike (out of file descriptors, say): each is logged, reported in `health` (`/healthz`,
/// `/readyz`) and retried with exponential backoff from 1 s to 30 s. Should the thread ever end, `health` says
/// it stopped and `/healthz` fails.
pub fn spawn_worker(home: &Path, health: std::sync::Arc<keel_server::WorkerHealth>) {
    use keel_server::WorkerState;
    struct Stopped(std::sync::Arc<keel_server::WorkerHealth>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            self.0.set(WorkerState::Stopped {
                error: "the job worker thread ended".into(),
            });
        }
    }
    let home = home.to_path_buf();
    health.set(WorkerState::Running);
    let spawned = std::thread::Builder::new()
        .name("keel-jobs".into())
        .spawn(move || {
            let _stopped = Stopped(health.clone());
            let failures = std::cell::Cell::new(0u32);
            loop {
                let alive = || {
                    if failures.replace(0) > 0 {
                        health.set(WorkerState::Running);
                    }
                };
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work_with(&home, true, true, &alive)
                }));
                let error = match run {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into()),
                };
                let n = failures.get().saturating_add(1);
                failures.set(n);
                let wait = Duration::from_secs((1u64 << (n - 1).min(5)).min(30));
                tracing::warn!(error = %error, failures = n, retry_in_s = wait.as_secs(), "job worker failed; retrying");
                health.set(WorkerState::Retrying { error, failures: n });
                std::thread::sleep(wait);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the job worker");
    }
}

/// `keel deploy NAME@V --canary P | --shadow`, `keel deploy NAME --status | --promote | --stop`.
pub fn deploy_cmd(home: &Path, a: &DeployArgs) -> Result<i32> {
    let (model, sel) = Selector::parse(&a.reference)?;
    let actor = super::train::actor();
    let store = block_on(Store::open(home))?;
    let modes = [a.canary.is_some(), a.shadow, a.promote, a.stop, a.status]
        .iter()
        .filter(|b| **b)
        .count();
    if modes != 1 {
        return Err(input_error(
            "give exactly one of --canary PERCENT, --shadow, --promote, --stop or --status",
        ));
    }
    let out = if a.canary.is_some() || a.shadow {
        let Selector::Version(v) = sel else {
            return Err(input_error(format!(
                "'{}': name the version to deploy, as NAME@VERSION",
                a.reference
            )));
        };
        let weight = match a.canary {
            Some(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(input_error(format!(
                    "--canary {p} must be a percentage in (0, 100]"
                )));
            }
            Some(p) => Some(p / 100.0),
            None => None,
        };
        let r = block_on(store.deploy(&model, v, weight, &actor, json!({"by": "keel deploy"})))?;
        json!({"model": model, "rollout": r})
    } else if a.promote {
        let ev = evaluation(&store, &model)?;
        let (before, after) =
            block_on(store.promote_canary(&model, &actor, serde_json::to_value(&ev)?))?;
        json!({"model": model, "champion": {"before": before, "after": after}, "evaluation": ev})
    } else if a.stop {
        let ev = evaluation(&store, &model)?;
        let r = block_on(store.end_rollout(
            &model,
            "rollout.stop",
            &actor,
            serde_json::to_value(&ev)?,
        ))?;
        json!({"model": model, "stopped": r})
    } else {
        let r = block_on(store.rollout(&model))?;
        let ev = match &r {
            Some(_) => Some(evaluation(&store, &model)?),
            None => None,
        };
        json!({"model": model, "rollout": r, "evaluation": ev})
    };
    block_on(store.close());
    if a.json {
        print_json(&out);
    } else {
        print!("{}", deploy_text(&out));
    }
    Ok(0)
}

/// `keel deploy` for a person: what runs, the labels so far, and the judge's decision.
fn deploy_text(out: &Value) -> String {
    use std::fmt::Write;
    let model = out["model"].as_str().unwrap_or("");
    let mut t = String::new();
    let arm = |a: &Value, what: &str| -> String {
        if a.is_null() {
            return String::new();
        }
        format!(
            "  {what} v{}: {} on {} labels\n",
            a["version"],
            a["metric"]
                .as_f64()
                .map_or("not yet measurable".to_string(), |m| format!("{m:.4}")),
            a["labelled"]
        )
    };
    let rollout = |r: &Value, t: &mut String| {
        if let Some(v) = r["canary_version"].as_i64() {
            let _ = writeln!(
                t,
                "{model}: canary v{v} answers {:.0} % of {model}@champion requests (since {})",
                r["canary_weight"].as_f64().unwrap_or(0.0) * 100.0,
                r["started_at"].as_str().unwrap_or("?")
            );
        }
        if let Some(v) = r["shadow_version"].as_i64() {
            let _ = writeln!(
                t,
                "{model}: shadow v{v} scores every {model}@champion request without answering (since {})",
                r["started_at"].as_str().unwrap_or("?")
            );
        }
    };
    if let Some(c) = out.get("champion") {
        let _ = writeln!(
            t,
            "{model}: champion v{} → v{} (canary promoted; one audited alias move)",
            c["before"], c["after"]
        );
    } else if out.get("stopped").is_some() {
        let _ = writeln!(t, "{model}: rollout stopped; the champion is unchanged");
    } else if out["rollout"].is_null() {
        let _ = writeln!(t, "{model}: no canary or shadow running");
    } else {
        rollout(&out["rollout"], &mut t);
    }
    let ev = &out["evaluation"];
    if !ev.is_null() {
        let _ = writeln!(
            t,
            "  {} from delayed labels since the rollout started:",
            ev["metric"].as_str().unwrap_or("metric")
        );
        t.push_str(&arm(&ev["champion"], "champion"));
        t.push_str(&arm(&ev["canary"], "canary"));
        t.push_str(&arm(&ev["shadow"], "shadow"));
        let _ = writeln!(
            t,
            "  judge: {} ({})",
            ev["decision"].as_str().unwrap_or("?"),
            ev["reason"].as_str().unwrap_or("")
        );
    }
    t
}

fn evaluation(store: &Store, model: &str) -> Result<keel_engine::rollout::RolloutEvaluation> {
    let r = block_on(store.rollout(model))?
        .ok_or_else(|| input_error(format!("'{model}' has no canary or shadow running")))?;
    let champion = block_on(store.get(model, &Selector::Alias("champion".into())))?;
    let objective = if champion.objective == "regression" {
        keel_ml::Objective::Regression
    } else {
        keel_ml::Objective::Binary
    };
    Ok(block_on(keel_engine::rollout::evaluate(
        store,
        &r,
        champion.version,
        objective,
        &RolloutPolicy::default(),
    ))?)
}

/// `keel rollback NAME`: the champion alias back to the version it pointed at before its last move.
pub fn rollback_cmd(home: &Path, a: &RollbackArgs) -> Result<i32> {
    super::models::rollback(home, a)
}
