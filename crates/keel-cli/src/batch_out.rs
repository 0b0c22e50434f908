//! Output of `keel predict`: the input columns plus `prediction` (and `probability`), as CSV or Parquet,
//! written to a temporary file that is synced and renamed into place only when every chunk is written.

use anyhow::{Context, Result};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use keel_data::RawTable;
use keel_engine::loaded::Prediction;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub enum Sink {
    Csv {
        w: BufWriter<File>,
        header: bool,
    },
    Parquet {
        w: Option<Box<parquet::arrow::ArrowWriter<File>>>,
    },
}

pub struct Writer {
    sink: Sink,
    tmp: PathBuf,
    path: PathBuf,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Writer> {
        let tmp = path.with_extension(format!("partial-{}", std::process::id()));
        let parquet = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let sink = if parquet {
            let _ = file;
            Sink::Parquet { w: None }
        } else {
            Sink::Csv {
                w: BufWriter::new(file),
                header: false,
            }
        };
        Ok(Writer {
            sink,
            tmp,
            path: path.to_path_buf(),
        })
    }

    pub fn write_chunk(&mut self, table: &RawTable, preds: &[Prediction]) -> Result<()> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let has_prob = preds.first().is_some_and(|p| p.probability.is_some());
        // Multiclass: one `probability_<label>` column per class, in the labels' order.
        let classes: Vec<String> = preds
            .first()
            .and_then(|p| p.probabilities.as_ref())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        // Regression with an interval: its lower and upper ends.
        let has_interval = preds.first().is_some_and(|p| p.interval.is_some());
        let class_prob =
            |p: &Prediction, c: &str| p.probabilities.as_ref().and_then(|m| m.get(c).copied());
        match &mut self.sink {
            Sink::Csv { w, header } => {
                let cols: Vec<StringArray> = table
                    .columns
                    .iter()
                    .map(|c| {
                        let s = arrow_cast::cast::cast(c.array.as_ref(), &DataType::Utf8)
                            .expect("any column casts to text");
                        s.as_any()
                            .downcast_ref::<StringArray>()
                            .expect("utf8")
                            .clone()
                    })
                    .collect();
                if !*header {
                    let mut names: Vec<String> =
                        table.columns.iter().map(|c| field(&c.name)).collect();
                    names.push("prediction".into());
                    if has_prob {
                        names.push("probability".into());
                    }
                    for c in &classes {
                        names.push(field(&format!("probability_{c}")));
                    }
                    if has_interval {
                        names.push("interval_lower".into());
                        names.push("interval_upper".into());
                    }
                    writeln!(w, "{}", names.join(","))?;
                    *header = true;
                }
                for (i, p) in preds.iter().enumerate() {
                    let mut line: Vec<String> = cols
                        .iter()
                        .map(|c| {
                            if c.is_valid(i) {
                                field(c.value(i))
                            } else {
                                String::new()
                            }
                        })
                        .collect();
                    line.push(field(&text(&p.prediction)));
                    if let Some(pr) = p.probability {
                        line.push(pr.to_string());
                    }
                    for c in &classes {
                        line.push(class_prob(p, c).map_or(String::new(), |v| v.to_string()));
                    }
                    if has_interval {
                        let [lo, hi] = p.interval.unwrap_or([f64::NAN; 2]);
                        line.push(lo.to_string());
                        line.push(hi.to_string());
                    }
                    writeln!(w, "{}", line.join(","))?;
                }
            }
            Sink::Parquet { w } => {
                let mut fields: Vec<Field> = table
                    .columns
                    .iter()
                    .map(|c| Field::new(&c.name, c.array.data_type().clone(), true))
                    .collect();
                let mut arrays: Vec<ArrayRef> =
                    table.columns.iter().map(|c| c.array.clone()).collect();
                fields.push(Field::new("prediction", DataType::Utf8, false));
                arrays.push(Arc::new(StringArray::from_iter_values(
                    preds.iter().map(|p| text(&p.prediction)),
                )));
                if has_prob {
                    fields.push(Field::new("probability", DataType::Float64, true));
                    arrays.push(Arc::new(Float64Array::from_iter(
                        preds.iter().map(|p| p.probability),
                    )));
                }
                for c in &classes {
                    fields.push(Field::new(
                        format!("probability_{c}"),
                        DataType::Float64,
                        true,
                    ));
                    arrays.push(Arc::new(Float64Array::from_iter(
                        preds.iter().map(|p| class_prob(p, c)),
                    )));
                }
                if has_interval {
                    for (name, end) in [("interval_lower", 0), ("interval_upper", 1)] {
                        fields.push(Field::new(name, DataType::Float64, true));
                        arrays.push(Arc::new(Float64Array::from_iter(
                            preds.iter().map(|p| p.interval.map(|i| i[end])),
                        )));
                    }
                }
                let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
                if w.is_none() {
                    let file = File::create(&self.tmp)?;
                    let writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
                    *w = Some(Box::new(writer));
                }
                w.as_mut().expect("created above").write(&batch)?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let file = match self.sink {
            Sink::Csv { w, .. } => w.into_inner().map_err(|e| e.into_error())?,
            Sink::Parquet { w } => match w {
                Some(w) => {
                    w.close()?;
                    File::open(&self.tmp)?
                }
                None => File::open(&self.tmp)?,
            },
        };
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming into {}", self.path.display()))?;
        Ok(())
    }
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Writer {
    /// Drops the output: nothing is renamed into place and the partial file is removed.
    pub fn abandon(self) {
        drop(self.sink);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The rows `rows` (ascending indexes) of a table, every column.
pub fn take_rows(table: &RawTable, rows: &[usize]) -> Result<RawTable> {
    let idx = arrow_array::UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
    let columns = table
        .columns
        .iter()
        .map(|c| {
            Ok(keel_data::RawColumn {
                name: c.name.clone(),
                array: arrow_select::take::take(c.array.as_ref(), &idx, None)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RawTable {
        path: table.path.clone(),
        format: table.format,
        columns,
        nrows: rows.len(),
    })
}

/// Rows a batch run refused, as CSV: `row` (1-based data row of the input file), the input columns as text,
/// and `problems` (`column: message (code)` joined by `; `). Written to a temporary file and renamed into
/// place when the run ends.
pub struct Quarantine {
    w: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    header: bool,
}

impl Quarantine {
    pub fn create(path: &Path) -> Result<Quarantine> {
        let tmp = path.with_extension(format!("partial-{}", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Quarantine {
            w: BufWriter::new(file),
            tmp,
            path: path.to_path_buf(),
            header: false,
        })
    }

    /// Writes the bad rows of one chunk whose first row is data row `offset + 1` of the file.
    pub fn write_rows(
        &mut self,
        table: &RawTable,
        bad: &[(usize, Vec<keel_engine::FieldError>)],
        offset: usize,
    ) -> Result<()> {
        let cols: Vec<StringArray> = table
            .columns
            .iter()
            .map(|c| {
                let s = arrow_cast::cast::cast(c.array.as_ref(), &DataType::Utf8)?;
                Ok(s.as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8")
                    .clone())
            })
            .collect::<Result<Vec<_>>>()?;
        if !self.header {
            let mut names = vec!["row".to_string()];
            names.extend(table.columns.iter().map(|c| field(&c.name)));
            names.push("problems".into());
            writeln!(self.w, "{}", names.join(","))?;
            self.header = true;
        }
        for (i, problems) in bad {
            let mut line = vec![(offset + i + 1).to_string()];
            line.extend(cols.iter().map(|c| {
                if c.is_valid(*i) {
                    field(c.value(*i))
                } else {
                    String::new()
                }
            }));
            let text: Vec<String> = problems
                .iter()
                .map(|p| {
                    let column = p.path.rsplit_once("].").map_or(p.path.as_str(), |x| x.1);
                    format!("{column}: {} ({})", p.message, p.problem)
                })
                .collect();
            line.push(field(&text.join("; ")));
            writeln!(self.w, "{}", line.join(","))?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let file = self.w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming into {}", self.path.display()))?;
        Ok(())
    }
}
