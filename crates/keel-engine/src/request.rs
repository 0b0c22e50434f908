//! The request schema check: each JSON record is checked against the model's training schema before inference.
//! Unknown fields, missing fields, wrong types, non-finite numbers, nulls where the training data had none, and
//! unseen categories (rejected or treated as missing, by policy) are reported with the JSON path of every
//! offending value. The check writes the encoded row as it goes, so a valid record costs one pass.

use keel_core::Schema;
use keel_ml::{Encoder, FeatureKind, FeatureSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// What to do with a category the model never saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnseenCategory {
    /// Reject the record (HTTP 422, code `unseen_category`).
    #[default]
    Reject,
    /// Treat the value as missing; the trees route it like a missing value.
    Missing,
}

/// One offending value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON path of the value, e.g. `$.records[3].AGEP`.
    pub path: String,
    /// Stable machine-readable problem code.
    pub problem: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// The compiled check for one model.
#[derive(Debug, Clone)]
pub struct RequestSchema {
    names: Vec<String>,
    index: HashMap<String, usize>,
    nullable: Vec<bool>,
    categorical: Vec<bool>,
    /// The model's own label → code lookup.
    encoder: Encoder,
    pub unseen: UnseenCategory,
}

impl RequestSchema {
    /// Builds the check from the model's features and the training schema (for nullability).
    pub fn new(features: &[FeatureSpec], training: &Schema, unseen: UnseenCategory) -> Self {
        RequestSchema {
            names: features.iter().map(|f| f.name.clone()).collect(),
            index: features
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect(),
            nullable: features
                .iter()
                .map(|f| training.column(&f.name).is_some_and(|c| c.nullable))
                .collect(),
            categorical: features
                .iter()
                .map(|f| matches!(f.kind, FeatureKind::Categorical { .. }))
                .collect(),
            encoder: Encoder::new(features),
            unseen,
        }
    }

    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// Checks one record and writes its encoded row into `row` (length = number of features). Problems are
    /// appended to `errors` with paths under `path`. Returns whether the record was clean.
    pub fn check_record(
        &self,
        record: &Value,
        path: &str,
        row: &mut [f64],
        errors: &mut Vec<FieldError>,
    ) -> bool {
        let before = errors.len();
        let Value::Object(map) = record else {
            errors.push(FieldError {
                path: path.to_string(),
                problem: "not_an_object",
                message: format!(
                    "expected a JSON object of feature values, found {}",
                    json_kind(record)
                ),
            });
            return false;
        };
        let mut seen = 0usize;
        row.iter_mut().for_each(|v| *v = f64::NAN);
        for (key, value) in map {
            let Some(&j) = self.index.get(key.as_str()) else {
                errors.push(FieldError {
                    path: field_path(path, key),
                    problem: "unknown_field",
                    message: format!("'{key}' is not a feature of this model"),
                });
                continue;
            };
            seen += 1;
            match self.value(j, value) {
                Ok(x) => row[j] = x,
                Err((problem, message)) => errors.push(FieldError {
                    path: field_path(path, key),
                    problem,
                    message,
                }),
            }
        }
        if seen < self.names.len() {
            for name in &self.names {
                if !map.contains_key(name) {
                    errors.push(FieldError {
                        path: field_path(path, name),
                        problem: "missing_field",
                        message: format!("feature '{name}' is required"),
                    });
                }
            }
        }
        errors.len() == before
    }

    fn value(&self, j: usize, v: &Value) -> Result<f64, (&'static str, String)> {
        match (self.categorical[j], v) {
            (_, Value::Null) => {
                if self.nullable[j] {
                    Ok(f64::NAN)
                } else {
                    Err((
                        "null_not_allowed",
                        "null is not allowed: the training data had no missing values here".into(),
                    ))
                }
            }
            (false, Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(x),
                _ => Err(("not_finite", "the number is not finite".into())),
            },
            (false, Value::Bool(b)) => Ok(if *b { 1.0 } else { 0.0 }),
            (false, other) => Err((
                "wrong_type",
                format!("expected a number, found {}", json_kind(other)),
            )),
            (true, Value::String(s)) => self.category(j, s),
            (true, Value::Number(n)) => {
                // Categories that look like numbers ("21") may be sent as numbers (21 or 21.0).
                let s = match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => i.to_string(),
                    (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
                    _ => n.to_string(),
                };
                self.category(j, &s)
            }
            (true, Value::Bool(b)) => self.category(j, if *b { "true" } else { "false" }),
            (true, other) => Err((
                "wrong_type",
                format!("expected a category (string), found {}", json_kind(other)),
            )),
        }
    }

    fn category(&self, j: usize, s: &str) -> Result<f64, (&'static str, String)> {
        match self.encoder.level_code(j, s) {
            Some(c) => Ok(c as f64),
            None => match self.unseen {
                UnseenCategory::Missing => Ok(f64::NAN),
                UnseenCategory::Reject => Err((
                    "unseen_category",
                    format!("'{}' was never seen in training", truncate(s, 64)),
                )),
            },
        }
    }
}

fn field_path(prefix: &str, key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.is_empty() {
        format!("{prefix}.{key}")
    } else {
        format!(
            "{prefix}[{}]",
            serde_json::to_string(key).unwrap_or_default()
        )
    }
}

/// How a JSON value's type reads in an error message ("a string", "an array", …).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(unseen: UnseenCategory) -> RequestSchema {
        let features = vec![
            FeatureSpec {
                name: "age".into(),
                kind: FeatureKind::Numeric,
            },
            FeatureSpec {
                name: "colour".into(),
                kind: FeatureKind::Categorical {
                    levels: vec!["blue".into(), "red".into(), "21".into()],
                },
            },
        ];
        let mut training = Schema::default();
        let mut age = keel_core::ColumnSchema::new("age", keel_core::ColumnType::Numeric);
        age.nullable = true;
        training.columns.push(age);
        RequestSchema::new(&features, &training, unseen)
    }

    fn check(s: &RequestSchema, v: Value) -> (Vec<f64>, Vec<(String, &'static str)>) {
        let mut row = vec![0.0; 2];
        let mut errs = Vec::new();
        s.check_record(&v, "$", &mut row, &mut errs);
        (row, errs.into_iter().map(|e| (e.path, e.problem)).collect())
    }

    #[test]
    fn valid_records_encode() {
        let s = schema(UnseenCategory::Reject);
        let (row, errs) = check(&s, json!({"age": 40, "colour": "red"}));
        assert!(errs.is_empty());
        assert_eq!(row, vec![40.0, 1.0]);
        let (row, errs) = check(&s, json!({"age": null, "colour": 21}));
        assert!(errs.is_empty(), "{errs:?}");
        assert!(row[0].is_nan());
        assert_eq!(row[1], 2.0);
    }

    #[test]
    fn every_problem_gets_a_path_and_code() {
        let s = schema(UnseenCategory::Reject);
        let (_, errs) = check(&s, json!({"age": "old", "colour": "green", "extra": 1}));
        assert_eq!(
            errs,
            vec![
                ("$.age".to_string(), "wrong_type"),
                ("$.colour".to_string(), "unseen_category"),
                ("$.extra".to_string(), "unknown_field"),
            ]
        );
        let (_, errs) = check(&s, json!({"age": 3}));
        assert_eq!(errs, vec![("$.colour".to_string(), "missing_field")]);
        let (_, errs) = check(&s, json!({"age": 3, "colour": null}));
        assert_eq!(errs, vec![("$.colour".to_string(), "null_not_allowed")]);
        let (_, errs) = check(&s, json!([1, 2]));
        assert_eq!(errs, vec![("$".to_string(), "not_an_object")]);
        let (_, errs) = check(&s, json!({"age": 3, "colour": "red", "we ird": 1}));
        assert_eq!(errs, vec![("$[\"we ird\"]".to_string(), "unknown_field")]);
    }

    #[test]
    fn unseen_categories_can_be_treated_as_missing() {
        let s = schema(UnseenCategory::Missing);
        let (row, errs) = check(&s, json!({"age": 1, "colour": "green"}));
        assert!(errs.is_empty());
        assert!(row[1].is_nan());
    }
}
