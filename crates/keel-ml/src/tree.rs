//! Keel's compiled tree layout: the one representation inference and TreeSHAP run on, whatever trained the
//! trees. Nodes of a tree live in one contiguous vector; children are indexes, with flags saying whether a child
//! is a leaf. Categorical splits carry a bitset of the level codes that go left.

use serde::{Deserialize, Serialize};

/// The split is categorical (bitset) rather than numeric (threshold).
pub const FLAG_CATEGORICAL: u8 = 1;
/// Missing values (and unknown categories) go left.
pub const FLAG_DEFAULT_LEFT: u8 = 2;
/// `left` indexes a leaf, not a node.
pub const FLAG_LEFT_LEAF: u8 = 4;
/// `right` indexes a leaf, not a node.
pub const FLAG_RIGHT_LEAF: u8 = 8;
/// Numeric splits: values within [`ZERO_THRESHOLD`] of zero count as missing (LightGBM's missing type Zero).
pub const FLAG_ZERO_MISSING: u8 = 16;

/// Categorical splits read as XGBoost does: the value is rounded to f32 first, NaN goes the default way, and a
/// negative value, one of 2^24 or more, or a code past the set counts as not in the set (goes right).
pub const FLAG_CAT_F32: u8 = 32;

/// XGBoost's largest category code plus one (`OutOfRangeCat`).
const MAX_CAT_F32: f32 = 16_777_216.0;

/// What LightGBM calls zero (`kZeroThreshold`, the f32 `1e-35`, read as f64).
pub const ZERO_THRESHOLD: f64 = 1.0000000180025095e-35;

/// One internal node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Numeric splits: go left when `value <= threshold`.
    pub threshold: f64,
    /// Training rows that reached this node (TreeSHAP's cover).
    pub cover: f64,
    pub feature: u32,
    pub left: u32,
    pub right: u32,
    /// Categorical splits: first word of the bitset in [`Tree::cat_bits`].
    pub cat_offset: u32,
    /// Categorical splits: number of 64-bit words in the bitset.
    pub cat_words: u32,
    pub flags: u8,
}

impl Node {
    /// Whether a row with this feature value goes left.
    #[inline(always)]
    pub fn goes_left(&self, x: f64, cat_bits: &[u64]) -> bool {
        if x.is_nan() {
            return self.flags & FLAG_DEFAULT_LEFT != 0;
        }
        if self.flags & FLAG_CATEGORICAL == 0 {
            if self.flags & FLAG_ZERO_MISSING != 0
                && (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x)
            {
                return self.flags & FLAG_DEFAULT_LEFT != 0;
            }
            x <= self.threshold
        } else if self.flags & FLAG_CAT_F32 != 0 {
            let xf = x as f32;
            if !(0.0..MAX_CAT_F32).contains(&xf) {
                return false;
            }
            let code = xf as u64;
            let word = (code / 64) as usize;
            word < self.cat_words as usize
                && cat_bits[self.cat_offset as usize + word] >> (code % 64) & 1 == 1
        } else {
            // Codes truncate toward zero (as LightGBM's `int` cast): -0.5 is code 0, -1 and below are none.
            let code = x as u64;
            let word = (code / 64) as usize;
            if x <= -1.0 || word >= self.cat_words as usize {
                return self.flags & FLAG_DEFAULT_LEFT != 0;
            }
            cat_bits[self.cat_offset as usize + word] >> (code % 64) & 1 == 1
        }
    }
}

/// A decision tree in Keel's compiled layout. A tree without nodes is a single leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub leaf_values: Vec<f64>,
    pub leaf_covers: Vec<f64>,
    pub cat_bits: Vec<u64>,
}

/// A reference to a node or a leaf while walking a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRef {
    Node(u32),
    Leaf(u32),
}

impl Tree {
    pub fn root(&self) -> NodeRef {
        if self.nodes.is_empty() {
            NodeRef::Leaf(0)
        } else {
            NodeRef::Node(0)
        }
    }

    /// The leaf a row lands in.
    #[inline]
    pub fn leaf_index(&self, row: &[f64]) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            let left = n.goes_left(row[n.feature as usize], &self.cat_bits);
            let (next, leaf) = if left {
                (n.left, n.flags & FLAG_LEFT_LEAF != 0)
            } else {
                (n.right, n.flags & FLAG_RIGHT_LEAF != 0)
            };
            if leaf {
                return next as usize;
            }
            i = next as usize;
        }
    }

    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.leaf_values[self.leaf_index(row)]
    }

    pub fn children(&self, node: u32) -> (NodeRef, NodeRef) {
        let n = &self.nodes[node as usize];
        let l = if n.flags & FLAG_LEFT_LEAF != 0 {
            NodeRef::Leaf(n.left)
        } else {
            NodeRef::Node(n.left)
        };
        let r = if n.flags & FLAG_RIGHT_LEAF != 0 {
            NodeRef::Leaf(n.right)
        } else {
            NodeRef::Node(n.right)
        };
        (l, r)
    }

    pub fn cover(&self, r: NodeRef) -> f64 {
        match r {
            NodeRef::Node(i) => self.nodes[i as usize].cover,
            NodeRef::Leaf(i) => self.leaf_covers[i as usize],
        }
    }

    /// Sets the covers from data, for trees whose file records none (ONNX): each node and leaf counts the rows
    /// of `x` (row-major, `n_features` wide) that reach it, plus one per leaf below it, so no path has zero
    /// weight in TreeSHAP.
    pub fn recount_covers(&mut self, x: &[f64], n_features: usize) {
        for c in &mut self.leaf_covers {
            *c = 1.0;
        }
        if n_features > 0 {
            for row in x.chunks_exact(n_features) {
                let leaf = self.leaf_index(row);
                self.leaf_covers[leaf] += 1.0;
            }
        }
        // Children come after their parent in every layout Keel builds; sum bottom-up by recursion to be safe.
        fn sum(t: &mut Tree, r: NodeRef) -> f64 {
            match r {
                NodeRef::Leaf(i) => t.leaf_covers[i as usize],
                NodeRef::Node(i) => {
                    let (l, rr) = t.children(i);
                    let c = sum(t, l) + sum(t, rr);
                    t.nodes[i as usize].cover = c;
                    c
                }
            }
        }
        let root = self.root();
        sum(self, root);
    }

    /// Mean output over the training rows (cover-weighted leaf values).
    pub fn expected_value(&self) -> f64 {
        let total: f64 = self.leaf_covers.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.leaf_values
            .iter()
            .zip(&self.leaf_covers)
            .map(|(v, c)| v * c)
            .sum::<f64>()
            / total
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn max_depth(&self) -> usize {
        fn walk(t: &Tree, r: NodeRef) -> usize {
            match r {
                NodeRef::Leaf(_) => 0,
                NodeRef::Node(i) => {
                    let (l, rr) = t.children(i);
                    1 + walk(t, l).max(walk(t, rr))
                }
            }
        }
        walk(self, self.root())
    }
}
