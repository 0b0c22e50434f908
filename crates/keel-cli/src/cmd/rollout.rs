//! The closed loop from the command line: `keel retrain` (a persisted job: train a challenger, gate it
//! against the champion, start its canary or shadow), `keel jobs`, `keel deploy` and `keel rollback`. The use
//! cases are keel-app's; this module maps flags to their typed inputs and prints their outputs.

use anyhow::{Context, Result};
use keel_app::jobs::{JobSpec, Worker};
use keel_app::retrain::RetrainSpec;
use keel_app::rollout::DeployMode;
use keel_engine::rollout::RolloutPolicy;
use keel_ml::gate::GateOptions;
use keel_store::{JobRecord, JobState, Selector, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{block_on, input_error};
use crate::cli::{DeployArgs, JobsCommand, RetrainArgs, RollbackArgs};
use crate::output::print_json;

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
    let ui = super::train::TerminalProgress::new(a.trees.unwrap_or(300) as u64, a.json || a.queue);
    let done = block_on(async {
        let store = Store::open(home).await?;
        let r = async {
            let job = keel_app::jobs::enqueue(
                &store,
                &a.model,
                &JobSpec::Retrain(spec),
                &super::train::actor(),
                false,
            )
            .await?;
            if a.queue {
                return anyhow::Ok(Err(job));
            }
            let job = store
                .claim_job_id(job.id, &keel_store::worker_id())
                .await?
                .context("the job was claimed by another worker")?;
            anyhow::Ok(Ok(keel_app::jobs::run_job(
                &store,
                job,
                Some(ui.hook()),
                None,
            )
            .await?))
        }
        .await;
        store.close().await;
        r
    });
    ui.finish();
    match done? {
        Err(queued) => {
            if a.json {
                print_json(&queued);
            } else {
                println!(
                    "queued job {} (retrain {}); a running `keel serve` or `keel jobs work` picks it up",
                    queued.id, a.model
                );
            }
            Ok(0)
        }
        Ok(done) => {
            report_job(&done, a.json);
            Ok(if done.state == JobState::Succeeded {
                0
            } else {
                1
            })
        }
    }
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

/// `keel jobs ...`
pub fn jobs_cmd(home: &Path, c: &JobsCommand) -> Result<i32> {
    block_on(async {
        let store = Arc::new(Store::open(home).await?);
        let r = jobs_with(&store, c).await;
        if let Ok(s) = Arc::try_unwrap(store) {
            s.close().await;
        }
        r
    })
}

async fn jobs_with(store: &Arc<Store>, c: &JobsCommand) -> Result<i32> {
    let recovered = store.recover_jobs(keel_app::jobs::STALE_MS).await?;
    for id in &recovered {
        eprintln!("keel: job {id} was interrupted (its worker stopped); marked failed");
    }
    match c {
        JobsCommand::List(a) => {
            let jobs = store.jobs(a.limit).await?;
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
            let j = store.job(a.id).await?;
            report_job(&j, a.json);
        }
        JobsCommand::Cancel(a) => {
            let j = store.cancel_job(a.id, &super::train::actor()).await?;
            if a.json {
                print_json(&j);
            } else if j.state == JobState::Cancelled {
                println!("job {} cancelled", j.id);
            } else {
                println!("job {} will stop at its next progress report", j.id);
            }
        }
        JobsCommand::Work(a) => {
            let worker = Worker::new(store.clone());
            if a.forever {
                // Until Ctrl-C or SIGTERM: the running job stops at its next progress report.
                let w = worker.clone();
                tokio::spawn(async move {
                    keel_app::shutdown_signal().await;
                    w.stop();
                });
                worker.run().await;
                return Ok(0);
            }
            let done = worker.drain().await?;
            if a.json {
                print_json(&json!({"ran": done.len()}));
            } else {
                for j in &done {
                    report_job(j, false);
                }
            }
        }
    }
    Ok(0)
}

/// The rollout policy `keel serve` would use: `[serve.rollout]` of `--config`, else of ./keel.toml.
fn policy(config: Option<&Path>) -> Result<RolloutPolicy> {
    let path: Option<PathBuf> = config.map(Path::to_path_buf).or_else(|| {
        Path::new("keel.toml")
            .exists()
            .then(|| PathBuf::from("keel.toml"))
    });
    Ok(keel_app::rollout::policy_from_file(path.as_deref())?)
}

/// `keel deploy NAME@V --canary P | --shadow`, `keel deploy NAME --status | --promote | --stop`.
pub fn deploy_cmd(home: &Path, a: &DeployArgs) -> Result<i32> {
    let (model, sel) = Selector::parse(&a.reference)?;
    let actor = super::train::actor();
    let modes = [a.canary.is_some(), a.shadow, a.promote, a.stop, a.status]
        .iter()
        .filter(|b| **b)
        .count();
    if modes != 1 {
        return Err(input_error(
            "give exactly one of --canary PERCENT, --shadow, --promote, --stop or --status",
        ));
    }
    let policy = policy(a.config.as_deref())?;
    let mode = if a.canary.is_some() || a.shadow {
        let Selector::Version(v) = sel else {
            return Err(input_error(format!(
                "'{}': name the version to deploy, as NAME@VERSION",
                a.reference
            )));
        };
        match a.canary {
            Some(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(input_error(format!(
                    "--canary {p} must be a percentage in (0, 100]"
                )));
            }
            Some(p) => Some((v, DeployMode::Canary { weight: p / 100.0 })),
            None => Some((v, DeployMode::Shadow)),
        }
    } else {
        None
    };
    let out = block_on(async {
        let store = Store::open(home).await?;
        let r: Result<Value> = async {
            use keel_app::rollout as r;
            Ok(if let Some((v, mode)) = mode {
                json!({"model": model, "rollout": r::deploy(&store, &model, v, mode, &actor).await?})
            } else if a.promote {
                let p = r::promote(&store, &model, &policy, &actor).await?;
                json!({"model": model, "champion": {"before": p.before, "after": p.after}, "evaluation": p.evaluation})
            } else if a.stop {
                json!({"model": model, "stopped": r::stop(&store, &model, &policy, &actor).await?})
            } else {
                serde_json::to_value(r::status(&store, &model, &policy).await?)?
            })
        }
        .await;
        store.close().await;
        r
    })?;
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

/// `keel rollback NAME`: the champion alias back to the version it pointed at before its last move.
pub fn rollback_cmd(home: &Path, a: &RollbackArgs) -> Result<i32> {
    super::models::rollback(home, a)
}
