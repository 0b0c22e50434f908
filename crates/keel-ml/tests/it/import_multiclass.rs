//! Multiclass models trained elsewhere predict bit for bit what their library predicts: every class's raw
//! score and every class's probability, on rows that probe every split (fixtures from
//! `scripts/import-fixtures.sh`: LightGBM 4.7.0 softmax and one-vs-all, XGBoost 3.2.0 softprob in JSON and
//! UBJSON, and ONNX Runtime 1.32.0 scoring skl2onnx's and onnxmltools' three-class tree ensembles).

use keel_ml::import::{self, Format};
use keel_ml::model::Link;
use keel_ml::{ModelKind, Objective};
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// Imports `file` and compares every class's raw score and output with `<name>.multi.bin`; returns the rows.
fn check(file: &str, name: &str, format: Format, link: Link) -> usize {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let imported = import::import(&bytes, None, "y").unwrap();
    assert_eq!(imported.source.format, format, "{file}");
    // Through the model file and back, as the registry stores it.
    let model = keel_ml::Model::from_bytes(&imported.model.to_bytes().unwrap()).unwrap();
    assert_eq!(model, imported.model, "{file}");
    assert_eq!(model.objective, Objective::Multiclass, "{file}");
    assert_eq!(model.link, link, "{file}");
    assert_eq!(
        model.class_labels,
        Some(vec!["0".to_string(), "1".into(), "2".into()]),
        "{file}"
    );
    let ModelKind::GbdtMulticlass(ensembles) = &model.kind else {
        panic!("{file}: {:?}", model.kind)
    };
    assert_eq!(ensembles.len(), 3);
    let b = std::fs::read(fixture(&format!("{name}.multi.bin"))).unwrap();
    let u = |k: usize| u32::from_le_bytes(b[4 * k..4 * k + 4].try_into().unwrap()) as usize;
    let (n, nf, k) = (u(0), u(1), u(2));
    assert_eq!(k, 3);
    assert_eq!(b.len(), 12 + 8 * (n * nf + 2 * n * k), "{name}");
    assert_eq!(model.features.len(), nf, "{file}");
    let f = |i: usize| f64::from_le_bytes(b[12 + 8 * i..20 + 8 * i].try_into().unwrap());
    let (mut margins, mut probs) = ([0.0; 3], [0.0; 3]);
    for i in 0..n {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        model.predict_margins(&x, &mut margins);
        model.predict_outputs(&x, &mut probs);
        for c in 0..3 {
            let raw = f(n * nf + i * 3 + c);
            let out = f(n * nf + n * 3 + i * 3 + c);
            assert_eq!(
                margins[c].to_bits(),
                raw.to_bits(),
                "{file} row {i} class {c} {x:?}: raw {} vs {raw}",
                margins[c]
            );
            assert_eq!(
                probs[c].to_bits(),
                out.to_bits(),
                "{file} row {i} class {c} {x:?}: output {} vs {out}",
                probs[c]
            );
        }
        assert_eq!(model.predict(&x), keel_ml::argmax(&probs) as f64);
    }
    n
}

#[test]
fn lightgbm_softmax_and_one_vs_all_models_are_bit_exact() {
    assert!(
        check(
            "lgb_multiclass.txt",
            "lgb_multiclass",
            Format::Lightgbm,
            Link::Softmax
        ) > 400
    );
    check(
        "lgb_multiclassova.txt",
        "lgb_multiclassova",
        Format::Lightgbm,
        Link::Logistic { scale: 1.0 },
    );
}

#[test]
fn xgboost_softprob_models_with_one_intercept_per_class_are_bit_exact() {
    check(
        "xgb_multiclass.json",
        "xgb_multiclass",
        Format::XgboostJson,
        Link::Softmax,
    );
    check(
        "xgb_multiclass.ubj",
        "xgb_multiclass",
        Format::XgboostUbj,
        Link::Softmax,
    );
}

#[test]
fn onnx_three_class_tree_ensembles_are_bit_exact() {
    check(
        "skl_gbc_multiclass.onnx",
        "skl_gbc_multiclass",
        Format::Onnx,
        Link::Softmax,
    );
    // A random forest: every leaf weighs every class, probabilities summed without a transform.
    check(
        "skl_rf_multiclass.onnx",
        "skl_rf_multiclass",
        Format::Onnx,
        Link::Identity,
    );
    check(
        "onnx_lgb_multiclass.onnx",
        "onnx_lgb_multiclass",
        Format::Onnx,
        Link::Softmax,
    );
    check(
        "onnx_xgb_multiclass.onnx",
        "onnx_xgb_multiclass",
        Format::Onnx,
        Link::Softmax,
    );
}

#[test]
fn inconsistent_multiclass_files_are_refused_by_name() {
    let text = std::fs::read_to_string(fixture("lgb_multiclass.txt")).unwrap();
    let e = import::import(
        text.replace("num_class=3", "num_class=1").as_bytes(),
        None,
        "y",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("objective 'multiclass' with num_class=1"), "{e}");
    let e = import::import(
        text.replace("num_class=3", "num_class=4").as_bytes(),
        None,
        "y",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not a whole number of rounds of 4 classes"),
        "{e}"
    );
    let json = std::fs::read_to_string(fixture("xgb_multiclass.json")).unwrap();
    let info_at = json.find("\"tree_info\":[").unwrap() + "\"tree_info\":[".len();
    let bad = format!("{}7{}", &json[..info_at], &json[info_at + 1..]);
    let e = import::import(bad.as_bytes(), None, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tree_info[0] = 7 is not a class of 3"), "{e}");
}
