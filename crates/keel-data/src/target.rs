//! Target checks: the column a model learns must be present, complete and well-formed.

use keel_core::{ColumnData, Frame};
use std::collections::BTreeSet;

use crate::{Error, Result};

/// The target as numbers, with the class labels for classification.
#[derive(Debug, Clone)]
pub struct Target {
    pub values: Vec<f64>,
    /// For classification: the labels that map to 0, 1, … (binary: the negative, then the positive).
    pub class_labels: Option<Vec<String>>,
}

/// Whether the target is read as a binary label or as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Binary,
    Regression,
    /// Three or more classes, read as class indices in the labels' natural order (numbers by value).
    Multiclass,
}

/// Makes a classification target keep the file's own labels: a target inferred as boolean (`yes`/`no`,
/// `true`/`false`, `t`/`f`) is read as a category instead of 0/1, so the model predicts, and accepts feedback
/// in, the words the data used. Numeric targets (0/1) stay numeric. A declared type is left alone.
pub fn keep_target_labels(schema: &mut keel_core::Schema, target: &str) {
    if let Some(c) = schema.column_mut(target)
        && c.column_type == keel_core::ColumnType::Boolean
    {
        c.column_type = keel_core::ColumnType::Categorical;
    }
}

/// Reads and checks the target column of a frame. `source` names the file in messages.
pub fn extract_target(frame: &Frame, name: &str, kind: TargetKind, source: &str) -> Result<Target> {
    let col = frame.column(name).ok_or_else(|| Error::Target {
        message: format!(
            "{source}: target column '{name}' is not in the file (columns: {})",
            frame.names.join(", ")
        ),
    })?;
    let missing: Vec<usize> = (0..col.len())
        .filter(|&i| col.display(i).is_none())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing
            .iter()
            .take(5)
            .map(|r| (r + 1).to_string())
            .collect();
        return Err(Error::Target {
            message: format!(
                "{source}: target column '{name}' has {} empty values (rows {}{})",
                missing.len(),
                shown.join(", "),
                if missing.len() > 5 { ", …" } else { "" }
            ),
        });
    }
    match kind {
        TargetKind::Regression => match col {
            ColumnData::Numeric(v) => {
                if v.iter().all(|x| *x == v[0]) {
                    return Err(Error::Target {
                        message: format!(
                            "{source}: target column '{name}' is constant ({}); nothing to learn",
                            v[0]
                        ),
                    });
                }
                Ok(Target {
                    values: v.clone(),
                    class_labels: None,
                })
            }
            _ => Err(Error::Target {
                message: format!("{source}: regression target '{name}' is not numeric"),
            }),
        },
        TargetKind::Binary => {
            let labels: Vec<String> = (0..col.len())
                .map(|i| col.display(i).expect("checked above"))
                .collect();
            let distinct: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
            if distinct.len() == 1 {
                return Err(Error::Target {
                    message: format!(
                        "{source}: target column '{name}' is constant (every row is '{}'); a classifier needs two classes",
                        labels[0]
                    ),
                });
            }
            if distinct.len() > 2 {
                let shown: Vec<&str> = distinct.iter().take(6).copied().collect();
                return Err(Error::Target {
                    message: format!(
                        "{source}: target column '{name}' has {} distinct values ({}{}); binary classification needs exactly two",
                        distinct.len(),
                        shown.join(", "),
                        if distinct.len() > 6 { ", …" } else { "" }
                    ),
                });
            }
            let mut classes: Vec<&str> = distinct.into_iter().collect();
            // The positive class is the "larger" label: 1 over 0, true over false, yes over no.
            classes.sort_by_key(|c| positive_rank(c));
            let positive = classes[1].to_string();
            Ok(Target {
                values: labels
                    .iter()
                    .map(|l| if *l == positive { 1.0 } else { 0.0 })
                    .collect(),
                class_labels: Some(vec![classes[0].to_string(), positive]),
            })
        }
        TargetKind::Multiclass => {
            let labels: Vec<String> = (0..col.len())
                .map(|i| col.display(i).expect("checked above"))
                .collect();
            let distinct: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
            if distinct.len() < 3 {
                return Err(Error::Target {
                    message: format!(
                        "{source}: target column '{name}' has {} distinct value{} ({}); multiclass classification needs at least three (use --objective binary for two)",
                        distinct.len(),
                        if distinct.len() == 1 { "" } else { "s" },
                        distinct.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            let classes = class_order(distinct.into_iter().collect());
            let index: std::collections::HashMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            Ok(Target {
                values: labels.iter().map(|l| index[l.as_str()] as f64).collect(),
                class_labels: Some(classes),
            })
        }
    }
}

/// Reads a classification target as indices into `labels` (a model's classes): every row must hold one of
/// them. `source` names the file in messages, which give the row (1-based) and the classes.
pub fn map_labels(frame: &Frame, name: &str, labels: &[String], source: &str) -> Result<Vec<f64>> {
    let col = frame.column(name).ok_or_else(|| Error::Target {
        message: format!("{source}: target column '{name}' is not in the file"),
    })?;
    let index: std::collections::HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    (0..col.len())
        .map(|i| {
            let v = col.display(i).ok_or_else(|| Error::Target {
                message: format!(
                    "{source}: row {}: the label '{name}' is empty; every row needs one",
                    i + 1
                ),
            })?;
            index
                .get(v.as_str())
                .map(|&c| c as f64)
                .ok_or_else(|| Error::Target {
                    message: format!(
                        "{source}: row {}: label '{v}' is not a class of the model ({})",
                        i + 1,
                        labels.join(" / ")
                    ),
                })
        })
        .collect()
}

/// The order of a multiclass target's classes: by numeric value when every label is a number, else
/// alphabetical.
pub fn class_order(labels: Vec<&str>) -> Vec<String> {
    let numeric: Option<Vec<f64>> = labels.iter().map(|l| l.parse::<f64>().ok()).collect();
    let mut out: Vec<(Option<f64>, &str)> = match numeric {
        Some(v) => v.into_iter().map(Some).zip(labels).collect(),
        None => labels.into_iter().map(|l| (None, l)).collect(),
    };
    out.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.1.cmp(b.1),
    });
    out.into_iter().map(|(_, l)| l.to_string()).collect()
}

fn positive_rank(label: &str) -> (u8, String) {
    let l = label.to_ascii_lowercase();
    let rank = match l.as_str() {
        "1" | "1.0" | "true" | "yes" | "y" | "t" | "positive" | "pos" => 2,
        "0" | "0.0" | "false" | "no" | "n" | "f" | "negative" | "neg" => 0,
        _ => 1,
    };
    (rank, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(col: ColumnData) -> Frame {
        Frame {
            names: vec!["y".into()],
            columns: vec![col],
        }
    }

    #[test]
    fn word_labels_survive_inference_and_yes_is_positive() {
        let table = crate::read::RawTable {
            path: "f.csv".into(),
            format: crate::read::Format::Csv,
            nrows: 4,
            columns: vec![crate::read::RawColumn {
                name: "had_affair".into(),
                array: std::sync::Arc::new(arrow_array::StringArray::from(vec![
                    "yes", "no", "no", "yes",
                ])),
            }],
        };
        let mut schema = crate::infer_schema(&table, &Default::default());
        assert_eq!(
            schema.columns[0].column_type,
            keel_core::ColumnType::Boolean
        );
        keep_target_labels(&mut schema, "had_affair");
        let (frame, errors) = crate::to_frame(&table, &schema).unwrap();
        assert!(errors.is_empty());
        let t = extract_target(&frame, "had_affair", TargetKind::Binary, "f").unwrap();
        assert_eq!(
            t.class_labels.unwrap(),
            ["no".to_string(), "yes".to_string()]
        );
        assert_eq!(t.values, vec![1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn binary_target_maps_one_to_positive() {
        let t = extract_target(
            &frame(ColumnData::Numeric(vec![0.0, 1.0, 1.0])),
            "y",
            TargetKind::Binary,
            "f",
        )
        .unwrap();
        assert_eq!(t.values, vec![0.0, 1.0, 1.0]);
        assert_eq!(t.class_labels.unwrap(), ["0".to_string(), "1".to_string()]);
    }

    #[test]
    fn bad_targets_are_refused_with_reasons() {
        let e = extract_target(
            &frame(ColumnData::Numeric(vec![1.0, 1.0])),
            "y",
            TargetKind::Binary,
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("constant"), "{e}");
        let e = extract_target(
            &frame(ColumnData::Numeric(vec![1.0, 2.0, 3.0])),
            "y",
            TargetKind::Binary,
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("3 distinct values"), "{e}");
        let e = extract_target(
            &frame(ColumnData::Numeric(vec![1.0, f64::NAN])),
            "y",
            TargetKind::Binary,
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("rows 2"), "{e}");
        let e = extract_target(
            &frame(ColumnData::Numeric(vec![1.0])),
            "z",
            TargetKind::Binary,
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not in the file"), "{e}");
    }
}
