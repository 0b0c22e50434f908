//! A plain, column-oriented table: what keel-data hands to keel-ml. Arrow stays in the data layer; the model
//! layer sees only vectors.

use serde::{Deserialize, Serialize};

/// The code a categorical column uses for a missing value.
pub const MISSING_CODE: u32 = u32::MAX;

/// One column of a [`Frame`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnData {
    /// Numbers (numeric, integer and boolean columns); `NaN` marks a missing value.
    Numeric(Vec<f64>),
    /// Labels as indexes into `levels`; [`MISSING_CODE`] marks a missing value.
    Categorical {
        codes: Vec<u32>,
        levels: Vec<String>,
    },
    /// Values a model cannot use (text, timestamps), kept as strings for slicing and reports.
    Other(Vec<Option<String>>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical { codes, .. } => codes.len(),
            ColumnData::Other(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `row` rendered as a string (`None` when missing).
    pub fn display(&self, row: usize) -> Option<String> {
        match self {
            ColumnData::Numeric(v) => {
                let x = v[row];
                (!x.is_nan()).then(|| format_number(x))
            }
            ColumnData::Categorical { codes, levels } => {
                let c = codes[row];
                (c != MISSING_CODE).then(|| levels[c as usize].clone())
            }
            ColumnData::Other(v) => v[row].clone(),
        }
    }

    /// Keep only the given rows, in the given order.
    pub fn take(&self, rows: &[usize]) -> ColumnData {
        match self {
            ColumnData::Numeric(v) => ColumnData::Numeric(rows.iter().map(|&r| v[r]).collect()),
            ColumnData::Categorical { codes, levels } => ColumnData::Categorical {
                codes: rows.iter().map(|&r| codes[r]).collect(),
                levels: levels.clone(),
            },
            ColumnData::Other(v) => ColumnData::Other(rows.iter().map(|&r| v[r].clone()).collect()),
        }
    }
}

/// Formats a number without a trailing `.0` for whole values.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Frame {
    pub names: Vec<String>,
    pub columns: Vec<ColumnData>,
}

impl Frame {
    pub fn nrows(&self) -> usize {
        self.columns.first().map_or(0, ColumnData::len)
    }

    pub fn ncols(&self) -> usize {
        self.columns.len()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnData> {
        self.index_of(name).map(|i| &self.columns[i])
    }

    /// Keep only the given rows, in the given order.
    pub fn take(&self, rows: &[usize]) -> Frame {
        Frame {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
        }
    }
}
