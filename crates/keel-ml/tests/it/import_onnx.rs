//! ONNX-ML tree ensembles predict bit for bit what ONNX Runtime 1.32.0 predicts (one thread), on rows that
//! probe every split: thresholds, their f32 neighbours and the f64 values on either side of each f32 rounding
//! boundary, NaN, ±inf, ±0, subnormals and values past the f32 range (fixtures from
//! `scripts/import-fixtures.sh`: skl2onnx 1.20.0, onnxmltools 1.16.0 and hand-built graphs).

use keel_ml::Objective;
use keel_ml::import::onnx_proto as pb;
use keel_ml::import::{self, Format};
use prost::Message;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// Checks the raw score (compiled scorer and tree by tree) and the output against ONNX Runtime on every row.
fn check(name: &str, objective: Objective, labels: Option<[&str; 2]>) -> usize {
    let bytes = std::fs::read(fixture(&format!("{name}.onnx"))).unwrap();
    let imported = import::import(&bytes, None, "y").unwrap();
    assert_eq!(imported.source.format, Format::Onnx, "{name}");
    assert_eq!(imported.source.library, "ONNX");
    let model = keel_ml::Model::from_bytes(&imported.model.to_bytes().unwrap()).unwrap();
    assert_eq!(model, imported.model, "{name}: the model file round-trips");
    assert_eq!(model.objective, objective, "{name}");
    assert_eq!(
        model
            .class_labels
            .as_ref()
            .map(|l| [l[0].as_str(), l[1].as_str()]),
        labels,
        "{name}"
    );
    let trees = match &model.kind {
        keel_ml::ModelKind::Gbdt(e) => Some(e),
        keel_ml::ModelKind::ImportedLinear(_) => None,
        other => panic!("{name}: {other:?}"),
    };
    let b = std::fs::read(fixture(&format!("{name}.rows.bin"))).unwrap();
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nf = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    assert_eq!(b.len(), 8 + 8 * (n * nf + 2 * n));
    assert_eq!(model.features.len(), nf);
    let f = |k: usize| f64::from_le_bytes(b[8 + 8 * k..16 + 8 * k].try_into().unwrap());
    for i in 0..n {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        let (raw, out) = (f(n * nf + i), f(n * nf + n + i));
        if let Some(e) = trees {
            let mut by_tree = 0f32;
            for t in &e.trees {
                by_tree += t.predict(&x) as f32;
            }
            let by_tree = by_tree + e.init_score as f32;
            assert_eq!(
                f64::from(by_tree).to_bits(),
                raw.to_bits(),
                "{name} row {i} {x:?}: tree walk {by_tree} vs {raw}"
            );
        }
        let m = model.predict_margin(&x);
        assert_eq!(
            m.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: scorer {m} vs {raw}"
        );
        let p = model.predict(&x);
        assert_eq!(
            p.to_bits(),
            out.to_bits(),
            "{name} row {i} {x:?}: output {p} vs {out}"
        );
    }
    n
}

#[test]
fn scikit_learn_gradient_boosting_classifier_is_bit_exact() {
    assert!(check("skl_gbc", Objective::Binary, Some(["0", "1"])) > 2000);
}

#[test]
fn a_standard_scaler_folds_into_the_thresholds_bit_for_bit() {
    check("skl_scaler_gbr", Objective::Regression, None);
}

#[test]
fn random_forest_with_missing_values_and_zipmap_is_bit_exact() {
    check("skl_rf_nan", Objective::Binary, Some(["0", "1"]));
}

#[test]
fn lightgbm_and_xgboost_through_onnxmltools_are_bit_exact() {
    check("onnx_lgb_binary", Objective::Binary, Some(["0", "1"]));
    check("onnx_xgb_binary", Objective::Binary, Some(["0", "1"]));
    check("onnx_xgb_regression", Objective::Regression, None);
}

#[test]
fn a_poisson_model_with_exp_after_the_trees_is_bit_exact() {
    check("onnx_lgb_poisson", Objective::Regression, None);
}

/// Linear models match ONNX Runtime's batched arithmetic: a chain of f32 fused multiply-adds, the intercept
/// last, a Scaler computed in f32 in front, and MLAS's logistic approximation on the two-row classifier.
#[test]
fn scikit_learn_linear_models_match_onnx_runtime_batched_arithmetic_bit_for_bit() {
    check("skl_scaler_linreg", Objective::Regression, None);
    check("skl_logreg", Objective::Binary, Some(["0", "1"]));
}

#[test]
fn every_node_mode_and_missing_setting_is_bit_exact() {
    check("onnx_modes", Objective::Regression, None);
}

#[test]
fn a_negative_scaler_before_a_string_labelled_classifier_is_bit_exact() {
    check("onnx_scaler_cls", Objective::Binary, Some(["no", "yes"]));
}

#[test]
fn opset_5_tree_ensemble_with_membership_sets_is_bit_exact() {
    check("onnx_v5_member", Objective::Regression, None);
}

fn decode(name: &str) -> pb::ModelProto {
    pb::ModelProto::decode(
        std::fs::read(fixture(&format!("{name}.onnx")))
            .unwrap()
            .as_slice(),
    )
    .unwrap()
}

fn refused(m: &pb::ModelProto) -> String {
    match import::import(&m.encode_to_vec(), Some(Format::Onnx), "y") {
        Ok(_) => panic!("imported a hostile file"),
        Err(e) => e.to_string(),
    }
}

fn ints_mut<'a>(m: &'a mut pb::ModelProto, attr: &str) -> &'a mut Vec<i64> {
    let g = m.graph.as_mut().unwrap();
    let n = g
        .node
        .iter_mut()
        .find(|n| n.op_type.starts_with("TreeEnsemble"))
        .unwrap();
    &mut n
        .attribute
        .iter_mut()
        .find(|a| a.name == attr)
        .unwrap()
        .ints
}

#[test]
fn hostile_onnx_files_are_refused_with_the_place_named() {
    let bytes = std::fs::read(fixture("skl_gbc.onnx")).unwrap();
    // Truncated anywhere: refused, never a panic.
    for cut in [1, 7, 100, bytes.len() / 2, bytes.len() - 3] {
        assert!(
            import::import(&bytes[..cut], Some(Format::Onnx), "y").is_err(),
            "cut {cut}"
        );
    }
    // An operator Keel does not read is named.
    let mut m = decode("skl_gbc");
    m.graph.as_mut().unwrap().node[0].op_type = "SVMClassifier".into();
    let e = refused(&m);
    assert!(
        e.contains("SVMClassifier") && e.contains("not supported"),
        "{e}"
    );
    // A child pointing back at the root (a cycle).
    let mut m = decode("skl_gbc");
    ints_mut(&mut m, "nodes_truenodeids")[1] = 0;
    let e = refused(&m);
    assert!(
        e.contains("tree 0") && e.contains("not reachable from its root"),
        "{e}"
    );
    // A child outside the tree.
    let mut m = decode("skl_gbc");
    ints_mut(&mut m, "nodes_falsenodeids")[0] = 1_000_000;
    let e = refused(&m);
    assert!(
        e.contains("1000000") && e.contains("not in the tree"),
        "{e}"
    );
    // A feature index past the input's columns.
    let mut m = decode("skl_gbc");
    ints_mut(&mut m, "nodes_featureids")[0] = 9;
    let e = refused(&m);
    assert!(e.contains("feature 9"), "{e}");
    // Attribute lists of different lengths.
    let mut m = decode("skl_gbc");
    ints_mut(&mut m, "nodes_treeids").pop();
    let e = refused(&m);
    assert!(e.contains("nodes_treeids has"), "{e}");
    // A NaN threshold.
    let mut m = decode("skl_gbc");
    {
        let g = m.graph.as_mut().unwrap();
        let n = g
            .node
            .iter_mut()
            .find(|n| n.op_type.starts_with("TreeEnsemble"))
            .unwrap();
        n.attribute
            .iter_mut()
            .find(|a| a.name == "nodes_values")
            .unwrap()
            .floats[0] = f32::NAN;
    }
    let e = refused(&m);
    assert!(e.contains("NaN threshold"), "{e}");
    // Three classes: named, and left for multiclass models.
    let mut m = decode("skl_gbc");
    ints_mut(&mut m, "classlabels_int64s").push(2);
    let e = refused(&m);
    assert!(e.contains("3 classes"), "{e}");
    // A linear model whose coefficients do not fit its input, and one with a NaN coefficient.
    let mut m = decode("skl_logreg");
    {
        let g = m.graph.as_mut().unwrap();
        let n = g
            .node
            .iter_mut()
            .find(|n| n.op_type == "LinearClassifier")
            .unwrap();
        n.attribute
            .iter_mut()
            .find(|a| a.name == "coefficients")
            .unwrap()
            .floats
            .pop();
    }
    let e = refused(&m);
    assert!(e.contains("39 coefficients for 20 features"), "{e}");
    let mut m = decode("skl_scaler_linreg");
    {
        let g = m.graph.as_mut().unwrap();
        let n = g
            .node
            .iter_mut()
            .find(|n| n.op_type == "LinearRegressor")
            .unwrap();
        n.attribute
            .iter_mut()
            .find(|a| a.name == "coefficients")
            .unwrap()
            .floats[3] = f32::NAN;
    }
    let e = refused(&m);
    assert!(e.contains("not finite"), "{e}");
    // A Mul by something other than one after the trees: its output is not the trees' any more.
    let mut m = decode("onnx_lgb_binary");
    {
        let g = m.graph.as_mut().unwrap();
        let mul = g.node.iter().find(|n| n.op_type == "Mul").unwrap().clone();
        let t = g
            .initializer
            .iter_mut()
            .find(|t| mul.input.contains(&t.name))
            .unwrap();
        t.raw_data.clear();
        t.float_data = vec![2.0];
    }
    let e = refused(&m);
    assert!(e.contains("only through Mul"), "{e}");
    // Not ONNX at all.
    let e = import::import(b"\x08\x07garbage", Some(Format::Onnx), "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("onnx"), "{e}");
}

#[test]
fn the_format_is_detected_from_the_first_bytes() {
    let bytes = std::fs::read(fixture("skl_gbc.onnx")).unwrap();
    assert_eq!(Format::detect(&bytes), Some(Format::Onnx));
    assert_eq!(Format::parse("onnx").unwrap(), Some(Format::Onnx));
}

/// A neural network (an MLP: MatMul, Add, Relu, Sigmoid) is recognised, and a Keel built without ONNX Runtime
/// refuses it saying how to get one (the `onnx-runtime` build runs it: keel-engine's `onnxrt` tests).
#[test]
fn a_neural_network_without_the_runtime_is_refused_with_the_way_to_run_it() {
    let bytes = std::fs::read(fixture("mlp_binary.onnx")).unwrap();
    let e = import::import(&bytes, None, "y").unwrap_err().to_string();
    assert!(
        e.contains("neural network")
            && e.contains("MatMul")
            && e.contains("--features onnx-runtime"),
        "{e}"
    );
}
