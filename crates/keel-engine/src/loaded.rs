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
    /// Probability of the positive class (binary), or of the predicted class (multiclass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Multiclass: the probability of every class, by label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<std::collections::BTreeMap<String, f64>>,
    /// Multiclass: the index of the predicted class (what monitoring and the prediction log record).
    #[serde(skip)]
    pub class: Option<usize>,
    /// Regression: the split-conformal prediction interval [lower, upper] (when the version has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// Top SHAP contributions, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The model's expected raw output (log-odds for binary classification, the explained class's softmax
    /// margin for multiclass).
    pub expected_value: f64,
    /// Multiclass: the class whose margin is explained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
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
    /// Regression: the half-width of the served prediction interval.
    pub interval_half_width: Option<f64>,
    /// The class labels as JSON values (numbers where the label is an integer), in class order.
    labels: Vec<Value>,
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
            Some(l) => l.iter().map(|s| label(s)).collect(),
            None => vec![Value::from(0), Value::from(1)],
        };
        let interval_half_width = record
            .params
            .get("prediction_interval")
            .and_then(Value::as_f64)
            .filter(|w| w.is_finite() && *w >= 0.0);
        Ok(LoadedModel {
            name: record.model.clone(),
            version: record.version,
            model,
            schema,
            threshold,
            interval_half_width,
            labels,
            monitor: None,
        })
    }

    /// A label as this model's training target encodes it: 0/1 (numbers, booleans or the class labels) for
    /// classification, a finite number for regression.
    pub fn encode_label(&self, v: &Value) -> std::result::Result<f64, String> {
        let binary = self.model.objective == Objective::Binary;
        let shown = || {
            self.labels
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.model.objective {
            Objective::Binary | Objective::Multiclass => {
                let by_label = self.labels.iter().position(|l| l == v);
                match (v, by_label) {
                    (_, Some(i)) => Ok(i as f64),
                    (Value::Bool(b), None) if binary => Ok(f64::from(u8::from(*b))),
                    (Value::Number(n), None)
                        if binary && (n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0)) =>
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
                        .ok_or_else(|| format!("'{s}' is not a class of this model ({})", shown())),
                    (other, None) => Err(format!(
                        "expected a class label ({}), found {}",
                        shown(),
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
        let out = Self::output;
        if let [one] = predictions {
            m.record(rows, &[out(one)]);
        } else {
            let outs: Vec<f64> = predictions.iter().map(out).collect();
            m.record(rows, &outs);
        }
    }

    /// The number a prediction is monitored and logged by: the probability of class 1 (binary), the predicted
    /// class's index (multiclass), or the value (regression).
    #[inline]
    pub fn output(p: &Prediction) -> f64 {
        match p.class {
            Some(c) => c as f64,
            None => p
                .probability
                .unwrap_or_else(|| p.prediction.as_f64().unwrap_or(f64::NAN)),
        }
    }

    /// Predicts one encoded row.
    #[inline]
    pub fn predict_row(&self, row: &[f64], explain: Option<usize>) -> Prediction {
        if self.model.objective == Objective::Multiclass {
            let mut p = vec![0.0; self.model.n_outputs()];
            self.model.predict_outputs(row, &mut p);
            let c = keel_ml::argmax(&p);
            let labels = self.model.class_labels.as_deref().unwrap_or_default();
            return Prediction {
                prediction: self.labels.get(c).cloned().unwrap_or(Value::from(c)),
                probability: Some(p[c]),
                probabilities: Some(
                    p.iter()
                        .enumerate()
                        .map(|(k, v)| (labels.get(k).cloned().unwrap_or(k.to_string()), *v))
                        .collect(),
                ),
                class: Some(c),
                interval: None,
                explanation: explain.and_then(|k| self.explain(row, k, Some(c))),
            };
        }
        let out = self.model.predict(row);
        let (prediction, probability) = match self.model.objective {
            Objective::Binary => (
                self.labels[usize::from(out >= self.threshold)].clone(),
                Some(out),
            ),
            _ => (Value::from(out), None),
        };
        let explanation = explain.and_then(|k| self.explain(row, k, None));
        let interval = match (self.model.objective, self.interval_half_width) {
            (Objective::Regression, Some(w)) => Some([out - w, out + w]),
            _ => None,
        };
        Prediction {
            prediction,
            probability,
            probabilities: None,
            class: None,
            interval,
            explanation,
        }
    }

    /// The index of a class label of a multiclass model (a label given as JSON text or number).
    pub fn class_of_label(&self, label: &str) -> Option<usize> {
        self.model
            .class_labels
            .as_ref()?
            .iter()
            .position(|l| l == label)
    }

    /// Explains one row for a named class of a multiclass model (the predicted class otherwise).
    pub fn explain_class(&self, row: &[f64], k: usize, class: usize) -> Option<Explanation> {
        self.explain(row, k, Some(class))
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

    /// The class a prediction falls in (for metrics by class): the predicted class of a multiclass model, the
    /// side of the threshold of a binary one.
    pub fn class_index(&self, p: &Prediction) -> Option<usize> {
        p.class
            .or_else(|| p.probability.map(|x| usize::from(x >= self.threshold)))
    }

    /// The class labels, in class order.
    pub fn labels(&self) -> &[Value] {
        &self.labels
    }

    fn explain(&self, row: &[f64], k: usize, class: Option<usize>) -> Option<Explanation> {
        let ens = match (&self.model.kind, class) {
            (ModelKind::Gbdt(ens), _) => ens,
            (ModelKind::GbdtMulticlass(v), Some(c)) => v.get(c)?,
            _ => return None,
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
            class: class.map(|c| {
                self.model
                    .class_labels
                    .as_ref()
                    .and_then(|l| l.get(c).cloned())
                    .unwrap_or_else(|| c.to_string())
            }),
            contributions: c,
        })
    }
}
