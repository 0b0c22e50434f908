//! Models trained elsewhere, compiled into Keel's own trees so the scorer, TreeSHAP and everything after
//! them work unchanged. Each parser keeps its library's decision rules exactly (tested bit for bit against
//! the library on fixture rows, `scripts/import-fixtures.sh`).
//!
//! [`import`] takes a file's bytes and returns a [`Model`] plus where it came from ([`Source`]); it does no
//! I/O, so the application layer decides where files live and what is registered.

pub mod lightgbm;
pub mod onnx;
pub mod onnx_proto;
pub mod ubjson;
pub mod xgboost;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{FeatureKind, FeatureSpec};
use crate::gbdt::Ensemble;
use crate::model::{Model, ModelKind, Numerics};
use crate::{Error, Objective};

/// Largest model file accepted (a 500-tree, 255-leaf LightGBM text model is about 10 MiB).
pub const MAX_FILE_BYTES: usize = 512 << 20;

/// A model file format Keel imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// LightGBM's text model (`model.save_model("m.txt")`, format v4).
    Lightgbm,
    /// XGBoost's JSON model (`save_model("m.json")`).
    XgboostJson,
    /// XGBoost's UBJSON model (`save_model("m.ubj")`, the default since 2.1).
    XgboostUbj,
    /// An ONNX-ML tree ensemble (skl2onnx, onnxmltools).
    Onnx,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Lightgbm => "lightgbm",
            Format::XgboostJson => "xgboost-json",
            Format::XgboostUbj => "xgboost-ubj",
            Format::Onnx => "onnx",
        }
    }

    /// Parses a format name as the command line and the API spell it; `auto` is `None`.
    pub fn parse(s: &str) -> Result<Option<Format>, Error> {
        match s {
            "auto" => Ok(None),
            "lightgbm" => Ok(Some(Format::Lightgbm)),
            "xgboost-json" => Ok(Some(Format::XgboostJson)),
            "xgboost-ubj" => Ok(Some(Format::XgboostUbj)),
            "onnx" => Ok(Some(Format::Onnx)),
            other => Err(Error::InvalidInput(format!(
                "unknown model format '{other}' (auto, lightgbm, xgboost-json, xgboost-ubj or onnx)"
            ))),
        }
    }

    /// Recognises a format from a file's first bytes.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        let head = &bytes[..bytes.len().min(64)];
        if head.starts_with(b"tree\n") || head.starts_with(b"tree\r\n") {
            return Some(Format::Lightgbm);
        }
        // UBJSON: an object whose first key's length is a typed integer.
        if head.len() > 2 && head[0] == b'{' && b"iUIlL".contains(&head[1]) {
            return Some(Format::XgboostUbj);
        }
        let mut text = head.iter().filter(|b| !b.is_ascii_whitespace());
        if text.next() == Some(&b'{') && text.next() == Some(&b'"') {
            return Some(Format::XgboostJson);
        }
        // ONNX: a ModelProto, whose writers put `ir_version` (field 1, varint) first.
        if head.len() > 2 && head[0] == 0x08 && (1..=32).contains(&head[1]) {
            return Some(Format::Onnx);
        }
        None
    }
}

/// Where an imported model came from (shown on its card and stored with the version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub format: Format,
    /// The library that trained it, in words (`LightGBM`).
    pub library: String,
    /// The library's version, when the file records it.
    pub library_version: Option<String>,
    /// The file format's own version, when it has one (`v4`).
    pub format_version: Option<String>,
    /// The objective as the file names it.
    pub objective: String,
    pub trees: usize,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

/// A parsed model file.
#[derive(Debug, Clone)]
pub struct Imported {
    pub model: Model,
    pub source: Source,
}

/// Parses `bytes` as `format` (detected from the first bytes when `None`) into a Keel model that predicts
/// `target`. Binary models get the class labels `0` and `1`.
pub fn import(bytes: &[u8], format: Option<Format>, target: &str) -> Result<Imported, Error> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Error::InvalidInput(format!(
            "the model file is {} bytes; the most Keel imports is {MAX_FILE_BYTES}",
            bytes.len()
        )));
    }
    let format = match format.or_else(|| Format::detect(bytes)) {
        Some(f) => f,
        None => {
            return Err(Error::InvalidInput(
                "the file is not a model format Keel recognises (a LightGBM text model starts with 'tree', an XGBoost model is a JSON or UBJSON object, an ONNX model a protobuf starting with its IR version); name the format with --format".into(),
            ));
        }
    };
    let sha256 = hex::encode(Sha256::digest(bytes));
    // Class labels the file names (ONNX classifiers); otherwise `0` and `1` for binary models, `0`…`k-1` for
    // multiclass ones.
    let mut labels: Option<Vec<String>> = None;
    // An imported linear model (ONNX) instead of trees.
    let mut linear: Option<crate::linear::ImportedLinear> = None;
    let mut neural: Option<crate::neural::NeuralNet> = None;
    // What every parser yields, assembled into one model below.
    let (p, numerics, init, library, library_version, format_version) = match format {
        Format::Lightgbm => {
            let text = std::str::from_utf8(bytes).map_err(|e| Error::Import {
                format: "lightgbm",
                message: format!("the file is not UTF-8 text (byte {})", e.valid_up_to()),
            })?;
            let m = lightgbm::parse(text)?;
            let p = Parsed {
                objective: m.objective,
                objective_name: m.objective_name,
                link: m.link,
                feature_names: m.feature_names,
                levels: m.levels,
                tree_class: (0..m.trees.len()).map(|i| i % m.num_class).collect(),
                trees: m.trees,
            };
            (
                p,
                Numerics::F64,
                vec![0.0; m.num_class],
                "LightGBM",
                None,
                Some("v4".to_string()),
            )
        }
        Format::XgboostJson | Format::XgboostUbj => {
            let m = xgboost::parse(bytes, format == Format::XgboostUbj)?;
            let init = m.base_margin.iter().map(|v| f64::from(*v)).collect();
            let p = Parsed {
                objective: m.objective,
                objective_name: m.objective_name,
                link: m.link,
                feature_names: m.feature_names,
                levels: m.levels,
                trees: m.trees,
                tree_class: m.tree_class,
            };
            (p, Numerics::F32, init, "XGBoost", m.version, None)
        }
        Format::Onnx => {
            let m = onnx::parse(bytes)?;
            let p = Parsed {
                objective: m.objective,
                objective_name: m.objective_name,
                link: m.link,
                // ONNX inputs are positional; the application names them (from the reference data or the user).
                feature_names: (0..m.n_features).map(|j| format!("f{j}")).collect(),
                levels: vec![None; m.n_features],
                tree_class: m.tree_class,
                trees: m.trees,
            };
            labels = m.class_labels;
            linear = m.linear;
            neural = m.neural;
            let version = m.opset.map(|v| format!("ai.onnx.ml opset {v}"));
            (
                p,
                Numerics::Onnx,
                m.base.iter().map(|v| f64::from(*v)).collect(),
                "ONNX",
                m.producer,
                version,
            )
        }
    };
    let features = p
        .feature_names
        .into_iter()
        .zip(p.levels)
        .map(|(name, levels)| FeatureSpec {
            name,
            kind: match levels {
                Some(levels) => FeatureKind::Categorical { levels },
                None => FeatureKind::Numeric,
            },
        })
        .collect();
    let source = Source {
        format,
        library: library.into(),
        library_version,
        format_version,
        objective: p.objective_name,
        trees: p.trees.len(),
        sha256,
    };
    Ok(Imported {
        model: Model {
            objective: p.objective,
            target: target.to_string(),
            class_labels: labels.or_else(|| class_labels(p.objective, init.len())),
            features,
            kind: match (linear, neural) {
                (Some(l), _) => ModelKind::ImportedLinear(l),
                (None, Some(n)) => ModelKind::Neural(n),
                (None, None) if p.objective == Objective::Multiclass => {
                    let mut per_class: Vec<Vec<crate::tree::Tree>> = vec![Vec::new(); init.len()];
                    for (t, c) in p.trees.into_iter().zip(p.tree_class) {
                        per_class[c].push(t);
                    }
                    ModelKind::GbdtMulticlass(
                        init.iter()
                            .zip(per_class)
                            .map(|(s, t)| Ensemble::new(p.objective, *s, t))
                            .collect(),
                    )
                }
                (None, None) => ModelKind::Gbdt(Ensemble::new(p.objective, init[0], p.trees)),
            },
            link: p.link,
            numerics,
        },
        source,
    })
}

/// The parts of a parsed file every format has.
struct Parsed {
    objective: Objective,
    objective_name: String,
    link: crate::model::Link,
    feature_names: Vec<String>,
    levels: Vec<Option<Vec<String>>>,
    trees: Vec<crate::tree::Tree>,
    /// The class each tree adds to (all 0 unless multiclass).
    tree_class: Vec<usize>,
}

/// Class labels for a model whose file names none: `0` and `1`, or `0`…`k-1`.
fn class_labels(objective: Objective, k: usize) -> Option<Vec<String>> {
    match objective {
        Objective::Binary => Some(vec!["0".to_string(), "1".to_string()]),
        Objective::Multiclass => Some((0..k).map(|c| c.to_string()).collect()),
        Objective::Regression => None,
    }
}
