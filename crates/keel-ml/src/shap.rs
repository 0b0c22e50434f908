//! Exact TreeSHAP (Lundberg et al., "Consistent Individualized Feature Attribution for Tree Ensembles",
//! Algorithm 2, path-dependent), run on Keel's compiled tree layout. For every row, the SHAP values plus the
//! expected value sum to the raw margin the model outputs.

use crate::tree::{NodeRef, Tree};

#[derive(Clone, Copy, Default)]
struct PathElement {
    feature: i64,
    zero_fraction: f64,
    one_fraction: f64,
    weight: f64,
}

/// Adds the SHAP values of one tree for one row into `phi` (one slot per feature).
pub fn tree_shap(tree: &Tree, row: &[f64], phi: &mut [f64]) {
    if tree.nodes.is_empty() {
        return;
    }
    let d = tree.max_depth();
    let mut path = vec![PathElement::default(); (d + 3) * (d + 4) / 2];
    recurse(tree, row, phi, tree.root(), &mut path, 0, 0, 1.0, 1.0, -1);
}

#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &Tree,
    row: &[f64],
    phi: &mut [f64],
    node: NodeRef,
    path: &mut [PathElement],
    parent_offset: usize,
    mut unique_depth: usize,
    parent_zero_fraction: f64,
    parent_one_fraction: f64,
    parent_feature: i64,
) {
    // Each level works on its own copy of the path, placed after the parent's.
    let start = parent_offset + unique_depth + 1;
    let (parent, rest) = path.split_at_mut(start);
    let cur = &mut rest[..unique_depth + 1];
    cur[..unique_depth].copy_from_slice(&parent[parent_offset..parent_offset + unique_depth]);
    extend(
        cur,
        unique_depth,
        parent_zero_fraction,
        parent_one_fraction,
        parent_feature,
    );

    match node {
        NodeRef::Leaf(leaf) => {
            let value = tree.leaf_values[leaf as usize];
            for i in 1..=unique_depth {
                let w = unwound_sum(cur, unique_depth, i);
                let el = cur[i];
                phi[el.feature as usize] += w * (el.one_fraction - el.zero_fraction) * value;
            }
        }
        NodeRef::Node(i) => {
            let n = &tree.nodes[i as usize];
            let (left, right) = tree.children(i);
            let goes_left = n.goes_left(row[n.feature as usize], &tree.cat_bits);
            let (hot, cold) = if goes_left {
                (left, right)
            } else {
                (right, left)
            };
            let w = n.cover;
            let hot_zero = tree.cover(hot) / w;
            let cold_zero = tree.cover(cold) / w;
            let mut incoming_zero = 1.0;
            let mut incoming_one = 1.0;
            let feature = n.feature as i64;
            if let Some(k) = (1..=unique_depth).find(|&k| cur[k].feature == feature) {
                incoming_zero = cur[k].zero_fraction;
                incoming_one = cur[k].one_fraction;
                unwind(cur, unique_depth, k);
                unique_depth -= 1;
            }
            recurse(
                tree,
                row,
                phi,
                hot,
                path,
                start,
                unique_depth + 1,
                hot_zero * incoming_zero,
                incoming_one,
                feature,
            );
            recurse(
                tree,
                row,
                phi,
                cold,
                path,
                start,
                unique_depth + 1,
                cold_zero * incoming_zero,
                0.0,
                feature,
            );
        }
    }
}

fn extend(path: &mut [PathElement], d: usize, zero: f64, one: f64, feature: i64) {
    path[d] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        weight: if d == 0 { 1.0 } else { 0.0 },
    };
    let denom = (d + 1) as f64;
    for i in (0..d).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / denom;
        path[i].weight = zero * path[i].weight * (d - i) as f64 / denom;
    }
}

fn unwind(path: &mut [PathElement], d: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next_one_portion = path[d].weight;
    let denom = (d + 1) as f64;
    for i in (0..d).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next_one_portion * denom / ((i + 1) as f64 * one);
            next_one_portion = tmp - path[i].weight * zero * (d - i) as f64 / denom;
        } else {
            path[i].weight = path[i].weight * denom / (zero * (d - i) as f64);
        }
    }
    for i in index..d {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_sum(path: &[PathElement], d: usize, index: usize) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next_one_portion = path[d].weight;
    let mut total = 0.0;
    let denom = (d + 1) as f64;
    for i in (0..d).rev() {
        if one != 0.0 {
            let tmp = next_one_portion * denom / ((i + 1) as f64 * one);
            total += tmp;
            next_one_portion = path[i].weight - tmp * zero * (d - i) as f64 / denom;
        } else if zero != 0.0 {
            total += path[i].weight / zero / ((d - i) as f64 / denom);
        }
    }
    total
}
