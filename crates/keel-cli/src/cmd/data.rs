//! `keel data validate | profile | schema`.

use anyhow::{Context, Result};
use keel_core::{ColumnType, Schema};
use keel_data::infer::InferOptions;
use keel_data::{read_table, schema_file};
use std::path::{Path, PathBuf};

use crate::cli::{ProfileArgs, SchemaArgs, ValidateArgs};
use crate::output::{print_json, spinner};

/// Infers a schema from a reference file, recording allowed categories and observed ranges as rules.
pub fn schema_from_reference(path: &Path, strict_rules: bool) -> Result<Schema> {
    let table = read_table(path)?;
    let mut schema = keel_data::infer_schema(&table, &InferOptions::default());
    if strict_rules {
        let (frame, _) = keel_data::to_frame(&table, &schema)?;
        let profile = keel_data::profile(&frame, &schema);
        for (cs, p) in schema.columns.iter_mut().zip(&profile.columns) {
            match cs.column_type {
                ColumnType::Categorical => {
                    if let keel_core::ColumnData::Categorical { levels, .. } =
                        &frame.columns[frame.index_of(&cs.name).expect("same columns")]
                    {
                        cs.allowed = Some(levels.clone());
                    }
                }
                ColumnType::Numeric | ColumnType::Integer => {
                    if let Some(n) = &p.numeric {
                        cs.min = Some(n.min);
                        cs.max = Some(n.max);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(schema)
}

pub fn validate(home: &Path, a: &ValidateArgs) -> Result<i32> {
    let quiet = a.json;
    let sp = spinner("reading", quiet);
    let table = read_table(&a.file)?;
    sp.set_message("validating");
    let (mut schema, declared) = match (&a.schema, &a.reference) {
        (Some(s), _) => (schema_file::load(s)?, true),
        (None, Some(r)) => (
            schema_from_reference(r, true)
                .with_context(|| format!("inferring the schema from {}", r.display()))?,
            true,
        ),
        (None, None) => (
            keel_data::infer_schema(
                &table,
                &InferOptions {
                    strict_nulls: true,
                    ..Default::default()
                },
            ),
            false,
        ),
    };
    if let Some(t) = &a.target {
        schema.target = Some(t.clone());
    }
    let report = keel_data::validate::validate_table(&table, &schema, declared)?;
    sp.finish_and_clear();
    let mut quarantine_path: Option<PathBuf> = None;
    if report.invalid_rows > 0 {
        let q = a.quarantine.clone().unwrap_or_else(|| {
            let stem = a
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("data");
            home.join("quarantine")
                .join(format!("{stem}.quarantine.csv"))
        });
        keel_data::validate::write_quarantine(&table, &report, &q)?;
        quarantine_path = Some(q);
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["quarantine"] = serde_json::json!(quarantine_path);
        print_json(&v);
    } else {
        println!(
            "{}: {} rows, {} invalid — {}",
            a.file.display(),
            report.rows,
            report.invalid_rows,
            if report.valid { "valid" } else { "INVALID" }
        );
        for s in &report.summary {
            println!("  {:<28} {:<18} {:>8}", s.column, s.rule, s.count);
        }
        for v in report.violations.iter().take(10) {
            match v.row {
                Some(r) => println!("  row {r}, column {}: {} ({})", v.column, v.message, v.rule),
                None => println!("  column {}: {} ({})", v.column, v.message, v.rule),
            }
        }
        if report.violations.len() > 10 {
            println!(
                "  … {} more (use --json for all)",
                report.violations.len() - 10
            );
        }
        if let Some(q) = &quarantine_path {
            println!("invalid rows quarantined with reasons in {}", q.display());
        }
    }
    Ok(if report.valid { 0 } else { 1 })
}

pub fn profile(a: &ProfileArgs) -> Result<i32> {
    let sp = spinner("profiling", a.json);
    let table = read_table(&a.file)?;
    let mut schema = keel_data::infer_schema(&table, &InferOptions::default());
    if let Some(s) = &a.schema {
        schema = schema_file::overlay(&schema, &schema_file::load(s)?);
    }
    let (frame, _) = keel_data::to_frame(&table, &schema)?;
    let p = keel_data::profile(&frame, &schema);
    let hash = keel_data::hash::file_sha256(&a.file)?;
    sp.finish_and_clear();
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        v["dataset_hash"] = hash.into();
        v["file"] = a.file.display().to_string().into();
        print_json(&v);
    } else {
        println!(
            "{}: {} rows, {} columns, {}",
            a.file.display(),
            p.rows,
            p.columns.len(),
            hash
        );
        println!(
            "{:<26} {:<12} {:>8} {:>9} {:>12} {:>12} {:>12}  top",
            "column", "type", "nulls", "distinct", "min", "mean", "max"
        );
        for c in &p.columns {
            let (mn, me, mx) =
                c.numeric
                    .as_ref()
                    .map_or((String::new(), String::new(), String::new()), |n| {
                        (
                            format!("{:.4}", n.min),
                            format!("{:.4}", n.mean),
                            format!("{:.4}", n.max),
                        )
                    });
            let top: Vec<String> = c
                .top
                .iter()
                .take(3)
                .map(|(k, n)| format!("{k} ({n})"))
                .collect();
            println!(
                "{:<26} {:<12} {:>8} {:>9} {:>12} {:>12} {:>12}  {}",
                c.name,
                c.column_type.as_str(),
                c.nulls,
                c.distinct,
                mn,
                me,
                mx,
                top.join(", ")
            );
        }
    }
    Ok(0)
}

pub fn schema(a: &SchemaArgs) -> Result<i32> {
    let schema = schema_from_reference(&a.file, a.strict)?;
    let text = schema_file::to_toml(&schema);
    if let Some(out) = &a.out {
        let tmp = out.with_extension("toml.tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    }
    if a.json {
        print_json(&schema);
    } else if a.out.is_none() {
        print!("{text}");
    } else {
        eprintln!(
            "schema written to {}",
            a.out.as_ref().expect("checked").display()
        );
    }
    Ok(0)
}
