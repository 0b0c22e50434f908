//! `keel monitor drift`, `keel audit verify | export`.

use anyhow::{Context, Result};
use keel_monitor::DriftOptions;
use serde::Serialize;
use std::time::Instant;

use crate::cli::{AuditExportArgs, AuditVerifyArgs, DriftArgs, MonitorReportArgs};
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
    let store = super::block_on(keel_store::Store::open(home))?;
    let v = super::block_on(store.audit_verify())?;
    if a.json {
        print_json(&v);
    } else if v.ok {
        println!("audit log intact: {} records", v.records);
    } else {
        println!(
            "audit log BROKEN at record {}: {}",
            v.first_bad.unwrap_or(0),
            v.problem.as_deref().unwrap_or("unknown problem")
        );
    }
    Ok(i32::from(!v.ok))
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
        &DriftOptions::default(),
    ))?;
    if let Some(path) = &a.html {
        let title = format!(
            "{}@{}: {} rows served in {} window(s) vs the training reference",
            r.model,
            r.version,
            r.rows,
            r.windows.len()
        );
        super::train::write_atomic(
            path,
            keel_monitor::report::html(&r.drift, &title).as_bytes(),
        )?;
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
