//! The fast inference layout: a QuickScorer-style bitvector scorer (Lucchese et al., SIGIR 2015), adapted to
//! Keel's numeric and categorical splits.
//!
//! Each tree's leaves are numbered left to right, and each tree keeps one bit per leaf. A split node that a row
//! fails (the row goes right) rules out every leaf of its left subtree; the leaf the row reaches is then the
//! leftmost leaf still standing, whichever order the failed nodes are applied in. So prediction needs no tree
//! walk at all: it clears bits, then takes the lowest set bit of each tree.
//!
//! Which nodes a value fails depends only on the value's *class*: for a numeric feature, how many of the
//! feature's distinct thresholds lie below it (plus one class for missing); for a categorical feature, its level
//! code (plus one class for missing, negative and out-of-range codes). Compilation evaluates every node on a
//! representative value of each class with [`Node::goes_left`] itself and stores, per (feature, class), the
//! trees whose bits change with the AND of their masks. A row then costs one class lookup per feature and one
//! AND per (feature, tree) pair that the row's values rule leaves out of — a few thousand sequential,
//! branch-free operations for 200 trees instead of a few thousand unpredictable branches.
//!
//! Leaf values are added in tree order, so the sum is bit-identical to [`Tree::predict`] tree by tree.
//! Compilation declines (and the caller falls back to the arena walk in [`crate::forest`]) when a tree has more
//! than 64 leaves, a feature mixes numeric and categorical splits, a threshold is NaN, or the tables would pass
//! [`MAX_ENTRIES`].

use crate::tree::{FLAG_CATEGORICAL, NodeRef, Tree};

/// Upper bound on stored (tree, mask) entries; beyond it the arena walk is used instead.
pub const MAX_ENTRIES: usize = 1 << 24;

/// A per-tree leaf bitset: `u32` when every tree has at most 32 leaves, else `u64`.
pub trait LeafMask:
    Copy + Eq + std::fmt::Debug + std::ops::BitAnd<Output = Self> + std::ops::BitAndAssign
{
    const BITS: u32;
    const ONES: Self;
    /// All ones except bits `lo..hi`.
    fn without(lo: u32, hi: u32) -> Self;
    fn lowest(self) -> u32;
}

impl LeafMask for u32 {
    const BITS: u32 = 32;
    const ONES: u32 = u32::MAX;
    fn without(lo: u32, hi: u32) -> u32 {
        let width = hi - lo;
        let run = if width >= 32 {
            u32::MAX
        } else {
            ((1u32 << width) - 1) << lo
        };
        !run
    }
    #[inline(always)]
    fn lowest(self) -> u32 {
        self.trailing_zeros()
    }
}

impl LeafMask for u64 {
    const BITS: u32 = 64;
    const ONES: u64 = u64::MAX;
    fn without(lo: u32, hi: u32) -> u64 {
        let width = hi - lo;
        let run = if width >= 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << lo
        };
        !run
    }
    #[inline(always)]
    fn lowest(self) -> u32 {
        self.trailing_zeros()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Entry<M> {
    tree: u32,
    mask: M,
}

/// How one feature's values map to classes. Class ids are offsets from `base` into `Bitvector::offsets`.
#[derive(Debug, Clone, PartialEq)]
enum Classes {
    /// Classes `0..=K` (number of thresholds below the value), then `K + 1` for missing.
    Numeric {
        feature: usize,
        base: u32,
        thresholds: Vec<f64>,
    },
    /// Classes `0..levels` (the level code), then `levels` for missing, negative or out-of-range codes.
    Categorical {
        feature: usize,
        base: u32,
        levels: u32,
    },
}

impl Classes {
    #[inline(always)]
    fn class_of(&self, row: &[f64]) -> (usize, u32) {
        match self {
            Classes::Numeric {
                feature,
                base,
                thresholds,
            } => {
                let x = row[*feature];
                let c = if x.is_nan() {
                    thresholds.len() + 1
                } else {
                    thresholds.partition_point(|&t| t < x)
                };
                (c, *base)
            }
            Classes::Categorical {
                feature,
                base,
                levels,
            } => {
                let x = row[*feature];
                // NaN and values of -1 or less fail `x > -1` alike; (-1, 0) truncates to code 0.
                let in_range = x > -1.0 && (x as u64) < u64::from(*levels);
                let c = if !in_range {
                    *levels as usize
                } else {
                    x as usize
                };
                (c, *base)
            }
        }
    }
}

/// A compiled ensemble for one leaf-mask width.
#[derive(Debug, Clone, PartialEq)]
pub struct Bitvector<M> {
    n_trees: usize,
    features: Vec<Classes>,
    /// Entries of class `c` are `entries[offsets[c]..offsets[c + 1]]`.
    offsets: Vec<u32>,
    entries: Vec<Entry<M>>,
    /// Leaf values of tree `t` in left-to-right order start at `leaf_start[t]`.
    leaf_start: Vec<u32>,
    leaf_values: Vec<f64>,
}

/// The compiled scorer, sized for the widest tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Scorer {
    Narrow(Bitvector<u32>),
    Wide(Bitvector<u64>),
}

impl Scorer {
    /// Compiles `trees`, or `None` when this layout cannot represent them (see the module documentation).
    pub fn compile(trees: &[Tree]) -> Option<Scorer> {
        let widest = trees.iter().map(|t| t.leaf_values.len()).max().unwrap_or(1);
        if widest <= 32 {
            Bitvector::compile(trees).map(Scorer::Narrow)
        } else if widest <= 64 {
            Bitvector::compile(trees).map(Scorer::Wide)
        } else {
            None
        }
    }

    #[inline]
    pub fn predict(&self, row: &[f64], init: f64) -> f64 {
        match self {
            Scorer::Narrow(b) => b.predict(row, init),
            Scorer::Wide(b) => b.predict(row, init),
        }
    }

    #[inline]
    pub fn predict_f32(&self, row: &[f64], init: f32) -> f32 {
        match self {
            Scorer::Narrow(b) => b.predict_f32(row, init),
            Scorer::Wide(b) => b.predict_f32(row, init),
        }
    }

    /// Stored (tree, mask) entries, for sizing.
    pub fn entries(&self) -> usize {
        match self {
            Scorer::Narrow(b) => b.entries.len(),
            Scorer::Wide(b) => b.entries.len(),
        }
    }
}

/// One tree's leaves in left-to-right order, and for each internal node the range of positions its left subtree
/// covers.
fn in_order(t: &Tree) -> (Vec<u32>, Vec<(u32, u32)>) {
    fn walk(t: &Tree, r: NodeRef, order: &mut Vec<u32>, left_range: &mut [(u32, u32)]) {
        match r {
            NodeRef::Leaf(l) => order.push(l),
            NodeRef::Node(i) => {
                let (l, rr) = t.children(i);
                let lo = order.len() as u32;
                walk(t, l, order, left_range);
                left_range[i as usize] = (lo, order.len() as u32);
                walk(t, rr, order, left_range);
            }
        }
    }
    let mut order = Vec::with_capacity(t.leaf_values.len());
    let mut left_range = vec![(0, 0); t.nodes.len()];
    walk(t, t.root(), &mut order, &mut left_range);
    (order, left_range)
}

impl<M: LeafMask> Bitvector<M> {
    fn compile(trees: &[Tree]) -> Option<Bitvector<M>> {
        let mut b = Bitvector {
            n_trees: trees.len(),
            features: Vec::new(),
            offsets: vec![0],
            entries: Vec::new(),
            leaf_start: Vec::with_capacity(trees.len()),
            leaf_values: Vec::new(),
        };
        // Node masks, and the nodes of each feature as (tree, node).
        let mut masks: Vec<Vec<M>> = Vec::with_capacity(trees.len());
        let mut by_feature: Vec<Vec<(u32, u32)>> = Vec::new();
        for (ti, t) in trees.iter().enumerate() {
            let (order, left_range) = in_order(t);
            if order.len() as u32 > M::BITS {
                return None;
            }
            b.leaf_start.push(b.leaf_values.len() as u32);
            b.leaf_values
                .extend(order.iter().map(|&l| t.leaf_values[l as usize]));
            masks.push(
                left_range
                    .iter()
                    .map(|&(lo, hi)| M::without(lo, hi))
                    .collect(),
            );
            for (ni, n) in t.nodes.iter().enumerate() {
                let f = n.feature as usize;
                if by_feature.len() <= f {
                    by_feature.resize(f + 1, Vec::new());
                }
                by_feature[f].push((ti as u32, ni as u32));
            }
        }
        for (f, nodes) in by_feature.iter().enumerate() {
            if nodes.is_empty() {
                continue;
            }
            let node = |&(t, n): &(u32, u32)| &trees[t as usize].nodes[n as usize];
            // XGBoost's categorical rule rounds to f32 first; its classes are not integer codes.
            if nodes
                .iter()
                .any(|x| node(x).flags & crate::tree::FLAG_CAT_F32 != 0)
            {
                return None;
            }
            let categorical = nodes
                .iter()
                .map(|x| node(x).flags & FLAG_CATEGORICAL != 0)
                .collect::<Vec<_>>();
            let base = (b.offsets.len() - 1) as u32;
            // Representative values, one per class, in class order.
            let (classes, reps): (Classes, Vec<f64>) = if categorical.iter().all(|&c| !c) {
                let mut th: Vec<f64> = nodes.iter().map(|x| node(x).threshold).collect();
                if th.iter().any(|t| t.is_nan()) {
                    return None;
                }
                // Splits that count values near zero as missing: the zero interval is a class of its own.
                if nodes
                    .iter()
                    .any(|x| node(x).flags & crate::tree::FLAG_ZERO_MISSING != 0)
                {
                    th.push((-crate::tree::ZERO_THRESHOLD).next_down());
                    th.push(crate::tree::ZERO_THRESHOLD);
                }
                th.sort_by(f64::total_cmp);
                th.dedup();
                let mut reps = th.clone();
                reps.push(th.last().map_or(0.0, |t| t.next_up()));
                reps.push(f64::NAN);
                (
                    Classes::Numeric {
                        feature: f,
                        base,
                        thresholds: th,
                    },
                    reps,
                )
            } else if categorical.iter().all(|&c| c) {
                let words = nodes.iter().map(|x| node(x).cat_words).max().unwrap_or(0);
                let levels = words.checked_mul(64)?;
                let mut reps: Vec<f64> = (0..levels).map(f64::from).collect();
                reps.push(f64::NAN);
                (
                    Classes::Categorical {
                        feature: f,
                        base,
                        levels,
                    },
                    reps,
                )
            } else {
                return None;
            };
            for &x in &reps {
                // Nodes are grouped by tree (trees were visited in order), so one pass ANDs each tree's masks.
                let mut i = 0;
                while i < nodes.len() {
                    let t = nodes[i].0;
                    let mut m = M::ONES;
                    while i < nodes.len() && nodes[i].0 == t {
                        let (ti, ni) = nodes[i];
                        let tree = &trees[ti as usize];
                        if !tree.nodes[ni as usize].goes_left(x, &tree.cat_bits) {
                            m &= masks[ti as usize][ni as usize];
                        }
                        i += 1;
                    }
                    if m != M::ONES {
                        b.entries.push(Entry { tree: t, mask: m });
                    }
                }
                if b.entries.len() > MAX_ENTRIES {
                    return None;
                }
                b.offsets.push(b.entries.len() as u32);
            }
            b.features.push(classes);
        }
        Some(b)
    }

    /// Sum of the leaf values the row reaches, added in tree order onto `init`.
    #[inline]
    pub fn predict(&self, row: &[f64], init: f64) -> f64 {
        const STACK: usize = 512;
        if self.n_trees <= STACK {
            let mut bits = [M::ONES; STACK];
            self.score(row, init, &mut bits[..self.n_trees])
        } else {
            let mut bits = vec![M::ONES; self.n_trees];
            self.score(row, init, &mut bits)
        }
    }

    /// The same leaves summed in f32 from `init`, in tree order (XGBoost's arithmetic).
    #[inline]
    pub fn predict_f32(&self, row: &[f64], init: f32) -> f32 {
        const STACK: usize = 512;
        let mut stack = [M::ONES; STACK];
        let mut heap = Vec::new();
        let bits: &mut [M] = if self.n_trees <= STACK {
            &mut stack[..self.n_trees]
        } else {
            heap.resize(self.n_trees, M::ONES);
            &mut heap
        };
        self.select(row, bits);
        let mut sum = init;
        for (b, &start) in bits.iter().zip(&self.leaf_start) {
            sum += self.leaf_values[start as usize + b.lowest() as usize] as f32;
        }
        sum
    }

    #[inline(always)]
    fn score(&self, row: &[f64], init: f64, bits: &mut [M]) -> f64 {
        self.select(row, bits);
        let mut sum = init;
        for (b, &start) in bits.iter().zip(&self.leaf_start) {
            sum += self.leaf_values[start as usize + b.lowest() as usize];
        }
        sum
    }

    /// Clears, in each tree's mask, the leaves the row cannot reach; the lowest set bit is its leaf.
    #[inline(always)]
    fn select(&self, row: &[f64], bits: &mut [M]) {
        for c in &self.features {
            let (class, base) = c.class_of(row);
            let k = base as usize + class;
            let (a, z) = (self.offsets[k] as usize, self.offsets[k + 1] as usize);
            for e in &self.entries[a..z] {
                bits[e.tree as usize] &= e.mask;
            }
        }
    }
}
