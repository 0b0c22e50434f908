//! ONNX-ML tree ensembles (scikit-learn through skl2onnx; LightGBM and XGBoost through onnxmltools) → Keel's
//! trees, with ONNX Runtime's arithmetic kept:
//!
//! - inputs are f32 and so are thresholds: a split `x32 cmp t` (LEQ, LT, GTE, GT, EQ, NEQ, and opset 5's
//!   MEMBER) is the set of f32 values for which it holds, found by binary search over the f32 line, which
//!   becomes Keel's `x <= T` (T the largest f64 whose f32 rounding is inside); EQ, NEQ and MEMBER become two
//!   or more nodes, copying the subtree on the other side;
//! - a `Scaler` in front of the trees (`y = (x - offset) * scale` in f32, monotone in x) folds into the
//!   thresholds the same way, so the scaled value is never computed;
//! - NaN goes to the true branch when `missing_value_tracks_true` is set (NEQ always), otherwise false;
//! - leaves are summed in f32 from zero in tree order and the base value is added last
//!   ([`Numerics::Onnx`](crate::model::Numerics::Onnx)); LOGISTIC is ONNX Runtime's `1 / (1 + exp(-|s|))`,
//!   mirrored for negative scores, in f32.
//!
//! Binary classifiers keep ONNX Runtime's reading of the class weights (one weight per leaf is the score of
//! class 1; an all-positive ensemble skips LOGISTIC, as the runtime does). Multiclass ensembles, linear models,
//! SVMs and any operator outside `Cast`, `Identity`, `Scaler`, `ZipMap`, `Mul` by one and `Exp` are refused by
//! name.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::onnx_proto::{self as pb, AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::model::Link;
use crate::tree::{FLAG_DEFAULT_LEFT, FLAG_LEFT_LEAF, FLAG_RIGHT_LEAF, Node, Tree};
use crate::{Error, Objective};

const MAX_TREES: usize = 100_000;
const MAX_NODES: usize = 1 << 22;
/// Keel nodes one tree may grow to once EQ, NEQ and MEMBER splits are expanded.
const MAX_TREE_NODES: usize = 1 << 21;
const MAX_DEPTH: usize = 512;
const MAX_FEATURES: usize = 1 << 20;
const MAX_MEMBERS: usize = 256;

const ML: &str = "ai.onnx.ml";

/// A parsed ONNX model.
#[derive(Debug, Clone)]
pub struct Onnx {
    pub objective: Objective,
    /// The operator and its settings, in words (`TreeEnsembleClassifier, post_transform LOGISTIC`).
    pub objective_name: String,
    pub link: Link,
    /// Added to the leaf sum last, in f32 (one per class for a multiclass classifier).
    pub base: Vec<f32>,
    pub n_features: usize,
    pub class_labels: Option<Vec<String>>,
    /// A tree ensemble's trees (empty for a linear model); a multiclass classifier's tree adds to the class
    /// `tree_class` names (a tree with weights for several classes is one tree per class).
    pub trees: Vec<Tree>,
    pub tree_class: Vec<usize>,
    /// A linear model.
    pub linear: Option<crate::linear::ImportedLinear>,
    /// A neural network (run by ONNX Runtime).
    pub neural: Option<crate::neural::NeuralNet>,
    /// `skl2onnx 1.20.0`, as the file records it.
    pub producer: Option<String>,
    /// `ai.onnx.ml` opset.
    pub opset: Option<i64>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Import {
        format: "onnx",
        message: message.into(),
    }
}

/// Parses an ONNX model file.
pub fn parse(bytes: &[u8]) -> Result<Onnx, Error> {
    let model = pb::ModelProto::decode(bytes)
        .map_err(|e| bad(format!("not a valid ONNX protobuf: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad("the model has no graph"))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain == ML)
        .map(|o| o.version);
    let producer = (!model.producer_name.is_empty()).then(|| {
        format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string()
    });

    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    // A graph of standard operators (MatMul, Gemm, Relu, …; ONNX-ML only for picking labels or mapping
    // probabilities) is a neural network: ONNX Runtime runs it.
    let neural_net = graph.node.iter().all(|n| {
        n.domain != ML
            || matches!(
                n.op_type.as_str(),
                "ZipMap" | "ArrayFeatureExtractor" | "Normalizer" | "Binarizer" | "Scaler"
            )
    });
    if neural_net {
        return neural(bytes, graph, &inits, producer, opset);
    }
    // Every operator must be one Keel understands, checked before anything else so the error names it.
    for n in &graph.node {
        let known = matches!(
            (n.domain.as_str(), n.op_type.as_str()),
            (
                ML,
                "TreeEnsembleRegressor"
                    | "TreeEnsembleClassifier"
                    | "TreeEnsemble"
                    | "LinearRegressor"
                    | "LinearClassifier"
                    | "Scaler"
                    | "ZipMap"
            ) | ("" | "ai.onnx", "Cast" | "Identity" | "Mul" | "Exp")
        );
        if !known {
            let hint = match n.op_type.as_str() {
                "SVMClassifier" | "SVMRegressor" => " (support vector machines are not supported)",
                _ => "",
            };
            return Err(bad(format!(
                "operator {}{} (node '{}') is not supported{hint}; Keel imports ONNX-ML tree ensembles and linear models with Cast, Identity, Scaler, ZipMap, Mul by one and Exp around them",
                if n.domain.is_empty() {
                    String::new()
                } else {
                    format!("{}.", n.domain)
                },
                n.op_type,
                n.name
            )));
        }
    }
    let learners: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type.starts_with("TreeEnsemble") || n.op_type.starts_with("Linear"))
        .collect();
    let ens = match learners.as_slice() {
        [one] => *one,
        [] => return Err(bad("the graph has no tree ensemble or linear model")),
        many => {
            return Err(bad(format!(
                "the graph has {} models (tree ensembles or linear); Keel imports one",
                many.len()
            )));
        }
    };

    let (n_inputs_declared, input_is_double) = graph_input(graph, &inits)?;
    let scaler = feature_path(graph, ens, &inits, input_is_double)?;
    let out_index = if ens.op_type.ends_with("Classifier") {
        1
    } else {
        0
    };
    let out_name = ens
        .output
        .get(out_index)
        .ok_or_else(|| bad(format!("{} has no output {out_index}", ens.op_type)))?;
    let exp = output_path(graph, out_name, &inits)?;

    if ens.op_type.starts_with("Linear") {
        return read_linear(ens, n_inputs_declared, scaler, exp, producer, opset);
    }
    let spec = match ens.op_type.as_str() {
        "TreeEnsemble" => read_v5(ens)?,
        _ => read_v3(ens)?,
    };
    let n_features = match n_inputs_declared {
        Some(n) => n,
        None => spec.max_feature + 1,
    };
    if spec.max_feature >= n_features {
        return Err(bad(format!(
            "a split reads feature {} but the input has {n_features} columns",
            spec.max_feature
        )));
    }
    if let Some(s) = &scaler {
        s.check(n_features)?;
    }
    let (objective, link) = match (&spec.head, exp) {
        (Head::Regression, false) => (Objective::Regression, Link::Identity),
        (Head::Regression, true) => (Objective::Regression, Link::Exp),
        (Head::Binary { logistic, .. }, false) => (
            Objective::Binary,
            if *logistic {
                Link::Logistic { scale: 1.0 }
            } else {
                Link::Identity
            },
        ),
        (Head::Multiclass { link, .. }, false) => (Objective::Multiclass, *link),
        (Head::Binary { .. } | Head::Multiclass { .. }, true) => {
            return Err(bad(
                "an Exp after a classifier's probabilities is not supported",
            ));
        }
    };
    let trees = spec
        .trees
        .iter()
        .enumerate()
        .map(|(i, t)| build_tree(t, scaler.as_ref()).map_err(|e| bad(format!("tree {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let class_labels = match &spec.head {
        Head::Binary { labels, .. } => Some(labels.to_vec()),
        Head::Multiclass { labels, .. } => Some(labels.clone()),
        Head::Regression => None,
    };
    Ok(Onnx {
        objective,
        objective_name: spec.describe,
        link,
        base: spec.base,
        n_features,
        class_labels,
        trees,
        tree_class: spec.tree_class,
        linear: None,
        neural: None,
        producer,
        opset,
    })
}

/// A neural network: one float input `[rows, features]`, one float output `[rows, 1]` (a value) or
/// `[rows, 2]` (class probabilities); checked by loading it into the installed runtime.
fn neural(
    bytes: &[u8],
    graph: &GraphProto,
    inits: &HashMap<&str, &TensorProto>,
    producer: Option<String>,
    opset: Option<i64>,
) -> Result<Onnx, Error> {
    let mut ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    ops.sort_unstable();
    ops.dedup();
    if ops.is_empty() {
        return Err(bad("the graph has no operators"));
    }
    let (declared, double) = graph_input(graph, inits)?;
    let input = graph
        .input
        .iter()
        .find(|i| !inits.contains_key(i.name.as_str()))
        .map(|i| i.name.clone())
        .expect("graph_input found one");
    if double {
        return Err(bad(
            "the network reads double inputs; Keel feeds networks float32 [rows, features]",
        ));
    }
    let n_features = declared.ok_or_else(|| {
        bad(format!(
            "input '{input}' has no fixed feature count; export the network with a fixed second dimension"
        ))
    })?;
    // The output: a float tensor [rows, 1] or [rows, 2] (class probabilities preferred over logits by name).
    let candidates: Vec<(&str, usize)> = graph
        .output
        .iter()
        .filter_map(|o| {
            let t = o.r#type.as_ref()?.tensor_type.as_ref()?;
            if t.elem_type != pb::FLOAT {
                return None;
            }
            let dims = &t.shape.as_ref()?.dim;
            match dims.as_slice() {
                [_, d] => match d.dim_value {
                    Some(k @ (1 | 2)) => Some((o.name.as_str(), k as usize)),
                    _ => None,
                },
                [_] => Some((o.name.as_str(), 1)),
                _ => None,
            }
        })
        .collect();
    let (output, width) = candidates
        .iter()
        .find(|(n, _)| n.contains("prob"))
        .or_else(|| candidates.first())
        .copied()
        .ok_or_else(|| {
            bad(format!(
                "no float output of shape [rows, 1] or [rows, 2] among {} (ops: {}); export probabilities as a tensor (zipmap=False)",
                graph
                    .output
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                ops.join(", ")
            ))
        })?;
    let net = crate::neural::NeuralNet::new(
        bytes.to_vec(),
        input,
        output.to_string(),
        n_features,
        width,
        width - 1,
    );
    net.session().map_err(|e| {
        bad(format!(
            "a neural network (ops: {}) needs ONNX Runtime: {e}",
            ops.join(", ")
        ))
    })?;
    let (objective, class_labels) = if width == 2 {
        (Objective::Binary, Some(["0".to_string(), "1".to_string()]))
    } else {
        (Objective::Regression, None)
    };
    Ok(Onnx {
        objective,
        objective_name: format!("neural network ({}; output '{output}')", ops.join(", ")),
        link: Link::Identity,
        base: vec![0.0],
        n_features,
        class_labels: class_labels.map(Vec::from),
        trees: Vec::new(),
        tree_class: Vec::new(),
        linear: None,
        neural: Some(net),
        producer,
        opset,
    })
}
/// LinearRegressor (one target) and binary LinearClassifier (skl2onnx's two rows, `[-w, w]`): the score of
/// class 1 is the second row's; LOGISTIC is MLAS's approximation, as ONNX Runtime applies it to two-row scores.
fn read_linear(
    n: &NodeProto,
    declared: Option<usize>,
    scaler: Option<Scaler>,
    exp: bool,
    producer: Option<String>,
    opset: Option<i64>,
) -> Result<Onnx, Error> {
    let coefficients = attr(n, "coefficients")
        .map(|a| a.floats.clone())
        .ok_or_else(|| bad(format!("{} has no coefficients", n.op_type)))?;
    let intercepts = attr(n, "intercepts")
        .map(|a| a.floats.clone())
        .unwrap_or_default();
    let post = string(n, "post_transform").unwrap_or_else(|| "NONE".into());
    if coefficients.is_empty() || coefficients.len() > MAX_FEATURES * 2 {
        return Err(bad(format!("{} coefficients", coefficients.len())));
    }
    if let Some(x) = coefficients
        .iter()
        .chain(&intercepts)
        .find(|x| !x.is_finite())
    {
        return Err(bad(format!("{}: coefficient {x} is not finite", n.op_type)));
    }
    let classifier = n.op_type == "LinearClassifier";
    let rows = if classifier { 2 } else { 1 };
    let n_features = declared.unwrap_or(coefficients.len() / rows);
    if n_features == 0 || coefficients.len() != n_features * rows {
        return Err(bad(format!(
            "{} has {} coefficients for {n_features} features{}",
            n.op_type,
            coefficients.len(),
            if classifier {
                " and two classes (Keel reads skl2onnx's two-row binary form)"
            } else {
                ""
            }
        )));
    }
    let (objective, link, labels, coef, intercept) = if classifier {
        let labels = binary_labels(n, "classlabels_ints")?;
        if attr(n, "multi_class").is_some_and(|a| a.i != 0) {
            return Err(bad(
                "LinearClassifier with multi_class set is not supported",
            ));
        }
        let link = match post.as_str() {
            "NONE" => Link::Identity,
            "LOGISTIC" => Link::LogisticMlas,
            other => {
                return Err(bad(format!(
                    "post_transform {other} on a linear classifier is not supported (NONE and LOGISTIC are)"
                )));
            }
        };
        let intercept = match intercepts.as_slice() {
            [] => 0.0,
            [_, b] => *b,
            b => return Err(bad(format!("{} intercepts for two classes", b.len()))),
        };
        (
            Objective::Binary,
            link,
            Some(labels),
            coefficients[n_features..].to_vec(),
            intercept,
        )
    } else {
        if attr(n, "targets").is_some_and(|a| a.i != 1) {
            return Err(bad(
                "LinearRegressor with more than one target is not supported",
            ));
        }
        if post != "NONE" {
            return Err(bad(format!(
                "post_transform {post} on a regressor is not supported"
            )));
        }
        let intercept = match intercepts.as_slice() {
            [] => 0.0,
            [b] => *b,
            b => return Err(bad(format!("{} intercepts for one target", b.len()))),
        };
        (
            Objective::Regression,
            Link::Identity,
            None,
            coefficients,
            intercept,
        )
    };
    let link = match (exp, objective) {
        (false, _) => link,
        (true, Objective::Regression) => Link::Exp,
        (true, Objective::Binary | Objective::Multiclass) => {
            return Err(bad(
                "an Exp after a classifier's probabilities is not supported",
            ));
        }
    };
    if let Some(s) = &scaler {
        s.check(n_features)?;
    }
    Ok(Onnx {
        objective,
        objective_name: format!("{} (post_transform {post})", n.op_type),
        link,
        base: vec![0.0],
        n_features,
        class_labels: labels.map(Vec::from),
        trees: Vec::new(),
        tree_class: Vec::new(),
        neural: None,
        linear: Some(crate::linear::ImportedLinear {
            coefficients: coef,
            intercept,
            scaler: scaler.map(|s| (0..n_features).map(|j| s.of(j)).collect()),
        }),
        producer,
        opset,
    })
}

/// The graph's one data input: its column count when fixed, and whether it is f64.
fn graph_input(
    graph: &GraphProto,
    inits: &HashMap<&str, &TensorProto>,
) -> Result<(Option<usize>, bool), Error> {
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(bad(format!(
            "the graph has {} inputs; Keel imports models with one input tensor [rows, features]",
            inputs.len()
        )));
    };
    let t = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| bad(format!("input '{}' is not a tensor", input.name)))?;
    let double = match t.elem_type {
        pb::FLOAT => false,
        pb::DOUBLE => true,
        other => {
            return Err(bad(format!(
                "input '{}' has element type {other}; Keel reads float or double inputs",
                input.name
            )));
        }
    };
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    let n = match dims {
        [_, d] => match d.dim_value {
            Some(v) if v > 0 && (v as usize) <= MAX_FEATURES => Some(v as usize),
            Some(v) if v > 0 => {
                return Err(bad(format!("input '{}' has {v} columns", input.name)));
            }
            _ => None,
        },
        [] => None,
        _ => {
            return Err(bad(format!(
                "input '{}' has {} dimensions; Keel reads [rows, features]",
                input.name,
                dims.len()
            )));
        }
    };
    Ok((n, double))
}

fn producer_of<'a>(graph: &'a GraphProto, tensor: &str) -> Option<&'a NodeProto> {
    graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == tensor))
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// A `Scaler` on the way from the input to the trees: `y = (x - offset) * scale`, in f32.
#[derive(Debug, Clone)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    fn check(&self, n: usize) -> Result<(), Error> {
        for (what, v) in [("offset", &self.offset), ("scale", &self.scale)] {
            if v.len() != 1 && v.len() != n {
                return Err(bad(format!(
                    "Scaler has {} {what} values for {n} features",
                    v.len()
                )));
            }
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(bad(format!("Scaler {what} {x} is not finite")));
            }
        }
        if self.scale.contains(&0.0) {
            return Err(bad("Scaler scale 0 is not supported"));
        }
        Ok(())
    }

    fn of(&self, j: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[j] };
        (pick(&self.offset), pick(&self.scale))
    }
}

/// Walks from the ensemble's input back to the graph input through Cast, Identity and at most one Scaler.
fn feature_path(
    graph: &GraphProto,
    ens: &NodeProto,
    inits: &HashMap<&str, &TensorProto>,
    input_is_double: bool,
) -> Result<Option<Scaler>, Error> {
    let mut tensor = ens
        .input
        .first()
        .ok_or_else(|| bad("the model has no input"))?
        .clone();
    // The nodes from the model back to the graph input, then read forwards.
    let mut path: Vec<&NodeProto> = Vec::new();
    while let Some(n) = producer_of(graph, &tensor) {
        if path.len() >= 64 {
            return Err(bad(
                "the path from the input to the model is longer than 64 nodes",
            ));
        }
        path.push(n);
        tensor = n
            .input
            .first()
            .ok_or_else(|| bad(format!("node '{}' has no input", n.name)))?
            .clone();
    }
    if inits.contains_key(tensor.as_str()) {
        return Err(bad("the model reads a constant, not the input"));
    }
    let mut float = !input_is_double;
    let mut scaler: Option<Scaler> = None;
    for n in path.into_iter().rev() {
        match n.op_type.as_str() {
            "Identity" => {}
            "Cast" => {
                let to = attr(n, "to").map(|a| a.i).unwrap_or(0);
                if i32::try_from(to) != Ok(pb::FLOAT) {
                    return Err(bad(format!(
                        "Cast (node '{}') on the way to the model casts to type {to}; only float is supported",
                        n.name
                    )));
                }
                float = true;
            }
            "Scaler" => {
                if scaler.is_some() {
                    return Err(bad("two Scalers before the model are not supported"));
                }
                if !float {
                    return Err(bad(
                        "a Scaler on double inputs is not supported; export the model with a float input",
                    ));
                }
                // ONNX's defaults: no offset, unit scale.
                let floats = |name: &str, default: f32| {
                    attr(n, name)
                        .map(|a| a.floats.clone())
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| vec![default])
                };
                scaler = Some(Scaler {
                    offset: floats("offset", 0.0),
                    scale: floats("scale", 1.0),
                });
            }
            other => {
                return Err(bad(format!(
                    "{other} (node '{}') between the input and the model is not supported",
                    n.name
                )));
            }
        }
    }
    if !float {
        return Err(bad(
            "the model reads double inputs without a Cast to float first; export it with a float input (initial_types FloatTensorType)",
        ));
    }
    Ok(scaler)
}

/// Follows the ensemble's score output to a graph output; returns whether an `Exp` is on the way.
fn output_path(
    graph: &GraphProto,
    start: &str,
    inits: &HashMap<&str, &TensorProto>,
) -> Result<bool, Error> {
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    // Depth-first over consumers; the first graph output reached decides. A consumer Keel cannot follow (an
    // ArgMax for labels, say) is skipped, and named if no output is reached any other way.
    let mut blocked: Option<String> = None;
    let mut stack = vec![(start.to_string(), false, 0usize)];
    while let Some((tensor, exp, depth)) = stack.pop() {
        if outputs.contains(tensor.as_str()) {
            return Ok(exp);
        }
        if depth > 64 {
            continue;
        }
        for n in graph.node.iter().filter(|n| n.input.contains(&tensor)) {
            let follows = match n.op_type.as_str() {
                "Identity" | "ZipMap" => Some(exp),
                "Cast" => {
                    let to = attr(n, "to").map(|a| a.i).unwrap_or(0);
                    (i32::try_from(to) == Ok(pb::FLOAT)).then_some(exp)
                }
                "Mul" => {
                    let other = n.input.iter().find(|i| **i != tensor);
                    let one = other
                        .and_then(|o| inits.get(o.as_str()))
                        .and_then(|t| tensor_f32(t).ok())
                        .is_some_and(|v| !v.is_empty() && v.iter().all(|x| *x == 1.0));
                    one.then_some(exp)
                }
                "Exp" if !exp => Some(true),
                _ => None,
            };
            match follows {
                Some(exp) => {
                    for o in &n.output {
                        stack.push((o.clone(), exp, depth + 1));
                    }
                }
                None => {
                    blocked.get_or_insert_with(|| format!("{} (node '{}')", n.op_type, n.name));
                }
            }
        }
    }
    Err(bad(match blocked {
        Some(op) => format!(
            "the model's scores reach the outputs only through {op}, which Keel does not apply"
        ),
        None => "the model's scores do not reach a graph output".to_string(),
    }))
}

/// A tensor's values as f32 (float tensors only).
fn tensor_f32(t: &TensorProto) -> Result<Vec<f32>, Error> {
    if t.data_location == 1 {
        return Err(bad(format!(
            "tensor '{}' is stored in an external file",
            t.name
        )));
    }
    match t.data_type {
        pb::FLOAT => {
            if !t.raw_data.is_empty() {
                if !t.raw_data.len().is_multiple_of(4) {
                    return Err(bad(format!(
                        "tensor '{}': raw data of {} bytes",
                        t.name,
                        t.raw_data.len()
                    )));
                }
                Ok(t.raw_data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect())
            } else {
                Ok(t.float_data.clone())
            }
        }
        pb::DOUBLE => Err(bad(format!(
            "tensor '{}' holds doubles; double-precision tree attributes are not supported",
            t.name
        ))),
        other => Err(bad(format!(
            "tensor '{}' has element type {other}, not float",
            t.name
        ))),
    }
}

fn tensor_u8(t: &TensorProto) -> Result<Vec<u8>, Error> {
    match t.data_type {
        pb::UINT8 if !t.raw_data.is_empty() => Ok(t.raw_data.clone()),
        pb::UINT8 | pb::INT32 => t
            .int32_data
            .iter()
            .map(|v| u8::try_from(*v).map_err(|_| bad(format!("tensor '{}': value {v}", t.name))))
            .collect(),
        other => Err(bad(format!(
            "tensor '{}' has element type {other}, not uint8",
            t.name
        ))),
    }
}

/// A float list attribute, or its `_as_tensor` form.
fn floats(n: &NodeProto, name: &str) -> Result<Option<Vec<f32>>, Error> {
    if let Some(a) = attr(n, name) {
        return Ok(Some(a.floats.clone()));
    }
    match attr(n, &format!("{name}_as_tensor")).and_then(|a| a.t.as_ref()) {
        Some(t) => tensor_f32(t).map(Some),
        None => Ok(None),
    }
}

fn ints<'a>(n: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(n, name).map(|a| a.ints.as_slice())
}

/// A classifier's two class labels (integer labels as text); more classes are refused.
fn binary_labels(n: &NodeProto, ints_name: &str) -> Result<[String; 2], Error> {
    let labels = all_labels(n, ints_name)?;
    <[String; 2]>::try_from(labels).map_err(|l| {
        bad(format!(
            "the classifier has {} classes; two expected",
            l.len()
        ))
    })
}

/// A classifier's class labels, in class order (`classlabels_int64s` or `classlabels_strings`).
fn all_labels(n: &NodeProto, ints_name: &str) -> Result<Vec<String>, Error> {
    let labels: Vec<String> = if let Some(v) = ints(n, ints_name) {
        v.iter().map(i64::to_string).collect()
    } else if let Some(a) = attr(n, "classlabels_strings") {
        a.strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    } else {
        return Err(bad(format!("{} has no class labels", n.op_type)));
    };
    if labels.len() < 2 {
        return Err(bad(format!("the classifier has {} classes", labels.len())));
    }
    Ok(labels)
}

fn string(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// What a split compares.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Leq(f32),
    Lt(f32),
    Gte(f32),
    Gt(f32),
    Eq(f32),
    Neq(f32),
    Member(Vec<f32>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Child {
    Node(usize),
    Leaf(f32),
}

#[derive(Debug, Clone)]
struct Split {
    feature: usize,
    cond: Cond,
    nan_true: bool,
    t: Child,
    f: Child,
}

/// One tree as the file states it: splits indexed locally, the root first.
#[derive(Debug, Clone, Default)]
struct RawTree {
    splits: Vec<Split>,
    /// The tree is a single leaf.
    leaf: Option<f32>,
}

enum Head {
    Regression,
    Binary {
        labels: [String; 2],
        /// ONNX Runtime applies LOGISTIC (it skips it when every class weight is positive).
        logistic: bool,
    },
    /// Three or more classes: the post_transform as a link over the class scores.
    Multiclass {
        labels: Vec<String>,
        link: Link,
    },
}

struct Spec {
    trees: Vec<RawTree>,
    /// The class each tree adds to (all 0 unless multiclass).
    tree_class: Vec<usize>,
    /// One per class (one for a regressor or a binary classifier).
    base: Vec<f32>,
    head: Head,
    max_feature: usize,
    describe: String,
}

fn len_check(name: &str, len: usize, want: usize) -> Result<(), Error> {
    if len != want {
        return Err(bad(format!(
            "{name} has {len} entries, nodes_nodeids {want}"
        )));
    }
    Ok(())
}

/// TreeEnsembleRegressor and TreeEnsembleClassifier (ai.onnx.ml opsets 1 to 3).
fn read_v3(n: &NodeProto) -> Result<Spec, Error> {
    let classifier = n.op_type == "TreeEnsembleClassifier";
    let req = |name: &str| ints(n, name).ok_or_else(|| bad(format!("{} has no {name}", n.op_type)));
    let tree_ids = req("nodes_treeids")?;
    let node_ids = req("nodes_nodeids")?;
    let features = req("nodes_featureids")?;
    let true_ids = req("nodes_truenodeids")?;
    let false_ids = req("nodes_falsenodeids")?;
    let count = node_ids.len();
    if count == 0 || count > MAX_NODES {
        return Err(bad(format!("{count} nodes")));
    }
    let modes: Vec<String> = attr(n, "nodes_modes")
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .ok_or_else(|| bad(format!("{} has no nodes_modes", n.op_type)))?;
    let values = floats(n, "nodes_values")?.unwrap_or_else(|| vec![0.0; count]);
    let missing = ints(n, "nodes_missing_value_tracks_true")
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; count]);
    for (name, len) in [
        ("nodes_treeids", tree_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_missing_value_tracks_true", missing.len()),
    ] {
        len_check(name, len, count)?;
    }
    let prefix = if classifier { "class" } else { "target" };
    let w_tree = req(&format!("{prefix}_treeids"))?;
    let w_node = req(&format!("{prefix}_nodeids"))?;
    let w_id = req(&format!("{prefix}_ids"))?;
    let w_val = floats(n, &format!("{prefix}_weights"))?
        .ok_or_else(|| bad(format!("{} has no {prefix}_weights", n.op_type)))?;
    if w_node.len() != w_tree.len() || w_id.len() != w_tree.len() || w_val.len() != w_tree.len() {
        return Err(bad(format!(
            "{prefix}_treeids, _nodeids, _ids and _weights have {}, {}, {} and {} entries",
            w_tree.len(),
            w_node.len(),
            w_id.len(),
            w_val.len()
        )));
    }
    let base_values = floats(n, "base_values")?.unwrap_or_default();
    let post = string(n, "post_transform").unwrap_or_else(|| "NONE".into());
    if let Some(agg) = string(n, "aggregate_function")
        && agg != "SUM"
    {
        return Err(bad(format!(
            "aggregate_function {agg} is not supported (SUM is)"
        )));
    }

    // Which weights are the score: the regressor's only target; for a classifier, class 1's weights, or the
    // only class's when every weight is for one class (ONNX Runtime's binary case).
    let n_classes = if classifier {
        all_labels(n, "classlabels_int64s")?.len()
    } else {
        1
    };
    let (head, score_id, base) = if classifier && n_classes > 2 {
        let labels = all_labels(n, "classlabels_int64s")?;
        if let Some(i) = w_id.iter().find(|i| !(0..n_classes as i64).contains(*i)) {
            return Err(bad(format!(
                "class_ids has {i}, outside the {n_classes} classes"
            )));
        }
        let link = match post.as_str() {
            "NONE" => Link::Identity,
            "SOFTMAX" => Link::Softmax,
            "LOGISTIC" => Link::Logistic { scale: 1.0 },
            other => {
                return Err(bad(format!(
                    "post_transform {other} on a multiclass classifier is not supported (NONE, SOFTMAX and LOGISTIC are)"
                )));
            }
        };
        let base = match base_values.len() {
            0 => vec![0.0; n_classes],
            k if k == n_classes => base_values.clone(),
            k => {
                return Err(bad(format!("{k} base_values for {n_classes} classes")));
            }
        };
        (Head::Multiclass { labels, link }, -1, base)
    } else if classifier {
        let labels = binary_labels(n, "classlabels_int64s")?;
        let ids: HashSet<i64> = w_id.iter().copied().collect();
        if ids.iter().any(|i| !(0..2).contains(i)) {
            return Err(bad("class_ids outside the two classes"));
        }
        let single = ids.len() == 1;
        let score_id = if single {
            *ids.iter().next().expect("one")
        } else {
            1
        };
        let all_positive = w_val.iter().all(|w| *w >= 0.0);
        let base = match (base_values.as_slice(), single && score_id == 0) {
            ([], _) => 0.0,
            ([b], true) => *b,
            (b, _) => {
                return Err(bad(format!(
                    "{} base_values with class_ids {:?} are not supported",
                    b.len(),
                    {
                        let mut v: Vec<_> = ids.iter().collect();
                        v.sort();
                        v
                    }
                )));
            }
        };
        let logistic = match post.as_str() {
            "NONE" => false,
            // ONNX Runtime's binary case writes [1 - s, s] without the transform when all weights are positive.
            "LOGISTIC" => !(single && score_id == 0 && all_positive),
            other => {
                return Err(bad(format!(
                    "post_transform {other} on a binary classifier is not supported (NONE and LOGISTIC are)"
                )));
            }
        };
        (Head::Binary { labels, logistic }, score_id, vec![base])
    } else {
        let targets = attr(n, "n_targets").map(|a| a.i).unwrap_or(1);
        if targets != 1 || w_id.iter().any(|i| *i != 0) {
            return Err(bad(format!(
                "the regressor has {targets} targets; Keel imports one"
            )));
        }
        if post != "NONE" {
            return Err(bad(format!(
                "post_transform {post} on a regressor is not supported"
            )));
        }
        let base = match base_values.as_slice() {
            [] => 0.0,
            [b] => *b,
            b => return Err(bad(format!("{} base_values for one target", b.len()))),
        };
        (Head::Regression, 0, vec![base])
    };
    let multiclass = score_id < 0;

    // Leaf weights by (tree, node, class); a binary classifier or a regressor reads one output (class 0).
    let mut leaf_weight: HashMap<(i64, i64, usize), f32> = HashMap::new();
    // The classes each tree has weights for (multiclass).
    let mut tree_classes: HashMap<i64, std::collections::BTreeSet<usize>> = HashMap::new();
    for k in 0..w_tree.len() {
        if !multiclass && w_id[k] != score_id {
            continue;
        }
        let class = if multiclass { w_id[k] as usize } else { 0 };
        tree_classes.entry(w_tree[k]).or_default().insert(class);
        if leaf_weight
            .insert((w_tree[k], w_node[k], class), w_val[k])
            .is_some()
        {
            return Err(bad(format!(
                "tree {} node {} has more than one weight for one output",
                w_tree[k], w_node[k]
            )));
        }
    }

    // Nodes grouped by tree, in the order trees first appear (ONNX Runtime's order).
    let mut order: Vec<i64> = Vec::new();
    let mut by_tree: HashMap<i64, HashMap<i64, usize>> = HashMap::new();
    for k in 0..count {
        let t = tree_ids[k];
        let entry = by_tree.entry(t).or_insert_with(|| {
            order.push(t);
            HashMap::new()
        });
        if entry.insert(node_ids[k], k).is_some() {
            return Err(bad(format!("tree {t} has node {} twice", node_ids[k])));
        }
    }
    if order.len() > MAX_TREES {
        return Err(bad(format!("{} trees", order.len())));
    }
    let mut max_feature = 0usize;
    let mut trees = Vec::with_capacity(order.len());
    let mut tree_class = Vec::with_capacity(order.len());
    // A tree's structure is read once with leaves standing for their node ids; each class it scores gets a
    // copy with that class's weights.
    let mut leaf_ids: Vec<i64> = Vec::new();
    let mut emit = |raw: RawTree, t: i64, leaf_ids: &[i64], trees: &mut Vec<RawTree>| {
        let classes: Vec<usize> = match tree_classes.get(&t) {
            Some(c) => c.iter().copied().collect(),
            // A tree without weights adds nothing; a binary or regression one still counts as a tree.
            None if !multiclass => vec![0],
            None => vec![],
        };
        for c in classes {
            let weight = |leaf: f32| {
                let id = leaf_ids[leaf as usize];
                leaf_weight.get(&(t, id, c)).copied().unwrap_or(0.0)
            };
            trees.push(map_leaves(&raw, &weight));
            tree_class.push(c);
        }
    };
    for t in order {
        let nodes = &by_tree[&t];
        // The root is the node no other node points at.
        let mut children = HashSet::new();
        for (&id, &k) in nodes {
            if modes[k] != "LEAF" {
                for c in [true_ids[k], false_ids[k]] {
                    if !nodes.contains_key(&c) {
                        return Err(bad(format!(
                            "tree {t} node {id} points at node {c}, which is not in the tree"
                        )));
                    }
                    children.insert(c);
                }
            }
        }
        let roots: Vec<i64> = nodes
            .keys()
            .copied()
            .filter(|id| !children.contains(id))
            .collect();
        let [root] = roots.as_slice() else {
            return Err(bad(format!("tree {t} has {} roots", roots.len())));
        };
        // Local indexes in discovery order from the root; a node reached twice means a cycle or a shared subtree.
        let mut local: HashMap<i64, usize> = HashMap::new();
        let mut raw = RawTree::default();
        leaf_ids.clear();
        // A leaf's value is, for now, its index in `leaf_ids` (exact in f32: at most MAX_NODES leaves).
        let mut leaf_of = |id: i64| {
            leaf_ids.push(id);
            (leaf_ids.len() - 1) as f32
        };
        let k_root = nodes[root];
        if modes[k_root] == "LEAF" {
            if nodes.len() != 1 {
                return Err(bad(format!(
                    "tree {t}: its root is a leaf but it has {} nodes",
                    nodes.len()
                )));
            }
            raw.leaf = Some(leaf_of(*root));
            emit(raw, t, &leaf_ids, &mut trees);
            continue;
        }
        let mut leaves_seen: HashSet<i64> = HashSet::new();
        let mut queue = vec![*root];
        local.insert(*root, 0);
        raw.splits.push(placeholder());
        while let Some(id) = queue.pop() {
            let k = nodes[&id];
            let mut child =
                |cid: i64, queue: &mut Vec<i64>, raw: &mut RawTree| -> Result<Child, Error> {
                    let &ck = nodes.get(&cid).ok_or_else(|| {
                        bad(format!(
                            "tree {t} node {id} points at node {cid}, which is not in the tree"
                        ))
                    })?;
                    if modes[ck] == "LEAF" {
                        if !leaves_seen.insert(cid) {
                            return Err(bad(format!(
                                "tree {t} leaf {cid} is reached twice (a shared subtree)"
                            )));
                        }
                        return Ok(Child::Leaf(leaf_of(cid)));
                    }
                    if local.contains_key(&cid) {
                        return Err(bad(format!(
                            "tree {t} node {cid} is reached twice (a cycle or shared subtree)"
                        )));
                    }
                    let i = raw.splits.len();
                    local.insert(cid, i);
                    raw.splits.push(placeholder());
                    queue.push(cid);
                    Ok(Child::Node(i))
                };
            let tc = child(true_ids[k], &mut queue, &mut raw)?;
            let fc = child(false_ids[k], &mut queue, &mut raw)?;
            let v = values[k];
            if v.is_nan() {
                return Err(bad(format!("tree {t} node {id} has a NaN threshold")));
            }
            let cond = match modes[k].as_str() {
                "BRANCH_LEQ" => Cond::Leq(v),
                "BRANCH_LT" => Cond::Lt(v),
                "BRANCH_GTE" => Cond::Gte(v),
                "BRANCH_GT" => Cond::Gt(v),
                "BRANCH_EQ" => Cond::Eq(v),
                "BRANCH_NEQ" => Cond::Neq(v),
                other => return Err(bad(format!("tree {t} node {id} has mode '{other}'"))),
            };
            let feature = usize::try_from(features[k])
                .ok()
                .filter(|f| *f < MAX_FEATURES)
                .ok_or_else(|| bad(format!("tree {t} node {id} reads feature {}", features[k])))?;
            max_feature = max_feature.max(feature);
            raw.splits[local[&id]] = Split {
                feature,
                cond,
                nan_true: missing[k] != 0,
                t: tc,
                f: fc,
            };
        }
        // Every node hangs off the root exactly once: anything else is a cycle or a detached part.
        if local.len() + leaves_seen.len() != nodes.len() {
            return Err(bad(format!(
                "tree {t}: {} of its {} nodes are not reachable from its root (a cycle or a detached subtree)",
                nodes.len() - local.len() - leaves_seen.len(),
                nodes.len()
            )));
        }
        emit(raw, t, &leaf_ids, &mut trees);
    }
    let describe = format!(
        "{}{} (post_transform {post}{})",
        n.op_type,
        if multiclass {
            format!(", {n_classes} classes")
        } else {
            String::new()
        },
        if base.iter().any(|b| *b != 0.0) {
            let shown: Vec<String> = base.iter().map(f32::to_string).collect();
            format!(", base value {}", shown.join(", "))
        } else {
            String::new()
        }
    );
    Ok(Spec {
        trees,
        tree_class,
        base,
        head,
        max_feature,
        describe,
    })
}

/// A copy of `raw` whose leaves hold `weight(leaf)` in place of their values.
fn map_leaves(raw: &RawTree, weight: &dyn Fn(f32) -> f32) -> RawTree {
    let child = |c: &Child| match c {
        Child::Leaf(v) => Child::Leaf(weight(*v)),
        Child::Node(i) => Child::Node(*i),
    };
    RawTree {
        leaf: raw.leaf.map(weight),
        splits: raw
            .splits
            .iter()
            .map(|s| Split {
                t: child(&s.t),
                f: child(&s.f),
                ..s.clone()
            })
            .collect(),
    }
}

fn placeholder() -> Split {
    Split {
        feature: 0,
        cond: Cond::Leq(0.0),
        nan_true: false,
        t: Child::Leaf(0.0),
        f: Child::Leaf(0.0),
    }
}

/// TreeEnsemble (ai.onnx.ml opset 5): node and leaf arrays indexed globally, trees by their root index.
fn read_v5(n: &NodeProto) -> Result<Spec, Error> {
    let req = |name: &str| ints(n, name).ok_or_else(|| bad(format!("TreeEnsemble has no {name}")));
    let features = req("nodes_featureids")?;
    let count = features.len();
    if count > MAX_NODES {
        return Err(bad(format!("{count} nodes")));
    }
    let true_ids = req("nodes_truenodeids")?;
    let true_leaf = req("nodes_trueleafs")?;
    let false_ids = req("nodes_falsenodeids")?;
    let false_leaf = req("nodes_falseleafs")?;
    let roots = req("tree_roots")?;
    let targets = req("leaf_targetids")?;
    let tensor = |name: &str| {
        attr(n, name)
            .and_then(|a| a.t.as_ref())
            .ok_or_else(|| bad(format!("TreeEnsemble has no {name}")))
    };
    let splits = tensor_f32(tensor("nodes_splits")?)?;
    let modes = tensor_u8(tensor("nodes_modes")?)?;
    let weights = tensor_f32(tensor("leaf_weights")?)?;
    let missing = match attr(n, "nodes_missing_value_tracks_true") {
        Some(a) => a.ints.clone(),
        None => vec![0; count],
    };
    let members = match attr(n, "membership_values").and_then(|a| a.t.as_ref()) {
        Some(t) => tensor_f32(t)?,
        None => Vec::new(),
    };
    for (name, len) in [
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_trueleafs", true_leaf.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_falseleafs", false_leaf.len()),
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
        ("nodes_missing_value_tracks_true", missing.len()),
    ] {
        if len != count {
            return Err(bad(format!(
                "{name} has {len} entries, nodes_featureids {count}"
            )));
        }
    }
    if targets.len() != weights.len() {
        return Err(bad(format!(
            "leaf_targetids has {} entries, leaf_weights {}",
            targets.len(),
            weights.len()
        )));
    }
    if attr(n, "n_targets").map(|a| a.i).unwrap_or(1) != 1 || targets.iter().any(|t| *t != 0) {
        return Err(bad(
            "TreeEnsemble with more than one target is not supported",
        ));
    }
    let agg = attr(n, "aggregate_function").map(|a| a.i).unwrap_or(1);
    if agg != 1 {
        return Err(bad(format!(
            "aggregate_function {agg} is not supported (1, SUM, is)"
        )));
    }
    let post = attr(n, "post_transform").map(|a| a.i).unwrap_or(0);
    if post != 0 {
        return Err(bad(format!(
            "post_transform {post} on TreeEnsemble is not supported (0, NONE, is)"
        )));
    }
    if roots.len() > MAX_TREES {
        return Err(bad(format!("{} trees", roots.len())));
    }
    // The membership sets, one per MEMBER node in node order, separated by NaN.
    let mut sets = members.split(|v| v.is_nan()).map(<[f32]>::to_vec);
    let mut member_of: HashMap<usize, Vec<f32>> = HashMap::new();
    for (k, m) in modes.iter().enumerate() {
        if *m == 6 {
            let set = sets.next().ok_or_else(|| {
                bad(format!(
                    "node {k} is BRANCH_MEMBER but membership_values has no set for it"
                ))
            })?;
            if set.is_empty() || set.len() > MAX_MEMBERS {
                return Err(bad(format!(
                    "node {k}: a membership set of {} values",
                    set.len()
                )));
            }
            member_of.insert(k, set);
        }
    }
    let leaf_value = |i: i64| -> Result<f32, Error> {
        usize::try_from(i)
            .ok()
            .and_then(|i| weights.get(i).copied())
            .ok_or_else(|| {
                bad(format!(
                    "leaf {i} is out of range ({} leaves)",
                    weights.len()
                ))
            })
    };
    let mut max_feature = 0usize;
    let mut trees = Vec::with_capacity(roots.len());
    for (ti, &root) in roots.iter().enumerate() {
        let root = usize::try_from(root)
            .ok()
            .filter(|r| *r < count)
            .ok_or_else(|| bad(format!("tree {ti}: root {root} is out of range")))?;
        let mut raw = RawTree::default();
        let mut local: HashMap<usize, usize> = HashMap::from([(root, 0)]);
        raw.splits.push(placeholder());
        let mut queue = vec![root];
        while let Some(k) = queue.pop() {
            let mut child = |id: i64,
                             leaf: i64,
                             queue: &mut Vec<usize>,
                             raw: &mut RawTree|
             -> Result<Child, Error> {
                if leaf != 0 {
                    return leaf_value(id).map(Child::Leaf);
                }
                let c = usize::try_from(id)
                    .ok()
                    .filter(|c| *c < count)
                    .ok_or_else(|| {
                        bad(format!(
                            "tree {ti}: node {k} points at node {id}, out of range"
                        ))
                    })?;
                if local.contains_key(&c) {
                    return Err(bad(format!(
                        "tree {ti}: node {c} is reached twice (a cycle or shared subtree)"
                    )));
                }
                let i = raw.splits.len();
                local.insert(c, i);
                raw.splits.push(placeholder());
                queue.push(c);
                Ok(Child::Node(i))
            };
            let tc = child(true_ids[k], true_leaf[k], &mut queue, &mut raw)?;
            let fc = child(false_ids[k], false_leaf[k], &mut queue, &mut raw)?;
            let v = splits[k];
            let cond = match modes[k] {
                0 => Cond::Leq(v),
                1 => Cond::Lt(v),
                2 => Cond::Gte(v),
                3 => Cond::Gt(v),
                4 => Cond::Eq(v),
                5 => Cond::Neq(v),
                6 => Cond::Member(member_of.remove(&k).unwrap_or_default()),
                other => return Err(bad(format!("tree {ti}: node {k} has mode {other}"))),
            };
            if v.is_nan() && !matches!(cond, Cond::Member(_)) {
                return Err(bad(format!("tree {ti}: node {k} has a NaN threshold")));
            }
            if let Cond::Member(set) = &cond
                && set.iter().any(|x| x.is_nan())
            {
                return Err(bad(format!(
                    "tree {ti}: node {k} has NaN in its membership set"
                )));
            }
            let feature = usize::try_from(features[k])
                .ok()
                .filter(|f| *f < MAX_FEATURES)
                .ok_or_else(|| bad(format!("tree {ti}: node {k} reads feature {}", features[k])))?;
            max_feature = max_feature.max(feature);
            raw.splits[local[&k]] = Split {
                feature,
                cond,
                nan_true: missing[k] != 0,
                t: tc,
                f: fc,
            };
        }
        trees.push(raw);
    }
    Ok(Spec {
        tree_class: vec![0; trees.len()],
        trees,
        base: vec![0.0],
        head: Head::Regression,
        max_feature,
        describe: "TreeEnsemble (opset 5, post_transform NONE)".into(),
    })
}

// ---- f32 sets → Keel splits --------------------------------------------------------------------------------

/// The position of a non-NaN f32 on the number line (-0.0 just before +0.0); `from_ord` inverts it.
#[cfg(test)]
fn ord(x: f32) -> i64 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        -i64::from(b & 0x7fff_ffff) - 1
    } else {
        i64::from(b)
    }
}

fn from_ord(k: i64) -> f32 {
    if k >= 0 {
        f32::from_bits(k as u32)
    } else {
        f32::from_bits(((-k - 1) as u32) | 0x8000_0000)
    }
}

const LO: i64 = -0x7f80_0000 - 1; // ord(-inf)
const HI: i64 = 0x7f80_0000; // ord(+inf)

/// Closed f32 interval `[lo, hi]` (by ord), or empty.
type Interval = Option<(i64, i64)>;

/// For a predicate false then true along the line, the first f32 where it is true.
fn first_true(p: impl Fn(f32) -> bool) -> Option<i64> {
    if !p(from_ord(HI)) {
        return None;
    }
    let (mut lo, mut hi) = (LO, HI); // p(hi) true
    if p(from_ord(lo)) {
        return Some(lo);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if p(from_ord(mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The f32 inputs x for which `cmp(y(x), t)` holds, y the feature's scaling (monotone).
fn interval(cond: &Cond, scale: Option<(f32, f32)>) -> Interval {
    let y = |x: f32| match scale {
        Some((off, s)) => (x - off) * s,
        None => x,
    };
    let increasing = scale.is_none_or(|(_, s)| s > 0.0);
    // The set where y <= t (or y < t), and where y >= t (or y > t): a down-set and an up-set of y.
    let below = |t: f32, strict: bool| -> Interval {
        let p = |x: f32| if strict { y(x) < t } else { y(x) <= t };
        if increasing {
            // true then false: the last true is one before the first false.
            match first_true(|x| !p(x)) {
                None => Some((LO, HI)),
                Some(k) if k == LO => None,
                Some(k) => Some((LO, k - 1)),
            }
        } else {
            first_true(p).map(|k| (k, HI))
        }
    };
    let above = |t: f32, strict: bool| -> Interval {
        let p = |x: f32| if strict { y(x) > t } else { y(x) >= t };
        if increasing {
            first_true(p).map(|k| (k, HI))
        } else {
            match first_true(|x| !p(x)) {
                None => Some((LO, HI)),
                Some(k) if k == LO => None,
                Some(k) => Some((LO, k - 1)),
            }
        }
    };
    let meet = |a: Interval, b: Interval| match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) if a0.max(b0) <= a1.min(b1) => {
            Some((a0.max(b0), a1.min(b1)))
        }
        _ => None,
    };
    match *cond {
        Cond::Leq(t) => below(t, false),
        Cond::Lt(t) => below(t, true),
        Cond::Gte(t) => above(t, false),
        Cond::Gt(t) => above(t, true),
        Cond::Eq(t) | Cond::Neq(t) => meet(below(t, false), above(t, false)),
        Cond::Member(_) => unreachable!("members are intervals one by one"),
    }
}

/// The largest f64 whose f32 rounding is at most `x`.
fn at_most_f32(x: f32) -> f64 {
    if x == f32::INFINITY {
        f64::INFINITY
    } else {
        super::xgboost::below_f32(x.next_up())
    }
}

/// Builds Keel's tree for one ONNX tree.
fn build_tree(raw: &RawTree, scaler: Option<&Scaler>) -> Result<Tree, String> {
    let mut b = Builder {
        raw,
        scaler,
        tree: Tree::default(),
    };
    if let Some(v) = raw.leaf {
        b.tree.leaf_values.push(f64::from(v));
        b.tree.leaf_covers.push(1.0);
        return Ok(b.tree);
    }
    match b.emit(Child::Node(0), 0)? {
        Ref::Leaf(_) => {}
        Ref::Node(0) => {}
        Ref::Node(_) => unreachable!("the root is emitted first"),
    }
    // Covers: every leaf weighs one (the file has no counts); nodes sum their leaves.
    fill_covers(&mut b.tree);
    Ok(b.tree)
}

#[derive(Clone, Copy)]
enum Ref {
    Node(u32),
    Leaf(u32),
}

struct Builder<'a> {
    raw: &'a RawTree,
    scaler: Option<&'a Scaler>,
    tree: Tree,
}

impl Builder<'_> {
    fn emit(&mut self, c: Child, depth: usize) -> Result<Ref, String> {
        if depth > MAX_DEPTH {
            return Err(format!("deeper than {MAX_DEPTH} levels"));
        }
        if self.tree.nodes.len() + self.tree.leaf_values.len() > MAX_TREE_NODES {
            return Err(format!(
                "more than {MAX_TREE_NODES} nodes once EQ, NEQ and MEMBER splits are expanded"
            ));
        }
        let i = match c {
            Child::Leaf(v) => {
                self.tree.leaf_values.push(f64::from(v));
                self.tree.leaf_covers.push(1.0);
                return Ok(Ref::Leaf(self.tree.leaf_values.len() as u32 - 1));
            }
            Child::Node(i) => i,
        };
        let s = &self.raw.splits[i];
        let scale = self.scaler.map(|sc| sc.of(s.feature));
        let (t, f) = (s.t, s.f);
        match &s.cond {
            Cond::Member(set) => {
                // x in {m1, m2, …}: test each member in turn, the true subtree copied for each.
                self.member(s.feature, set, scale, s.nan_true, t, f, depth)
            }
            Cond::Neq(_) => {
                // The complement of EQ; NaN != t holds, so NaN goes to the true branch.
                let iv = interval(&s.cond, scale);
                self.in_interval(s.feature, iv, false, f, t, depth)
            }
            cond => {
                let iv = interval(cond, scale);
                self.in_interval(s.feature, iv, s.nan_true, t, f, depth)
            }
        }
    }

    /// `x32 ∈ iv → inside, else outside`; NaN goes inside when `nan_inside`.
    fn in_interval(
        &mut self,
        feature: usize,
        iv: Interval,
        nan_inside: bool,
        inside: Child,
        outside: Child,
        depth: usize,
    ) -> Result<Ref, String> {
        match iv {
            None => self.constant(feature, outside, inside, !nan_inside, depth),
            Some((LO, HI)) => self.constant(feature, inside, outside, nan_inside, depth),
            Some((LO, hi)) => {
                // x <= at_most(hi) → inside.
                let th = at_most_f32(from_ord(hi));
                self.node(feature, th, nan_inside, inside, outside, depth)
            }
            Some((lo, HI)) => {
                // x <= below(lo) → outside.
                let th = super::xgboost::below_f32(from_ord(lo));
                self.node(feature, th, !nan_inside, outside, inside, depth)
            }
            Some((lo, hi)) => {
                // x <= at_most(hi) ? (x <= below(lo) ? outside : inside) : outside
                let at = self.reserve();
                let below = super::xgboost::below_f32(from_ord(lo));
                let l = self.node(feature, below, !nan_inside, outside, inside, depth + 1)?;
                let r = self.emit(outside, depth + 1)?;
                self.set(at, feature, at_most_f32(from_ord(hi)), nan_inside, l, r);
                Ok(Ref::Node(at))
            }
        }
    }

    /// Every non-NaN value goes to `all`; NaN goes there too when `nan_too`, else to `other`.
    fn constant(
        &mut self,
        feature: usize,
        all: Child,
        other: Child,
        nan_too: bool,
        depth: usize,
    ) -> Result<Ref, String> {
        if nan_too {
            return self.emit(all, depth);
        }
        self.node(feature, f64::INFINITY, false, all, other, depth)
    }

    /// `x <= th → left, else right`; NaN left when `nan_left`.
    fn node(
        &mut self,
        feature: usize,
        th: f64,
        nan_left: bool,
        left: Child,
        right: Child,
        depth: usize,
    ) -> Result<Ref, String> {
        let at = self.reserve();
        let l = self.emit(left, depth + 1)?;
        let r = self.emit(right, depth + 1)?;
        self.set(at, feature, th, nan_left, l, r);
        Ok(Ref::Node(at))
    }

    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        feature: usize,
        set: &[f32],
        scale: Option<(f32, f32)>,
        nan_true: bool,
        t: Child,
        f: Child,
        depth: usize,
    ) -> Result<Ref, String> {
        // Each member's interval, then a chain: in the first? → t; else in the second? → t; … else f.
        let mut ivs: Vec<(i64, i64)> = set
            .iter()
            .filter_map(|m| interval(&Cond::Eq(*m), scale))
            .collect();
        ivs.sort_unstable();
        ivs.dedup();
        self.chain(feature, &ivs, nan_true, t, f, depth)
    }

    fn chain(
        &mut self,
        feature: usize,
        ivs: &[(i64, i64)],
        nan_true: bool,
        t: Child,
        f: Child,
        depth: usize,
    ) -> Result<Ref, String> {
        let Some((&first, rest)) = ivs.split_first() else {
            return self.constant(feature, f, t, !nan_true, depth);
        };
        if rest.is_empty() {
            return self.in_interval(feature, Some(first), nan_true, t, f, depth);
        }
        // NaN is in no interval: it goes to t at the first test when `nan_true`, else on down the chain, where
        // `nan_true` is false and it ends at f.
        // x <= at_most(hi) ? (x <= below(lo) ? rest : t) : rest
        let (lo, hi) = first;
        let at = self.reserve();
        let left = if lo == LO {
            self.emit(t, depth + 1)?
        } else {
            let inner = self.reserve();
            let rest_l = self.chain(feature, rest, false, t, f, depth + 2)?;
            let t_ref = self.emit(t, depth + 2)?;
            // Only NaN with `nan_true` reaches here as NaN, and it belongs to t (right).
            self.set(
                inner,
                feature,
                super::xgboost::below_f32(from_ord(lo)),
                false,
                rest_l,
                t_ref,
            );
            Ref::Node(inner)
        };
        let right = self.chain(feature, rest, false, t, f, depth + 1)?;
        let th = if hi == HI {
            f64::INFINITY
        } else {
            at_most_f32(from_ord(hi))
        };
        self.set(at, feature, th, nan_true, left, right);
        Ok(Ref::Node(at))
    }

    fn reserve(&mut self) -> u32 {
        self.tree.nodes.push(Node {
            threshold: 0.0,
            cover: 0.0,
            feature: 0,
            left: 0,
            right: 0,
            cat_offset: 0,
            cat_words: 0,
            flags: 0,
        });
        self.tree.nodes.len() as u32 - 1
    }

    fn set(&mut self, at: u32, feature: usize, th: f64, nan_left: bool, l: Ref, r: Ref) {
        let mut flags = if nan_left { FLAG_DEFAULT_LEFT } else { 0 };
        let left = match l {
            Ref::Leaf(i) => {
                flags |= FLAG_LEFT_LEAF;
                i
            }
            Ref::Node(i) => i,
        };
        let right = match r {
            Ref::Leaf(i) => {
                flags |= FLAG_RIGHT_LEAF;
                i
            }
            Ref::Node(i) => i,
        };
        self.tree.nodes[at as usize] = Node {
            threshold: th,
            cover: 0.0,
            feature: feature as u32,
            left,
            right,
            cat_offset: 0,
            cat_words: 0,
            flags,
        };
    }
}

/// Node covers as the sum of their leaves' covers (children come after parents, so walk backwards).
fn fill_covers(t: &mut Tree) {
    for i in (0..t.nodes.len()).rev() {
        let n = t.nodes[i];
        let c = |idx: u32, leaf: bool, t: &Tree| {
            if leaf {
                t.leaf_covers[idx as usize]
            } else {
                t.nodes[idx as usize].cover
            }
        };
        let cover = c(n.left, n.flags & FLAG_LEFT_LEAF != 0, t)
            + c(n.right, n.flags & FLAG_RIGHT_LEAF != 0, t);
        t.nodes[i].cover = cover;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ord_round_trips_and_orders() {
        let xs = [
            f32::NEG_INFINITY,
            -1.0,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            1e-45,
            1.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(ord(w[0]) < ord(w[1]), "{} {}", w[0], w[1]);
        }
        for x in xs {
            assert_eq!(from_ord(ord(x)).to_bits(), x.to_bits());
        }
        assert_eq!(ord(f32::NEG_INFINITY), LO);
        assert_eq!(ord(f32::INFINITY), HI);
    }

    #[test]
    fn intervals_match_brute_force_on_a_scaled_feature() {
        let scale = Some((0.25f32, -3.0f32));
        let t = 1.5f32;
        for cond in [
            Cond::Leq(t),
            Cond::Lt(t),
            Cond::Gte(t),
            Cond::Gt(t),
            Cond::Eq(-0.75),
        ] {
            let iv = interval(&cond, scale);
            for k in (-2000..2000)
                .map(|i| ord(-0.75 / 3.0 + 0.25) + i)
                .chain([LO, HI, ord(0.0)])
            {
                let x = from_ord(k);
                let y = (x - 0.25) * -3.0;
                let want = match cond {
                    Cond::Leq(t) => y <= t,
                    Cond::Lt(t) => y < t,
                    Cond::Gte(t) => y >= t,
                    Cond::Gt(t) => y > t,
                    Cond::Eq(t) => y == t,
                    _ => unreachable!(),
                };
                let got = iv.is_some_and(|(a, b)| a <= k && k <= b);
                assert_eq!(got, want, "{cond:?} at {x}");
            }
        }
    }
}
