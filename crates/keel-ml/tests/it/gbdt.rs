use keel_ml::gbdt::{self, ClassWeight, GbdtParams};
use keel_ml::metrics::roc_auc;
use keel_ml::{Model, ModelKind, Objective};

use crate::synthetic;

fn fit(n: usize, params: &GbdtParams) -> (Model, Vec<f64>, Vec<f64>) {
    let (specs, x, y) = synthetic(n, 1);
    let (ens, _) = gbdt::train(
        &specs,
        &x,
        &y,
        Objective::Binary,
        params,
        None,
        &mut |_, _| true,
    )
    .unwrap();
    let model = Model {
        objective: Objective::Binary,
        target: "y".into(),
        class_labels: Some(vec!["0".into(), "1".into()]),
        features: specs,
        kind: ModelKind::Gbdt(ens),
        link: keel_ml::model::Link::of(Objective::Binary),
        numerics: keel_ml::model::Numerics::F64,
    };
    (model, x, y)
}

fn small() -> GbdtParams {
    GbdtParams {
        n_trees: 60,
        learning_rate: 0.1,
        ..Default::default()
    }
}

#[test]
fn learns_numeric_categorical_and_missing_structure() {
    let (model, _, _) = fit(6000, &small());
    let (_, xt, yt) = synthetic(4000, 2);
    let p = model.predict_rows(&xt);
    let auc = roc_auc(&yt, &p).unwrap();
    // The Bayes-optimal AUC of this problem is about 0.86; a model that ignored the categorical set or the
    // missing-value effect would sit far below.
    assert!(auc > 0.82, "holdout AUC {auc}");
}

#[test]
fn shap_values_sum_to_the_raw_margin() {
    let (model, x, _) = fit(3000, &small());
    let ModelKind::Gbdt(ens) = &model.kind else {
        unreachable!()
    };
    let nf = model.features.len();
    let mut checked = 0;
    for row in x.chunks_exact(nf).take(500) {
        let (phi, expected) = ens.shap(row, nf);
        let margin = model.predict_margin(row);
        let sum: f64 = phi.iter().sum::<f64>() + expected;
        assert!(
            (sum - margin).abs() < 1e-6,
            "SHAP sum {sum} vs margin {margin}"
        );
        checked += 1;
    }
    assert_eq!(checked, 500);
    // A missing x0 is attributed to x0 too.
    let row = [f64::NAN, 4.0, 1.0, 2.0];
    let (phi, expected) = ens.shap(&row, nf);
    assert!((phi.iter().sum::<f64>() + expected - model.predict_margin(&row)).abs() < 1e-6);
    assert!(phi[0] != 0.0);
}

#[test]
fn shap_matches_brute_force_shapley_values_on_a_small_tree() {
    // Exact Shapley values by enumeration of coalitions, with the path-dependent expectation, on a 4-leaf model.
    let params = GbdtParams {
        n_trees: 1,
        num_leaves: 4,
        learning_rate: 1.0,
        ..Default::default()
    };
    let (model, x, _) = fit(2000, &params);
    let ModelKind::Gbdt(ens) = &model.kind else {
        unreachable!()
    };
    let tree = &ens.trees[0];
    let nf = model.features.len();
    // Expected tree output given only the features in `set` are known (path-dependent, by cover).
    fn cond(tree: &keel_ml::tree::Tree, r: keel_ml::tree::NodeRef, row: &[f64], set: u32) -> f64 {
        match r {
            keel_ml::tree::NodeRef::Leaf(l) => tree.leaf_values[l as usize],
            keel_ml::tree::NodeRef::Node(i) => {
                let n = &tree.nodes[i as usize];
                let (l, rr) = tree.children(i);
                if set & (1 << n.feature) != 0 {
                    if n.goes_left(row[n.feature as usize], &tree.cat_bits) {
                        cond(tree, l, row, set)
                    } else {
                        cond(tree, rr, row, set)
                    }
                } else {
                    let (cl, cr) = (tree.cover(l), tree.cover(rr));
                    (cl * cond(tree, l, row, set) + cr * cond(tree, rr, row, set)) / (cl + cr)
                }
            }
        }
    }
    let fact = |k: usize| (1..=k).product::<usize>() as f64;
    for row in x.chunks_exact(nf).take(50) {
        let mut phi = vec![0.0; nf];
        keel_ml::shap::tree_shap(tree, row, &mut phi);
        for (i, &phi_i) in phi.iter().enumerate() {
            let mut brute = 0.0;
            for set in 0u32..(1 << nf) {
                if set & (1 << i) != 0 {
                    continue;
                }
                let s = set.count_ones() as usize;
                let w = fact(s) * fact(nf - s - 1) / fact(nf);
                brute += w
                    * (cond(tree, tree.root(), row, set | (1 << i))
                        - cond(tree, tree.root(), row, set));
            }
            assert!(
                (brute - phi_i).abs() < 1e-9,
                "feature {i}: TreeSHAP {} vs brute force {brute}",
                phi_i
            );
        }
    }
}

#[test]
fn saved_model_reloads_with_bit_identical_predictions() {
    let (model, x, _) = fit(3000, &small());
    let bytes = model.to_bytes().unwrap();
    let back = Model::from_bytes(&bytes).unwrap();
    assert_eq!(back, model);
    let nf = model.features.len();
    for row in x.chunks_exact(nf) {
        assert_eq!(model.predict(row).to_bits(), back.predict(row).to_bits());
    }
}

#[test]
fn both_inference_layouts_are_bit_identical_to_the_tree_walk() {
    // Includes missing values, unseen categories (code 12 of 12 levels), negative, fractional and huge codes,
    // infinities, and values exactly on and next to thresholds. 3 trees: few thresholds per feature; 120 trees:
    // many; 63 leaves: the 64-bit leaf masks.
    for (trees, leaves, layout) in [
        (3, 31, "bitvector-32"),
        (120, 31, "bitvector-32"),
        (40, 63, "bitvector-64"),
        (10, 100, "arena"),
    ] {
        layouts_match(trees, leaves, layout);
    }
}

fn layouts_match(trees: usize, leaves: usize, layout: &str) {
    let (model, x, _) = fit(
        3000,
        &GbdtParams {
            n_trees: trees,
            num_leaves: leaves,
            min_data_in_leaf: 5,
            ..small()
        },
    );
    let ModelKind::Gbdt(ens) = &model.kind else {
        unreachable!()
    };
    let forest = ens.forest();
    assert_eq!(forest.layout(), layout, "{trees} trees of {leaves} leaves");
    let mut rows: Vec<Vec<f64>> = x.chunks_exact(4).take(2000).map(|r| r.to_vec()).collect();
    rows.push(vec![f64::NAN, f64::NAN, f64::NAN, f64::NAN]);
    rows.push(vec![0.5, 12.0, 1.0, 7.0]);
    rows.push(vec![0.5, -1.0, 1.0, 1e300]);
    rows.push(vec![0.5, 2.7, 1.0, -0.0]);
    rows.push(vec![f64::INFINITY, 3.0, f64::NEG_INFINITY, 0.0]);
    // Category values truncate toward zero: -0.5 and -0.99 are code 0, -1 is none.
    for c in [-0.5, -0.99, -0.0, -1.0, -1.5, 0.99, 63.5, 64.0] {
        rows.push(vec![0.5, c, 1.0, 7.0]);
    }
    // Every threshold, and its neighbours, on each numeric feature.
    for t in &ens.trees {
        for n in t
            .nodes
            .iter()
            .filter(|n| n.flags & keel_ml::tree::FLAG_CATEGORICAL == 0)
        {
            for v in [n.threshold.next_down(), n.threshold, n.threshold.next_up()] {
                let mut r = x[..4].to_vec();
                r[n.feature as usize] = v;
                rows.push(r);
            }
        }
    }
    for r in &rows {
        let want = ens.predict_margin_by_tree(r).to_bits();
        assert_eq!(ens.predict_margin(r).to_bits(), want, "bitvector {r:?}");
        assert_eq!(
            forest.predict_arena(r, ens.init_score).to_bits(),
            want,
            "arena {r:?}"
        );
    }
}

#[test]
fn corrupted_or_truncated_model_files_are_refused() {
    let (model, _, _) = fit(
        1000,
        &GbdtParams {
            n_trees: 5,
            ..Default::default()
        },
    );
    let bytes = model.to_bytes().unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    assert!(
        Model::from_bytes(&flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum")
    );
    assert!(
        Model::from_bytes(&bytes[..bytes.len() - 10])
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    assert!(
        Model::from_bytes(b"not a model at all, just text")
            .unwrap_err()
            .to_string()
            .contains("KEELMDL")
    );
    let mut future = bytes.clone();
    future[8] = 99;
    assert!(
        Model::from_bytes(&future)
            .unwrap_err()
            .to_string()
            .contains("version 99")
    );
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let p = GbdtParams {
        bagging_fraction: 0.7,
        feature_fraction: 0.75,
        seed: 42,
        ..small()
    };
    let a = fit(2000, &p).0.to_bytes().unwrap();
    let b = fit(2000, &p).0.to_bytes().unwrap();
    assert_eq!(a, b);
    let c = fit(2000, &GbdtParams { seed: 43, ..p })
        .0
        .to_bytes()
        .unwrap();
    assert_ne!(a, c);
}

#[test]
fn early_stopping_truncates_to_the_best_iteration() {
    let (specs, x, y) = synthetic(3000, 3);
    let (vx_specs, vx, vy) = synthetic(1000, 4);
    assert_eq!(specs, vx_specs);
    let p = GbdtParams {
        n_trees: 2000,
        learning_rate: 0.3,
        early_stopping_rounds: 20,
        ..Default::default()
    };
    let (ens, log) = gbdt::train(
        &specs,
        &x,
        &y,
        Objective::Binary,
        &p,
        Some((&vx, &vy)),
        &mut |_, _| true,
    )
    .unwrap();
    assert!(log.trees_trained < 2000, "trained {}", log.trees_trained);
    assert_eq!(ens.trees.len(), log.best_iteration);
    assert_eq!(log.trees_trained, log.best_iteration + 20);
    let best = log.validation_loss[log.best_iteration - 1];
    assert!(log.validation_loss.iter().all(|&l| l >= best - 1e-12));
}

#[test]
fn class_weights_shift_predictions_towards_the_weighted_class() {
    let base = fit(3000, &small()).0;
    let weighted = fit(
        3000,
        &GbdtParams {
            class_weight: ClassWeight::Positive(4.0),
            ..small()
        },
    )
    .0;
    let (_, xt, _) = synthetic(2000, 5);
    let mean = |m: &Model| m.predict_rows(&xt).iter().sum::<f64>() / 2000.0;
    assert!(
        mean(&weighted) > mean(&base) + 0.1,
        "{} vs {}",
        mean(&weighted),
        mean(&base)
    );
}

#[test]
fn regression_fits_a_nonlinear_function() {
    let (specs, x, _) = synthetic(4000, 6);
    let y: Vec<f64> = x
        .chunks_exact(4)
        .map(|r| (r[2] * 1.5).sin() * 3.0 + r[3])
        .collect();
    let (ens, _) = gbdt::train(
        &specs,
        &x,
        &y,
        Objective::Regression,
        &small(),
        None,
        &mut |_, _| true,
    )
    .unwrap();
    let pred: Vec<f64> = x.chunks_exact(4).map(|r| ens.predict_margin(r)).collect();
    let r2 = keel_ml::metrics::r2(&y, &pred, None);
    assert!(r2 > 0.97, "R² {r2}");
}

#[test]
fn invalid_parameters_are_refused() {
    let (specs, x, y) = synthetic(100, 7);
    for p in [
        GbdtParams {
            n_trees: 0,
            ..Default::default()
        },
        GbdtParams {
            learning_rate: -1.0,
            ..Default::default()
        },
        GbdtParams {
            num_leaves: 1,
            ..Default::default()
        },
        GbdtParams {
            bagging_fraction: 0.0,
            ..Default::default()
        },
    ] {
        let e = gbdt::train(&specs, &x, &y, Objective::Binary, &p, None, &mut |_, _| {
            true
        })
        .unwrap_err();
        assert!(matches!(e, keel_ml::Error::InvalidParams(_)), "{e}");
    }
}

#[test]
fn trees_are_bit_identical_whatever_the_thread_count() {
    // 280,000 rows × 4 features: enough that the root's histogram blocks (≥ 4 × 16,384 rows) and its split
    // search (≥ 2^20 row-features) run on the threads.
    let (specs, x, y) = synthetic(280_000, 5);
    let fit = |threads: usize| {
        let p = GbdtParams {
            n_trees: 8,
            learning_rate: 0.1,
            bagging_fraction: 0.8,
            feature_fraction: 0.75,
            num_threads: threads,
            seed: 3,
            ..Default::default()
        };
        gbdt::train(&specs, &x, &y, Objective::Binary, &p, None, &mut |_, _| {
            true
        })
        .unwrap()
        .0
    };
    let one = fit(1);
    assert_eq!(fit(2), one);
    assert_eq!(fit(3), one);
    assert_eq!(fit(0), one, "every core");
}
