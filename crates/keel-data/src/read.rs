//! Reading CSV and Parquet files into Arrow arrays, one column at a time.
//!
//! CSV is read with every column as text (Arrow `Utf8`), so that type inference and validation see the
//! original cell values and can name the exact cell that does not parse. Parquet keeps its own types.

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Result};

/// The on-disk format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
    /// Arrow IPC stream (request bodies).
    Arrow,
}

/// One column as read from the file.
#[derive(Debug, Clone)]
pub struct RawColumn {
    pub name: String,
    /// All batches of the column, concatenated.
    pub array: ArrayRef,
}

/// A table as read from disk, before any schema is applied.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub path: PathBuf,
    pub format: Format,
    pub columns: Vec<RawColumn>,
    pub nrows: usize,
}

/// Detects the format from the file's first bytes (Parquet starts with `PAR1`), falling back to the extension.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut f = File::open(path).map_err(|e| open_error(path, e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if n == 4 && &magic == b"PAR1" {
        return Ok(Format::Parquet);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "parquet" || ext == "pq" {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: "has a Parquet extension but is not a Parquet file (no PAR1 header)".into(),
        });
    }
    Ok(Format::Csv)
}

pub(crate) fn open_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Reads a whole CSV or Parquet file.
pub fn read_table(path: &Path) -> Result<RawTable> {
    let format = detect_format(path)?;
    let (names, batches) = match format {
        Format::Csv | Format::Arrow => read_csv(path)?,
        Format::Parquet => read_parquet(path)?,
    };
    assemble(path, format, names, batches)
}

fn arrow_select_concat(
    parts: &[&dyn Array],
) -> std::result::Result<ArrayRef, arrow_schema::ArrowError> {
    arrow_select::concat::concat(parts)
}

/// Refuses a repeated column name, naming both positions. Linear in the number of columns (a header of
/// 100,000 names must not cost 10^10 comparisons).
fn check_duplicate_names(path: &Path, names: &[String]) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(names.len());
    for (i, a) in names.iter().enumerate() {
        if let Some(&j) = seen.get(a.as_str()) {
            return Err(Error::DuplicateColumn {
                path: path.to_path_buf(),
                name: a.clone(),
                first: j + 1,
                second: i + 1,
            });
        }
        seen.insert(a, i);
    }
    Ok(())
}

fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<RecordBatch>)> {
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let (names, reader) = csv_reader(path, Box::new(BufReader::new(file)), 64 * 1024)?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| csv_error(path, e))?);
    }
    Ok((names, batches))
}

/// arrow-csv's reader over a boxed source.
type CsvReader = arrow_csv::Reader<Box<dyn BufRead + Send>>;

/// A CSV reader over any buffered source: parses the header line itself (so errors name line 1), then hands
/// the rest to arrow-csv with every column as text.
fn csv_reader(
    path: &Path,
    mut reader: Box<dyn BufRead + Send>,
    batch_size: usize,
) -> Result<(Vec<String>, CsvReader)> {
    let mut first = Vec::new();
    reader
        .read_until(b'\n', &mut first)
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    if first.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    if first.contains(&0) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: "is not a text CSV file (it contains NUL bytes); Keel reads CSV and Parquet"
                .into(),
        });
    }
    let header = std::str::from_utf8(&first).map_err(|_| Error::Format {
        path: path.to_path_buf(),
        message: "line 1: the header is not valid UTF-8".into(),
    })?;
    let delimiter = if header.matches('\t').count() > header.matches(',').count() {
        b'\t'
    } else {
        b','
    };
    let names: Vec<String> = parse_header(header.trim_end_matches(['\n', '\r']), delimiter as char);
    if names.iter().all(|n| n.is_empty()) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: "line 1: empty header".into(),
        });
    }
    check_duplicate_names(path, &names)?;
    let fields: Vec<Field> = names
        .iter()
        .enumerate()
        .map(|(i, _)| Field::new(format!("c{i}"), DataType::Utf8, true))
        .collect();
    let schema = Arc::new(ArrowSchema::new(fields));
    let format = arrow_csv::reader::Format::default()
        .with_header(false)
        .with_delimiter(delimiter);
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_format(format)
        .with_batch_size(batch_size)
        .build(reader)
        .map_err(|e| csv_error(path, e))?;
    Ok((names, reader))
}

/// The label used for tables that came from a request body rather than a file.
pub const BODY_LABEL: &str = "<request body>";

/// Reads a CSV table from memory (a request body).
pub fn read_csv_bytes(bytes: &[u8]) -> Result<RawTable> {
    read_csv_body(bytes, 64 * 1024)
}

/// The column names of a CSV body (its first line), read without decoding anything else: a server checks
/// them against the model before any allocation proportional to the number of columns.
pub fn csv_body_names(bytes: &[u8]) -> Result<Vec<String>> {
    let path = Path::new(BODY_LABEL);
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    let (names, _) = csv_reader(
        path,
        Box::new(std::io::Cursor::new(bytes[..end].to_vec())),
        1,
    )?;
    Ok(names)
}

/// Reads a CSV request body in batches of at most `batch_rows` rows (arrow reserves a batch's worth of
/// capacity per column up front, so a small batch bounds memory for bodies with many columns).
pub fn read_csv_body(bytes: &[u8], batch_rows: usize) -> Result<RawTable> {
    let path = Path::new(BODY_LABEL);
    let (names, reader) = csv_reader(
        path,
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        batch_rows.max(1),
    )?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| csv_error(path, e))?);
    }
    assemble(path, Format::Csv, names, batches)
}

/// The column names of an Arrow IPC stream body (its schema message), read without decoding any batch.
pub fn ipc_body_names(bytes: &[u8]) -> Result<Vec<String>> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::Format {
            path: Path::new(BODY_LABEL).to_path_buf(),
            message: format!("not a valid Arrow IPC stream: {e}"),
        })?;
    Ok(reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Reads an Arrow IPC stream from memory (a request body).
pub fn read_ipc_bytes(bytes: &[u8]) -> Result<RawTable> {
    let path = Path::new(BODY_LABEL);
    let bad = |e: arrow_schema::ArrowError| Error::Format {
        path: path.to_path_buf(),
        message: format!("not a valid Arrow IPC stream: {e}"),
    };
    // arrow validates the decoded arrays (offsets, lengths, UTF-8), but some corrupt bodies still reach a
    // slice out of bounds inside arrow before its checks run; such a panic is a malformed body here, never a
    // failed request.
    let decoded = std::panic::catch_unwind(|| -> Result<(Vec<String>, Vec<RecordBatch>)> {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(bad)?;
        let names: Vec<String> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut batches = Vec::new();
        for b in reader {
            let b = b.map_err(bad)?;
            for c in b.columns() {
                c.to_data().validate_full().map_err(bad)?;
            }
            batches.push(b);
        }
        Ok((names, batches))
    });
    let (names, batches) = decoded.map_err(|_| Error::Format {
        path: path.to_path_buf(),
        message: "not a valid Arrow IPC stream: its buffers are inconsistent".into(),
    })??;
    assemble(path, Format::Arrow, names, batches)
}

fn assemble(
    path: &Path,
    format: Format,
    names: Vec<String>,
    batches: Vec<RecordBatch>,
) -> Result<RawTable> {
    check_duplicate_names(path, &names)?;
    let nrows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if nrows == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut columns = Vec::with_capacity(names.len());
    for (j, name) in names.into_iter().enumerate() {
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(j).as_ref()).collect();
        let array = if parts.len() == 1 {
            batches[0].column(j).clone()
        } else {
            arrow_select_concat(&parts).map_err(|e| Error::Format {
                path: path.to_path_buf(),
                message: format!("column '{name}': {e}"),
            })?
        };
        columns.push(RawColumn { name, array });
    }
    Ok(RawTable {
        path: path.to_path_buf(),
        format,
        columns,
        nrows,
    })
}

/// Reads a file in chunks of about `batch_size` rows, in bounded memory, for scoring files of any size.
pub struct BatchStream {
    path: PathBuf,
    names: Vec<String>,
    inner: BatchSource,
    format: Format,
}

enum BatchSource {
    Csv(Box<CsvReader>),
    Parquet(parquet::arrow::arrow_reader::ParquetRecordBatchReader),
}

impl BatchStream {
    pub fn open(path: &Path, batch_size: usize) -> Result<BatchStream> {
        let format = detect_format(path)?;
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        let (names, inner) = match format {
            Format::Csv | Format::Arrow => {
                let (names, r) = csv_reader(path, Box::new(BufReader::new(file)), batch_size)?;
                (names, BatchSource::Csv(Box::new(r)))
            }
            Format::Parquet => {
                let b =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| Error::Format {
                            path: path.to_path_buf(),
                            message: format!("unreadable Parquet: {e}"),
                        })?;
                let names = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let r = b
                    .with_batch_size(batch_size)
                    .build()
                    .map_err(|e| Error::Format {
                        path: path.to_path_buf(),
                        message: format!("unreadable Parquet: {e}"),
                    })?;
                (names, BatchSource::Parquet(r))
            }
        };
        check_duplicate_names(path, &names)?;
        Ok(BatchStream {
            path: path.to_path_buf(),
            names,
            inner,
            format,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The next chunk as a table (its row numbers start at 0 within the chunk).
    pub fn next_table(&mut self) -> Option<Result<RawTable>> {
        let batch = match &mut self.inner {
            BatchSource::Csv(r) => r.next().map(|b| b.map_err(|e| csv_error(&self.path, e))),
            BatchSource::Parquet(r) => r.next().map(|b| {
                b.map_err(|e| Error::Format {
                    path: self.path.clone(),
                    message: format!("unreadable Parquet: {e}"),
                })
            }),
        }?;
        Some(batch.map(|b| {
            let nrows = b.num_rows();
            RawTable {
                path: self.path.clone(),
                format: self.format,
                columns: self
                    .names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| RawColumn {
                        name: n.clone(),
                        array: b.column(j).clone(),
                    })
                    .collect(),
                nrows,
            }
        }))
    }
}

/// Wraps an arrow-csv error. Keel consumes the header line itself, so arrow's record numbers are one less than
/// the file's line numbers; the message is corrected to name the real line.
fn csv_error(path: &Path, e: arrow_schema::ArrowError) -> Error {
    let mut message = format!("malformed CSV: {e}");
    if let Some(i) = message.find("for line ") {
        let start = i + "for line ".len();
        let digits: String = message[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<usize>() {
            message.replace_range(start..start + digits.len(), &(n + 1).to_string());
        }
    }
    Error::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// Splits a CSV header line, honouring double quotes.
fn parse_header(line: &str, delimiter: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == delimiter && !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().trim_start_matches('\u{feff}').to_string());
    out
}

fn read_parquet(path: &Path) -> Result<(Vec<String>, Vec<RecordBatch>)> {
    let file = File::open(path).map_err(|e| open_error(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: format!("unreadable Parquet: {e}"),
        })?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: format!("unreadable Parquet: {e}"),
        })?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| Error::Format {
            path: path.to_path_buf(),
            message: format!("unreadable Parquet: {e}"),
        })?);
    }
    Ok((names, batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing_handles_quotes() {
        assert_eq!(
            parse_header(r#"a,"b,c","d""e""#, ','),
            vec!["a", "b,c", r#"d"e"#]
        );
    }
}
