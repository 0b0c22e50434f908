//! The champion/challenger gate on synthetic data: a real improvement passes, a model trained on shuffled
//! labels is rejected with a reason, and tiny holdouts are refused.

use keel_core::{ColumnData, Frame};
use keel_ml::gate::{GateOptions, compare};
use keel_ml::gbdt::{self, GbdtParams};
use keel_ml::{FeatureKind, FeatureSpec, Model, ModelKind, Objective};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::synthetic;

fn fit(specs: &[FeatureSpec], x: &[f64], y: &[f64], trees: usize) -> Model {
    let params = GbdtParams {
        n_trees: trees,
        learning_rate: 0.1,
        ..Default::default()
    };
    let (ens, _) = gbdt::train(
        specs,
        x,
        y,
        Objective::Binary,
        &params,
        None,
        &mut |_, _| true,
    )
    .unwrap();
    Model {
        objective: Objective::Binary,
        target: "y".into(),
        class_labels: Some(vec!["0".into(), "1".into()]),
        features: specs.to_vec(),
        kind: ModelKind::Gbdt(ens),
        link: keel_ml::model::Link::of(Objective::Binary),
        numerics: keel_ml::model::Numerics::F64,
    }
}

/// The encoded rows of `synthetic` as a frame with the model's column names and levels.
fn frame(specs: &[FeatureSpec], x: &[f64]) -> Frame {
    let nf = specs.len();
    let columns = specs
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let col = x.chunks_exact(nf).map(|r| r[j]);
            match &s.kind {
                FeatureKind::Numeric | FeatureKind::Time { .. } => {
                    ColumnData::Numeric(col.collect())
                }
                FeatureKind::Categorical { levels } => ColumnData::Categorical {
                    codes: col.map(|v| v as u32).collect(),
                    levels: levels.clone(),
                },
            }
        })
        .collect();
    Frame {
        names: specs.iter().map(|s| s.name.clone()).collect(),
        columns,
    }
}

#[test]
fn a_better_challenger_passes_and_a_shuffled_label_one_is_rejected() {
    let (specs, x, y) = synthetic(4000, 11);
    let (_, xh, yh) = synthetic(3000, 12);
    let holdout = frame(&specs, &xh);
    // The champion saw little data and few trees; the challenger more of both.
    let champion = fit(&specs, &x[..400 * 4], &y[..400], 10);
    let challenger = fit(&specs, &x, &y, 80);
    let opts = GateOptions::default();
    let r = compare(&champion, &challenger, &holdout, &yh, &opts).unwrap();
    assert!(r.passed, "{r:?}");
    assert!(
        r.delta > 0.0 && r.delta_lower <= r.delta && r.delta <= r.delta_upper,
        "{r:?}"
    );
    assert!(r.reasons.is_empty());
    assert_eq!(r.rows, 3000);

    let mut shuffled = y.clone();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
    let bad = fit(&specs, &x, &shuffled, 80);
    let r = compare(&challenger, &bad, &holdout, &yh, &opts).unwrap();
    assert!(!r.passed);
    assert!(r.challenger < 0.6 && r.champion > 0.8, "{r:?}");
    assert!(
        r.reasons.iter().any(|m| m.contains("does not beat")),
        "{:?}",
        r.reasons
    );
    assert!(
        r.reasons.iter().any(|m| m.contains("interval")),
        "{:?}",
        r.reasons
    );

    // The same model against itself: delta exactly 0, passes (not worse), interval collapses to 0.
    let r = compare(&challenger, &challenger, &holdout, &yh, &opts).unwrap();
    assert!(r.passed && r.delta == 0.0 && r.delta_lower == 0.0 && r.delta_upper == 0.0);
}

#[test]
fn fairness_gaps_are_compared_per_sensitive_column() {
    let (specs, x, y) = synthetic(4000, 21);
    let (_, xh, yh) = synthetic(2000, 22);
    let holdout = frame(&specs, &xh);
    let m = fit(&specs, &x, &y, 40);
    let opts = GateOptions {
        sensitive: vec!["c3".into()],
        ..Default::default()
    };
    let r = compare(&m, &m, &holdout, &yh, &opts).unwrap();
    assert_eq!(r.fairness.len(), 2);
    assert!(
        r.fairness
            .iter()
            .all(|f| f.ok && f.champion == f.challenger)
    );
    // A negative tolerance makes any gap a failure, with its reason naming the column.
    let strict = GateOptions {
        fairness_tolerance: -1.0,
        ..opts
    };
    let r = compare(&m, &m, &holdout, &yh, &strict).unwrap();
    assert!(!r.passed);
    assert!(
        r.reasons.iter().all(|m| m.contains("on c3")),
        "{:?}",
        r.reasons
    );
}

#[test]
fn small_or_one_class_holdouts_are_refused() {
    let (specs, x, y) = synthetic(1000, 31);
    let m = fit(&specs, &x, &y, 5);
    let e = compare(
        &m,
        &m,
        &frame(&specs, &x[..40 * 4]),
        &y[..40],
        &GateOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 50"), "{e}");
    let ones = vec![1.0; 100];
    let e = compare(
        &m,
        &m,
        &frame(&specs, &x[..400]),
        &ones,
        &GateOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("one class"), "{e}");
}
