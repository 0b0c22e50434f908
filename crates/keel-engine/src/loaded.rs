//! A model version ready to serve: the decoded model, its request schema and its identity.

use keel_ml::{Model, ModelKind, Objective};
use serde::Serialize;
use serde_json::Value;

use crate::request::{FieldError, RequestSchema, UnseenCategory};
use crate::{Error, Result};

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The class label (classification) or the value (regression).
    pub prediction: Value,
    /// Probability of the positive class (classification only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Top SHAP contributions, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The model's expected raw output (log-odds for classification).
    pub expected_value: f64,
    /// (feature, contribution to the raw output), largest magnitude first.
    pub contributions: Vec<(String, f64)>,
}

/// A decoded, servable model version. Shared read-only across threads behind an `Arc`.
#[derive(Debug)]
pub struct LoadedModel {
    pub name: String,
    pub version: i64,
    pub model: Model,
    pub schema: RequestSchema,
    /// Decision threshold on the positive-class probability.
    pub threshold: f64,
    labels: [Value; 2],
    /// Window profiles of what this version served (when monitoring is on and the version has a reference).
    pub monitor: Option<crate::monitor::LiveProfile>,
}

impl LoadedModel {
    /// Builds a servable model from a registry record and its artifact bytes.
    pub fn new(
        record: &keel_store::VersionRecord,
        bytes: &[u8],
        unseen: UnseenCategory,
    ) -> Result<LoadedModel> {
        let model = Model::from_bytes(bytes)?;
        // A neural network needs its runtime: refuse to serve it rather than answer NaN.
        if let keel_ml::ModelKind::Neural(n) = &model.kind {
            n.session().map_err(|e| {
                Error::Invalid(format!(
                    "{}@{}: a neural network: {e}",
                    record.model, record.version
                ))
            })?;
        }
        let training: keel_core::Schema =
            serde_json::from_value(record.schema.clone()).map_err(|e| {
                Error::Invalid(format!(
                    "{}@{}: stored schema unreadable: {e}",
                    record.model, record.version
                ))
            })?;
        let schema = RequestSchema::new(&model.features, &training, unseen);
        let threshold = record
            .params
            .get("threshold")
            .and_then(Value::as_f64)
            .unwrap_or(0.5);
        let label = |s: &str| -> Value {
            s.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(s))
        };
        let labels = match &model.class_labels {
            Some([a, b]) => [label(a), label(b)],
            None => [Value::from(0), Value::from(1)],
        };
        Ok(LoadedModel {
            name: record.model.clone(),
            version: record.version,
            model,
            schema,
            threshold,
            labels,
            monitor: None,
        })
    }

    /// A label as this model's training target encodes it: 0/1 (numbers, booleans or the class labels) for
    /// classification, a finite number for regression.
    pub fn encode_label(&self, v: &Value) -> std::result::Result<f64, String> {
        match self.model.objective {
            Objective::Binary => {
                let by_label = self.labels.iter().position(|l| l == v);
                match (v, by_label) {
                    (_, Some(i)) => Ok(i as f64),
                    (Value::Bool(b), None) => Ok(f64::from(u8::from(*b))),
                    (Value::Number(n), None)
                        if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) =>
                    {
                        Ok(n.as_f64().expect("checked"))
                    }
                    (Value::String(s), None) => self
                        .labels
                        .iter()
                        .position(|l| {
                            l.as_str() == Some(s.as_str())
                                || l.as_i64().is_some_and(|i| s.parse::<i64>() == Ok(i))
                        })
                        .map(|i| i as f64)
                        .ok_or_else(|| {
                            format!(
                                "'{s}' is not a class of this model ({}, {})",
                                self.labels[0], self.labels[1]
                            )
                        }),
                    (other, None) => Err(format!(
                        "expected a class label ({}, {}), found {}",
                        self.labels[0],
                        self.labels[1],
                        crate::request::json_kind(other)
                    )),
                }
            }
            Objective::Regression => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(x),
                _ => Err(format!(
                    "expected a finite number, found {}",
                    crate::request::json_kind(v)
                )),
            },
        }
    }

    /// Adds served rows and their outputs (probability, or the value) to the current monitoring window.
    #[inline]
    pub fn observe(&self, rows: &[f64], predictions: &[Prediction]) {
        let Some(m) = &self.monitor else {
            return;
        };
        let out = |p: &Prediction| {
            p.probability
                .unwrap_or_else(|| p.prediction.as_f64().unwrap_or(f64::NAN))
        };
        if let [one] = predictions {
            m.record(rows, &[out(one)]);
        } else {
            let outs: Vec<f64> = predictions.iter().map(out).collect();
            m.record(rows, &outs);
        }
    }

    /// Predicts one encoded row.
    #[inline]
    pub fn predict_row(&self, row: &[f64], explain: Option<usize>) -> Prediction {
        let out = self.model.predict(row);
        let (prediction, probability) = match self.model.objective {
            Objective::Binary => (
                self.labels[usize::from(out >= self.threshold)].clone(),
                Some(out),
            ),
            Objective::Regression => (Value::from(out), None),
        };
        let explanation = explain.and_then(|k| self.explain(row, k));
        Prediction {
            prediction,
            probability,
            explanation,
        }
    }

    /// Checks and encodes a tabular body (CSV or Arrow) with the same rules as JSON records: every feature
    /// column must be present, extra columns are refused, and every cell passes the value check (nulls where
    /// training had none, non-finite numbers, wrong types, unseen categories by policy). Paths name the cell as
    /// `$.rows[i].column` (0-based row); any problem refuses the whole body.
    pub fn encode_table(
        &self,
        table: &keel_data::RawTable,
    ) -> std::result::Result<Vec<f64>, Vec<FieldError>> {
        let check = self.schema.check_table(table, false)?;
        if check.bad.is_empty() {
            Ok(check.rows)
        } else {
            Err(check.errors().cloned().collect())
        }
    }

    /// Checks a chunk of a batch file with the same rules, keeping the good rows: columns that are not features
    /// (ids, say) are passed through; bad rows are returned with their problems for quarantine.
    pub fn check_batch(
        &self,
        table: &keel_data::RawTable,
    ) -> std::result::Result<crate::table::TableCheck, Vec<FieldError>> {
        self.schema.check_table(table, true)
    }

    /// The class label a probability maps to (for metrics by class).
    pub fn class_index(&self, p: &Prediction) -> Option<usize> {
        p.probability.map(|x| usize::from(x >= self.threshold))
    }

    fn explain(&self, row: &[f64], k: usize) -> Option<Explanation> {
        let ModelKind::Gbdt(ens) = &self.model.kind else {
            return None;
        };
        let nf = self.model.features.len();
        let (phi, expected) = ens.shap(row, nf);
        let mut c: Vec<(String, f64)> = self
            .model
            .features
            .iter()
            .zip(phi)
            .map(|(f, v)| (f.name.clone(), v))
            .collect();
        c.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        c.truncate(k);
        Some(Explanation {
            expected_value: expected,
            contributions: c,
        })
    }
}
