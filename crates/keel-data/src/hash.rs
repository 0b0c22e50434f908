//! Content hashes for lineage: the SHA-256 of a file's bytes, streamed.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

use crate::read::open_error;
use crate::{Error, Result};

/// `sha256:<hex>` of the file's content.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Rows of `b` that also occur in `a`, compared on the columns both have (by name) as text, with a 64-bit
/// hash per row: the cheap check that a holdout does not share rows with training data. A hash collision can
/// only over-count, by a vanishing chance.
pub fn shared_rows(a: &crate::RawTable, b: &crate::RawTable) -> Result<usize> {
    use std::hash::{Hash, Hasher};
    let mut names: Vec<&str> = a
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| b.columns.iter().any(|c| c.name == *n))
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        return Ok(0);
    }
    let hashes = |t: &crate::RawTable| -> Result<Vec<u64>> {
        let cols = names
            .iter()
            .map(|n| {
                let c = t
                    .columns
                    .iter()
                    .find(|c| c.name == *n)
                    .expect("common column");
                let s = arrow_cast::cast::cast(c.array.as_ref(), &arrow_schema::DataType::Utf8)
                    .map_err(|e| Error::Format {
                        path: t.path.clone(),
                        message: format!("column '{n}': {e}"),
                    })?;
                Ok(s.as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .expect("utf8")
                    .clone())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((0..t.nrows)
            .map(|i| {
                let mut h = std::hash::DefaultHasher::new();
                for c in &cols {
                    use arrow_array::Array;
                    if c.is_null(i) {
                        0u8.hash(&mut h);
                    } else {
                        1u8.hash(&mut h);
                        c.value(i).trim().hash(&mut h);
                    }
                }
                h.finish()
            })
            .collect())
    };
    let seen: std::collections::HashSet<u64> = hashes(a)?.into_iter().collect();
    Ok(hashes(b)?.into_iter().filter(|h| seen.contains(h)).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(cols: &[(&str, Vec<&str>)]) -> crate::RawTable {
        crate::RawTable {
            path: "t.csv".into(),
            format: crate::read::Format::Csv,
            nrows: cols[0].1.len(),
            columns: cols
                .iter()
                .map(|(n, v)| crate::RawColumn {
                    name: n.to_string(),
                    array: Arc::new(arrow_array::StringArray::from(v.clone())),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_shared_between_training_data_and_holdout_are_counted() {
        let train = table(&[("x", vec!["1", "2", "3"]), ("y", vec!["a", "b", "c"])]);
        // Columns in another order, an extra column, two rows in common.
        let holdout = table(&[
            ("y", vec!["b", "z", "c"]),
            ("x", vec!["2", "9", "3"]),
            ("id", vec!["10", "11", "12"]),
        ]);
        assert_eq!(shared_rows(&train, &holdout).unwrap(), 2);
        let fresh = table(&[("x", vec!["7"]), ("y", vec!["a"])]);
        assert_eq!(shared_rows(&train, &fresh).unwrap(), 0);
    }
}
