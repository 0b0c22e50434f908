//! Declared schemas as TOML files:
//!
//! ```toml
//! target = "repaid"
//!
//! [[column]]
//! name = "car_value"
//! type = "numeric"      # numeric | integer | boolean | categorical | timestamp | text
//! nullable = false
//! min = 0.0
//!
//! [[column]]
//! name = "size_of_downpayment"
//! type = "categorical"
//! allowed = ["0%", "10%", "20%"]
//! ```

use keel_core::Schema;
use std::path::Path;

use crate::read::open_error;
use crate::{Error, Result};

pub fn load(path: &Path) -> Result<Schema> {
    let text = std::fs::read_to_string(path).map_err(|e| open_error(path, e))?;
    let schema: Schema = toml::from_str(&text).map_err(|e| Error::Schema {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    for (i, c) in schema.columns.iter().enumerate() {
        if schema.columns[..i].iter().any(|d| d.name == c.name) {
            return Err(Error::Schema {
                path: path.to_path_buf(),
                message: format!("column '{}' is declared twice", c.name),
            });
        }
    }
    if let Some(t) = &schema.target
        && schema.column(t).is_none()
    {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!("target '{t}' is not one of the declared columns"),
        });
    }
    Ok(schema)
}

pub fn to_toml(schema: &Schema) -> String {
    toml::to_string_pretty(schema).expect("schemas serialise to TOML")
}

/// Overrides inferred column types and rules with the declared ones, keeping inferred columns the declaration
/// does not mention.
pub fn overlay(inferred: &Schema, declared: &Schema) -> Schema {
    let mut out = inferred.clone();
    for d in &declared.columns {
        match out.column_mut(&d.name) {
            Some(c) => *c = d.clone(),
            None => out.columns.push(d.clone()),
        }
    }
    if declared.target.is_some() {
        out.target = declared.target.clone();
    }
    out
}
