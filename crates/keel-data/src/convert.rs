//! Applying a schema to a raw table: typed [`Frame`] columns, plus one [`CellError`] for every cell that does
//! not parse as its column's type (that cell becomes missing in the frame; validation reports it).

use arrow_array::{Array, BooleanArray, Float64Array, StringArray};
use arrow_schema::DataType;
use keel_core::{ColumnData, ColumnSchema, ColumnType, Frame, MISSING_CODE, Schema};
use std::collections::BTreeSet;
use std::collections::HashMap;

use crate::infer::{is_null_token, parse_bool, parse_f64, parse_int, parse_timestamp};
use crate::read::RawTable;
use crate::{Error, Result};

/// A cell whose value does not parse as its column's declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    /// Zero-based data row.
    pub row: usize,
    pub column: String,
    pub value: String,
}

/// Converts the table's columns named in the schema (in the schema's order) into a frame. Columns of the
/// schema that the table lacks are an error; extra table columns are ignored here (validation reports them).
pub fn to_frame(table: &RawTable, schema: &Schema) -> Result<(Frame, Vec<CellError>)> {
    let mut frame = Frame::default();
    let mut errors = Vec::new();
    for cs in &schema.columns {
        let raw = table
            .columns
            .iter()
            .find(|c| c.name == cs.name)
            .ok_or_else(|| Error::Schema {
                path: table.path.clone(),
                message: format!(
                    "column '{}' is declared in the schema but not in the file",
                    cs.name
                ),
            })?;
        let data =
            convert_column(raw.array.as_ref(), cs, &mut errors).map_err(|m| Error::Format {
                path: table.path.clone(),
                message: format!("column '{}': {m}", cs.name),
            })?;
        frame.names.push(cs.name.clone());
        frame.columns.push(data);
    }
    errors.sort_by_key(|e| e.row);
    Ok((frame, errors))
}

fn is_numeric_arrow(dt: &DataType) -> bool {
    dt.is_numeric()
}

fn convert_column(
    a: &dyn Array,
    cs: &ColumnSchema,
    errors: &mut Vec<CellError>,
) -> std::result::Result<ColumnData, String> {
    let dt = a.data_type();
    match cs.column_type {
        ColumnType::Numeric | ColumnType::Integer if is_numeric_arrow(dt) => {
            let f = arrow_cast::cast::cast(a, &DataType::Float64).map_err(|e| e.to_string())?;
            let f = f.as_any().downcast_ref::<Float64Array>().expect("f64");
            let mut out: Vec<f64> = f.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
            if cs.column_type == ColumnType::Integer {
                for (i, v) in out.iter_mut().enumerate() {
                    if !v.is_nan() && v.fract() != 0.0 {
                        errors.push(CellError {
                            row: i,
                            column: cs.name.clone(),
                            value: v.to_string(),
                        });
                        *v = f64::NAN;
                    }
                }
            }
            Ok(ColumnData::Numeric(out))
        }
        ColumnType::Boolean if matches!(dt, DataType::Boolean) => {
            let b = a.as_any().downcast_ref::<BooleanArray>().expect("bool");
            Ok(ColumnData::Numeric(
                b.iter()
                    .map(|v| v.map_or(f64::NAN, |x| if x { 1.0 } else { 0.0 }))
                    .collect(),
            ))
        }
        _ => {
            let s = arrow_cast::cast::cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
            let s = s.as_any().downcast_ref::<StringArray>().expect("utf8");
            Ok(convert_strings(s, cs, errors))
        }
    }
}

fn convert_strings(s: &StringArray, cs: &ColumnSchema, errors: &mut Vec<CellError>) -> ColumnData {
    let mut bad = |row: usize, v: &str| {
        errors.push(CellError {
            row,
            column: cs.name.clone(),
            value: v.to_string(),
        })
    };
    let cell = |i: usize| -> Option<&str> {
        let v = s.is_valid(i).then(|| s.value(i))?;
        (!is_null_token(v)).then_some(v)
    };
    match cs.column_type {
        ColumnType::Numeric | ColumnType::Integer | ColumnType::Boolean => {
            let parse: fn(&str) -> Option<f64> = match cs.column_type {
                ColumnType::Numeric => parse_f64,
                ColumnType::Integer => |v| parse_int(v).map(|x| x as f64),
                _ => |v| parse_bool(v).map(|b| if b { 1.0 } else { 0.0 }),
            };
            let out = (0..s.len())
                .map(|i| match cell(i) {
                    None => f64::NAN,
                    Some(v) => parse(v).unwrap_or_else(|| {
                        bad(i, v);
                        f64::NAN
                    }),
                })
                .collect();
            ColumnData::Numeric(out)
        }
        ColumnType::Categorical => {
            let levels: Vec<String> = (0..s.len())
                .filter_map(cell)
                .map(|v| v.trim().to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let index: HashMap<&str, u32> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as u32))
                .collect();
            let codes = (0..s.len())
                .map(|i| cell(i).map_or(MISSING_CODE, |v| index[v.trim()]))
                .collect();
            ColumnData::Categorical { codes, levels }
        }
        ColumnType::Timestamp => ColumnData::Other(
            (0..s.len())
                .map(|i| {
                    let v = cell(i)?;
                    if parse_timestamp(v).is_none() {
                        bad(i, v);
                        return None;
                    }
                    Some(v.trim().to_string())
                })
                .collect(),
        ),
        ColumnType::Text => {
            ColumnData::Other((0..s.len()).map(|i| cell(i).map(str::to_string)).collect())
        }
    }
}
