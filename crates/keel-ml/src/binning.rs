//! Histogram binning: each feature becomes at most 256 bins (one reserved for missing values), computed once
//! before boosting. Numeric bins end at midpoints between distinct values, so a split "bin ≤ t" is exactly the
//! raw decision "value ≤ upper[t]" used at inference.

/// Maps the raw values of one feature to bins.
#[derive(Debug, Clone)]
pub enum BinMapper {
    Numeric {
        /// Upper bound of each value bin; the last is `+inf`. The missing bin follows them.
        upper: Vec<f64>,
    },
    Categorical {
        /// Bin of each level of the model's level list. Rare or unseen levels share the missing bin.
        level_bin: Vec<u16>,
        /// Number of bins, including the missing bin.
        n_bins: usize,
    },
}

impl BinMapper {
    /// Bins for a numeric feature from its training values (`NaN` = missing).
    pub fn numeric(values: impl Iterator<Item = f64>, max_bins: usize) -> BinMapper {
        let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let mut distinct: Vec<(f64, usize)> = Vec::new();
        for x in v.iter().copied() {
            match distinct.last_mut() {
                Some((last, c)) if *last == x => *c += 1,
                _ => distinct.push((x, 1)),
            }
        }
        let max_value_bins = max_bins.saturating_sub(1).max(1);
        let mut upper = Vec::new();
        if distinct.len() <= max_value_bins {
            for w in distinct.windows(2) {
                upper.push(midpoint(w[0].0, w[1].0));
            }
        } else {
            // Greedy equal-frequency bins whose edges fall between distinct values.
            let per_bin = v.len() as f64 / max_value_bins as f64;
            let mut acc = 0usize;
            for i in 0..distinct.len() - 1 {
                acc += distinct[i].1;
                if acc as f64 >= per_bin * (upper.len() + 1) as f64
                    && upper.len() + 1 < max_value_bins
                {
                    upper.push(midpoint(distinct[i].0, distinct[i + 1].0));
                }
            }
        }
        upper.push(f64::INFINITY);
        BinMapper::Numeric { upper }
    }

    /// Bins for a categorical feature from the training codes (`u32::MAX` = missing) and its level count.
    /// The most frequent `max_bins - 1` levels that occur get a bin each; the rest share the missing bin.
    pub fn categorical(codes: &[u32], n_levels: usize, max_bins: usize) -> BinMapper {
        let mut counts = vec![0usize; n_levels];
        for &c in codes {
            if (c as usize) < n_levels {
                counts[c as usize] += 1;
            }
        }
        let mut order: Vec<usize> = (0..n_levels).filter(|&l| counts[l] > 0).collect();
        order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
        order.truncate(max_bins.saturating_sub(1).max(1));
        order.sort_unstable();
        let missing = order.len() as u16;
        let mut level_bin = vec![missing; n_levels];
        for (bin, &level) in order.iter().enumerate() {
            level_bin[level] = bin as u16;
        }
        BinMapper::Categorical {
            level_bin,
            n_bins: order.len() + 1,
        }
    }

    /// Number of bins, including the missing bin.
    pub fn n_bins(&self) -> usize {
        match self {
            BinMapper::Numeric { upper } => upper.len() + 1,
            BinMapper::Categorical { n_bins, .. } => *n_bins,
        }
    }

    /// The bin that holds missing values (always the last).
    pub fn missing_bin(&self) -> usize {
        self.n_bins() - 1
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, BinMapper::Categorical { .. })
    }

    /// The bin of one raw (encoded) value.
    #[inline]
    pub fn bin(&self, x: f64) -> usize {
        match self {
            BinMapper::Numeric { upper } => {
                if x.is_nan() {
                    upper.len()
                } else {
                    upper.partition_point(|&u| u < x).min(upper.len() - 1)
                }
            }
            BinMapper::Categorical { level_bin, n_bins } => {
                if x.is_nan() || x < 0.0 || (x as usize) >= level_bin.len() {
                    n_bins - 1
                } else {
                    level_bin[x as usize] as usize
                }
            }
        }
    }
}

fn midpoint(a: f64, b: f64) -> f64 {
    let m = a + (b - a) / 2.0;
    // Guard against rounding that would put the midpoint on b.
    if m >= b { a } else { m }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_bins_are_exact_for_few_distinct_values() {
        let m = BinMapper::numeric([1.0, 2.0, 2.0, 5.0, f64::NAN].into_iter(), 255);
        assert_eq!(m.n_bins(), 4);
        assert_eq!(m.bin(1.0), 0);
        assert_eq!(m.bin(2.0), 1);
        assert_eq!(m.bin(4.9), 2);
        assert_eq!(m.bin(100.0), 2);
        assert_eq!(m.bin(f64::NAN), 3);
    }

    #[test]
    fn numeric_bins_respect_max_bins() {
        let m = BinMapper::numeric((0..10_000).map(|i| i as f64), 16);
        assert!(m.n_bins() <= 16, "{}", m.n_bins());
        assert_eq!(m.bin(0.0), 0);
        assert_eq!(m.bin(9999.0), m.n_bins() - 2);
    }

    #[test]
    fn rare_levels_share_the_missing_bin() {
        let codes = [0, 0, 0, 1, 1, 2, u32::MAX];
        let m = BinMapper::categorical(&codes, 4, 3);
        assert_eq!(m.n_bins(), 3);
        assert_eq!(m.bin(0.0), 0);
        assert_eq!(m.bin(1.0), 1);
        assert_eq!(m.bin(2.0), 2);
        assert_eq!(m.bin(3.0), 2);
        assert_eq!(m.bin(f64::NAN), 2);
    }
}
