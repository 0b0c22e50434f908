//! XGBoost's JSON and UBJSON models (`save_model("m.json")` / `"m.ubj"`, 1.x to 3.x) → Keel's trees, with
//! XGBoost's arithmetic kept: inputs are rounded to f32 and split as `x < split_condition`, which becomes
//! Keel's `x <= T` with `T` the largest f64 whose f32 rounding is below the condition; categorical splits send
//! the codes **in** the node's set right (Keel stores the set and swaps the children), and NaN by
//! `default_left`; the base margin and the leaves are summed in f32 in tree order ([`Numerics::F32`]); a dart
//! model's leaves are scaled by their tree's weight in f32.

use serde_json::Value;

use crate::model::Link;
use crate::tree::{
    FLAG_CAT_F32, FLAG_CATEGORICAL, FLAG_DEFAULT_LEFT, FLAG_LEFT_LEAF, FLAG_RIGHT_LEAF, Node, Tree,
};
use crate::{Error, Objective};

const MAX_TREES: usize = 100_000;
const MAX_NODES: usize = 1 << 21;
/// Most 64-bit words of category sets one tree may need (32 MiB).
const MAX_CAT_WORDS: usize = 1 << 22;

/// A parsed XGBoost model.
#[derive(Debug, Clone)]
pub struct Xgboost {
    pub objective: Objective,
    pub objective_name: String,
    pub link: Link,
    /// The margin before any tree, in f32 as XGBoost computes it from `base_score` (one per class for a
    /// multiclass model).
    pub base_margin: Vec<f32>,
    /// The class (output group) of each tree, from `tree_info`: all 0 unless multiclass.
    pub tree_class: Vec<usize>,
    /// Classes (1 unless multiclass).
    pub num_class: usize,
    pub feature_names: Vec<String>,
    /// For categorical features whose categories the model recorded (`cats`), the labels in code order.
    pub levels: Vec<Option<Vec<String>>>,
    pub trees: Vec<Tree>,
    /// `[major, minor, patch]` of the XGBoost that saved it.
    pub version: Option<String>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Import {
        format: "xgboost",
        message: message.into(),
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value, Error> {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        cur = cur
            .get(*k)
            .ok_or_else(|| bad(format!("missing {}", path[..=i].join("."))))?;
    }
    Ok(cur)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a model saved as JSON text or UBJSON bytes.
pub fn parse(bytes: &[u8], ubj: bool) -> Result<Xgboost, Error> {
    let root: Value = if ubj {
        super::ubjson::parse(bytes).map_err(|e| bad(format!("not valid UBJSON: {e}")))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?
    };
    let learner = get(&root, &["learner"])?;
    let version = root.get("version").and_then(Value::as_array).map(|v| {
        v.iter()
            .filter_map(Value::as_i64)
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(".")
    });
    let outer = get(learner, &["gradient_booster"])?;
    let booster_name = outer.get("name").and_then(Value::as_str).unwrap_or("");
    // Dart predicts with each tree's leaves scaled by its weight (in f32); the trees sit in `gbtree`.
    let (booster, weights): (&Value, Option<Vec<f32>>) = match booster_name {
        "gbtree" => (outer, None),
        "dart" => {
            if outer.get("weight_drop").is_none() {
                return Err(bad("a dart model without weight_drop"));
            }
            let w = f32s(outer, "weight_drop", "")?;
            (get(outer, &["gbtree"])?, Some(w))
        }
        other => {
            return Err(bad(format!(
                "booster '{other}' is not supported (gbtree and dart are; gblinear is not)"
            )));
        }
    };
    let param = get(learner, &["learner_model_param"])?;
    let num_class: i64 = param
        .get("num_class")
        .and_then(text)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let num_target: i64 = param
        .get("num_target")
        .and_then(text)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if num_target > 1 {
        return Err(bad(format!(
            "{num_target} targets: multi-target regression is not supported (one target, or a multiclass classifier, is)"
        )));
    }
    if num_class > 10_000 {
        return Err(bad(format!("num_class {num_class}")));
    }
    let num_class = num_class.max(1) as usize;
    let num_feature: usize = param
        .get("num_feature")
        .and_then(text)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("learner_model_param.num_feature is missing"))?;
    if num_feature == 0 || num_feature > 1 << 20 {
        return Err(bad(format!("num_feature {num_feature}")));
    }
    // 3.x writes "[5E-1]" (a multiclass model one value per class); older versions "5E-1".
    let base_text = param
        .get("base_score")
        .and_then(text)
        .ok_or_else(|| bad("learner_model_param.base_score is missing"))?;
    let base_scores: Vec<f32> = base_text
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("base_score '{base_text}' is not a list of numbers")))?;
    let base_score = base_scores[0];
    if base_scores.len() != 1 && base_scores.len() != num_class {
        return Err(bad(format!(
            "base_score has {} values for {num_class} classes",
            base_scores.len()
        )));
    }
    let objective_name = get(learner, &["objective", "name"])?
        .as_str()
        .unwrap_or("")
        .to_string();
    if (num_class > 1) != objective_name.starts_with("multi:") {
        return Err(bad(format!(
            "objective '{objective_name}' with num_class {num_class}"
        )));
    }
    if num_class == 1 && base_scores.len() != 1 {
        return Err(bad(format!("base_score '{base_text}' is not one number")));
    }
    let (objective, link, base_margin) = match objective_name.as_str() {
        // The intercepts are margins already; multi:softmax outputs the class, Keel serves its softmax too.
        "multi:softprob" | "multi:softmax" => (Objective::Multiclass, Link::Softmax, base_score),
        "binary:logistic" | "reg:logistic" => {
            if !(base_score > 0.0 && base_score < 1.0) {
                return Err(bad(format!("base_score {base_score} is not a probability")));
            }
            let o = if objective_name == "binary:logistic" {
                Objective::Binary
            } else {
                Objective::Regression
            };
            (
                o,
                Link::Logistic { scale: 1.0 },
                -(1.0f32 / base_score - 1.0f32).ln(),
            )
        }
        "reg:squarederror"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror" => (Objective::Regression, Link::Identity, base_score),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => {
            if base_score <= 0.0 {
                return Err(bad(format!("base_score {base_score} must be positive")));
            }
            (Objective::Regression, Link::Exp, base_score.ln())
        }
        other => {
            return Err(bad(format!(
                "objective '{other}' is not supported (binary:logistic, reg:logistic, the reg: regression family, count:poisson, reg:gamma, reg:tweedie, multi:softprob and multi:softmax are)"
            )));
        }
    };
    let model = get(booster, &["model"])?;
    let trees_v = get(model, &["trees"])?
        .as_array()
        .ok_or_else(|| bad("gradient_booster.model.trees is not a list"))?;
    if trees_v.is_empty() {
        return Err(bad("the model has no trees"));
    }
    if trees_v.len() > MAX_TREES {
        return Err(bad(format!(
            "{} trees (at most {MAX_TREES})",
            trees_v.len()
        )));
    }
    let tree_class: Vec<usize> = match model.get("tree_info").and_then(Value::as_array) {
        Some(info) => {
            if info.len() != trees_v.len() {
                return Err(bad(format!(
                    "tree_info lists {} trees, the model has {}",
                    info.len(),
                    trees_v.len()
                )));
            }
            info.iter()
                .enumerate()
                .map(|(i, c)| match c.as_i64() {
                    Some(c) if c >= 0 && (c as usize) < num_class => Ok(c as usize),
                    _ => Err(bad(format!(
                        "tree_info[{i}] = {c} is not a class of {num_class}"
                    ))),
                })
                .collect::<Result<_, _>>()?
        }
        None if num_class == 1 => vec![0; trees_v.len()],
        None => return Err(bad("a multiclass model without tree_info")),
    };
    let names: Vec<String> = learner
        .get("feature_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(text).collect())
        .unwrap_or_default();
    let feature_names = if names.is_empty() {
        (0..num_feature).map(|i| format!("f{i}")).collect()
    } else if names.len() == num_feature {
        names
    } else {
        return Err(bad(format!(
            "{} feature names for {num_feature} features",
            names.len()
        )));
    };
    let levels = categories(model, num_feature)?;
    let mut trees = trees_v
        .iter()
        .enumerate()
        .map(|(i, t)| tree(t, i, num_feature))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(w) = weights {
        if w.len() != trees.len() {
            return Err(bad(format!(
                "weight_drop has {} weights for {} trees",
                w.len(),
                trees.len()
            )));
        }
        for (t, w) in trees.iter_mut().zip(w) {
            for v in &mut t.leaf_values {
                *v = f64::from(*v as f32 * w);
            }
        }
    }
    let base_margin = if num_class == 1 {
        vec![base_margin]
    } else if base_scores.len() == 1 {
        vec![base_margin; num_class]
    } else {
        base_scores
    };
    Ok(Xgboost {
        objective,
        objective_name,
        link,
        base_margin,
        tree_class,
        num_class,
        feature_names,
        levels,
        trees,
        version,
    })
}

/// `model.cats.enc` (3.x): per feature, its categories; strings as UTF-8 bytes split by `offsets`.
fn categories(model: &Value, n: usize) -> Result<Vec<Option<Vec<String>>>, Error> {
    let mut out = vec![None; n];
    let Some(enc) = model
        .get("cats")
        .and_then(|c| c.get("enc"))
        .and_then(Value::as_array)
    else {
        return Ok(out);
    };
    if enc.is_empty() {
        return Ok(out);
    }
    if enc.len() != n {
        return Err(bad(format!(
            "cats.enc has {} entries for {n} features",
            enc.len()
        )));
    }
    for (j, e) in enc.iter().enumerate() {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if values.is_empty() {
            continue;
        }
        let offsets: Vec<usize> = e
            .get("offsets")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as usize))
                    .collect()
            })
            .unwrap_or_default();
        let labels: Vec<String> = if offsets.is_empty() {
            values.iter().filter_map(text).collect()
        } else {
            let bytes: Vec<u8> = values
                .iter()
                .map(|b| b.as_u64().filter(|&b| b < 256).map(|b| b as u8))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("cats.enc[{j}]: values are not bytes")))?;
            if offsets.windows(2).any(|w| w[0] > w[1]) || offsets.last() != Some(&bytes.len()) {
                return Err(bad(format!(
                    "cats.enc[{j}]: offsets do not match the values"
                )));
            }
            offsets
                .windows(2)
                .map(|w| {
                    String::from_utf8(bytes[w[0]..w[1]].to_vec())
                        .map_err(|_| bad(format!("cats.enc[{j}]: a category is not UTF-8")))
                })
                .collect::<Result<_, _>>()?
        };
        out[j] = Some(labels);
    }
    Ok(out)
}

fn ints(t: &Value, key: &str, i: usize) -> Result<Vec<i64>, Error> {
    t.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("tree {i}: {key} is missing")))?
        .iter()
        .map(|x| {
            x.as_i64()
                .ok_or_else(|| bad(format!("tree {i}: {key} holds a non-integer")))
        })
        .collect()
}

fn floats(t: &Value, key: &str, i: usize) -> Result<Vec<f32>, Error> {
    f32s(t, key, &format!("tree {i}: "))
}

/// A list of finite numbers read as f32; `place` prefixes the messages.
fn f32s(v: &Value, key: &str, place: &str) -> Result<Vec<f32>, Error> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("{place}{key} is missing")))?
        .iter()
        .enumerate()
        .map(|(k, x)| {
            x.as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| bad(format!("{place}{key}[{k}] is not a finite number")))
        })
        .collect()
}

/// The largest f64 whose rounding to f32 is below `t`: `(x as f32) < t` exactly when `x <= below_f32(t)`.
pub fn below_f32(t: f32) -> f64 {
    let p = t.next_down(); // the largest f32 below t
    if p == f32::NEG_INFINITY {
        // Only values that round to -inf: at or below -(MAX + half an ulp), the tie going to -inf (even).
        return -(f64::from(f32::MAX) + 2f64.powi(103));
    }
    let mid = (f64::from(p) + f64::from(t)) / 2.0; // exact: 25 significant bits
    // At the midpoint, rounding goes to the even neighbour.
    if p.to_bits() & 1 == 0 {
        mid
    } else {
        mid.next_down()
    }
}

fn tree(t: &Value, i: usize, n_features: usize) -> Result<Tree, Error> {
    if let Some(p) = t.get("tree_param")
        && p.get("size_leaf_vector")
            .and_then(text)
            .is_some_and(|s| s != "1" && s != "0")
    {
        return Err(bad(format!(
            "tree {i}: vector leaves (multi-target trees) are not supported"
        )));
    }
    let left = ints(t, "left_children", i)?;
    let right = ints(t, "right_children", i)?;
    let features = ints(t, "split_indices", i)?;
    let cond = floats(t, "split_conditions", i)?;
    let default_left = ints(t, "default_left", i)?;
    let n = left.len();
    if n == 0 || n > MAX_NODES {
        return Err(bad(format!("tree {i}: {n} nodes")));
    }
    let hess = floats(t, "sum_hessian", i).unwrap_or_else(|_| vec![1.0; n]);
    let split_type = ints(t, "split_type", i).unwrap_or_else(|_| vec![0; n]);
    for (name, len) in [
        ("right_children", right.len()),
        ("split_indices", features.len()),
        ("split_conditions", cond.len()),
        ("default_left", default_left.len()),
        ("sum_hessian", hess.len()),
        ("split_type", split_type.len()),
    ] {
        if len != n {
            return Err(bad(format!("tree {i}: {len} {name} for {n} nodes")));
        }
    }
    // Categorical sets: node id → its codes.
    let cat_nodes = ints(t, "categories_nodes", i).unwrap_or_default();
    let segments = ints(t, "categories_segments", i).unwrap_or_default();
    let sizes = ints(t, "categories_sizes", i).unwrap_or_default();
    let codes = ints(t, "categories", i).unwrap_or_default();
    if cat_nodes.len() != segments.len() || cat_nodes.len() != sizes.len() {
        return Err(bad(format!(
            "tree {i}: categories_* lists differ in length"
        )));
    }
    let mut sets: std::collections::HashMap<usize, &[i64]> = Default::default();
    for ((&node, &seg), &size) in cat_nodes.iter().zip(&segments).zip(&sizes) {
        let (seg, size) = (seg as usize, size as usize);
        if node < 0 || node as usize >= n || seg.checked_add(size).is_none_or(|e| e > codes.len()) {
            return Err(bad(format!(
                "tree {i}: category set of node {node} out of range"
            )));
        }
        sets.insert(node as usize, &codes[seg..seg + size]);
    }
    let is_leaf = |k: usize| left[k] == -1;
    if is_leaf(0) {
        return Ok(Tree {
            nodes: Vec::new(),
            leaf_values: vec![f64::from(cond[0])],
            leaf_covers: vec![f64::from(hess[0])],
            cat_bits: Vec::new(),
        });
    }
    // Number internal nodes and leaves in preorder from the root; each node is reached once.
    let mut node_index = vec![u32::MAX; n];
    let mut leaf_index = vec![u32::MAX; n];
    let mut order = Vec::new();
    let mut leaves = Vec::new();
    let mut stack = vec![0usize];
    let mut seen = vec![false; n];
    while let Some(k) = stack.pop() {
        if std::mem::replace(&mut seen[k], true) {
            return Err(bad(format!(
                "tree {i}: node {k} is reached twice (a cycle?)"
            )));
        }
        if is_leaf(k) {
            if right[k] != -1 {
                return Err(bad(format!("tree {i}: node {k} has one child")));
            }
            leaf_index[k] = leaves.len() as u32;
            leaves.push(k);
            continue;
        }
        node_index[k] = order.len() as u32;
        order.push(k);
        for c in [right[k], left[k]] {
            if c < 0 || c as usize >= n {
                return Err(bad(format!(
                    "tree {i}: node {k} has child {c} out of range"
                )));
            }
            stack.push(c as usize);
        }
    }
    let mut nodes = Vec::with_capacity(order.len());
    let mut cat_bits: Vec<u64> = Vec::new();
    for &k in &order {
        let f = features[k];
        if f < 0 || f as usize >= n_features {
            return Err(bad(format!(
                "tree {i}: node {k} splits on feature {f} of {n_features}"
            )));
        }
        let (l, r) = (left[k] as usize, right[k] as usize);
        let child = |c: usize, leaf_flag: u8| -> (u32, u8) {
            if is_leaf(c) {
                (leaf_index[c], leaf_flag)
            } else {
                (node_index[c], 0)
            }
        };
        let mut node = Node {
            threshold: 0.0,
            cover: f64::from(hess[k]),
            feature: f as u32,
            left: 0,
            right: 0,
            cat_offset: 0,
            cat_words: 0,
            flags: 0,
        };
        let xgb_default_left = default_left[k] != 0;
        let (keel_left, keel_right) = if split_type[k] == 1 {
            // Codes in the set go right in XGBoost: Keel keeps the set and sends it left.
            let set = sets.get(&k).ok_or_else(|| {
                bad(format!(
                    "tree {i}: categorical node {k} has no category set"
                ))
            })?;
            let max = set.iter().copied().max().unwrap_or(0);
            if set.iter().any(|&c| !(0..1 << 24).contains(&c)) {
                return Err(bad(format!(
                    "tree {i}: node {k}: a category code out of range"
                )));
            }
            let words = (max as usize / 64) + 1;
            if cat_bits.len() + words > MAX_CAT_WORDS {
                return Err(bad(format!(
                    "tree {i}: category sets larger than {MAX_CAT_WORDS} words"
                )));
            }
            node.cat_offset = cat_bits.len() as u32;
            node.cat_words = words as u32;
            cat_bits.resize(cat_bits.len() + words, 0);
            for &c in *set {
                cat_bits[node.cat_offset as usize + c as usize / 64] |= 1 << (c % 64);
            }
            node.flags |= FLAG_CATEGORICAL | FLAG_CAT_F32;
            if !xgb_default_left {
                node.flags |= FLAG_DEFAULT_LEFT;
            }
            (r, l)
        } else {
            let c = cond[k];
            node.threshold = below_f32(c);
            if xgb_default_left {
                node.flags |= FLAG_DEFAULT_LEFT;
            }
            (l, r)
        };
        let (li, lf) = child(keel_left, FLAG_LEFT_LEAF);
        let (ri, rf) = child(keel_right, FLAG_RIGHT_LEAF);
        node.left = li;
        node.right = ri;
        node.flags |= lf | rf;
        nodes.push(node);
    }
    Ok(Tree {
        nodes,
        leaf_values: leaves.iter().map(|&k| f64::from(cond[k])).collect(),
        leaf_covers: leaves.iter().map(|&k| f64::from(hess[k])).collect(),
        cat_bits,
    })
}
