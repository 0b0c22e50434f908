//! Feature specifications and row encoding: how a [`Frame`] becomes the `f64` rows the trees read.
//!
//! Numeric, integer and boolean columns pass through (`NaN` = missing). A categorical value becomes the index
//! of its label in the model's own level list, as `f64`; a label the model never saw becomes `NaN` (missing).
//! Files whose type inference disagrees with the model are read the model's way: a numeric column feeding a
//! categorical feature is looked up by each number's text (`16` → level "16"), and a categorical column
//! feeding a numeric feature must hold numbers. A time feature ([`FeatureKind::Time`]) is one number taken from
//! a timestamp column (its year, month, hour, …); several features may read the same column.

use keel_core::time::TimePart;
use keel_core::{ColumnData, Frame, MISSING_CODE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::{Error, Result};

/// How a model reads one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureKind {
    Numeric,
    Categorical {
        levels: Vec<String>,
    },
    /// A number taken from the timestamp column `source` (the trees read it as numeric). Added last: the
    /// model format encodes variants by position.
    Time {
        source: String,
        part: TimePart,
    },
}

impl FeatureKind {
    /// The level list of a categorical feature.
    pub fn levels(&self) -> Option<&[String]> {
        match self {
            FeatureKind::Categorical { levels } => Some(levels),
            FeatureKind::Numeric | FeatureKind::Time { .. } => None,
        }
    }
}

/// One input feature of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureKind,
}

impl FeatureSpec {
    /// The feature `part` of the timestamp column `source`, named `source.part` (`pickup.hour`).
    pub fn time(source: &str, part: TimePart) -> FeatureSpec {
        FeatureSpec {
            name: format!("{source}.{}", part.name()),
            kind: FeatureKind::Time {
                source: source.to_string(),
                part,
            },
        }
    }

    /// The data column the feature reads: its own name, or a time feature's timestamp column.
    pub fn source(&self) -> &str {
        match &self.kind {
            FeatureKind::Time { source, .. } => source,
            _ => &self.name,
        }
    }

    /// Feature specs for the named columns of a frame, in that order.
    pub fn from_frame(frame: &Frame, names: &[String]) -> Result<Vec<FeatureSpec>> {
        names
            .iter()
            .map(|n| {
                let col = frame.column(n).ok_or_else(|| Error::MissingColumn(n.clone()))?;
                let kind = match col {
                    ColumnData::Numeric(_) => FeatureKind::Numeric,
                    ColumnData::Categorical { levels, .. } => FeatureKind::Categorical {
                        levels: levels.clone(),
                    },
                    ColumnData::Other(_) => {
                        return Err(Error::InvalidInput(format!(
                            "column '{n}' is text or timestamp and cannot be a model feature; drop it with --drop {n}"
                        )));
                    }
                };
                Ok(FeatureSpec {
                    name: n.clone(),
                    kind,
                })
            })
            .collect()
    }
}

/// Encodes frames into row-major `f64` matrices for a fixed list of features.
#[derive(Debug, Clone)]
pub struct Encoder {
    specs: Vec<FeatureSpec>,
    level_maps: Vec<Option<HashMap<String, u32>>>,
}

impl Encoder {
    pub fn new(specs: &[FeatureSpec]) -> Self {
        let level_maps = specs
            .iter()
            .map(|s| {
                s.kind.levels().map(|levels| {
                    levels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.clone(), i as u32))
                        .collect()
                })
            })
            .collect();
        Encoder {
            specs: specs.to_vec(),
            level_maps,
        }
    }

    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// The code of a categorical label, if the model knows it.
    pub fn level_code(&self, feature: usize, label: &str) -> Option<u32> {
        self.level_maps[feature].as_ref()?.get(label).copied()
    }

    /// Row-major matrix (`nrows × nfeatures`) of the frame's feature columns.
    pub fn encode(&self, frame: &Frame) -> Result<Vec<f64>> {
        let n = frame.nrows();
        let f = self.specs.len();
        let mut out = vec![f64::NAN; n * f];
        // Each timestamp column is parsed once, whatever the number of parts read from it.
        let mut parsed: Vec<(&str, Vec<Option<_>>)> = Vec::new();
        for (j, spec) in self.specs.iter().enumerate() {
            let col = frame
                .column(spec.source())
                .ok_or_else(|| Error::MissingColumn(spec.source().to_string()))?;
            match (col, &spec.kind) {
                (ColumnData::Other(v), FeatureKind::Time { source, part }) => {
                    let at = match parsed.iter().position(|(s, _)| *s == source.as_str()) {
                        Some(at) => at,
                        None => {
                            let times = keel_core::time::parse_column(v).map_err(|(i, t)| {
                                Error::InvalidInput(format!(
                                    "row {}: column '{source}': '{t}' is not a timestamp (e.g. 2024-03-01 12:00:00)",
                                    i + 1
                                ))
                            })?;
                            parsed.push((source, times));
                            parsed.len() - 1
                        }
                    };
                    for (i, t) in parsed[at].1.iter().enumerate() {
                        if let Some(t) = t {
                            out[i * f + j] = part.of(t);
                        }
                    }
                }
                (_, FeatureKind::Time { source, .. }) => {
                    return Err(Error::InvalidInput(format!(
                        "feature '{}' reads the timestamp column '{source}', but the data holds numbers or categories there",
                        spec.name
                    )));
                }
                (ColumnData::Numeric(v), FeatureKind::Numeric) => {
                    for (i, &x) in v.iter().enumerate() {
                        out[i * f + j] = x;
                    }
                }
                (ColumnData::Categorical { codes, levels }, FeatureKind::Categorical { .. }) => {
                    // Map the frame's level indexes to the model's once, then per row.
                    let map: Vec<f64> = levels
                        .iter()
                        .map(|l| self.level_code(j, l).map_or(f64::NAN, |c| c as f64))
                        .collect();
                    for (i, &c) in codes.iter().enumerate() {
                        out[i * f + j] = if c == MISSING_CODE {
                            f64::NAN
                        } else {
                            map[c as usize]
                        };
                    }
                }
                // Levels that look like numbers (codes such as "16") read from a file where the column was
                // inferred numeric: a whole number is looked up by its integer text, others by their text.
                (ColumnData::Numeric(v), FeatureKind::Categorical { .. }) => {
                    for (i, &x) in v.iter().enumerate() {
                        out[i * f + j] = if x.is_nan() {
                            f64::NAN
                        } else {
                            let label = if x.fract() == 0.0 && x.abs() < 1e15 {
                                format!("{}", x as i64)
                            } else {
                                format!("{x}")
                            };
                            self.level_code(j, &label).map_or(f64::NAN, |c| c as f64)
                        };
                    }
                }
                // Numbers read as categories (a code column with few values): each label must be a number.
                (ColumnData::Categorical { codes, levels }, FeatureKind::Numeric) => {
                    let values: Vec<f64> = levels
                        .iter()
                        .map(|l| {
                            l.trim().parse::<f64>().map_err(|_| {
                                Error::InvalidInput(format!(
                                    "feature '{}' is numeric in the model but the data has the label '{l}'",
                                    spec.name
                                ))
                            })
                        })
                        .collect::<Result<_>>()?;
                    for (i, &c) in codes.iter().enumerate() {
                        out[i * f + j] = if c == MISSING_CODE {
                            f64::NAN
                        } else {
                            values[c as usize]
                        };
                    }
                }
                (ColumnData::Other(_), _) => {
                    return Err(Error::InvalidInput(format!(
                        "feature '{}' is text or timestamp in the data",
                        spec.name
                    )));
                }
            }
        }
        Ok(out)
    }
}
