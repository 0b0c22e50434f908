//! Deterministic train/test splits.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Splits row indexes into (train, test), stratified by the class label `y` (binary 0/1 or a class index) when
/// `stratify` is set, so both sides keep the class balance. Deterministic for a seed; both outputs are sorted.
pub fn train_test_split(
    y: &[f64],
    test_fraction: f64,
    seed: u64,
    stratify: bool,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = if stratify {
        // One group per class, in ascending label order (0 before 1 for a binary label).
        let mut by_class: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
        for (i, &v) in y.iter().enumerate() {
            by_class.entry(v.to_bits()).or_default().push(i);
        }
        let mut groups: Vec<(f64, Vec<usize>)> = by_class
            .into_iter()
            .map(|(b, g)| (f64::from_bits(b), g))
            .collect();
        groups.sort_by(|a, b| a.0.total_cmp(&b.0));
        groups.into_iter().map(|(_, g)| g).collect()
    } else {
        vec![(0..y.len()).collect()]
    };
    let mut train = Vec::with_capacity(y.len());
    let mut test = Vec::new();
    for mut g in groups {
        g.shuffle(&mut rng);
        let k = ((g.len() as f64) * test_fraction).round() as usize;
        test.extend_from_slice(&g[..k]);
        train.extend_from_slice(&g[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_keeps_class_balance_and_is_deterministic() {
        let y: Vec<f64> = (0..1000)
            .map(|i| if i % 10 == 0 { 1.0 } else { 0.0 })
            .collect();
        let (tr, te) = train_test_split(&y, 0.2, 7, true);
        assert_eq!(tr.len() + te.len(), 1000);
        assert_eq!(te.len(), 200);
        assert_eq!(te.iter().filter(|&&i| y[i] == 1.0).count(), 20);
        assert_eq!(train_test_split(&y, 0.2, 7, true), (tr.clone(), te.clone()));
        assert_ne!(train_test_split(&y, 0.2, 8, true).1, te);
    }
}
