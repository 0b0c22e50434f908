//! Typed columns straight from a file, for whole-file statistics (drift) where per-cell text inference would
//! cost more than the statistics themselves.
//!
//! Parquet columns keep their stored types: numbers and booleans become numeric columns, strings become
//! categorical columns read as Arrow dictionaries (so dictionary-encoded pages are never expanded into one
//! string per row). Column groups are decoded on parallel threads. Columns of other types (timestamps,
//! nested) are listed as skipped. CSV files go through the ordinary path (text, inferred schema).

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, Float64Array};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use keel_core::{ColumnData, Frame, MISSING_CODE};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::infer::InferOptions;
use crate::read::{Format, detect_format};
use crate::{Error, Result};

/// A frame read for statistics, and the columns that could not be used, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedFrame {
    pub frame: Frame,
    pub skipped: Vec<(String, String)>,
}

/// Reads every usable column of a CSV or Parquet file into typed columns.
pub fn read_typed(path: &Path) -> Result<TypedFrame> {
    match detect_format(path)? {
        Format::Parquet => read_parquet_typed(path),
        Format::Csv | Format::Arrow => {
            let table = crate::read_table(path)?;
            let schema = crate::infer_schema(&table, &InferOptions::default());
            let (frame, _) = crate::to_frame(&table, &schema)?;
            let mut out = Frame::default();
            let mut skipped = Vec::new();
            for (name, col) in frame.names.into_iter().zip(frame.columns) {
                match col {
                    ColumnData::Other(_) => {
                        skipped.push((name, "text or timestamp column".to_string()))
                    }
                    c => {
                        out.names.push(name);
                        out.columns.push(c);
                    }
                }
            }
            Ok(TypedFrame {
                frame: out,
                skipped,
            })
        }
    }
}

enum Plan {
    Numeric,
    Categorical,
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: format!("not a readable Parquet file: {e}"),
    }
}

fn read_parquet_typed(path: &Path) -> Result<TypedFrame> {
    let open = || {
        File::open(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| parquet_error(path, e))?;
    let file_schema = builder.schema().clone();
    drop(builder);
    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    for (i, f) in file_schema.fields().iter().enumerate() {
        let plan = match f.data_type() {
            DataType::Boolean => Some(Plan::Numeric),
            t if t.is_numeric() => Some(Plan::Numeric),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Plan::Categorical),
            DataType::Dictionary(_, v)
                if matches!(
                    **v,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                Some(Plan::Categorical)
            }
            other => {
                skipped.push((f.name().clone(), format!("unsupported type {other}")));
                None
            }
        };
        if let Some(p) = plan {
            plans.push((i, f.name().clone(), p));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(plans.len().max(1));
    let groups: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..plans.len()).step_by(threads).collect())
        .collect();
    let plans = &plans;
    let results: Vec<Result<Vec<(usize, ColumnData)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|g| s.spawn(move || read_group(path, &leaf_indexes(plans, g), plans, g)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("column reader thread panicked"))
            .collect()
    });
    let mut columns: Vec<Option<ColumnData>> = (0..plans.len()).map(|_| None).collect();
    for r in results {
        for (k, c) in r? {
            columns[k] = Some(c);
        }
    }
    let mut frame = Frame::default();
    for ((_, name, _), c) in plans.iter().zip(columns) {
        frame.names.push(name.clone());
        frame.columns.push(c.expect("every column was read"));
    }
    if frame.nrows() == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(TypedFrame { frame, skipped })
}

/// The leaf indexes of a group's columns (flat files: one leaf per column).
fn leaf_indexes(plans: &[(usize, String, Plan)], group: &[usize]) -> Vec<usize> {
    group.iter().map(|&k| plans[k].0).collect()
}

fn read_group(
    path: &Path,
    leaves: &[usize],
    plans: &[(usize, String, Plan)],
    group: &[usize],
) -> Result<Vec<(usize, ColumnData)>> {
    let file = File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let plain =
        ParquetRecordBatchReaderBuilder::try_new(file.try_clone().map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?)
        .map_err(|e| parquet_error(path, e))?;
    // Strings are asked for as dictionaries, so dictionary-encoded pages stay codes.
    let hinted: Vec<Arc<Field>> = plain
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Arc::new(
                Field::new(
                    f.name(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    true,
                )
                .with_metadata(f.metadata().clone()),
            ),
            _ => f.clone(),
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(Arc::new(ArrowSchema::new(hinted)));
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| parquet_error(path, e))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), leaves.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    let mut numeric: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
    let mut codes: Vec<Vec<u32>> = vec![Vec::new(); group.len()];
    let mut levels: Vec<(Vec<String>, HashMap<String, u32>)> =
        vec![(Vec::new(), HashMap::new()); group.len()];
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        for (slot, &k) in group.iter().enumerate() {
            let name = &plans[k].1;
            let a = batch
                .column_by_name(name)
                .ok_or_else(|| parquet_error(path, format!("column '{name}' vanished")))?;
            match plans[k].2 {
                Plan::Numeric => {
                    let f = arrow_cast::cast::cast(a.as_ref(), &DataType::Float64)
                        .map_err(|e| parquet_error(path, format!("column '{name}': {e}")))?;
                    let f = f.as_any().downcast_ref::<Float64Array>().expect("f64");
                    let out = &mut numeric[slot];
                    out.reserve(f.len());
                    if f.null_count() == 0 {
                        out.extend_from_slice(f.values());
                    } else {
                        out.extend(f.iter().map(|v| v.unwrap_or(f64::NAN)));
                    }
                }
                Plan::Categorical => {
                    let d = if matches!(a.data_type(), DataType::Dictionary(..)) {
                        a.clone()
                    } else {
                        arrow_cast::cast::cast(
                            a.as_ref(),
                            &DataType::Dictionary(
                                Box::new(DataType::Int32),
                                Box::new(DataType::Utf8),
                            ),
                        )
                        .map_err(|e| parquet_error(path, format!("column '{name}': {e}")))?
                    };
                    let d = d.as_dictionary::<Int32Type>();
                    let values = arrow_cast::cast::cast(d.values().as_ref(), &DataType::Utf8)
                        .map_err(|e| parquet_error(path, format!("column '{name}': {e}")))?;
                    let values = values.as_string::<i32>();
                    let (names, index) = &mut levels[slot];
                    // This batch's dictionary → the column's level codes.
                    let remap: Vec<u32> = (0..values.len())
                        .map(|i| {
                            if values.is_null(i) {
                                return MISSING_CODE;
                            }
                            let v = values.value(i);
                            *index.entry(v.to_string()).or_insert_with(|| {
                                names.push(v.to_string());
                                (names.len() - 1) as u32
                            })
                        })
                        .collect();
                    let keys = d.keys();
                    let out = &mut codes[slot];
                    out.reserve(keys.len());
                    if keys.null_count() == 0 {
                        out.extend(keys.values().iter().map(|&k| remap[k as usize]));
                    } else {
                        out.extend(
                            keys.iter()
                                .map(|k| k.map_or(MISSING_CODE, |k| remap[k as usize])),
                        );
                    }
                }
            }
        }
    }
    Ok(group
        .iter()
        .enumerate()
        .map(|(slot, &k)| {
            let c = match plans[k].2 {
                Plan::Numeric => ColumnData::Numeric(std::mem::take(&mut numeric[slot])),
                Plan::Categorical => ColumnData::Categorical {
                    codes: std::mem::take(&mut codes[slot]),
                    levels: std::mem::take(&mut levels[slot].0),
                },
            };
            (k, c)
        })
        .collect())
}
