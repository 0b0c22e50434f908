//! The request schema check: each JSON record is checked against the model's training schema before inference.
//! Unknown fields, duplicate fields, missing fields, wrong types, non-finite numbers, nulls where the training
//! data had none, and unseen categories (rejected or treated as missing, by policy) are reported with the JSON
//! path of every offending value.
//!
//! A request body is checked while it is parsed ([`RequestSchema::parse_json_body`]): the parser hands each
//! value straight to the check, which writes the encoded row as it goes, so no JSON tree is built and a valid
//! record costs one pass over its bytes. [`RequestSchema::check_record`] runs the same check on a parsed
//! [`serde_json::Value`].

use keel_core::Schema;
use keel_core::time::TimePart;
use keel_ml::{FeatureKind, FeatureSpec};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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

/// A checked and encoded JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBody {
    /// Row-major encoded rows (`n × features`).
    pub rows: Vec<f64>,
    /// The body was one record (not `{"records": [...]}`).
    pub single: bool,
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// Not valid JSON (the parser's message, with line and column).
    Malformed(String),
    /// Valid JSON whose values do not match the training schema.
    Schema(Vec<FieldError>),
    /// More records than allowed; parsing stopped at the first record over the limit.
    TooManyRecords { limit: usize },
}

/// One field a record must carry: a feature, or a timestamp the model takes several time features from.
#[derive(Debug, Clone)]
struct Input {
    name: String,
    target: InputTarget,
}

#[derive(Debug, Clone)]
enum InputTarget {
    /// The value of feature `j`.
    Feature(usize),
    /// A timestamp; each `(j, part)` writes that part into feature `j`.
    Time {
        nullable: bool,
        parts: Vec<(usize, TimePart)>,
    },
}

/// The compiled check for one model.
#[derive(Debug, Clone)]
pub struct RequestSchema {
    names: Vec<String>,
    /// The fields of a record, in feature order (a timestamp where its first time feature is).
    inputs: Vec<Input>,
    /// Field name → index in `inputs`.
    index: FastMap<String, usize>,
    nullable: Vec<bool>,
    /// Features the training data held as booleans (true/false, yes/no words in text files), encoded 1/0.
    boolean: Vec<bool>,
    /// Label → code of each categorical feature (`None` for numeric features).
    levels: Vec<Option<FastMap<String, u32>>>,
    /// Code of each label that is a canonical integer ("21"), so integer values need no string.
    int_levels: Vec<FastMap<i64, u32>>,
    /// Whether a top-level `records` key means a batch (no feature is named `records`).
    records_is_batch: bool,
    pub unseen: UnseenCategory,
}

/// A JSON value (or a table cell) as the check sees it: scalars with their values, containers only named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    fn of(v: &Value) -> Scalar<'_> {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Scalar::I64(i),
                (None, Some(u), _) => Scalar::U64(u),
                (None, None, f) => Scalar::F64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Array(_) => Scalar::Array,
            Value::Object(_) => Scalar::Object,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::I64(_) | Scalar::U64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

/// The path prefix of record `i` of a batch (formatted only when there is an error).
fn record_prefix(i: usize) -> String {
    format!("$.records[{i}]")
}

pub(crate) type Problem = (&'static str, String);

/// Largest magnitude a numeric feature accepts: 2^53, where doubles stop holding every integer. Values
/// beyond it (1e308, 2^64) are identifiers or garbage, never a measurement a tabular model learned from.
pub const MAX_NUMERIC: f64 = 9_007_199_254_740_992.0;

fn in_range(x: f64) -> Result<f64, Problem> {
    if x.abs() <= MAX_NUMERIC {
        Ok(x)
    } else {
        Err((
            "out_of_range",
            format!("{x} is beyond ±2^53, the largest magnitude a numeric feature accepts"),
        ))
    }
}

impl RequestSchema {
    /// Builds the check from the model's features and the training schema (for nullability).
    pub fn new(features: &[FeatureSpec], training: &Schema, unseen: UnseenCategory) -> Self {
        let levels: Vec<Option<FastMap<String, u32>>> = features
            .iter()
            .map(|f| {
                f.kind.levels().map(|levels| {
                    levels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.clone(), i as u32))
                        .collect()
                })
            })
            .collect();
        let mut inputs: Vec<Input> = Vec::new();
        for (j, f) in features.iter().enumerate() {
            match &f.kind {
                FeatureKind::Time { source, part } => {
                    match inputs.iter_mut().find(|i| i.name == *source) {
                        Some(Input {
                            target: InputTarget::Time { parts, .. },
                            ..
                        }) => parts.push((j, *part)),
                        _ => inputs.push(Input {
                            name: source.clone(),
                            target: InputTarget::Time {
                                nullable: training.column(source).is_some_and(|c| c.nullable),
                                parts: vec![(j, *part)],
                            },
                        }),
                    }
                }
                _ => inputs.push(Input {
                    name: f.name.clone(),
                    target: InputTarget::Feature(j),
                }),
            }
        }
        let int_levels = levels
            .iter()
            .map(|m| {
                m.iter()
                    .flatten()
                    .filter_map(|(label, &code)| {
                        let i: i64 = label.parse().ok()?;
                        (i.to_string() == *label).then_some((i, code))
                    })
                    .collect()
            })
            .collect();
        RequestSchema {
            names: features.iter().map(|f| f.name.clone()).collect(),
            index: inputs
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name.clone(), i))
                .collect(),
            nullable: features
                .iter()
                .map(|f| training.column(&f.name).is_some_and(|c| c.nullable))
                .collect(),
            boolean: features
                .iter()
                .map(|f| {
                    training
                        .column(&f.name)
                        .is_some_and(|c| c.column_type == keel_core::ColumnType::Boolean)
                })
                .collect(),
            records_is_batch: !inputs.iter().any(|f| f.name == "records"),
            inputs,
            levels,
            int_levels,
            unseen,
        }
    }

    pub fn n_features(&self) -> usize {
        self.names.len()
    }

    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// The fields a record carries: the features, except that time features are read from their timestamp.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.name.as_str())
    }

    /// The features an input or feature called `name` fills: the feature of that name, or every time feature
    /// read from the timestamp of that name (what redacting `name` must blank).
    pub fn features_named(&self, name: &str) -> Vec<usize> {
        match self.index.get(name).map(|&i| &self.inputs[i].target) {
            Some(InputTarget::Feature(j)) => vec![*j],
            Some(InputTarget::Time { parts, .. }) => parts.iter().map(|(j, _)| *j).collect(),
            None => self
                .names
                .iter()
                .position(|f| f == name)
                .into_iter()
                .collect(),
        }
    }

    pub(crate) fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Checks the value of input `i` and writes what it encodes into `row`.
    pub(crate) fn write_input(&self, i: usize, v: &Scalar, row: &mut [f64]) -> Result<(), Problem> {
        match &self.inputs[i].target {
            InputTarget::Feature(j) => {
                row[*j] = self.value(*j, v)?;
                Ok(())
            }
            InputTarget::Time { nullable, parts } => {
                let t = match v {
                    Scalar::Null if *nullable => None,
                    Scalar::Null => {
                        return Err((
                            "null_not_allowed",
                            "null is not allowed: the training data had no missing values here".into(),
                        ));
                    }
                    Scalar::Str(s) => Some(keel_core::time::parse_timestamp(s).ok_or_else(|| {
                        (
                            "wrong_type",
                            format!(
                                "'{}' is not a timestamp (e.g. 2024-03-01 12:00:00 or 2024-03-01T12:00:00Z)",
                                truncate(s, 64)
                            ),
                        )
                    })?),
                    other => {
                        return Err((
                            "wrong_type",
                            format!("expected a timestamp (string), found {}", other.kind()),
                        ));
                    }
                };
                for &(j, part) in parts {
                    row[j] = t.as_ref().map_or(f64::NAN, |t| part.of(t));
                }
                Ok(())
            }
        }
    }

    /// How table cells of input `i` are read.
    pub(crate) fn input_kind(&self, i: usize) -> InputKind {
        match self.inputs[i].target {
            InputTarget::Time { .. } => InputKind::Text,
            InputTarget::Feature(j) if self.levels[j].is_some() => InputKind::Text,
            InputTarget::Feature(j) if self.boolean[j] => InputKind::Boolean,
            InputTarget::Feature(_) => InputKind::Numeric,
        }
    }

    /// Checks one parsed record and writes its encoded row into `row` (length = number of features). Problems
    /// are appended to `errors` with paths under `path`. Returns whether the record was clean.
    pub fn check_record(
        &self,
        record: &Value,
        path: &str,
        row: &mut [f64],
        errors: &mut Vec<FieldError>,
    ) -> bool {
        let before = errors.len();
        let Value::Object(map) = record else {
            errors.push(not_an_object(path.to_string(), Scalar::of(record).kind()));
            return false;
        };
        let mut seen = vec![false; self.inputs.len()];
        let mut rc = RecordCheck::start(self, row, &mut seen);
        for (key, value) in map {
            rc.field(key, Scalar::of(value), errors, || path.to_string());
        }
        rc.finish(errors, || path.to_string());
        errors.len() == before
    }

    /// Parses a JSON body (one record, or `{"records": [...]}` with at most `max_records`) and checks and
    /// encodes every record in the same pass.
    pub fn parse_json_body(
        &self,
        bytes: &[u8],
        max_records: usize,
    ) -> Result<EncodedBody, BodyError> {
        let too_many = Cell::new(false);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let top = Top {
            schema: self,
            max_records,
            too_many: &too_many,
        };
        let parsed = de::Deserializer::deserialize_any(&mut de, top).and_then(|r| {
            de.end()?;
            Ok(r)
        });
        match parsed {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(errors)) => Err(BodyError::Schema(errors)),
            Err(_) if too_many.get() => Err(BodyError::TooManyRecords { limit: max_records }),
            Err(e) => Err(BodyError::Malformed(e.to_string())),
        }
    }

    fn value(&self, j: usize, v: &Scalar) -> Result<f64, Problem> {
        let categorical = self.levels[j].is_some();
        match (categorical, v) {
            (_, Scalar::Null) => {
                if self.nullable[j] {
                    Ok(f64::NAN)
                } else {
                    Err((
                        "null_not_allowed",
                        "null is not allowed: the training data had no missing values here".into(),
                    ))
                }
            }
            (false, Scalar::I64(i)) => in_range(*i as f64),
            (false, Scalar::U64(u)) => in_range(*u as f64),
            (false, Scalar::F64(x)) if x.is_finite() => in_range(*x),
            (false, Scalar::F64(_)) => Err(("not_finite", "the number is not finite".into())),
            // true/false only where training saw a boolean column (encoded 1/0); a number is not a flag.
            (false, Scalar::Bool(b)) if self.boolean[j] => Ok(if *b { 1.0 } else { 0.0 }),
            // The words the training file used for it (a CSV's True/False, yes/no) read as the flag too.
            (false, Scalar::Str(w)) if self.boolean[j] => {
                match w.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "t" => Ok(1.0),
                    "false" | "no" | "f" => Ok(0.0),
                    _ => Err((
                        "wrong_type",
                        format!("expected true or false, found the string '{w}'"),
                    )),
                }
            }
            (false, other) if self.boolean[j] => Err((
                "wrong_type",
                format!("expected true or false, found {}", other.kind()),
            )),
            (false, other) => Err((
                "wrong_type",
                format!("expected a number, found {}", other.kind()),
            )),
            (true, Scalar::Str(s)) => self.category(j, s),
            // Categories that look like numbers ("21") may be sent as numbers (21 or 21.0).
            (true, Scalar::I64(i)) => self.integer_category(j, *i),
            (true, Scalar::U64(u)) => match i64::try_from(*u) {
                Ok(i) => self.integer_category(j, i),
                Err(_) => self.category(j, &u.to_string()),
            },
            (true, Scalar::F64(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                self.integer_category(j, *f as i64)
            }
            (true, Scalar::F64(f)) => {
                let s = serde_json::Number::from_f64(*f)
                    .map_or_else(|| f.to_string(), |n| n.to_string());
                self.category(j, &s)
            }
            (true, Scalar::Bool(b)) => self.category(j, if *b { "true" } else { "false" }),
            (true, other) => Err((
                "wrong_type",
                format!("expected a category (string), found {}", other.kind()),
            )),
        }
    }

    fn category(&self, j: usize, s: &str) -> Result<f64, Problem> {
        match self.levels[j].as_ref().and_then(|m| m.get(s)) {
            Some(&c) => Ok(c as f64),
            // "21.0" in a text file means the category 21, as 21.0 does in JSON.
            None => match s.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 1e15 && s.contains('.') => {
                    self.integer_category(j, f as i64)
                }
                _ => self.unseen_category(s),
            },
        }
    }

    fn integer_category(&self, j: usize, i: i64) -> Result<f64, Problem> {
        match self.int_levels[j].get(&i) {
            Some(&c) => Ok(c as f64),
            None => self.unseen_category(&i.to_string()),
        }
    }

    fn unseen_category(&self, s: &str) -> Result<f64, Problem> {
        match self.unseen {
            UnseenCategory::Missing => Ok(f64::NAN),
            UnseenCategory::Reject => Err((
                "unseen_category",
                format!("'{}' was never seen in training", truncate(s, 64)),
            )),
        }
    }
}

/// How the text cells of an input are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    Numeric,
    Boolean,
    /// Categories and timestamps: the text itself.
    Text,
}

fn not_an_object(path: String, kind: &str) -> FieldError {
    FieldError {
        path,
        problem: "not_an_object",
        message: format!("expected a JSON object of feature values, found {kind}"),
    }
}

/// The check of one record in progress: the row being written and which features were seen.
struct RecordCheck<'s, 'r> {
    schema: &'s RequestSchema,
    row: &'r mut [f64],
    seen: &'r mut [bool],
}

impl<'s, 'r> RecordCheck<'s, 'r> {
    fn start(schema: &'s RequestSchema, row: &'r mut [f64], seen: &'r mut [bool]) -> Self {
        row.fill(f64::NAN);
        seen.fill(false);
        RecordCheck { schema, row, seen }
    }

    fn field(
        &mut self,
        key: &str,
        v: Scalar,
        errors: &mut Vec<FieldError>,
        prefix: impl Fn() -> String,
    ) {
        let Some(&j) = self.schema.index.get(key) else {
            errors.push(FieldError {
                path: field_path(&prefix(), key),
                problem: "unknown_field",
                message: format!("'{}' is not an input of this model", truncate(key, 64)),
            });
            return;
        };
        if std::mem::replace(&mut self.seen[j], true) {
            errors.push(FieldError {
                path: field_path(&prefix(), key),
                problem: "duplicate_field",
                message: format!("'{key}' appears more than once"),
            });
            return;
        }
        match self.schema.write_input(j, &v, self.row) {
            Ok(()) => {}
            Err((problem, message)) => errors.push(FieldError {
                path: field_path(&prefix(), key),
                problem,
                message,
            }),
        }
    }

    fn finish(self, errors: &mut Vec<FieldError>, prefix: impl Fn() -> String) {
        for (input, _) in self
            .schema
            .inputs
            .iter()
            .zip(self.seen.iter())
            .filter(|(_, s)| !**s)
        {
            let name = &input.name;
            errors.push(FieldError {
                path: field_path(&prefix(), name),
                problem: "missing_field",
                message: match &input.target {
                    InputTarget::Feature(_) => format!("feature '{name}' is required"),
                    InputTarget::Time { .. } => {
                        format!(
                            "the timestamp '{name}' is required (time features are read from it)"
                        )
                    }
                },
            });
        }
    }
}

/// Generates the visitor methods for every JSON value that is neither an object nor an array: each calls
/// `self.other(kind)`.
macro_rules! scalars_are_other {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.other("null"))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.other("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.other("a string"))
        }
    };
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An object key, borrowed from the body when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I64(i))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Scalar<'de>, E> {
                Ok(i64::try_from(u).map_or(Scalar::U64(u), Scalar::I64))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F64(x))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(s.to_string())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
                drain_seq(seq)?;
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
                drain_map(map)?;
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole body: one record, or `{"records": [...]}`.
struct Top<'a> {
    schema: &'a RequestSchema,
    max_records: usize,
    too_many: &'a Cell<bool>,
}

type Checked = Result<EncodedBody, Vec<FieldError>>;

impl Top<'_> {
    fn other(self, kind: &str) -> Checked {
        Err(vec![not_an_object("$".into(), kind)])
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    scalars_are_other!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checked, A::Error> {
        drain_seq(seq)?;
        Ok(self.other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let s = self.schema;
        let nf = s.n_features();
        let mut row = vec![0.0; nf];
        let mut seen = vec![false; s.n_inputs()];
        let mut errors = Vec::new();
        let mut single = RecordCheck::start(s, &mut row, &mut seen);
        let mut first_other: Option<Cow<'de, str>> = None;
        let mut batch: Option<Checked> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if s.records_is_batch && key == "records" {
                let records = map.next_value_seed(Records {
                    schema: s,
                    max_records: self.max_records,
                    too_many: self.too_many,
                })?;
                batch = Some(match batch {
                    None => records,
                    Some(_) => Err(vec![FieldError {
                        path: "$.records".into(),
                        problem: "duplicate_field",
                        message: "'records' appears more than once".into(),
                    }]),
                });
                continue;
            }
            let v: Scalar = map.next_value()?;
            single.field(&key, v, &mut errors, || "$".into());
            if first_other.is_none() {
                first_other = Some(key);
            }
        }
        if let Some(batch) = batch {
            if let Some(k) = first_other {
                return Ok(Err(vec![FieldError {
                    path: field_path("$", &k),
                    problem: "unknown_field",
                    message: "a batch body has only 'records'".into(),
                }]));
            }
            return Ok(batch);
        }
        single.finish(&mut errors, || "$".into());
        Ok(if errors.is_empty() {
            Ok(EncodedBody {
                rows: row,
                single: true,
            })
        } else {
            Err(errors)
        })
    }
}

/// The value of `records`: an array of records.
struct Records<'a> {
    schema: &'a RequestSchema,
    max_records: usize,
    too_many: &'a Cell<bool>,
}

impl Records<'_> {
    fn other(self, kind: &str) -> Checked {
        Err(vec![FieldError {
            path: "$.records".into(),
            problem: "not_an_array",
            message: format!("expected an array of records, found {kind}"),
        }])
    }
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = Checked;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    scalars_are_other!();

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked, A::Error> {
        drain_map(map)?;
        Ok(self.other("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        let s = self.schema;
        let nf = s.n_features();
        let mut rows: Vec<f64> =
            Vec::with_capacity(nf * seq.size_hint().unwrap_or(8).min(self.max_records));
        let mut seen = vec![false; s.n_inputs()];
        let mut errors = Vec::new();
        let mut n = 0usize;
        loop {
            if n == self.max_records {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    self.too_many.set(true);
                    return Err(de::Error::custom("too many records"));
                }
                break;
            }
            rows.resize((n + 1) * nf, 0.0);
            let record = OneRecord {
                check: RecordCheck::start(s, &mut rows[n * nf..], &mut seen),
                at: n,
                errors: &mut errors,
            };
            if seq.next_element_seed(record)?.is_none() {
                rows.truncate(n * nf);
                break;
            }
            n += 1;
        }
        if n == 0 {
            return Ok(Err(vec![FieldError {
                path: "$.records".into(),
                problem: "empty",
                message: "at least one record is required".into(),
            }]));
        }
        Ok(if errors.is_empty() {
            Ok(EncodedBody {
                rows,
                single: false,
            })
        } else {
            Err(errors)
        })
    }
}

/// One element of `records`.
struct OneRecord<'s, 'r, 'e> {
    check: RecordCheck<'s, 'r>,
    at: usize,
    errors: &'e mut Vec<FieldError>,
}

impl OneRecord<'_, '_, '_> {
    fn other(self, kind: &str) {
        self.errors
            .push(not_an_object(record_prefix(self.at), kind));
    }
}

impl<'de> DeserializeSeed<'de> for OneRecord<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OneRecord<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record (JSON object)")
    }

    scalars_are_other!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)?;
        self.other("an array");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let OneRecord {
            mut check,
            at,
            errors,
        } = self;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let v: Scalar = map.next_value()?;
            check.field(&key, v, errors, || record_prefix(at));
        }
        check.finish(errors, || record_prefix(at));
        Ok(())
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
    Scalar::of(v).kind()
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

    /// A model with `age`, then the hour and day of week of `at` (not nullable), then `colour`.
    fn timed() -> RequestSchema {
        let features = vec![
            FeatureSpec {
                name: "age".into(),
                kind: FeatureKind::Numeric,
            },
            FeatureSpec::time("at", TimePart::Hour),
            FeatureSpec::time("at", TimePart::DayOfWeek),
            FeatureSpec {
                name: "colour".into(),
                kind: FeatureKind::Categorical {
                    levels: vec!["blue".into()],
                },
            },
        ];
        let mut training = Schema::default();
        training.columns.push(keel_core::ColumnSchema::new(
            "at",
            keel_core::ColumnType::Timestamp,
        ));
        RequestSchema::new(&features, &training, UnseenCategory::Reject)
    }

    #[test]
    fn a_timestamp_field_fills_every_time_feature_read_from_it() {
        let s = timed();
        assert_eq!(s.input_names().collect::<Vec<_>>(), ["age", "at", "colour"]);
        assert_eq!(s.n_features(), 4);
        let mut row = vec![0.0; 4];
        let mut errs = Vec::new();
        let rec = json!({"age": 30, "at": "2024-03-01 13:30:00", "colour": "blue"});
        assert!(s.check_record(&rec, "$", &mut row, &mut errs), "{errs:?}");
        assert_eq!(row, [30.0, 13.0, 4.0, 0.0]);
        // The same through the streaming parser, one record and a batch.
        let body = s.parse_json_body(rec.to_string().as_bytes(), 10).unwrap();
        assert_eq!(body.rows, row);
        let batch =
            json!({"records": [rec, {"age": 1, "at": "2024-03-03T23:00:00Z", "colour": "blue"}]});
        let body = s.parse_json_body(batch.to_string().as_bytes(), 10).unwrap();
        assert_eq!(&body.rows[4..], &[1.0, 23.0, 6.0, 0.0]);

        // The timestamp is required, must parse, and is not nullable here; the derived names are not inputs.
        let problems = |v: Value| {
            let mut row = vec![0.0; 4];
            let mut errs = Vec::new();
            s.check_record(&v, "$", &mut row, &mut errs);
            errs.into_iter()
                .map(|e| (e.path, e.problem))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            problems(json!({"age": 30, "colour": "blue"})),
            [("$.at".to_string(), "missing_field")]
        );
        assert_eq!(
            problems(json!({"age": 30, "at": "yesterday", "colour": "blue"})),
            [("$.at".to_string(), "wrong_type")]
        );
        assert_eq!(
            problems(json!({"age": 30, "at": 1709300000, "colour": "blue"})),
            [("$.at".to_string(), "wrong_type")]
        );
        assert_eq!(
            problems(json!({"age": 30, "at": null, "colour": "blue"})),
            [("$.at".to_string(), "null_not_allowed")]
        );
        assert_eq!(
            problems(json!({"age": 30, "at": "2024-03-01", "at.hour": 3, "colour": "blue"})),
            [("$[\"at.hour\"]".to_string(), "unknown_field")]
        );
        // Redacting the timestamp blanks both of its features.
        assert_eq!(s.features_named("at"), [1, 2]);
        assert_eq!(s.features_named("colour"), [3]);
    }

    #[test]
    fn a_table_sends_the_timestamp_column_itself() {
        let s = timed();
        let table = keel_data::read::read_csv_body(
            b"age,at,colour\n30,2024-03-01 13:30:00,blue\n31,soon,blue\n",
            10,
        )
        .unwrap();
        let checked = s.check_table(&table, false).unwrap();
        assert_eq!(checked.rows, [30.0, 13.0, 4.0, 0.0]);
        assert_eq!(checked.bad[0].0, 1);
        assert_eq!(checked.bad[0].1[0].path, "$.rows[1].at");
        let errs = s.check_columns(&["age", "at.hour", "colour"], false);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["$.columns.at", "$.columns.at.hour"]);
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
    fn a_boolean_feature_takes_json_flags_and_the_training_files_words() {
        let features = vec![FeatureSpec {
            name: "is_customer".into(),
            kind: FeatureKind::Numeric,
        }];
        let mut training = Schema::default();
        training.columns.push(keel_core::ColumnSchema::new(
            "is_customer",
            keel_core::ColumnType::Boolean,
        ));
        let s = RequestSchema::new(&features, &training, UnseenCategory::Reject);
        for (v, want) in [
            (json!(true), 1.0),
            (json!("True"), 1.0),
            (json!("no"), 0.0),
            (json!(" FALSE "), 0.0),
            (json!(0), 0.0),
        ] {
            let mut row = vec![f64::NAN];
            let mut errs = Vec::new();
            s.check_record(&json!({ "is_customer": v }), "$", &mut row, &mut errs);
            assert!(errs.is_empty(), "{v}: {errs:?}");
            assert_eq!(row[0], want, "{v}");
        }
        let mut row = vec![0.0];
        let mut errs = Vec::new();
        s.check_record(&json!({"is_customer": "maybe"}), "$", &mut row, &mut errs);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .message
                .contains("expected true or false, found the string 'maybe'"),
            "{:?}",
            errs[0]
        );
    }

    #[test]
    fn unseen_categories_can_be_treated_as_missing() {
        let s = schema(UnseenCategory::Missing);
        let (row, errs) = check(&s, json!({"age": 1, "colour": "green"}));
        assert!(errs.is_empty());
        assert!(row[1].is_nan());
    }

    fn parse(s: &RequestSchema, body: &str) -> Result<EncodedBody, Vec<(String, &'static str)>> {
        s.parse_json_body(body.as_bytes(), 3).map_err(|e| match e {
            BodyError::Schema(errs) => errs.into_iter().map(|e| (e.path, e.problem)).collect(),
            other => vec![(format!("{other:?}"), "other")],
        })
    }

    #[test]
    fn bodies_are_checked_while_parsed() {
        let s = schema(UnseenCategory::Reject);
        let b = parse(&s, r#"{"colour": "red", "age": 40}"#).unwrap();
        assert!(b.single);
        assert_eq!(b.rows, vec![40.0, 1.0]);
        // Numbers for numeric-looking categories, escaped keys and strings.
        let b = parse(&s, r#"{"a\u0067e": null, "colour": 21.0}"#).unwrap();
        assert!(b.rows[0].is_nan());
        assert_eq!(b.rows[1], 2.0);
        let b = parse(&s, r#"{"colour": "r\u0065d", "age": 1}"#).unwrap();
        assert_eq!(b.rows, vec![1.0, 1.0]);
        let b = parse(
            &s,
            r#"{"records": [{"age": 1, "colour": "blue"}, {"age": 2.5, "colour": 21}]}"#,
        )
        .unwrap();
        assert!(!b.single);
        assert_eq!(b.rows, vec![1.0, 0.0, 2.5, 2.0]);
    }

    #[test]
    fn body_problems_get_paths_and_codes() {
        let s = schema(UnseenCategory::Reject);
        assert_eq!(
            parse(
                &s,
                r#"{"age": "old", "colour": "green", "extra": [1, {"x": 2}]}"#
            )
            .unwrap_err(),
            vec![
                ("$.age".to_string(), "wrong_type"),
                ("$.colour".to_string(), "unseen_category"),
                ("$.extra".to_string(), "unknown_field"),
            ]
        );
        assert_eq!(
            parse(&s, r#"{"age": 3, "age": 4, "colour": "red"}"#).unwrap_err(),
            vec![("$.age".to_string(), "duplicate_field")]
        );
        assert_eq!(
            parse(&s, r#"{"age": 3}"#).unwrap_err(),
            vec![("$.colour".to_string(), "missing_field")]
        );
        assert_eq!(
            parse(&s, "[1, 2]").unwrap_err(),
            vec![("$".to_string(), "not_an_object")]
        );
        assert_eq!(
            parse(&s, r#"{"records": 5}"#).unwrap_err(),
            vec![("$.records".to_string(), "not_an_array")]
        );
        assert_eq!(
            parse(&s, r#"{"records": []}"#).unwrap_err(),
            vec![("$.records".to_string(), "empty")]
        );
        assert_eq!(
            parse(
                &s,
                r#"{"age": 1, "records": [{"age": 1, "colour": "red"}]}"#
            )
            .unwrap_err(),
            vec![("$.age".to_string(), "unknown_field")]
        );
        assert_eq!(
            parse(
                &s,
                r#"{"records": [{"age": 1, "colour": "red"}, 7, {"age": true, "colour": 3}]}"#
            )
            .unwrap_err(),
            vec![
                ("$.records[1]".to_string(), "not_an_object"),
                // A boolean is no number unless training saw a boolean column.
                ("$.records[2].age".to_string(), "wrong_type"),
                ("$.records[2].colour".to_string(), "unseen_category"),
            ]
        );
    }

    #[test]
    fn malformed_and_oversized_bodies_are_refused() {
        let s = schema(UnseenCategory::Reject);
        for bad in [
            r#"{"age": 3,"#,
            r#"{"age": NaN, "colour": "red"}"#,
            r#"{"age": 1e999, "colour": "red"}"#,
            r#"{"age": 1, "colour": "red"} x"#,
            "",
        ] {
            assert!(
                matches!(
                    s.parse_json_body(bad.as_bytes(), 3),
                    Err(BodyError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            s.parse_json_body(deep.as_bytes(), 3),
            Err(BodyError::Malformed(_))
        ));
        let four = r#"{"records": [{"age": 1, "colour": "red"}, {"age": 1, "colour": "red"}, {"age": 1, "colour": "red"}, {"age": 1, "colour": "red"}]}"#;
        assert_eq!(
            s.parse_json_body(four.as_bytes(), 3),
            Err(BodyError::TooManyRecords { limit: 3 })
        );
    }

    #[test]
    fn parsed_and_streamed_checks_agree() {
        let s = schema(UnseenCategory::Missing);
        // Both paths refuse magnitudes beyond 2^53 and booleans for numeric features.
        for body in [
            r#"{"age": 18446744073709551615, "colour": "red"}"#,
            r#"{"age": 1e308, "colour": "red"}"#,
            r#"{"age": false, "colour": "red"}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            let mut errs = Vec::new();
            assert!(!s.check_record(&v, "$", &mut [0.0; 2], &mut errs), "{body}");
            assert!(s.parse_json_body(body.as_bytes(), 3).is_err(), "{body}");
        }
        for body in [
            r#"{"age": 40, "colour": "red"}"#,
            r#"{"age": 9007199254740992, "colour": 21}"#,
            r#"{"age": -3, "colour": 1e300}"#,
            r#"{"age": 0.5, "colour": true}"#,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            let mut row = vec![0.0; 2];
            let mut errs = Vec::new();
            assert!(s.check_record(&v, "$", &mut row, &mut errs), "{body}");
            let b = s.parse_json_body(body.as_bytes(), 3).unwrap();
            assert_eq!(
                b.rows.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{body}"
            );
        }
    }
}
