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
