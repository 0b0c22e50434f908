//! Integration tests of keel-ml on synthetic data with known structure.

mod fairness;
mod gate;
mod gbdt;
mod import;
mod import_multiclass;
mod import_onnx;
mod multiclass;
mod objectives;

use keel_ml::{FeatureKind, FeatureSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A binary problem with a numeric feature (5 % missing), a 12-level categorical feature whose effect depends
/// on set membership, a non-linear numeric feature and a 3-level categorical feature.
pub fn synthetic(n: usize, seed: u64) -> (Vec<FeatureSpec>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = vec![
        FeatureSpec {
            name: "x0".into(),
            kind: FeatureKind::Numeric,
        },
        FeatureSpec {
            name: "c1".into(),
            kind: FeatureKind::Categorical {
                levels: (0..12).map(|i| format!("L{i}")).collect(),
            },
        },
        FeatureSpec {
            name: "x2".into(),
            kind: FeatureKind::Numeric,
        },
        FeatureSpec {
            name: "c3".into(),
            kind: FeatureKind::Categorical {
                levels: vec!["a".into(), "b".into(), "c".into()],
            },
        },
    ];
    let mut x = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let x0: f64 = rng.random_range(-2.0..2.0);
        let c1 = rng.random_range(0..12u32);
        let x2: f64 = rng.random_range(0.0..6.0);
        let c3 = rng.random_range(0..3u32);
        let missing = rng.random_bool(0.05);
        let z = if missing { 0.8 } else { 1.5 * x0 }
            + if [1, 4, 7, 9].contains(&c1) {
                1.5
            } else {
                -1.0
            }
            + (x2 * 1.5).sin()
            + [0.0, 0.5, -0.5][c3 as usize];
        let p = 1.0 / (1.0 + (-z).exp());
        y.push(if rng.random_bool(p) { 1.0 } else { 0.0 });
        x.extend_from_slice(&[
            if missing { f64::NAN } else { x0 },
            c1 as f64,
            x2,
            c3 as f64,
        ]);
    }
    (specs, x, y)
}
