//! Column types and dataset schemas, inferred by keel-data or declared in a TOML file, and carried by every
//! model version as its training schema.

use serde::{Deserialize, Serialize};

/// The logical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Floating-point numbers.
    Numeric,
    /// Whole numbers.
    Integer,
    /// `true`/`false` (also read from `0`/`1`, `yes`/`no`).
    Boolean,
    /// A small set of labels.
    Categorical,
    /// Date or date-time values.
    Timestamp,
    /// Free text (many distinct values); never used as a model feature.
    Text,
}

impl ColumnType {
    /// Whether a model can use this column as a feature.
    pub fn is_feature_type(self) -> bool {
        matches!(
            self,
            ColumnType::Numeric
                | ColumnType::Integer
                | ColumnType::Boolean
                | ColumnType::Categorical
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Numeric => "numeric",
            ColumnType::Integer => "integer",
            ColumnType::Boolean => "boolean",
            ColumnType::Categorical => "categorical",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Text => "text",
        }
    }
}

/// The declared or inferred shape of one column, with the rules validation enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Whether empty values are allowed. Inferred schemas say `false` unless the column had nulls in the data
    /// the schema was inferred from.
    #[serde(default)]
    pub nullable: bool,
    /// Smallest allowed value (numeric and integer columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed value (numeric and integer columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The allowed labels of a categorical column; anything else is a violation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    /// Whether every non-null value must be distinct.
    #[serde(default)]
    pub unique: bool,
}

impl ColumnSchema {
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        ColumnSchema {
            name: name.into(),
            column_type,
            nullable: false,
            min: None,
            max: None,
            allowed: None,
            unique: false,
        }
    }
}

/// A dataset schema: ordered columns and, optionally, the target column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The column a model learns to predict, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, rename = "column")]
    pub columns: Vec<ColumnSchema>,
}

impl Schema {
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_mut(&mut self, name: &str) -> Option<&mut ColumnSchema> {
        self.columns.iter_mut().find(|c| c.name == name)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}
