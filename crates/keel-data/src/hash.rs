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
