//! `keel serve`, `keel keys`, `keel predict`.

use anyhow::{Context, Result};
use keel_core::Role;
use keel_engine::{ModelCache, UnseenCategory};
use keel_server::{AppState, ServerConfig};
use keel_store::Store;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{block_on, input_error};
use crate::cli::{KeysCreateArgs, KeysListArgs, KeysRevokeArgs, PredictArgs, ServeArgs};
use crate::output::{bar, print_json};

/// The `keel.toml` file. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    serve: Option<ServerConfig>,
}

/// Defaults < `[serve]` in keel.toml < flags.
/// `[serve]` from `--config FILE`, else from `./keel.toml` when there is one, else the defaults.
pub fn file_config(config: Option<&Path>) -> Result<ServerConfig> {
    let path: Option<PathBuf> = config.map(Path::to_path_buf).or_else(|| {
        Path::new("keel.toml")
            .exists()
            .then(|| PathBuf::from("keel.toml"))
    });
    Ok(match &path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let f: ConfigFile =
                toml::from_str(&text).map_err(|e| input_error(format!("{}: {e}", p.display())))?;
            f.serve.unwrap_or_default()
        }
        None => ServerConfig::default(),
    })
}

fn server_config(a: &ServeArgs) -> Result<ServerConfig> {
    let mut c = file_config(a.config.as_deref())?;
    if let Some(p) = a.port {
        c.port = p;
    }
    if let Some(h) = &a.host {
        c.host = h.clone();
    }
    if a.no_auth {
        c.auth = false;
    }
    if let Some(u) = &a.unseen_category {
        c.unseen_category = match u.as_str() {
            "reject" => UnseenCategory::Reject,
            "missing" => UnseenCategory::Missing,
            _ => {
                return Err(input_error(format!(
                    "--unseen-category '{u}' must be reject or missing"
                )));
            }
        };
    }
    if let Some(m) = a.max_records {
        c.max_records = m;
    }
    if let Some(m) = a.concurrency_limit {
        c.concurrency_limit = m;
    }
    if let Some(t) = a.header_read_timeout_ms {
        c.header_read_timeout_ms = t;
    }
    if let Some(m) = a.max_connections {
        c.max_connections = m;
    }
    if let Some(r) = a.rate_limit {
        c.rate_limit_per_second = r;
    }
    if a.no_monitoring {
        c.monitoring = false;
        c.prediction_log_rate = 0.0;
    }
    if let Some(r) = a.prediction_log_rate {
        c.prediction_log_rate = r;
    }
    if let Some(w) = a.monitor_window {
        c.monitor_window_seconds = w;
    }
    if a.no_worker {
        c.worker = false;
    }
    if a.guard {
        c.guard.enabled = true;
    }
    c.validate().map_err(input_error)?;
    Ok(c)
}

fn init_tracing(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: escape codes in a log file are noise, and styling costs on every request span.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        "text" => builder.init(),
        other => {
            return Err(input_error(format!(
                "--log-format '{other}' must be text or json"
            )));
        }
    }
    Ok(())
}

pub fn serve(home: &Path, a: &ServeArgs) -> Result<i32> {
    let config = server_config(a)?;
    init_tracing(&a.log_format)?;
    // A panic (caught per request and answered with 500) is one log line, not a multi-line backtrace.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a task panicked");
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let store = Arc::new(Store::open(home).await?);
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("binding {}:{}", config.host, config.port))?;
        let addr = listener.local_addr()?;
        if !config.auth {
            tracing::warn!(
                "API keys are DISABLED (--no-auth): anyone who can reach {addr} can use every route"
            );
        }
        let limits = config.connection_limits();
        let state = AppState::new(store, config).await?;
        state.spawn_background();
        // Jobs (queued by alert rules, `keel retrain --queue` or the API) run next to the server, on its store,
        // unless separate `keel worker`s run them (--no-worker).
        let worker = state.config.worker.then(|| state.start_worker());
        let app = keel_server::router(state.clone());
        tracing::info!(%addr, "keel serving");
        println!("listening on http://{addr}");
        keel_server::listen::serve(listener, app, limits, keel_server::shutdown_signal())
            .await
            .context("serving")?;
        // A running job stops at its next progress report and is recorded as cancelled.
        state.jobs.stop();
        state.release_singleton().await;
        if let Some(worker) = worker
            && tokio::time::timeout(std::time::Duration::from_secs(30), worker)
                .await
                .is_err()
        {
            tracing::warn!(
                "the job worker did not stop within 30 s; its job will be marked failed"
            );
        }
        state.flush_monitoring().await;
        tracing::info!("shut down cleanly");
        anyhow::Ok(0)
    })
}

pub fn keys_create(home: &Path, a: &KeysCreateArgs) -> Result<i32> {
    let role: Role = a.role.parse().map_err(input_error)?;
    let store = block_on(Store::open(home))?;
    let k = block_on(keel_engine::keys::create_key(
        &store,
        role,
        &a.description,
        &super::train::actor(),
    ))?;
    if a.json {
        print_json(&k);
    } else {
        println!("{}", k.key);
        eprintln!(
            "created key {} with role {} (shown once; store it now)",
            k.id, k.role
        );
    }
    Ok(0)
}

pub fn keys_list(home: &Path, a: &KeysListArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let keys = block_on(store.keys())?;
    if a.json {
        print_json(&serde_json::json!({"keys": keys}));
    } else {
        for k in keys {
            println!(
                "{:<14} {:<10} {:<26} {}",
                k.id,
                k.role,
                k.created_at,
                k.revoked_at
                    .map(|r| format!("revoked {r}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

pub fn keys_revoke(home: &Path, a: &KeysRevokeArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    if !block_on(store.revoke_key(&a.id, &super::train::actor()))? {
        return Err(input_error(format!("no active key '{}'", a.id)));
    }
    if a.json {
        print_json(&serde_json::json!({"revoked": a.id}));
    } else {
        println!("revoked {}", a.id);
    }
    Ok(0)
}

/// Streams the input in chunks: encode against the training schema, predict, append, write.
/// `keel predict`: scores a file; inputs and outputs in object storage are downloaded and uploaded around the
/// local scoring, and `--shard-index-env` picks one shard of a larger job.
pub fn predict(home: &Path, a: &PredictArgs) -> Result<i32> {
    let index = match &a.shard_index_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            input_error(format!(
                "--shard-index-env {var}: the variable is not set (an indexed Kubernetes Job sets JOB_COMPLETION_INDEX)"
            ))
        })?),
        None => None,
    };
    let sub = |p: &Path| {
        let s = p.to_string_lossy().to_string();
        match &index {
            Some(i) => s.replace("{index}", i),
            None => s,
        }
    };
    let (input, output) = (sub(&a.input), sub(&a.output));
    let (remote_in, remote_out) = (input.starts_with("s3://"), output.starts_with("s3://"));
    let mut local = a.clone();
    local.input = PathBuf::from(&input);
    local.output = PathBuf::from(&output);
    if !remote_in && !remote_out {
        return predict_local(home, &local);
    }
    let config = keel_store::StoreConfig::current()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = home
        .join("tmp")
        .join(format!("predict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name_of = |url: &str| url.rsplit('/').next().unwrap_or("data").to_string();
    let mut run = || -> Result<i32> {
        if remote_in {
            let p = dir.join(format!("in-{}", name_of(&input)));
            let n = rt.block_on(keel_store::download_url(&config, &input, &p))?;
            tracing::info!(bytes = n, from = %input, "downloaded the input");
            local.input = p;
        }
        let quarantine_url = remote_out.then(|| {
            let stem = output.rsplit_once('.').map_or(output.as_str(), |(s, _)| s);
            format!("{stem}.quarantine.csv")
        });
        if remote_out {
            local.output = dir.join(name_of(&output));
            if local.quarantine.is_none() {
                local.quarantine = Some(dir.join("quarantine.csv"));
            }
        }
        let code = predict_local(home, &local)?;
        if remote_out {
            if local.output.exists() {
                rt.block_on(keel_store::upload_url(&config, &local.output, &output))?;
            }
            if let (Some(q), Some(url)) = (&local.quarantine, &quarantine_url)
                && q.exists()
            {
                rt.block_on(keel_store::upload_url(&config, q, url))?;
            }
        }
        Ok(code)
    };
    let result = run();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn predict_local(home: &Path, a: &PredictArgs) -> Result<i32> {
    use crate::cli::{BadRows, UnseenArg};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = Arc::new(rt.block_on(Store::open(home))?);
    let unseen = match a.unseen_category {
        UnseenArg::Reject => UnseenCategory::Reject,
        UnseenArg::Missing => UnseenCategory::Missing,
    };
    let cache = ModelCache::new(store, unseen);
    let model = rt.block_on(cache.get(&a.model))?;
    let mut stream = keel_data::read::BatchStream::open(&a.input, a.batch_size.max(1))?;
    let mut out = crate::batch_out::Writer::create(&a.output)?;
    let quarantine_path = a.quarantine.clone().unwrap_or_else(|| {
        let stem = a
            .output
            .file_stem()
            .map_or_else(|| "predictions".into(), |s| s.to_string_lossy().to_string());
        a.output.with_file_name(format!("{stem}.quarantine.csv"))
    });
    let mut quarantine: Option<crate::batch_out::Quarantine> = None;
    let pb = bar(0, "scoring rows", a.json);
    let (mut done, mut scored, mut bad_rows) = (0usize, 0usize, 0usize);
    let mut shown: Vec<serde_json::Value> = Vec::new();
    let nf = model.schema.n_features();
    while let Some(table) = stream.next_table() {
        let table = table?;
        let check = model.check_batch(&table).map_err(|errs| {
            input_error(format!(
                "{}: {}; the file cannot be scored by {}@{}",
                a.input.display(),
                errs.iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                model.name,
                model.version
            ))
        })?;
        for (i, problems) in &check.bad {
            for p in problems.iter() {
                if shown.len() < 20 {
                    let column = p.path.rsplit_once("].").map_or("", |x| x.1);
                    shown.push(serde_json::json!({
                        "row": done + i + 1, "column": column, "problem": p.problem, "message": p.message,
                    }));
                }
            }
        }
        bad_rows += check.bad.len();
        if !check.bad.is_empty() && a.on_bad_rows == BadRows::Quarantine {
            if quarantine.is_none() {
                quarantine = Some(crate::batch_out::Quarantine::create(&quarantine_path)?);
            }
            quarantine
                .as_mut()
                .expect("created above")
                .write_rows(&table, &check.bad, done)?;
        }
        if a.on_bad_rows == BadRows::Quarantine || bad_rows == 0 {
            let preds: Vec<keel_engine::loaded::Prediction> = check
                .rows
                .chunks_exact(nf)
                .map(|r| model.predict_row(r, None))
                .collect();
            if check.bad.is_empty() {
                out.write_chunk(&table, &preds)?;
            } else {
                out.write_chunk(&crate::batch_out::take_rows(&table, &check.good)?, &preds)?;
            }
            scored += preds.len();
        }
        done += table.nrows;
        pb.set_length(done as u64);
        pb.set_position(done as u64);
    }
    pb.finish_and_clear();
    let rejected = a.on_bad_rows == BadRows::Reject && bad_rows > 0;
    if rejected {
        out.abandon();
        scored = 0;
    } else {
        out.finish()?;
    }
    if let Some(q) = quarantine {
        q.finish()?;
    }
    let summary = serde_json::json!({
        "model": model.name, "version": model.version, "rows": done, "scored": scored,
        "bad_rows": bad_rows,
        "output": if rejected { None } else { Some(&a.output) },
        "quarantine": (bad_rows > 0 && !rejected).then_some(&quarantine_path),
        "problems": shown,
    });
    if a.json {
        print_json(&summary);
    } else {
        if !rejected {
            println!(
                "scored {scored} of {done} rows with {}@{} → {}",
                model.name,
                model.version,
                a.output.display()
            );
        }
        if bad_rows > 0 {
            eprintln!(
                "keel: {bad_rows} rows of {} fail the model's input checks (the same checks as HTTP){}:",
                a.input.display(),
                if rejected {
                    "; nothing was written (--on-bad-rows reject)".to_string()
                } else {
                    format!(
                        "; they are in {} with their problems",
                        quarantine_path.display()
                    )
                }
            );
            for p in &shown {
                eprintln!(
                    "  row {}, column '{}': {} ({})",
                    p["row"],
                    p["column"].as_str().unwrap_or(""),
                    p["message"].as_str().unwrap_or(""),
                    p["problem"].as_str().unwrap_or("")
                );
            }
            if bad_rows > shown.len() {
                eprintln!("  …");
            }
        }
    }
    Ok(if bad_rows > 0 { 1 } else { 0 })
}
