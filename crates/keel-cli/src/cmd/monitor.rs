//! `keel monitor drift`, `keel audit verify | export`.

use anyhow::{Context, Result};
use keel_monitor::DriftOptions;
use serde::Serialize;
use std::time::Instant;

use crate::cli::{AuditExportArgs, AuditVerifyArgs, DriftArgs, FeedbackArgs, MonitorReportArgs};
use crate::output::{print_json, spinner};
use std::path::Path;

#[derive(Serialize)]
struct DriftOutput<'a> {
    #[serde(flatten)]
    report: &'a keel_monitor::DriftReport,
    reference: String,
    current: String,
    /// Columns not compared (unsupported types), with the reason.
    skipped: Vec<(String, String)>,
    /// Wall-clock seconds for the whole comparison, reading both files included.
    seconds: f64,
}

pub fn drift(a: &DriftArgs) -> Result<i32> {
    let start = Instant::now();
    let sp = spinner("reading both files", a.json);
    let (reference, current) = std::thread::scope(|s| {
        let r = s.spawn(|| keel_data::columnar::read_typed(&a.reference));
        let c = keel_data::columnar::read_typed(&a.current);
        (r.join().expect("reader thread panicked"), c)
    });
    let reference = reference.with_context(|| format!("reading {}", a.reference.display()))?;
    let current = current.with_context(|| format!("reading {}", a.current.display()))?;
    sp.set_message("comparing");
    let opts = DriftOptions {
        alpha: a.alpha,
        psi_threshold: a.psi_threshold,
        effect_threshold: a.effect_threshold,
        ..Default::default()
    };
    let report = keel_monitor::compare(&reference.frame, &current.frame, &opts)?;
    let seconds = start.elapsed().as_secs_f64();
    sp.finish_and_clear();
    if let Some(path) = &a.html {
        let title = format!("{} → {}", a.reference.display(), a.current.display());
        super::train::write_atomic(path, keel_monitor::report::html(&report, &title).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut skipped = reference.skipped.clone();
    skipped.extend(current.skipped.iter().cloned());
    skipped.sort();
    skipped.dedup();
    if a.json {
        print_json(&DriftOutput {
            report: &report,
            reference: a.reference.display().to_string(),
            current: a.current.display().to_string(),
            skipped,
            seconds,
        });
    } else {
        println!(
            "{} of {} columns drifted ({:.2} s)",
            report.drifted_columns,
            report.columns.len(),
            seconds
        );
        let mut cols: Vec<_> = report.columns.iter().collect();
        cols.sort_by(|x, y| y.drifted.cmp(&x.drifted).then(x.name.cmp(&y.name)));
        for c in cols {
            let effect = match (c.cramers_v, c.statistic) {
                (Some(v), _) => format!("V {v:.3}"),
                (None, Some(d)) => format!("KS {d:.3}"),
                _ => "-".into(),
            };
            println!(
                "  {:<3} {:<24} {:<11} PSI {:>8} {:<10} {}",
                if c.drifted { "!!" } else { "" },
                c.name,
                c.kind,
                c.psi.map_or("-".into(), |p| format!("{p:.4}")),
                effect,
                c.reason
            );
        }
        for (name, why) in &skipped {
            println!("  skipped {name}: {why}");
        }
        if !report.unmatched.is_empty() {
            println!("  on one side only: {}", report.unmatched.join(", "));
        }
        if let Some(p) = &a.html {
            println!("report: {}", p.display());
        }
    }
    Ok(i32::from(report.drifted_columns > 0))
}

pub fn audit_verify(home: &Path, a: &AuditVerifyArgs) -> Result<i32> {
    let trusted = a
        .public_key
        .as_deref()
        .map(keel_store::audit::verifying_key)
        .transpose()?;
    let store = super::block_on(keel_store::Store::open(home))?;
    let v = super::block_on(store.audit_verify_signed(trusted.as_ref()))?;
    if a.json {
        print_json(&v);
    } else if v.ok {
        let signed = match v.signature.as_deref() {
            Some("valid") => "; head signature valid",
            Some("unchecked") => "; the head is signed (pass --public-key to check the signature)",
            Some("unsigned") => "; the head is not signed (see keel audit keygen)",
            _ => "",
        };
        println!("audit log intact: {} records{signed}", v.records);
    } else {
        println!(
            "audit log BROKEN at record {}: {}",
            v.first_bad.unwrap_or(0),
            v.problem.as_deref().unwrap_or("unknown problem")
        );
    }
    Ok(i32::from(!v.ok))
}

pub fn audit_keygen(a: &crate::cli::AuditKeygenArgs) -> Result<i32> {
    use rand::Rng;
    let seed: [u8; 32] = rand::rng().random();
    let public = keel_store::audit::public_key_hex(&seed);
    let secret = hex::encode(seed);
    if a.json {
        print_json(&serde_json::json!({"secret": secret, "public": public}));
    } else {
        println!("KEEL_AUDIT_SIGNING_KEY={secret}");
        println!("KEEL_AUDIT_PUBLIC_KEY={public}");
        eprintln!(
            "keel: keep the signing key out of the Keel home (a secret store or a mounted file) and give it to every writer; anyone verifying needs only the public key"
        );
    }
    Ok(0)
}

pub fn audit_export(home: &Path, a: &AuditExportArgs) -> Result<i32> {
    let store = super::block_on(keel_store::Store::open(home))?;
    let records = super::block_on(store.audit_records())?;
    let mut out = String::new();
    for r in &records {
        out.push_str(&r.to_json().to_string());
        out.push('\n');
    }
    match &a.output {
        Some(p) => super::train::write_atomic(p, out.as_bytes())?,
        None => print!("{out}"),
    }
    Ok(0)
}

pub fn report(home: &Path, a: &MonitorReportArgs) -> Result<i32> {
    if a.hours.is_nan() || a.hours <= 0.0 {
        return Err(super::input_error("--hours must be positive"));
    }
    let store = super::block_on(keel_store::Store::open(home))?;
    let (name, sel) = keel_store::Selector::parse(&a.model)?;
    let record = super::block_on(store.get(&name, &sel))?;
    let since = keel_engine::monitor::now_unix() - (a.hours * 3600.0) as i64;
    let r = super::block_on(keel_engine::monitor::report(
        &store,
        &record,
        since,
        a.window_seconds.max(1) as i64,
        &DriftOptions::default(),
    ))?;
    if let Some(path) = &a.html {
        super::train::write_atomic(path, r.html().as_bytes())?;
    }
    if a.json {
        print_json(&r);
    } else {
        println!(
            "{}@{}: {} rows in {} window(s); {} of {} columns drifted",
            r.model,
            r.version,
            r.rows,
            r.windows.len(),
            r.drift.drifted_columns,
            r.drift.columns.len()
        );
        let interval = |x: Option<f64>, ci: Option<[f64; 2]>| match (x, ci) {
            (Some(x), Some([lo, hi])) => format!("{x:.4} [{lo:.4}, {hi:.4}]"),
            (Some(x), None) => format!("{x:.4}"),
            _ => "-".into(),
        };
        for w in &r.realized {
            let at = keel_core::time::unix_to_display(w.window_start);
            match (&w.note, w.rmse) {
                (Some(n), _) => println!("  window {at}: {n}"),
                (None, Some(rmse)) => println!(
                    "  window {at}: {} labels, RMSE {rmse:.4}{}",
                    w.labelled,
                    w.interval_coverage.map_or(String::new(), |_| format!(
                        ", interval coverage {}",
                        interval(w.interval_coverage, w.interval_coverage_interval)
                    ))
                ),
                (None, None) => println!(
                    "  window {at}: {} labels, ROC-AUC {}, accuracy {}",
                    w.labelled,
                    interval(w.roc_auc, w.roc_auc_interval),
                    interval(w.accuracy, w.accuracy_interval)
                ),
            }
        }
        for c in &r.drift.columns {
            println!(
                "  {:<3} {:<24} PSI {:>8} {}",
                if c.drifted { "!!" } else { "" },
                c.name,
                c.psi.map_or("-".into(), |p| format!("{p:.4}")),
                c.reason
            );
        }
    }
    Ok(i32::from(r.drift.drifted_columns > 0))
}

/// Reads labels from CSV (header with request_id, label, optional row) or JSON Lines.
fn read_labels(path: &Path, model: &keel_engine::LoadedModel) -> Result<Vec<keel_store::Feedback>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bad =
        |line: usize, m: String| super::input_error(format!("{}:{line}: {m}", path.display()));
    let mut out = Vec::new();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.trim_start().starts_with('{') {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not JSON: {e}")))?;
            let rid = v["request_id"]
                .as_str()
                .ok_or_else(|| bad(i + 1, "request_id is missing or not a string".into()))?;
            let row = v.get("row").map_or(Some(0), serde_json::Value::as_i64);
            let row = row
                .filter(|r| *r >= 0)
                .ok_or_else(|| bad(i + 1, "row must be a non-negative integer".into()))?;
            let label = model
                .encode_label(v.get("label").unwrap_or(&serde_json::Value::Null))
                .map_err(|m| bad(i + 1, format!("label: {m}")))?;
            out.push(keel_store::Feedback {
                request_id: rid.to_string(),
                row,
                label,
            });
        }
        return Ok(out);
    }
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or_else(|| bad(1, "empty file".into()))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(ri), Some(li)) = (find("request_id"), find("label")) else {
        return Err(bad(1, "the header must name request_id and label".into()));
    };
    let row_i = find("row");
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |j: usize| cells.get(j).copied().unwrap_or("");
        let raw = cell(li);
        let value = raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| serde_json::Value::from(raw), serde_json::Value::Number);
        let label = model
            .encode_label(&value)
            .map_err(|m| bad(i + 1, format!("column label: {m}")))?;
        let row = match row_i {
            Some(j) => cell(j)
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 0)
                .ok_or_else(|| bad(i + 1, "column row must be a non-negative integer".into()))?,
            None => 0,
        };
        out.push(keel_store::Feedback {
            request_id: cell(ri).to_string(),
            row,
            label,
        });
    }
    Ok(out)
}

pub fn feedback(home: &Path, a: &FeedbackArgs) -> Result<i32> {
    let store = super::block_on(keel_store::Store::open(home))?;
    let (name, sel) = keel_store::Selector::parse(&a.model)?;
    let record = super::block_on(store.get(&name, &sel))?;
    let bytes = super::block_on(store.model_bytes(&record))?;
    let model =
        keel_engine::LoadedModel::new(&record, &bytes, keel_engine::UnseenCategory::Missing)?;
    let labels = read_labels(&a.file, &model)?;
    let mut out = super::block_on(store.put_labels(&name, &labels, &super::train::actor()))?;
    // The rate is a server setting this process cannot see; the default is stated.
    out.explain(None, true);
    if a.json {
        print_json(&out);
    } else {
        println!(
            "{} labels stored ({} replaced earlier ones); {} with unknown request ids",
            out.stored, out.replaced, out.unknown
        );
        if let Some(note) = &out.note {
            println!("  {note}");
            println!(
                "  (keel serve logs {} % of requests by default, --prediction-log-rate; only logged predictions take labels)",
                keel_engine::monitor::DEFAULT_PREDICTION_LOG_RATE * 100.0
            );
        }
    }
    Ok(0)
}
