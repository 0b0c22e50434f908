//! The compiled inference form of an ensemble. Prediction uses the bitvector scorer ([`crate::bitvector`]) when
//! it can represent the trees, and otherwise the arena walk defined here: every tree flattened into one arena of
//! 16-byte nodes in preorder (the left child of node `i` is `i + 1`), categorical bitsets of up to 64 levels
//! stored inline, leaves as nodes that point to themselves, eight trees walked in lockstep with branch-free child
//! selection, so their dependency chains overlap instead of stalling on each other. Both add leaf values in tree
//! order, so either result is bit-identical to summing [`Tree::predict`] tree by tree.

use crate::bitvector::Scorer;
use crate::tree::{
    FLAG_CAT_F32, FLAG_CATEGORICAL, FLAG_DEFAULT_LEFT, FLAG_ZERO_MISSING, Node, NodeRef, Tree,
    ZERO_THRESHOLD,
};

const NUMERIC: u8 = 0;
const CAT_INLINE: u8 = 1;
const CAT_WIDE: u8 = 2;
const LEAF: u8 = 3;
/// Numeric with values near zero counted as missing (imported LightGBM trees).
const NUMERIC_ZERO: u8 = 4;
/// Categorical read as XGBoost does (imported XGBoost trees), bitset stored wide.
const CAT_F32: u8 = 5;
const LANES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct FlatNode {
    /// Numeric: the threshold's bits. Inline categorical: the bitset. Wide categorical: offset << 32 | words.
    /// Leaf: the value's bits.
    bits: u64,
    right: u32,
    feature: u16,
    kind: u8,
    default_left: u8,
}

/// A compiled ensemble; built once per loaded model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Forest {
    nodes: Vec<FlatNode>,
    wide_bits: Vec<u64>,
    /// Root of each tree.
    roots: Vec<u32>,
    n_trees: usize,
    /// The bitvector scorer, when the trees fit it.
    bitvector: Option<Scorer>,
}

impl Forest {
    pub fn compile(trees: &[Tree]) -> Forest {
        let mut f = Forest {
            nodes: vec![FlatNode {
                bits: 0f64.to_bits(),
                right: 0,
                feature: 0,
                kind: LEAF,
                default_left: 0,
            }],
            ..Default::default()
        };
        for t in trees {
            let root = f.nodes.len() as u32;
            f.emit(t, t.root());
            f.roots.push(root);
        }
        f.n_trees = trees.len();
        f.bitvector = Scorer::compile(trees);
        f
    }

    /// Which layout [`Forest::predict`] runs on: `bitvector-32`, `bitvector-64` or `arena`.
    pub fn layout(&self) -> &'static str {
        match &self.bitvector {
            Some(Scorer::Narrow(_)) => "bitvector-32",
            Some(Scorer::Wide(_)) => "bitvector-64",
            None => "arena",
        }
    }

    fn emit(&mut self, t: &Tree, r: NodeRef) -> u32 {
        let at = self.nodes.len() as u32;
        match r {
            NodeRef::Leaf(l) => {
                self.nodes.push(FlatNode {
                    bits: t.leaf_values[l as usize].to_bits(),
                    right: at,
                    feature: 0,
                    kind: LEAF,
                    default_left: 0,
                });
            }
            NodeRef::Node(i) => {
                let n = &t.nodes[i as usize];
                let default_left = u8::from(n.flags & FLAG_DEFAULT_LEFT != 0);
                let (kind, bits) = if n.flags & FLAG_CATEGORICAL == 0 {
                    let zero = n.flags & FLAG_ZERO_MISSING != 0;
                    (
                        if zero { NUMERIC_ZERO } else { NUMERIC },
                        n.threshold.to_bits(),
                    )
                } else if n.cat_words == 1 && n.flags & FLAG_CAT_F32 == 0 {
                    (CAT_INLINE, t.cat_bits[n.cat_offset as usize])
                } else {
                    let off = self.wide_bits.len() as u64;
                    self.wide_bits.extend_from_slice(
                        &t.cat_bits[n.cat_offset as usize..(n.cat_offset + n.cat_words) as usize],
                    );
                    let kind = if n.flags & FLAG_CAT_F32 != 0 {
                        CAT_F32
                    } else {
                        CAT_WIDE
                    };
                    (kind, off << 32 | n.cat_words as u64)
                };
                self.nodes.push(FlatNode {
                    bits,
                    right: 0,
                    feature: n.feature as u16,
                    kind,
                    default_left,
                });
                let (l, rr) = t.children(i);
                let left = self.emit(t, l);
                debug_assert_eq!(left, at + 1);
                let right = self.emit(t, rr);
                self.nodes[at as usize].right = right;
            }
        }
        at
    }

    pub fn n_trees(&self) -> usize {
        self.n_trees
    }

    /// Sum of the leaf values the row reaches, added in tree order onto `init`.
    #[inline]
    pub fn predict(&self, row: &[f64], init: f64) -> f64 {
        match &self.bitvector {
            Some(b) => b.predict(row, init),
            None => self.predict_arena(row, init),
        }
    }

    /// The same sum by the arena walk, whichever layout [`Forest::predict`] uses.
    ///
    /// Eight lanes each walk one tree; a lane that reaches a leaf records the value in the tree's slot and starts
    /// the next unwalked tree, so no step is spent waiting on a deeper neighbour.
    #[inline]
    pub fn predict_arena(&self, row: &[f64], init: f64) -> f64 {
        let mut sum = init;
        for v in &self.arena_leaves(row) {
            sum += v;
        }
        sum
    }

    /// The margin summed in f32 from `init`, in tree order (XGBoost's arithmetic).
    #[inline]
    pub fn predict_f32(&self, row: &[f64], init: f32) -> f32 {
        match &self.bitvector {
            Some(b) => b.predict_f32(row, init),
            None => {
                let mut sum = init;
                for v in &self.arena_leaves(row) {
                    sum += *v as f32;
                }
                sum
            }
        }
    }

    /// The leaf value each tree gives the row, in tree order, by the arena walk.
    fn arena_leaves(&self, row: &[f64]) -> Vec<f64> {
        let n = self.n_trees;
        if n == 0 {
            return Vec::new();
        }
        // One slot per tree plus a sink for parked lanes.
        let mut values = vec![0.0f64; n + 1];
        let mut idx = [0u32; LANES];
        let mut tree = [n; LANES];
        let mut next = 0usize;
        for k in 0..LANES.min(n) {
            idx[k] = self.roots[k];
            tree[k] = k;
            next = k + 1;
        }
        let mut remaining = n;
        while remaining > 0 {
            for k in 0..LANES {
                let i = idx[k];
                let node = self.nodes[i as usize];
                if node.kind == LEAF {
                    values[tree[k]] = f64::from_bits(node.bits);
                    if tree[k] < n {
                        remaining -= 1;
                    }
                    if next < n {
                        idx[k] = self.roots[next];
                        tree[k] = next;
                        next += 1;
                    } else {
                        idx[k] = 0;
                        tree[k] = n;
                    }
                    continue;
                }
                // Masks instead of branches: the direction is data-dependent and unpredictable.
                let left = self.goes_left(&node, row).wrapping_neg();
                idx[k] = node.right ^ ((node.right ^ (i + 1)) & left);
            }
        }
        values.truncate(n);
        values
    }

    /// 1 when the row goes left at `n`, else 0 (leaves answer anything; their caller ignores it).
    #[inline(always)]
    fn goes_left(&self, n: &FlatNode, row: &[f64]) -> u32 {
        let x = row[n.feature as usize];
        let dl = u32::from(n.default_left);
        if n.kind == CAT_WIDE {
            return u32::from(self.wide_left(n, x, dl == 1));
        }
        if n.kind == CAT_F32 {
            return u32::from(self.f32_cat_left(n, x, dl == 1));
        }
        if n.kind == NUMERIC_ZERO {
            return u32::from(zero_left(n, x, dl == 1));
        }
        let nan = u32::from(x.is_nan());
        let numeric_left = u32::from(x <= f64::from_bits(n.bits)) | (nan & dl);
        // A category value truncates toward zero to its code (-0.5 is code 0), as `Node::goes_left` reads it.
        let inline_ok = u32::from(x > -1.0) & u32::from(x < 64.0);
        let bit = ((n.bits >> ((x as u64) & 63)) & 1) as u32;
        let cat_left = (bit & inline_ok) | (dl & (inline_ok ^ 1));
        let is_cat = u32::from(n.kind == CAT_INLINE);
        (cat_left & is_cat) | (numeric_left & (is_cat ^ 1))
    }

    /// An XGBoost categorical split: the node's own rule, on its bitset in `wide_bits`.
    #[cold]
    fn f32_cat_left(&self, n: &FlatNode, x: f64, dl: bool) -> bool {
        let (off, words) = ((n.bits >> 32) as usize, (n.bits & 0xffff_ffff) as u32);
        let node = Node {
            threshold: 0.0,
            cover: 0.0,
            feature: 0,
            left: 0,
            right: 0,
            cat_offset: 0,
            cat_words: words,
            flags: FLAG_CATEGORICAL | FLAG_CAT_F32 | if dl { FLAG_DEFAULT_LEFT } else { 0 },
        };
        node.goes_left(x, &self.wide_bits[off..off + words as usize])
    }

    #[cold]
    fn wide_left(&self, n: &FlatNode, x: f64, dl: bool) -> bool {
        let (off, words) = ((n.bits >> 32) as usize, (n.bits & 0xffff_ffff) as usize);
        if x.is_nan() || x <= -1.0 || (x as usize) / 64 >= words {
            return dl;
        }
        let code = x as usize;
        self.wide_bits[off + code / 64] >> (code % 64) & 1 == 1
    }
}

/// A numeric split whose values within [`ZERO_THRESHOLD`] of zero (and NaN) go the default way.
#[cold]
fn zero_left(n: &FlatNode, x: f64, dl: bool) -> bool {
    if x.is_nan() || (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x) {
        return dl;
    }
    x <= f64::from_bits(n.bits)
}
