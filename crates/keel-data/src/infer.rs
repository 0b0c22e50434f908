//! Schema inference from a raw table.
//!
//! Parquet columns keep their physical meaning (floats are numeric, integers integer, dictionaries
//! categorical). Text columns (all CSV columns) are inferred from their values: a type wins when at least
//! [`InferOptions::min_parse_fraction`] of the non-empty values parse as it, so a few dirty cells show up as
//! type violations instead of turning a numeric column into text.

use arrow_array::{Array, StringArray};
use arrow_schema::DataType;
use keel_core::{ColumnSchema, ColumnType, Schema};
use std::collections::HashSet;

use crate::read::{RawColumn, RawTable};

/// Options for inference.
#[derive(Debug, Clone, Copy)]
pub struct InferOptions {
    /// Share of non-empty values that must parse for a type to be chosen.
    pub min_parse_fraction: f64,
    /// A text column with at most this many distinct values is categorical …
    pub max_categories: usize,
    /// … or with at most this share of distinct values among non-empty ones.
    pub max_category_ratio: f64,
    /// When set, every column is inferred as non-nullable, so validation reports every empty cell. When not set,
    /// columns that have empty cells are inferred as nullable.
    pub strict_nulls: bool,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions {
            min_parse_fraction: 0.99,
            max_categories: 256,
            max_category_ratio: 0.05,
            strict_nulls: false,
        }
    }
}

/// The strings that mean "no value" in a text file.
pub fn is_null_token(s: &str) -> bool {
    matches!(
        s.trim(),
        "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None" | "none"
    )
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Integers, also written as `3.0` (as pandas does for integer columns with gaps).
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(v) = t.parse::<i64>() {
        return Some(v);
    }
    let f: f64 = t.parse().ok()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

pub fn parse_f64(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// Dates and date-times in ISO-like formats.
pub fn parse_timestamp(s: &str) -> Option<chrono::NaiveDateTime> {
    keel_core::time::parse_timestamp(s)
}

/// Infers a schema for every column of the table.
pub fn infer_schema(table: &RawTable, opts: &InferOptions) -> Schema {
    Schema {
        target: None,
        columns: table
            .columns
            .iter()
            .map(|c| infer_column(c, opts))
            .collect(),
    }
}

fn infer_column(col: &RawColumn, opts: &InferOptions) -> ColumnSchema {
    let a = col.array.as_ref();
    let has_nulls = a.null_count() > 0;
    let column_type = match a.data_type() {
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnType::Numeric,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Integer,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Dictionary(..) => ColumnType::Categorical,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => ColumnType::Timestamp,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strings = arrow_cast::cast::cast(a, &DataType::Utf8).expect("string cast");
            let s = strings
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8");
            return infer_strings(&col.name, s, opts);
        }
        _ => ColumnType::Text,
    };
    let mut cs = ColumnSchema::new(&col.name, column_type);
    cs.nullable = has_nulls && !opts.strict_nulls;
    if column_type == ColumnType::Integer && !has_nulls && looks_like_identifier(&col.name) {
        cs.unique = is_unique_integer(a);
    }
    cs
}

/// Only columns named like identifiers get a uniqueness rule from inference.
fn looks_like_identifier(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id"
        || n.ends_with("_id")
        || n.ends_with("id") && n.len() <= 6
        || n == "uuid"
        || n == "key"
}

fn is_unique_integer(a: &dyn Array) -> bool {
    let Ok(v) = arrow_cast::cast::cast(a, &DataType::Int64) else {
        return false;
    };
    let v = v
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .expect("int64");
    let mut seen = HashSet::with_capacity(v.len());
    v.iter().flatten().all(|x| seen.insert(x))
}

fn infer_strings(name: &str, s: &StringArray, opts: &InferOptions) -> ColumnSchema {
    let mut values: Vec<&str> = Vec::with_capacity(s.len());
    let mut has_nulls = false;
    for v in s.iter() {
        match v {
            Some(v) if !is_null_token(v) => values.push(v),
            _ => has_nulls = true,
        }
    }
    let n = values.len();
    let enough = |ok: usize| n > 0 && ok as f64 >= opts.min_parse_fraction * n as f64;
    let count = |f: &dyn Fn(&str) -> bool| values.iter().filter(|v| f(v)).count();
    let is_word_bool = |v: &str| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "t" | "f"
        )
    };
    let column_type = if enough(count(&is_word_bool)) {
        ColumnType::Boolean
    } else if enough(count(&|v| v.trim().parse::<i64>().is_ok())) {
        ColumnType::Integer
    } else if enough(count(&|v| parse_f64(v).is_some())) {
        ColumnType::Numeric
    } else if enough(count(&|v| parse_timestamp(v).is_some())) {
        ColumnType::Timestamp
    } else {
        let distinct: HashSet<&str> = values.iter().map(|v| v.trim()).collect();
        if distinct.len() <= opts.max_categories
            || (distinct.len() as f64) <= opts.max_category_ratio * n as f64
        {
            ColumnType::Categorical
        } else {
            ColumnType::Text
        }
    };
    let mut cs = ColumnSchema::new(name, column_type);
    cs.nullable = has_nulls && !opts.strict_nulls;
    if column_type == ColumnType::Integer && !has_nulls && looks_like_identifier(name) {
        let mut seen = HashSet::with_capacity(n);
        cs.unique = values.iter().all(|v| seen.insert(v.trim()));
    }
    cs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn col(name: &str, vals: &[&str]) -> RawColumn {
        RawColumn {
            name: name.into(),
            array: Arc::new(StringArray::from(vals.to_vec())),
        }
    }

    fn infer(vals: &[&str]) -> ColumnSchema {
        infer_column(&col("x", vals), &InferOptions::default())
    }

    #[test]
    fn infers_each_type_from_text() {
        assert_eq!(infer(&["1", "2", "3"]).column_type, ColumnType::Integer);
        assert_eq!(infer(&["1.5", "2", ""]).column_type, ColumnType::Numeric);
        assert!(infer(&["1.5", "2", ""]).nullable);
        assert_eq!(
            infer(&["true", "False", "yes"]).column_type,
            ColumnType::Boolean
        );
        assert_eq!(
            infer(&["2018-01-01 00:08:43.152", "2018-01-02"]).column_type,
            ColumnType::Timestamp
        );
        assert_eq!(infer(&["a", "b", "a"]).column_type, ColumnType::Categorical);
        let many: Vec<String> = (0..1000).map(|i| format!("word{i} text")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(infer(&refs).column_type, ColumnType::Text);
    }

    #[test]
    fn strict_inference_makes_columns_non_nullable() {
        let opts = InferOptions {
            strict_nulls: true,
            ..Default::default()
        };
        assert!(!infer_column(&col("x", &["1", ""]), &opts).nullable);
    }

    #[test]
    fn identifiers_are_unique() {
        assert!(infer_column(&col("id", &["1", "2", "3"]), &InferOptions::default()).unique);
        assert!(!infer_column(&col("count", &["1", "2", "3"]), &InferOptions::default()).unique);
    }
}
