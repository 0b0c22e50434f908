//! `keel demo loop`: the closed loop on the employment data, end to end, through a real server on loopback.
//!
//! 1. Train `employment-loop` on 2015 and make it the champion.
//! 2. Serve it; replay 2016 and 2017 as traffic (`NAME@champion`), labels arriving after each year; show
//!    drift (server monitoring) and realized ROC-AUC (delayed labels joined by request id) per year.
//! 3. Retrain on 2015 + labelled 2016; the gate compares challenger and champion on labelled 2017; a passing
//!    challenger goes to canary.
//! 4. Replay 2018: the canary answers its share; labels arrive; the rollout judge promotes it.
//! 5. A challenger trained on shuffled labels is rejected by the gate, the reasons in the audit log.
//! 6. `keel rollback` restores the old champion; the audit chain verifies.

use anyhow::{Context, Result, bail};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use keel_app::retrain::RetrainSpec;
use keel_data::read::RawTable;
use keel_engine::rollout::RolloutPolicy;
use keel_server::{AppState, ServerConfig};
use keel_store::{JobState, Selector, Store};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{DemoLoopArgs, TrainArgs};
use crate::output::{bar, print_json};

const MODEL: &str = "employment-loop";
const LABEL: &str = "employed";

/// Columns of every file the demo writes, in order: identifiers, features, year, label.
fn columns(t: &RawTable) -> Vec<String> {
    t.columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| !["prediction", "predicted_probability", LABEL].contains(&n.as_str()))
        .collect()
}

fn column(t: &RawTable, name: &str) -> Result<ArrayRef> {
    t.columns
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.array.clone())
        .with_context(|| format!("{}: no column '{name}'", t.path.display()))
}

/// Strings and dictionaries as plain strings (so pieces from different files concatenate).
fn plain(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(match a.data_type() {
        DataType::Dictionary(_, _) | DataType::LargeUtf8 | DataType::Utf8View => {
            arrow_cast::cast(a, &DataType::Utf8)?
        }
        _ => a.clone(),
    })
}

/// Rows `idx` of the named columns of `t`, the label taken from `labels` when given (the analysis rows keep
/// their labels in a separate file, aligned by row).
fn pick(
    t: &RawTable,
    labels: Option<&RawTable>,
    names: &[String],
    idx: &[u32],
) -> Result<Vec<ArrayRef>> {
    let take = arrow_array::UInt32Array::from(idx.to_vec());
    let mut out = Vec::with_capacity(names.len() + 1);
    for n in names {
        out.push(arrow_select::take::take(
            &plain(&column(t, n)?)?,
            &take,
            None,
        )?);
    }
    let y = column(labels.unwrap_or(t), LABEL)?;
    out.push(arrow_select::take::take(&plain(&y)?, &take, None)?);
    Ok(out)
}

fn concat(parts: &[Vec<ArrayRef>]) -> Result<Vec<ArrayRef>> {
    (0..parts[0].len())
        .map(|j| {
            let arrays: Vec<&dyn Array> = parts.iter().map(|p| p[j].as_ref()).collect();
            Ok(arrow_select::concat::concat(&arrays)?)
        })
        .collect()
}

/// Writes Parquet with string columns as dictionaries (so they read back as categorical, as in the source).
fn write_parquet(path: &Path, names: &[String], arrays: &[ArrayRef]) -> Result<()> {
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (n, a) in names
        .iter()
        .chain(std::iter::once(&LABEL.to_string()))
        .zip(arrays)
    {
        let a = if a.data_type() == &DataType::Utf8 {
            arrow_cast::cast(
                a,
                &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            )?
        } else {
            a.clone()
        };
        fields.push(Field::new(n, a.data_type().clone(), true));
        cols.push(a);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    let tmp = path.with_extension("parquet.tmp");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Evenly spaced row indexes: all `n`, or `limit` of them.
fn sample(rows: &[u32], limit: usize) -> Vec<u32> {
    if limit == 0 || rows.len() <= limit {
        return rows.to_vec();
    }
    let stride = rows.len() as f64 / limit as f64;
    (0..limit)
        .map(|k| rows[(k as f64 * stride) as usize])
        .collect()
}

/// JSON records of the feature columns (numbers as numbers, codes as strings).
fn records(arrays: &[ArrayRef], names: &[String], features: &[usize]) -> Result<Vec<Value>> {
    let n = arrays[0].len();
    let opts = arrow_cast::display::FormatOptions::default();
    let fmts: Vec<_> = features
        .iter()
        .map(|&j| arrow_cast::display::ArrayFormatter::try_new(arrays[j].as_ref(), &opts))
        .collect::<Result<_, _>>()?;
    let numeric: Vec<bool> = features
        .iter()
        .map(|&j| arrays[j].data_type().is_numeric())
        .collect();
    Ok((0..n)
        .map(|i| {
            let mut o = serde_json::Map::new();
            for (k, &j) in features.iter().enumerate() {
                let v = if arrays[j].is_null(i) {
                    Value::Null
                } else {
                    let s = fmts[k].value(i).to_string();
                    if numeric[k] {
                        s.parse::<f64>().map(Value::from).unwrap_or(Value::Null)
                    } else {
                        Value::String(s)
                    }
                };
                o.insert(names[j].clone(), v);
            }
            Value::Object(o)
        })
        .collect())
}

fn labels_of(arrays: &[ArrayRef]) -> Result<Vec<String>> {
    let y = arrays.last().expect("label column");
    let opts = arrow_cast::display::FormatOptions::default();
    let f = arrow_cast::display::ArrayFormatter::try_new(y.as_ref(), &opts)?;
    Ok((0..y.len()).map(|i| f.value(i).to_string()).collect())
}

/// One year of traffic: its records and labels.
struct Year {
    year: i64,
    records: Vec<Value>,
    labels: Vec<String>,
}

pub fn demo_loop(home: &Path, a: &DemoLoopArgs) -> Result<i32> {
    if !(a.canary > 0.0 && a.canary <= 100.0) {
        bail!("--canary {} must be a percentage in (0, 100]", a.canary);
    }
    let quiet = a.json;
    let say = |s: String| {
        if !quiet {
            eprintln!("keel demo: {s}");
        }
    };
    let started = Instant::now();
    let work = a.workdir.clone().unwrap_or_else(|| home.join("demo-loop"));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    // --- Data: 2015 (reference) and 2016–2018 (analysis + its labels), as Parquet files per purpose.
    let reference_path = crate::assets::employment_reference(quiet)?;
    let dir = reference_path.parent().expect("cache dir").to_path_buf();
    let reference = keel_data::read::read_table(&reference_path)?;
    let analysis = keel_data::read::read_table(&dir.join("employment_MA_analysis.pq"))?;
    let targets = keel_data::read::read_table(&dir.join("employment_MA_analysis_target.pq"))?;
    let names = columns(&analysis);
    {
        let ids = arrow_cast::cast(&column(&analysis, "id")?, &DataType::Int64)?;
        let tids = arrow_cast::cast(&column(&targets, "id")?, &DataType::Int64)?;
        if ids.to_data() != tids.to_data() {
            bail!("the analysis rows and their labels are not aligned by id");
        }
    }
    let years_col = arrow_cast::cast(&column(&analysis, "year")?, &DataType::Int64)?;
    let years_col = years_col
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .context("year column")?
        .clone();
    let features: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !["id", "year"].contains(&n.as_str()))
        .map(|(j, _)| j)
        .collect();
    let all_2015: Vec<u32> = (0..reference.nrows as u32).collect();
    let train_2015 = pick(
        &reference,
        None,
        &names,
        &sample(&all_2015, a.rows_per_year),
    )?;
    let mut years = Vec::new();
    let mut labelled = std::collections::BTreeMap::new();
    for y in [2016i64, 2017, 2018] {
        let rows: Vec<u32> = (0..analysis.nrows as u32)
            .filter(|&i| years_col.value(i as usize) == y)
            .collect();
        let arrays = pick(
            &analysis,
            Some(&targets),
            &names,
            &sample(&rows, a.rows_per_year),
        )?;
        years.push(Year {
            year: y,
            records: records(&arrays, &names, &features)?,
            labels: labels_of(&arrays)?,
        });
        labelled.insert(y, arrays);
    }
    let p2015 = work.join("employment_2015.parquet");
    write_parquet(&p2015, &names, &train_2015)?;
    let p2017 = work.join("employment_2017_labelled.parquet");
    write_parquet(&p2017, &names, &labelled[&2017])?;
    let retrain_data = concat(&[train_2015.clone(), labelled[&2016].clone()])?;
    let p_retrain = work.join("employment_2015_2016.parquet");
    write_parquet(&p_retrain, &names, &retrain_data)?;
    let mut shuffled = retrain_data.clone();
    let mut perm: Vec<u32> = (0..shuffled[0].len() as u32).collect();
    perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
    let last = shuffled.len() - 1;
    shuffled[last] =
        arrow_select::take::take(&shuffled[last], &arrow_array::UInt32Array::from(perm), None)?;
    let p_shuffled = work.join("employment_2015_2016_shuffled_labels.parquet");
    write_parquet(&p_shuffled, &names, &shuffled)?;
    say(format!(
        "data: {} rows of 2015, {} / {} / {} rows of 2016 / 2017 / 2018 in {}",
        train_2015[0].len(),
        years[0].records.len(),
        years[1].records.len(),
        years[2].records.len(),
        work.display()
    ));

    // --- The 2015 champion.
    let trained = super::train::train(
        home,
        &TrainArgs {
            objective: Some("binary".into()),
            sensitive: vec!["SEX".into(), "RAC1P".into()],
            drop: vec!["id".into(), "year".into()],
            trees: a.trees,
            alias: vec!["champion".into()],
            model: crate::cli::ModelArg::Gbdt,
            description: Some(
                "Employment status from ACS person records (Massachusetts); keel demo loop.".into(),
            ),
            json: true,
            champion_if_none: true,
            ..TrainArgs::defaults(p2015.clone(), LABEL, MODEL)
        },
    )?;
    let v1 = trained
        .version
        .context("the demo registers its first model")?;
    say(format!(
        "trained {MODEL}@{v1} on 2015 (holdout ROC-AUC {:.4}); it is the champion",
        trained.metrics.get("auc").copied().unwrap_or(f64::NAN)
    ));

    // --- The server, in this process, on a free loopback port.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let h = rt.handle().clone();
    let store = Arc::new(h.block_on(Store::open(home))?);
    let min_labels = (years[2].records.len() / 10).clamp(50, 200);
    let config = ServerConfig {
        port: 0,
        monitor_window_seconds: 1,
        monitor_flush_ms: 200,
        prediction_log_rate: 1.0,
        refresh_interval_ms: 200,
        rollout: RolloutPolicy {
            min_labels,
            ..RolloutPolicy::default()
        },
        // The demo judges the canary itself once 2018's labels are in.
        rollout_interval_ms: 3_600_000,
        ..ServerConfig::default()
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let (state, base, key) = h.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let key = keel_engine::keys::create_key(
            &store,
            keel_core::Role::Predictor,
            "keel demo loop traffic",
            &super::train::actor(),
        )
        .await?;
        let limits = config.connection_limits();
        let state = AppState::new(store.clone(), config).await?;
        state.spawn_background();
        let app = keel_server::router(state.clone());
        tokio::spawn(keel_server::listen::serve(
            listener,
            app,
            limits,
            std::future::pending(),
        ));
        anyhow::Ok((state, format!("http://{addr}"), key.key))
    })?;
    say(format!("serving on {base}"));
    let client = reqwest::Client::new();

    let mut report_years = Vec::new();
    let mut retrain_out = Value::Null;
    let mut canary_out = Value::Null;
    for year in &years {
        if year.year == 2018 {
            // --- Retrain on 2015 + labelled 2016, gate on labelled 2017, canary on 2018.
            let spec = RetrainSpec {
                data: std::path::absolute(&p_retrain)?,
                holdout: std::path::absolute(&p2017)?,
                canary: Some(a.canary / 100.0),
                shadow: false,
                gate: Default::default(),
                trees: Some(a.trees),
            };
            let job = h.block_on(run_retrain(&store, &spec))?;
            say(format!("retrain job {}: {}", job.id, job.message));
            if job.state != JobState::Succeeded || job.result["passed"] != json!(true) {
                bail!(
                    "the retrained challenger did not pass the gate: {}",
                    job.message
                );
            }
            retrain_out = json!({"job": job.id, "challenger": job.result["challenger"], "gate": job.result["gate"]});
            h.block_on(state.cache.refresh())?;
        }
        let t0_ms = keel_core::time::now_unix_ms();
        let t0 = Instant::now();
        let served = h.block_on(replay(&client, &base, &key, year, a.batch, quiet))?;
        // Labels arrive after the year's traffic.
        let labels: Vec<Value> = served
            .iter()
            .map(|(rid, row, i)| json!({"request_id": rid, "row": row, "label": year.labels[*i]}))
            .collect();
        let mut stored = 0;
        for chunk in labels.chunks(5000) {
            let r: Value = h.block_on(async {
                client
                    .post(format!("{base}/v1/models/{MODEL}@champion/feedback"))
                    .bearer_auth(&key)
                    .json(&json!({"labels": chunk}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await
            })?;
            stored += r["stored"].as_u64().unwrap_or(0);
        }
        let windows = t0.elapsed().as_secs() + 2;
        let monitor: Value = h.block_on(async {
            client
                .get(format!(
                    "{base}/v1/models/{MODEL}@champion/monitor?windows={windows}"
                ))
                .bearer_auth(&key)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        })?;
        let cols = monitor["drift"]["columns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let drifted: Vec<String> = cols
            .iter()
            .filter(|c| c["drifted"] == json!(true) && c["name"] != json!("prediction"))
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        let prediction_drift = cols
            .iter()
            .any(|c| c["name"] == json!("prediction") && c["drifted"] == json!(true));
        // Realized ROC-AUC per version that answered this year.
        let rows = h.block_on(store.labelled(MODEL, t0_ms))?;
        let mut by_version: std::collections::BTreeMap<i64, (Vec<f64>, Vec<f64>)> =
            Default::default();
        for l in rows {
            let e = by_version.entry(l.version).or_default();
            e.0.push(l.label);
            e.1.push(l.output);
        }
        let auc: serde_json::Map<String, Value> = by_version
            .iter()
            .map(|(v, (y, p))| {
                (
                    format!("v{v}"),
                    json!({"labelled": y.len(), "roc_auc": keel_ml::metrics::roc_auc(y, p)}),
                )
            })
            .collect();
        say(format!(
            "{}: {} rows served, {} labels joined; drifted features: {} ({}); prediction drift: {}; realized ROC-AUC: {}",
            year.year,
            served.len(),
            stored,
            drifted.len(),
            if drifted.is_empty() {
                "none".to_string()
            } else {
                drifted.join(", ")
            },
            if prediction_drift { "yes" } else { "no" },
            auc.iter()
                .map(|(k, v)| format!(
                    "{k} {:.4} ({} labels)",
                    v["roc_auc"].as_f64().unwrap_or(f64::NAN),
                    v["labelled"]
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        report_years.push(json!({
            "year": year.year,
            "rows": served.len(),
            "labels_joined": stored,
            "drifted_features": drifted,
            "prediction_drift": prediction_drift,
            "realized": auc,
        }));
        if year.year == 2018 {
            // --- The rollout judge decides on the canary from the delayed labels.
            let evals = h.block_on(state.judge_rollouts());
            let ev = evals
                .into_iter()
                .find(|e| e.model == MODEL)
                .context("no rollout was judged")?;
            say(format!(
                "canary decision: {} ({})",
                ev.decision.as_str(),
                ev.reason
            ));
            canary_out = serde_json::to_value(&ev)?;
        }
        // Windows are one second long: the next year starts in a fresh one.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let champion_now = h.block_on(store.get(MODEL, &Selector::Alias("champion".into())))?;
    say(format!("{MODEL}@champion is now v{}", champion_now.version));

    // --- A challenger trained on shuffled labels: the gate must reject it.
    let bad = h.block_on(run_retrain(
        &store,
        &RetrainSpec {
            data: std::path::absolute(&p_shuffled)?,
            holdout: std::path::absolute(&p2017)?,
            canary: Some(a.canary / 100.0),
            shadow: false,
            gate: Default::default(),
            trees: Some(a.trees),
        },
    ))?;
    say(format!(
        "retrain job {} (shuffled labels): {}",
        bad.id, bad.message
    ));
    let bad_out = json!({"job": bad.id, "state": bad.state, "challenger": bad.result["challenger"],
        "passed": bad.result["passed"], "reasons": bad.result["gate"]["reasons"]});

    // --- Rollback: the champion alias returns to the version before the promotion.
    let (before, after) = h.block_on(super::models::rollback_alias(
        &store,
        MODEL,
        "champion",
        &super::train::actor(),
    ))?;
    say(format!(
        "rollback: {MODEL}@champion v{} -> v{after}",
        before.map_or("?".into(), |b| b.to_string())
    ));
    let verification = h.block_on(store.audit_verify())?;
    let records = h.block_on(store.audit_records())?;
    let decisions: Vec<Value> = records
        .iter()
        .filter(|r| {
            r.target.starts_with(MODEL)
                || r.action.starts_with("retrain")
                || r.action.starts_with("rollout")
                || r.action.starts_with("deploy")
        })
        .map(|r| json!({"seq": r.seq, "action": r.action, "target": r.target, "actor": r.actor}))
        .collect();
    say(format!(
        "audit log: {} records, chain {}",
        verification.records,
        if verification.ok {
            "verified"
        } else {
            "BROKEN"
        }
    ));
    drop(state);
    rt.shutdown_timeout(Duration::from_secs(2));
    let out = json!({
        "model": MODEL,
        "champion_2015": v1,
        "years": report_years,
        "retrain": retrain_out,
        "canary": canary_out,
        "champion_after_canary": champion_now.version,
        "bad_challenger": bad_out,
        "rollback": {"before": before, "after": after},
        "audit": {"ok": verification.ok, "records": verification.records, "decisions": decisions},
        "seconds": started.elapsed().as_secs_f64(),
    });
    if a.json {
        print_json(&out);
    } else {
        println!(
            "loop closed in {:.1} s: champion v{v1} → canary promoted to v{} → shuffled-label challenger v{} rejected → rolled back to v{after}; audit chain {}",
            started.elapsed().as_secs_f64(),
            champion_now.version,
            bad.result["challenger"],
            if verification.ok {
                "verified"
            } else {
                "BROKEN"
            }
        );
    }
    Ok(if verification.ok { 0 } else { 1 })
}

/// Queues a retraining job and runs it here, as `keel retrain` does.
async fn run_retrain(store: &Store, spec: &RetrainSpec) -> Result<keel_store::JobRecord> {
    let job = keel_app::jobs::enqueue(
        store,
        MODEL,
        &keel_app::jobs::JobSpec::Retrain(spec.clone()),
        &super::train::actor(),
        false,
    )
    .await?;
    let job = store
        .claim_job_id(job.id, &keel_store::worker_id())
        .await?
        .context("the job was claimed elsewhere")?;
    Ok(keel_app::jobs::run_job(store, job, None, None).await?)
}

/// Sends a year's records in batches to `NAME@champion`; returns (request id, row in request, record index).
async fn replay(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    year: &Year,
    batch: usize,
    quiet: bool,
) -> Result<Vec<(String, usize, usize)>> {
    let pb = bar(
        year.records.len() as u64,
        &format!("replaying {}", year.year),
        quiet,
    );
    let mut out = Vec::with_capacity(year.records.len());
    for (b, chunk) in year.records.chunks(batch.max(1)).enumerate() {
        let resp = client
            .post(format!("{base}/v1/models/{MODEL}@champion/predict"))
            .bearer_auth(key)
            .json(&json!({"records": chunk}))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("prediction request failed with {status}: {body}");
        }
        let rid = body["request_id"]
            .as_str()
            .context("response without request_id")?
            .to_string();
        for r in 0..chunk.len() {
            out.push((rid.clone(), r, b * batch.max(1) + r));
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}
