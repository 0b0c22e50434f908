//! `keel runs list | show | compare` and `keel models delete | archive | annotate`.

use anyhow::Result;
use keel_app::runs::{DiffRow, RunComparison};
use keel_store::{RunFilter, RunMetric, RunRecord, Store};
use std::collections::BTreeMap;
use std::path::Path;

use super::{block_on, input_error};
use crate::cli::{
    AnnotateArgs, ArchiveArgs, JsonArgs, RunShowArgs, RunsCompareArgs, RunsListArgs, VersionRefArgs,
};
use crate::output::print_json;

/// `KEY=VALUE` pairs from repeated `--tag` flags.
pub fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>> {
    tags.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(input_error(format!("--tag '{t}': write KEY=VALUE"))),
        })
        .collect()
}

/// The metric a list shows for a run: its model's primary metric when it has one, else the first logged.
fn headline(r: &RunRecord) -> String {
    for k in [
        "auc", "log_loss", "rmse", "accuracy", "cv_auc", "cv_loss", "loss",
    ] {
        if let Some(m) = r.metrics.get(k) {
            return format!("{k}={}", fmt_value(m.value));
        }
    }
    r.metrics
        .iter()
        .next()
        .map_or("–".into(), |(k, m)| format!("{k}={}", fmt_value(m.value)))
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn when(ms: i64) -> String {
    keel_core::time::unix_to_display(ms / 1000)
}

pub fn list(home: &Path, a: &RunsListArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let runs = block_on(store.runs(&RunFilter {
        experiment: a.experiment.clone(),
        limit: Some(a.limit),
    }))?;
    if a.json {
        print_json(&serde_json::json!({ "runs": runs }));
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no runs yet (keel train records one; so does POST /v1/runs from your own code)");
        return Ok(0);
    }
    println!(
        "{:<12} {:<18} {:<18} {:<7} {:<9} {:<22} {:<14} started",
        "run", "experiment", "name", "source", "status", "metric", "registered"
    );
    for r in &runs {
        println!(
            "{:<12} {:<18} {:<18} {:<7} {:<9} {:<22} {:<14} {}",
            &r.id[..12.min(r.id.len())],
            r.experiment,
            if r.name.is_empty() { "–" } else { &r.name },
            r.source,
            r.status.as_str(),
            headline(r),
            r.registered.as_deref().unwrap_or("–"),
            when(r.start_ms)
        );
    }
    Ok(0)
}

pub fn show(home: &Path, a: &RunShowArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let r = block_on(keel_app::runs::resolve(&store, &a.id))?;
    if a.json {
        print_json(&r);
        return Ok(0);
    }
    println!(
        "run {} ({})",
        r.id,
        if r.name.is_empty() {
            "unnamed"
        } else {
            &r.name
        }
    );
    println!("  experiment: {}", r.experiment);
    println!("  source:     {} by {}", r.source, r.created_by);
    println!(
        "  status:     {} (started {}, {:.1} s)",
        r.status.as_str(),
        when(r.start_ms),
        r.duration_seconds()
    );
    if let Some(h) = &r.data_hash {
        println!("  data:       {h}");
    }
    if let Some(s) = r.seed {
        println!("  seed:       {s}");
    }
    if let Some(v) = &r.registered {
        println!("  registered: {v}");
    }
    if !r.params.is_empty() {
        println!("parameters:");
        for (k, v) in &r.params {
            println!("  {k:<32} {v}");
        }
    }
    if !r.metrics.is_empty() {
        println!("metrics (latest step):");
        for (k, m) in &r.metrics {
            println!("  {k:<32} {}", metric_text(m));
        }
    }
    if !r.tags.is_empty() {
        println!("tags:");
        for (k, v) in &r.tags {
            println!("  {k:<32} {v}");
        }
    }
    if !r.artifacts.is_empty() {
        println!("artifacts:");
        for f in &r.artifacts {
            println!(
                "  {:<32} {} bytes  sha256 {}",
                f.path,
                f.size,
                &f.sha256[..12]
            );
        }
    }
    Ok(0)
}

fn metric_text(m: &RunMetric) -> String {
    let mut s = fmt_value(m.value);
    if let (Some(l), Some(u)) = (m.lower, m.upper) {
        s.push_str(&format!(" [{}, {}]", fmt_value(l), fmt_value(u)));
    }
    if m.steps > 1 {
        s.push_str(&format!(" ({} steps)", m.steps));
    }
    s
}

pub fn experiments(home: &Path, a: &JsonArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let list = block_on(store.experiments())?;
    if a.json {
        let v: Vec<_> = list
            .iter()
            .map(|(name, runs)| serde_json::json!({ "experiment": name, "runs": runs }))
            .collect();
        print_json(&serde_json::json!({ "experiments": v }));
    } else if list.is_empty() {
        println!("no experiments yet (keel train files its run under the model's name)");
    } else {
        println!("{:<32} runs", "experiment");
        for (name, runs) in &list {
            println!("{name:<32} {runs}");
        }
    }
    Ok(0)
}

pub fn compare(home: &Path, a: &RunsCompareArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let c = block_on(keel_app::runs::compare(&store, &a.ids))?;
    if a.json {
        print_json(&c);
    } else {
        print_comparison(&c);
    }
    Ok(0)
}

fn print_comparison(c: &RunComparison) {
    let width = 30;
    let cell = |s: &str| {
        let s: String = s.chars().take(width - 1).collect();
        format!("{s:<width$}")
    };
    let header: String = c
        .runs
        .iter()
        .map(|r| {
            let label = if r.name.is_empty() {
                r.id[..12.min(r.id.len())].to_string()
            } else {
                format!("{} {}", &r.id[..8.min(r.id.len())], r.name)
            };
            cell(&label)
        })
        .collect();
    println!("{:<30} {header}", "");
    fn section<T>(
        title: &str,
        rows: &[DiffRow<T>],
        show: impl Fn(&T) -> String,
        cell: &dyn Fn(&str) -> String,
    ) {
        if rows.is_empty() {
            return;
        }
        println!("{title}");
        for r in rows {
            let vals: String = r
                .values
                .iter()
                .map(|v| cell(&v.as_ref().map_or("–".to_string(), &show)))
                .collect();
            let key: String = r.key.chars().take(28).collect();
            println!("  {key:<28} {vals}");
        }
    }
    section("run", &c.attributes, |s| s.clone(), &cell);
    section("parameters", &c.params, |s| s.clone(), &cell);
    section("metrics", &c.metrics, metric_text, &cell);
    section("tags", &c.tags, |s| s.clone(), &cell);
    println!(
        "({} parameters, metrics and tags are the same in every run and not shown)",
        c.identical
    );
}

pub fn delete(home: &Path, a: &VersionRefArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let c = block_on(keel_app::registry::delete_version(
        &store,
        &a.reference,
        &super::train::actor(),
    ))?;
    if a.json {
        print_json(&c);
    } else {
        println!(
            "deleted {}@{} ({}); the audit log keeps the record",
            c.model,
            c.version,
            if c.artifact_removed == Some(true) {
                "artifact removed"
            } else {
                "artifact kept: another version refers to it"
            }
        );
    }
    Ok(0)
}

pub fn archive(home: &Path, a: &ArchiveArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let c = block_on(keel_app::registry::archive_version(
        &store,
        &a.reference,
        !a.restore,
        &super::train::actor(),
    ))?;
    if a.json {
        print_json(&c);
    } else {
        println!("{}@{}: {}", c.model, c.version, c.outcome);
    }
    Ok(0)
}

pub fn annotate(home: &Path, a: &AnnotateArgs) -> Result<i32> {
    let store = block_on(Store::open(home))?;
    let v = block_on(keel_app::registry::annotate_version(
        &store,
        &a.reference,
        &keel_app::registry::Annotation {
            description: a.description.clone(),
            tags: parse_tags(&a.tags)?,
        },
        &super::train::actor(),
    ))?;
    if a.json {
        print_json(&v);
    } else {
        println!(
            "{}@{}: {}",
            v.model,
            v.version,
            if v.description.is_empty() {
                "(no description)"
            } else {
                &v.description
            }
        );
        for (k, val) in &v.tags {
            println!("  {k} = {val}");
        }
    }
    Ok(0)
}
