//! Validation rules and quarantine.
//!
//! Rules: `type` (the cell does not parse as the column's type), `not_null`, `min`, `max`, `allowed`
//! (category not in the allowed set), `unique`, `missing_column`, `unexpected_column` and `target`. Each
//! violation names the row (1-based data row, header excluded), column, rule and value. Rows with a violation
//! are written to a quarantine file with their reasons, never dropped silently.

use arrow_array::{Array, StringArray};
use arrow_schema::DataType;
use keel_core::{ColumnData, ColumnType, Frame, Schema};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use crate::convert::CellError;
use crate::read::RawTable;
use crate::{Error, Result};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// 1-based data row; `None` for rules about the whole file (a missing column, say).
    pub row: Option<usize>,
    pub column: String,
    pub rule: String,
    pub value: Option<String>,
    pub message: String,
}

/// The outcome of validating one file.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub file: String,
    pub valid: bool,
    pub rows: usize,
    pub invalid_rows: usize,
    /// Violation counts per (column, rule).
    pub summary: Vec<RuleCount>,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleCount {
    pub column: String,
    pub rule: String,
    pub count: usize,
}

/// Validates a raw table against a schema: converts it (cells that do not parse are `type` violations), checks
/// every rule, and reports schema columns absent from the file as `missing_column` and an absent target as
/// `target`, instead of failing. `declared` says whether the schema came from outside the file (then extra
/// file columns are `unexpected_column`).
pub fn validate_table(
    table: &RawTable,
    schema: &Schema,
    declared: bool,
) -> crate::Result<ValidationReport> {
    let mut absent = Vec::new();
    let present = Schema {
        target: schema.target.clone(),
        columns: schema
            .columns
            .iter()
            .filter(|c| {
                let here = table.columns.iter().any(|t| t.name == c.name);
                if !here {
                    absent.push(Violation {
                        row: None,
                        column: c.name.clone(),
                        rule: "missing_column".into(),
                        value: None,
                        message: format!(
                            "column '{}' is required by the schema but not in the file",
                            c.name
                        ),
                    });
                }
                here
            })
            .cloned()
            .collect(),
    };
    if let Some(t) = &schema.target
        && !table.columns.iter().any(|c| c.name == *t)
        && !absent.iter().any(|v| v.column == *t)
    {
        absent.push(Violation {
            row: None,
            column: t.clone(),
            rule: "target".into(),
            value: None,
            message: format!("target column '{t}' is not in the file"),
        });
    }
    let (frame, cell_errors) = crate::to_frame(table, &present)?;
    Ok(validate_with(
        table,
        &present,
        &frame,
        &cell_errors,
        declared,
        absent,
    ))
}

/// Checks a converted frame (and the cell errors from conversion) against the schema's rules.
pub fn validate(
    table: &RawTable,
    schema: &Schema,
    frame: &Frame,
    cell_errors: &[CellError],
    declared: bool,
) -> ValidationReport {
    validate_with(table, schema, frame, cell_errors, declared, Vec::new())
}

fn validate_with(
    table: &RawTable,
    schema: &Schema,
    frame: &Frame,
    cell_errors: &[CellError],
    declared: bool,
    file_level: Vec<Violation>,
) -> ValidationReport {
    let mut v: Vec<Violation> = file_level;
    for name in table.columns.iter().map(|c| &c.name) {
        if declared && schema.column(name).is_none() {
            v.push(Violation {
                row: None,
                column: name.clone(),
                rule: "unexpected_column".into(),
                value: None,
                message: format!("column '{name}' is in the file but not in the schema"),
            });
        }
    }
    for e in cell_errors {
        let ty = schema
            .column(&e.column)
            .map_or("?", |c| c.column_type.as_str());
        v.push(Violation {
            row: Some(e.row + 1),
            column: e.column.clone(),
            rule: "type".into(),
            value: Some(e.value.clone()),
            message: format!("'{}' is not a valid {ty} value", e.value),
        });
    }
    let type_error_cells: std::collections::HashSet<(usize, &str)> = cell_errors
        .iter()
        .map(|e| (e.row, e.column.as_str()))
        .collect();
    for (cs, col) in schema.columns.iter().zip(&frame.columns) {
        let name = cs.name.as_str();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for i in 0..col.len() {
            let value = col.display(i);
            let Some(value) = value else {
                if !cs.nullable && !type_error_cells.contains(&(i, name)) {
                    v.push(Violation {
                        row: Some(i + 1),
                        column: name.into(),
                        rule: "not_null".into(),
                        value: None,
                        message: "empty value in a column that does not allow nulls".into(),
                    });
                }
                continue;
            };
            if let ColumnData::Numeric(x) = col {
                let x = x[i];
                if let Some(min) = cs.min
                    && x < min
                {
                    v.push(rule_violation(
                        i,
                        name,
                        "min",
                        &value,
                        format!("{value} is below the minimum {min}"),
                    ));
                }
                if let Some(max) = cs.max
                    && x > max
                {
                    v.push(rule_violation(
                        i,
                        name,
                        "max",
                        &value,
                        format!("{value} is above the maximum {max}"),
                    ));
                }
            }
            if cs.column_type == ColumnType::Categorical
                && let Some(allowed) = &cs.allowed
                && !allowed.contains(&value)
            {
                v.push(rule_violation(
                    i,
                    name,
                    "allowed",
                    &value,
                    format!("'{value}' is not an allowed category"),
                ));
            }
            if cs.unique {
                if let Some(first) = seen.get(&value) {
                    v.push(rule_violation(
                        i,
                        name,
                        "unique",
                        &value,
                        format!("duplicate of row {}", first + 1),
                    ));
                } else {
                    seen.insert(value, i);
                }
            }
        }
    }
    if let Some(t) = &schema.target
        && let Some(col) = frame.column(t)
    {
        let distinct: std::collections::BTreeSet<String> =
            (0..col.len()).filter_map(|i| col.display(i)).collect();
        if distinct.len() < 2 {
            v.push(Violation {
                row: None,
                column: t.clone(),
                rule: "target".into(),
                value: distinct.iter().next().cloned(),
                message: "the target is constant or empty".into(),
            });
        }
    }
    v.sort_by_key(|x| (x.row.unwrap_or(0), x.column.clone()));
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for x in &v {
        *counts
            .entry((x.column.clone(), x.rule.clone()))
            .or_default() += 1;
    }
    let invalid_rows = invalid_row_reasons(&v).len();
    ValidationReport {
        file: table.path.display().to_string(),
        valid: v.is_empty(),
        rows: table.nrows,
        invalid_rows,
        summary: counts
            .into_iter()
            .map(|((column, rule), count)| RuleCount {
                column,
                rule,
                count,
            })
            .collect(),
        violations: v,
    }
}

fn rule_violation(i: usize, column: &str, rule: &str, value: &str, message: String) -> Violation {
    Violation {
        row: Some(i + 1),
        column: column.into(),
        rule: rule.into(),
        value: Some(value.into()),
        message,
    }
}

/// Reasons per invalid row (1-based), in row order.
pub fn invalid_row_reasons(violations: &[Violation]) -> BTreeMap<usize, Vec<String>> {
    let mut m: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for x in violations {
        if let Some(r) = x.row {
            m.entry(r)
                .or_default()
                .push(format!("{}: {}", x.column, x.rule));
        }
    }
    m
}

/// Writes the invalid rows, with their original values and reasons, as CSV to `out` (atomically: a temporary
/// file is written, synced and renamed into place). Returns the number of rows written.
pub fn write_quarantine(table: &RawTable, report: &ValidationReport, out: &Path) -> Result<usize> {
    let reasons = invalid_row_reasons(&report.violations);
    let io = |e: std::io::Error| Error::Io {
        path: out.to_path_buf(),
        source: e,
    };
    let strings: Vec<StringArray> = table
        .columns
        .iter()
        .map(|c| {
            let s = arrow_cast::cast::cast(c.array.as_ref(), &DataType::Utf8)
                .expect("any array casts to text");
            s.as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone()
        })
        .collect();
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("quarantine"),
        std::process::id()
    ));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let mut header = vec!["__row".to_string(), "__reasons".to_string()];
    header.extend(table.columns.iter().map(|c| c.name.clone()));
    writeln!(
        w,
        "{}",
        header
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(",")
    )
    .map_err(io)?;
    for (row, why) in &reasons {
        let i = row - 1;
        let mut fields = vec![row.to_string(), csv_field(&why.join("; "))];
        for s in &strings {
            fields.push(if s.is_valid(i) {
                csv_field(s.value(i))
            } else {
                String::new()
            });
        }
        writeln!(w, "{}", fields.join(",")).map_err(io)?;
    }
    let f = w.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(reasons.len())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
