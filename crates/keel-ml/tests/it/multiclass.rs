//! Multiclass models: softmax trees, the multinomial baseline, their evaluation and the gate, on a synthetic
//! three-class problem whose Bayes rule is known.

use keel_core::{ColumnData, Frame};
use keel_ml::eval::{EvalOptions, score};
use keel_ml::gate::{GateOptions, compare};
use keel_ml::gbdt::{self, GbdtParams};
use keel_ml::model::{Link, Numerics};
use keel_ml::{FeatureKind, FeatureSpec, Model, ModelKind, Objective};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Three classes from a softmax of class scores that depend on a numeric feature non-linearly, a 6-level
/// categorical feature and a numeric feature with 10 % missing values.
fn three_classes(n: usize, seed: u64) -> (Vec<FeatureSpec>, Vec<f64>, Vec<f64>) {
    let (specs, x, y, _) = three_classes_with_truth(n, seed);
    (specs, x, y)
}

/// The same, with each row's true class probabilities (row-major).
fn three_classes_with_truth(
    n: usize,
    seed: u64,
) -> (Vec<FeatureSpec>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let specs = vec![
        FeatureSpec {
            name: "x".into(),
            kind: FeatureKind::Numeric,
        },
        FeatureSpec {
            name: "c".into(),
            kind: FeatureKind::Categorical {
                levels: (0..6).map(|i| format!("L{i}")).collect(),
            },
        },
        FeatureSpec {
            name: "m".into(),
            kind: FeatureKind::Numeric,
        },
    ];
    let (mut x, mut y, mut truth) = (
        Vec::with_capacity(n * 3),
        Vec::with_capacity(n),
        Vec::with_capacity(n * 3),
    );
    for _ in 0..n {
        let a: f64 = rng.random_range(-3.0..3.0);
        let c = rng.random_range(0..6u32);
        let missing = rng.random_bool(0.1);
        let m: f64 = rng.random_range(-1.0..1.0);
        let mut s = [
            1.5 * a,
            2.0 * (a * 1.3).sin() + if c < 2 { 1.5 } else { 0.0 },
            -1.5 * a + if c >= 4 { 1.0 } else { 0.0 },
        ];
        s[2] += if missing { 1.5 } else { m };
        keel_ml::softmax(&mut s);
        truth.extend_from_slice(&s);
        let u: f64 = rng.random();
        let class = if u < s[0] {
            0
        } else if u < s[0] + s[1] {
            1
        } else {
            2
        };
        y.push(class as f64);
        x.extend_from_slice(&[a, c as f64, if missing { f64::NAN } else { m }]);
    }
    (specs, x, y, truth)
}

fn model(specs: &[FeatureSpec], kind: ModelKind) -> Model {
    Model {
        objective: Objective::Multiclass,
        target: "y".into(),
        class_labels: Some(vec!["a".into(), "b".into(), "c".into()]),
        features: specs.to_vec(),
        kind,
        link: Link::Softmax,
        numerics: Numerics::F64,
    }
}

fn params() -> GbdtParams {
    GbdtParams {
        n_trees: 80,
        learning_rate: 0.1,
        ..Default::default()
    }
}

fn trees(specs: &[FeatureSpec], x: &[f64], y: &[f64], p: &GbdtParams) -> Model {
    let (v, _) = gbdt::train_multiclass(specs, x, y, 3, p, None, &mut |_, _| true).unwrap();
    model(specs, ModelKind::GbdtMulticlass(v))
}

fn frame(n: usize) -> Frame {
    Frame {
        names: vec!["row".into()],
        columns: vec![ColumnData::Numeric((0..n).map(|i| i as f64).collect())],
    }
}

#[test]
fn softmax_trees_learn_three_classes_and_beat_the_prior() {
    let (specs, x, y) = three_classes(6000, 1);
    let (_, xt, yt, truth) = three_classes_with_truth(4000, 2);
    let m = trees(&specs, &x, &y, &params());
    assert_eq!(m.n_outputs(), 3);
    assert_eq!(m.n_trees(), 240, "one tree per class per round");
    let p = m.predict_outputs_rows(&xt);
    for row in p.chunks_exact(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
    }
    let loss = keel_ml::metrics::multiclass_log_loss(&yt, &p, 3, None);
    // The prior's log loss (class frequencies) is the entropy of the labels, about 1.09 here.
    let mut freq = [0.0; 3];
    yt.iter()
        .for_each(|c| freq[*c as usize] += 1.0 / yt.len() as f64);
    let prior: f64 = -freq.iter().map(|f| f * f.ln()).sum::<f64>();
    assert!(loss < prior - 0.35, "log loss {loss} vs prior {prior}");
    // The predicted class is the most probable one.
    for (r, row) in xt.chunks_exact(3).take(200).enumerate() {
        assert_eq!(m.predict(row), keel_ml::argmax(&p[r * 3..r * 3 + 3]) as f64);
    }
    // The multinomial baseline learns too, and cannot follow the sine as well as the trees.
    let linear = keel_ml::linear::train_multiclass(&specs, &x, &y, 3, &Default::default()).unwrap();
    let lm = model(&specs, ModelKind::LinearMulticlass(linear));
    let pl = lm.predict_outputs_rows(&xt);
    let linear_loss = keel_ml::metrics::multiclass_log_loss(&yt, &pl, 3, None);
    assert!(linear_loss < prior - 0.2, "linear {linear_loss}");
    // Both come close to the Bayes rule's own log loss (the true probabilities).
    let bayes = keel_ml::metrics::multiclass_log_loss(&yt, &truth, 3, None);
    // (Measured: Bayes 0.450, trees 0.486, linear 0.458, prior 1.047.)
    assert!(loss < bayes + 0.06, "trees {loss} vs Bayes {bayes}");
    assert!(
        linear_loss < bayes + 0.06,
        "linear {linear_loss} vs Bayes {bayes}"
    );
}

#[test]
fn softmax_training_is_deterministic_saves_bit_exactly_and_shap_adds_up_per_class() {
    let (specs, x, y) = three_classes(3000, 3);
    let p = GbdtParams {
        bagging_fraction: 0.8,
        feature_fraction: 0.67,
        seed: 9,
        ..params()
    };
    let a = trees(&specs, &x, &y, &p);
    let b = trees(&specs, &x, &y, &p);
    assert_eq!(a, b);
    let back = Model::from_bytes(&a.to_bytes().unwrap()).unwrap();
    assert_eq!(back, a);
    let ModelKind::GbdtMulticlass(ens) = &a.kind else {
        unreachable!()
    };
    let mut margins = [0.0; 3];
    for row in x.chunks_exact(3).take(300) {
        let (mut pa, mut pb) = ([0.0; 3], [0.0; 3]);
        a.predict_outputs(row, &mut pa);
        back.predict_outputs(row, &mut pb);
        assert_eq!(pa.map(f64::to_bits), pb.map(f64::to_bits));
        a.predict_margins(row, &mut margins);
        for (c, e) in ens.iter().enumerate() {
            let (phi, expected) = e.shap(row, 3);
            let sum = expected + phi.iter().sum::<f64>();
            assert!(
                (sum - margins[c]).abs() < 1e-9,
                "class {c}: {sum} vs {}",
                margins[c]
            );
        }
    }
}

#[test]
fn early_stopping_on_multiclass_log_loss_keeps_the_best_round_for_every_class() {
    let (specs, x, y) = three_classes(3000, 4);
    let (vx_specs, vx, vy) = three_classes(1000, 5);
    assert_eq!(vx_specs, specs);
    let p = GbdtParams {
        n_trees: 400,
        learning_rate: 0.3,
        early_stopping_rounds: 10,
        ..params()
    };
    let (v, log) =
        gbdt::train_multiclass(&specs, &x, &y, 3, &p, Some((&vx, &vy)), &mut |_, _| true).unwrap();
    assert!(
        log.best_iteration < log.trees_trained && log.trees_trained < 400,
        "{log:?}"
    );
    assert!(v.iter().all(|e| e.trees.len() == log.best_iteration));
    let best = log.validation_loss[log.best_iteration - 1];
    assert!(log.validation_loss.iter().all(|l| *l >= best - 1e-12));
}

#[test]
fn bad_multiclass_inputs_are_refused_by_name() {
    let (specs, x, mut y) = three_classes(200, 6);
    let e = gbdt::train_multiclass(&specs, &x, &y, 2, &params(), None, &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 3 classes"), "{e}");
    y[17] = 3.0;
    let e = gbdt::train_multiclass(&specs, &x, &y, 3, &params(), None, &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 18") && e.contains("class index 3"), "{e}");
    let e = gbdt::train(
        &specs,
        &x,
        &y,
        Objective::Multiclass,
        &params(),
        None,
        &mut |_, _| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("train_multiclass"), "{e}");
    let pw = GbdtParams {
        class_weight: keel_ml::ClassWeight::Positive(3.0),
        ..params()
    };
    y[17] = 0.0;
    let e = gbdt::train_multiclass(&specs, &x, &y, 3, &pw, None, &mut |_, _| true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("balanced"), "{e}");
}

#[test]
fn multiclass_evaluation_counts_the_confusion_matrix_and_intervals_cover_the_point() {
    let (specs, x, y) = three_classes(4000, 7);
    let (_, xt, yt) = three_classes(2000, 8);
    let m = trees(&specs, &x, &y, &params());
    let p = m.predict_outputs_rows(&xt);
    let opts = EvalOptions {
        class_labels: vec!["a".into(), "b".into(), "c".into()],
        slices: vec![],
        ..Default::default()
    };
    let ev = score(Objective::Multiclass, &yt, &p, &frame(yt.len()), &opts).unwrap();
    let total: usize = ev.confusion.iter().flatten().sum();
    assert_eq!(total, 2000);
    let diag: usize = (0..3).map(|c| ev.confusion[c][c]).sum();
    let acc = ev.metrics["accuracy"];
    assert!((acc.value - diag as f64 / 2000.0).abs() < 1e-12);
    for name in [
        "accuracy",
        "log_loss",
        "macro_f1",
        "weighted_f1",
        "top2_accuracy",
        "brier",
    ] {
        let mc = ev.metrics[name];
        assert!(
            mc.lower <= mc.value && mc.value <= mc.upper && mc.lower < mc.upper,
            "{name}: {mc:?}"
        );
    }
    assert!(ev.metrics["top2_accuracy"].value > acc.value);
    assert_eq!(
        ev.classes
            .iter()
            .map(|c| c.label.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    for (c, report) in ev.classes.iter().enumerate() {
        assert_eq!(report.support, ev.confusion[c].iter().sum::<usize>());
        let predicted: usize = (0..3).map(|r| ev.confusion[r][c]).sum();
        assert!(
            (report.precision.value - ev.confusion[c][c] as f64 / predicted as f64).abs() < 1e-12
        );
        assert!(!report.calibration.is_empty());
    }
    // The card renders the confusion matrix and a calibration line per class.
    let html = keel_ml::card::render_html(&card(ev));
    assert!(html.contains("Confusion matrix") && html.contains("true a → predicted b"));
    assert_eq!(
        html.matches("<polyline").count(),
        3,
        "one calibration line per class"
    );
}

fn card(evaluation: keel_ml::eval::Evaluation) -> keel_ml::card::ModelCard {
    keel_ml::card::ModelCard {
        model: "m".into(),
        version: 1,
        created_at: "2026-12-07T00:00:00Z".into(),
        created_by: "test".into(),
        kind: "gbdt".into(),
        objective: Objective::Multiclass,
        target: "y".into(),
        class_labels: Some(vec!["a".into(), "b".into(), "c".into()]),
        intended_use: "test".into(),
        features: vec!["x".into(), "c".into(), "m".into()],
        data: keel_ml::card::DataSummary {
            source: "synthetic".into(),
            rows: 6000,
            train_rows: 4000,
            test_rows: 2000,
            split: "separate".into(),
            dropped: vec![],
            profile: serde_json::json!({}),
        },
        params: serde_json::json!({}),
        train_seconds: 0.1,
        evaluation,
        baseline: None,
        selection: None,
        trees: None,
        lineage: keel_ml::card::Lineage {
            dataset_hash: "0".into(),
            test_dataset_hash: None,
            code_version: "0".into(),
            seed: 0,
            model_sha256: "0".into(),
        },
        limitations: vec![],
        leakage: None,
        imported: None,
    }
}

#[test]
fn the_gate_judges_multiclass_challengers_on_log_loss_with_a_paired_interval() {
    let (specs, x, y) = three_classes(4000, 10);
    let (_, xt, yt) = three_classes(1500, 11);
    let weak = trees(
        &specs,
        &x,
        &y,
        &GbdtParams {
            n_trees: 3,
            ..params()
        },
    );
    let strong = trees(&specs, &x, &y, &params());
    // The gate reads a frame: rebuild one from the encoded rows.
    let holdout = Frame {
        names: vec!["x".into(), "c".into(), "m".into()],
        columns: vec![
            ColumnData::Numeric(xt.chunks_exact(3).map(|r| r[0]).collect()),
            ColumnData::Categorical {
                codes: xt.chunks_exact(3).map(|r| r[1] as u32).collect(),
                levels: (0..6).map(|i| format!("L{i}")).collect(),
            },
            ColumnData::Numeric(xt.chunks_exact(3).map(|r| r[2]).collect()),
        ],
    };
    let opts = GateOptions::default();
    let up = compare(&weak, &strong, &holdout, &yt, &opts).unwrap();
    assert_eq!(up.metric, "log_loss");
    assert!(
        up.passed && up.delta > 0.0 && up.delta_lower > 0.0,
        "{up:?}"
    );
    assert!(up.champion > up.challenger, "log loss shown as is: {up:?}");
    let down = compare(&strong, &weak, &holdout, &yt, &opts).unwrap();
    assert!(!down.passed && down.delta_upper < 0.0, "{down:?}");
    // Two classes against three: refused by name.
    let (bspecs, bx, by) = crate::synthetic(500, 1);
    let (ens, _) = gbdt::train(
        &bspecs,
        &bx,
        &by,
        Objective::Binary,
        &params(),
        None,
        &mut |_, _| true,
    )
    .unwrap();
    let mut binary = model(&specs, ModelKind::Gbdt(ens));
    binary.objective = Objective::Binary;
    let e = compare(&binary, &strong, &holdout, &yt, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("objective"), "{e}");
}

/// A round's class trees grow on the training threads at once; each is the tree one thread grows, with early
/// stopping on a validation set and bagging too.
#[test]
fn class_trees_are_bit_identical_whatever_the_thread_count() {
    let (specs, x, y) = three_classes(6_000, 11);
    let (vspecs, vx, vy) = three_classes(1_000, 12);
    assert_eq!(specs, vspecs);
    let fit = |threads: usize| {
        let p = GbdtParams {
            n_trees: 40,
            learning_rate: 0.1,
            bagging_fraction: 0.8,
            early_stopping_rounds: 5,
            num_threads: threads,
            seed: 4,
            ..Default::default()
        };
        gbdt::train_multiclass(&specs, &x, &y, 3, &p, Some((&vx, &vy)), &mut |_, _| true).unwrap()
    };
    let (one, log) = fit(1);
    assert!(log.validation_loss.len() > 5, "{log:?}");
    for threads in [2, 3] {
        let (many, many_log) = fit(threads);
        assert_eq!(many, one, "{threads} threads");
        assert_eq!(many_log.validation_loss, log.validation_loss);
    }
}
