//! Imported neural networks run in ONNX Runtime (`--features onnx-runtime`, the library from
//! `scripts/fetch-assets.sh onnxruntime`): scikit-learn MLPs exported by skl2onnx predict bit for bit what
//! ONNX Runtime 1.32.0 predicts in Python one row at a time, after the model file round-trips.
#![cfg(feature = "onnx-runtime")]

use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keel-ml/tests/fixtures/import")
        .join(name)
}

fn check(name: &str, objective: keel_ml::Objective) {
    keel_engine::onnxrt::install();
    let bytes = std::fs::read(fixture(&format!("{name}.onnx"))).unwrap();
    let imported = keel_ml::import::import(&bytes, None, "y").unwrap();
    assert_eq!(imported.model.objective, objective);
    assert_eq!(imported.model.kind_name(), "neural");
    let model = keel_ml::Model::from_bytes(&imported.model.to_bytes().unwrap()).unwrap();
    assert_eq!(model, imported.model);
    let b = std::fs::read(fixture(&format!("{name}.rows.bin"))).unwrap();
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nf = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    assert_eq!(model.features.len(), nf);
    let f = |k: usize| f64::from_le_bytes(b[8 + 8 * k..16 + 8 * k].try_into().unwrap());
    for i in 0..n {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        let want = f(n * nf + n + i);
        let got = model.predict(&x);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{name} row {i} {x:?}: {got} vs {want}"
        );
    }
    assert!(n >= 900);
}

#[test]
fn an_mlp_classifier_runs_in_onnx_runtime_bit_for_bit() {
    check("mlp_binary", keel_ml::Objective::Binary);
}

#[test]
fn an_mlp_regressor_runs_in_onnx_runtime_bit_for_bit() {
    check("mlp_regression", keel_ml::Objective::Regression);
}

#[test]
fn a_network_whose_graph_the_runtime_refuses_is_named() {
    keel_engine::onnxrt::install();
    let mut bytes = std::fs::read(fixture("mlp_regression.onnx")).unwrap();
    // Rename an operator inside the file to one no opset defines (same length, so the protobuf stays valid).
    let at: Vec<usize> = (0..bytes.len() - 4)
        .filter(|&i| &bytes[i..i + 4] == b"Relu")
        .collect();
    assert!(!at.is_empty());
    for i in at {
        bytes[i..i + 4].copy_from_slice(b"Relx");
    }
    let e = keel_ml::import::import(&bytes, None, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ONNX Runtime refused"), "{e}");
}
