//! LightGBM's text model format (v4) → Keel's trees, with LightGBM's decision rules kept exactly:
//! numeric splits `x <= threshold` (f64); missing type None reads NaN as 0.0, missing type NaN sends NaN the
//! default way; categorical splits send the codes in the node's bitset left and NaN, negative and unlisted
//! codes right. Leaf values are summed in tree order from 0.0, as LightGBM does, so raw scores agree bit for bit.

use std::collections::HashMap;

use crate::model::Link;
use crate::tree::{
    FLAG_CATEGORICAL, FLAG_DEFAULT_LEFT, FLAG_LEFT_LEAF, FLAG_RIGHT_LEAF, FLAG_ZERO_MISSING, Node,
    Tree, ZERO_THRESHOLD,
};
use crate::{Error, Objective};

/// Most trees and leaves a model file may declare (a hostile header must not make us allocate).
const MAX_TREES: usize = 100_000;
const MAX_LEAVES: usize = 1 << 20;

/// A parsed LightGBM model.
#[derive(Debug, Clone)]
pub struct LightGbm {
    pub objective: Objective,
    /// The objective as the file names it (`binary`, `poisson`, ...).
    pub objective_name: String,
    /// How the raw score becomes the output (`sigmoid:` of a binary objective scales the margin).
    pub link: Link,
    pub feature_names: Vec<String>,
    /// Which features are split categorically anywhere.
    pub categorical: Vec<bool>,
    /// `pandas_categorical`: for each feature that was a pandas category, its categories in code order.
    pub levels: Vec<Option<Vec<String>>>,
    /// The trees in file order; a multiclass model's tree `i` belongs to class `i % num_class`.
    pub trees: Vec<Tree>,
    /// Classes (1 unless multiclass).
    pub num_class: usize,
}

fn bad(message: impl Into<String>) -> Error {
    Error::Import {
        format: "lightgbm",
        message: message.into(),
    }
}

/// Splits a section into `key=value` lines.
fn fields(section: &str) -> HashMap<&str, &str> {
    section
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn list<T: std::str::FromStr>(
    f: &HashMap<&str, &str>,
    key: &str,
    tree: usize,
) -> Result<Vec<T>, Error> {
    let Some(v) = f.get(key) else {
        return Err(bad(format!("Tree={tree}: missing {key}")));
    };
    v.split_whitespace()
        .map(|x| {
            x.parse::<T>()
                .map_err(|_| bad(format!("Tree={tree}: {key}: '{x}' is not a number")))
        })
        .collect()
}

/// Parses a LightGBM text model.
pub fn parse(text: &str) -> Result<LightGbm, Error> {
    let mut sections = text.split("\nTree=");
    let header = sections.next().unwrap_or("");
    if !header.starts_with("tree") {
        return Err(bad("not a LightGBM text model (it must start with 'tree')"));
    }
    let h = fields(header);
    match h.get("version") {
        Some(&"v4") => {}
        Some(v) => return Err(bad(format!("model format {v} is not supported (v4 is)"))),
        None => return Err(bad("the header has no version")),
    }
    let num_class: usize = h
        .get("num_class")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("the header has no num_class"))?;
    if num_class == 0 || num_class > 10_000 {
        return Err(bad(format!("num_class={num_class} is out of range")));
    }
    let objective_line = h
        .get("objective")
        .ok_or_else(|| bad("the header has no objective"))?;
    let mut words = objective_line.split_whitespace();
    let name = words.next().unwrap_or("");
    let params: HashMap<&str, &str> = words.filter_map(|w| w.split_once(':')).collect();
    let (objective, link) = match name {
        "binary" => {
            let scale: f64 = params
                .get("sigmoid")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1.0);
            if !(scale > 0.0 && scale.is_finite()) {
                return Err(bad(format!("binary objective with sigmoid:{scale}")));
            }
            (Objective::Binary, Link::Logistic { scale })
        }
        // Cross-entropy on probability labels: the output is the logistic of the raw score.
        "cross_entropy" | "xentropy" => (Objective::Binary, Link::Logistic { scale: 1.0 }),
        "regression" | "regression_l2" | "regression_l1" | "huber" | "fair" | "quantile"
        | "mape" => (Objective::Regression, Link::Identity),
        "poisson" | "gamma" | "tweedie" => (Objective::Regression, Link::Exp),
        // Softmax over the class scores; one-vs-all: each class's own sigmoid (not normalised, as LightGBM
        // outputs them).
        "multiclass" | "softmax" => (Objective::Multiclass, Link::Softmax),
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => {
            let scale: f64 = params
                .get("sigmoid")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1.0);
            if !(scale > 0.0 && scale.is_finite()) {
                return Err(bad(format!("{name} objective with sigmoid:{scale}")));
            }
            (Objective::Multiclass, Link::Logistic { scale })
        }
        other => {
            return Err(bad(format!(
                "objective '{other}' is not supported (binary, cross_entropy, the regression family, poisson, gamma and tweedie are)"
            )));
        }
    };
    if (objective == Objective::Multiclass) != (num_class > 1) {
        return Err(bad(format!(
            "objective '{name}' with num_class={num_class}"
        )));
    }
    let max_feature: usize = h
        .get("max_feature_idx")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("the header has no max_feature_idx"))?;
    let feature_names: Vec<String> = h
        .get("feature_names")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    if feature_names.len() != max_feature + 1 {
        return Err(bad(format!(
            "{} feature names for max_feature_idx {max_feature}",
            feature_names.len()
        )));
    }
    let mut categorical = vec![false; feature_names.len()];
    let mut trees = Vec::new();
    for (i, s) in sections.enumerate() {
        if i >= MAX_TREES {
            return Err(bad(format!("more than {MAX_TREES} trees")));
        }
        // The last tree's section runs into "end of trees" and the parameters.
        let s = s.split("\nend of trees").next().unwrap_or(s);
        let f = fields(s);
        trees.push(tree(&f, i, feature_names.len(), &mut categorical)?);
    }
    if trees.is_empty() {
        return Err(bad("the model has no trees"));
    }
    if trees.len() % num_class != 0 {
        return Err(bad(format!(
            "{} trees are not a whole number of rounds of {num_class} classes",
            trees.len()
        )));
    }
    // A file cut short can still end on a whole tree: the trees must end where the file says they do.
    if !text.contains("\nend of trees") {
        return Err(bad("the file ends before 'end of trees' (truncated?)"));
    }
    if let Some(sizes) = h.get("tree_sizes") {
        let declared = sizes.split_whitespace().count();
        if declared != trees.len() {
            return Err(bad(format!(
                "the header declares {declared} trees (tree_sizes) but the file has {} (truncated?)",
                trees.len()
            )));
        }
    }
    let infos: Vec<&str> = h
        .get("feature_infos")
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let levels = pandas_levels(text, &infos, feature_names.len())?;
    for (j, l) in levels.iter().enumerate() {
        if l.is_some() && !categorical[j] && infos.get(j).is_some_and(|i| i.starts_with('[')) {
            return Err(bad(format!(
                "pandas_categorical maps feature '{}', which is numeric",
                feature_names[j]
            )));
        }
    }
    Ok(LightGbm {
        objective,
        objective_name: name.to_string(),
        link,
        feature_names,
        categorical,
        levels,
        trees,
        num_class,
    })
}

/// Reads the trailing `pandas_categorical:` line: one list of categories per categorical feature, in feature
/// order (the features whose `feature_infos` list categories rather than a `[min:max]` range).
fn pandas_levels(
    text: &str,
    infos: &[&str],
    n_features: usize,
) -> Result<Vec<Option<Vec<String>>>, Error> {
    let mut out = vec![None; n_features];
    let Some(line) = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("pandas_categorical:"))
    else {
        return Ok(out);
    };
    let lists: Option<Vec<Vec<serde_json::Value>>> =
        serde_json::from_str(line.trim()).map_err(|e| {
            bad(format!(
                "pandas_categorical is not a JSON list of lists: {e}"
            ))
        })?;
    let Some(lists) = lists else {
        return Ok(out);
    };
    let cat_features: Vec<usize> = (0..n_features)
        .filter(|&j| {
            infos
                .get(j)
                .is_some_and(|i| !i.starts_with('[') && *i != "none")
        })
        .collect();
    if cat_features.len() != lists.len() {
        return Err(bad(format!(
            "pandas_categorical has {} category lists but {} features are categorical",
            lists.len(),
            cat_features.len()
        )));
    }
    for (j, list) in cat_features.into_iter().zip(lists) {
        let labels = list
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect::<Vec<_>>();
        let distinct: std::collections::HashSet<&String> = labels.iter().collect();
        if distinct.len() != labels.len() {
            return Err(bad(format!(
                "pandas_categorical lists a category twice for feature {j}"
            )));
        }
        out[j] = Some(labels);
    }
    Ok(out)
}

fn tree(
    f: &HashMap<&str, &str>,
    t: usize,
    n_features: usize,
    categorical: &mut [bool],
) -> Result<Tree, Error> {
    if f.get("is_linear").is_some_and(|v| *v != "0") {
        return Err(bad(format!(
            "Tree={t}: linear trees (linear_tree=true) are not supported"
        )));
    }
    let num_leaves: usize = f
        .get("num_leaves")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(format!("Tree={t}: missing num_leaves")))?;
    if num_leaves == 0 || num_leaves > MAX_LEAVES {
        return Err(bad(format!("Tree={t}: {num_leaves} leaves")));
    }
    let leaf_value: Vec<f64> = list(f, "leaf_value", t)?;
    if leaf_value.len() != num_leaves {
        return Err(bad(format!(
            "Tree={t}: {} leaf values for {num_leaves} leaves",
            leaf_value.len()
        )));
    }
    if num_leaves == 1 {
        return Ok(Tree {
            nodes: Vec::new(),
            leaf_covers: vec![1.0],
            leaf_values: leaf_value,
            cat_bits: Vec::new(),
        });
    }
    let n = num_leaves - 1;
    let split_feature: Vec<usize> = list(f, "split_feature", t)?;
    let threshold: Vec<f64> = list(f, "threshold", t)?;
    let decision_type: Vec<u8> = list(f, "decision_type", t)?;
    let left: Vec<i64> = list(f, "left_child", t)?;
    let right: Vec<i64> = list(f, "right_child", t)?;
    // Counts are optional (covers for TreeSHAP); present, they must parse.
    let internal_count: Vec<f64> = match f.contains_key("internal_count") {
        true => list(f, "internal_count", t)?,
        false => vec![1.0; n],
    };
    let leaf_count: Vec<f64> = match f.contains_key("leaf_count") {
        true => list(f, "leaf_count", t)?,
        false => vec![1.0; num_leaves],
    };
    for (name, len) in [
        ("split_feature", split_feature.len()),
        ("threshold", threshold.len()),
        ("decision_type", decision_type.len()),
        ("left_child", left.len()),
        ("right_child", right.len()),
        ("internal_count", internal_count.len()),
    ] {
        if len != n {
            return Err(bad(format!(
                "Tree={t}: {len} {name} entries for {n} splits"
            )));
        }
    }
    if leaf_count.len() != num_leaves {
        return Err(bad(format!(
            "Tree={t}: leaf_count has {} entries",
            leaf_count.len()
        )));
    }
    let num_cat: usize = f.get("num_cat").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (cat_boundaries, cat_threshold): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        (list(f, "cat_boundaries", t)?, list(f, "cat_threshold", t)?)
    } else {
        (Vec::new(), Vec::new())
    };
    if num_cat > 0
        && (cat_boundaries.len() != num_cat + 1
            || cat_boundaries.windows(2).any(|w| w[0] > w[1])
            || cat_boundaries.last() != Some(&cat_threshold.len()))
    {
        return Err(bad(format!(
            "Tree={t}: cat_boundaries do not match cat_threshold"
        )));
    }
    let mut nodes = Vec::with_capacity(n);
    let mut cat_bits: Vec<u64> = Vec::new();
    // Each node and leaf must be reached exactly once from the root (no cycles, no sharing).
    let mut seen_node = vec![false; n];
    let mut seen_leaf = vec![false; num_leaves];
    seen_node[0] = true;
    for i in 0..n {
        let feature = split_feature[i];
        if feature >= n_features {
            return Err(bad(format!(
                "Tree={t}: split {i} uses feature {feature} of {n_features}"
            )));
        }
        let d = decision_type[i];
        let is_cat = d & 1 != 0;
        let default_left = d & 2 != 0;
        let missing = (d >> 2) & 3;
        let mut flags = 0u8;
        let (mut node_threshold, mut cat_offset, mut cat_words) = (0.0, 0u32, 0u32);
        if is_cat {
            categorical[feature] = true;
            flags |= FLAG_CATEGORICAL;
            // NaN, negative and unlisted codes go right: the default direction is right.
            let c = threshold[i];
            if !(c >= 0.0 && c.fract() == 0.0 && (c as usize) < num_cat) {
                return Err(bad(format!(
                    "Tree={t}: split {i}: category set {c} out of range"
                )));
            }
            let c = c as usize;
            let words32 = &cat_threshold[cat_boundaries[c]..cat_boundaries[c + 1]];
            cat_offset = cat_bits.len() as u32;
            for pair in words32.chunks(2) {
                let lo = pair[0] as u64;
                let hi = pair.get(1).copied().unwrap_or(0) as u64;
                cat_bits.push(lo | hi << 32);
            }
            cat_words = cat_bits.len() as u32 - cat_offset;
        } else {
            let th = threshold[i];
            if th.is_nan() {
                return Err(bad(format!("Tree={t}: split {i}: the threshold is NaN")));
            }
            // LightGBM reads every input within kZeroThreshold of zero as 0.0 before any split (its dense-row
            // reader keeps only |x| > kZeroThreshold), so a threshold in that band is moved to its edge: in
            // [-kZero, 0) to just below -kZero (those inputs read as 0.0 and go right), in [0, kZero) up to
            // kZero (they go left).
            node_threshold = if (-ZERO_THRESHOLD..0.0).contains(&th) {
                (-ZERO_THRESHOLD).next_down()
            } else if (0.0..ZERO_THRESHOLD).contains(&th) {
                ZERO_THRESHOLD
            } else {
                th
            };
            let nan_left = match missing {
                // None: NaN reads as 0.0 and is compared.
                0 => 0.0 <= th,
                // NaN: NaN goes the default way.
                2 => default_left,
                // Zero: NaN reads as 0.0, and values within kZeroThreshold of zero go the default way.
                1 => {
                    flags |= FLAG_ZERO_MISSING;
                    default_left
                }
                _ => {
                    return Err(bad(format!(
                        "Tree={t}: split {i}: unknown missing type {missing}"
                    )));
                }
            };
            if nan_left {
                flags |= FLAG_DEFAULT_LEFT;
            }
        }
        let mut child = |c: i64, leaf_flag: u8| -> Result<u32, Error> {
            if c < 0 {
                let leaf = (!c) as usize;
                if leaf >= num_leaves || std::mem::replace(&mut seen_leaf[leaf], true) {
                    return Err(bad(format!(
                        "Tree={t}: split {i}: leaf {leaf} out of range or reused"
                    )));
                }
                flags |= leaf_flag;
                Ok(leaf as u32)
            } else {
                let c = c as usize;
                if c == 0 || c >= n || std::mem::replace(&mut seen_node[c], true) {
                    return Err(bad(format!(
                        "Tree={t}: split {i}: child {c} out of range or reused"
                    )));
                }
                Ok(c as u32)
            }
        };
        let l = child(left[i], FLAG_LEFT_LEAF)?;
        let r = child(right[i], FLAG_RIGHT_LEAF)?;
        nodes.push(Node {
            threshold: node_threshold,
            cover: internal_count[i],
            feature: feature as u32,
            left: l,
            right: r,
            cat_offset,
            cat_words,
            flags,
        });
    }
    if seen_node.iter().any(|s| !s) || seen_leaf.iter().any(|s| !s) {
        return Err(bad(format!(
            "Tree={t}: a node or leaf is not reachable from the root"
        )));
    }
    Ok(Tree {
        nodes,
        leaf_values: leaf_value,
        leaf_covers: leaf_count,
        cat_bits,
    })
}
