//! Models trained elsewhere, compiled into Keel's own trees so the scorer, TreeSHAP and everything after
//! them work unchanged. Each parser keeps its library's decision rules exactly (tested bit for bit against
//! the library on fixture rows, `scripts/import-fixtures.sh`).

pub mod lightgbm;
