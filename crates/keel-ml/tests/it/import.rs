//! Imported models predict bit for bit what their source library predicts, on rows that probe every split:
//! thresholds and their f32/f64 neighbours, NaN, ±inf, ±0, tiny and huge values, negative, fractional,
//! unlisted and huge category codes (fixtures from `scripts/import-fixtures.sh`, LightGBM 4.7.0).

use keel_ml::Objective;
use keel_ml::gbdt::Ensemble;
use keel_ml::import::{self, lightgbm};
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

fn f64_of(hex: &serde_json::Value) -> f64 {
    f64::from_bits(u64::from_str_radix(hex.as_str().unwrap(), 16).unwrap())
}

/// Checks raw scores (both Keel scorers) and the transformed output against the library, bit for bit.
fn check_lightgbm(name: &str, objective: Objective, categorical: &[usize]) {
    let text = std::fs::read_to_string(fixture(&format!("{name}.txt"))).unwrap();
    let m = lightgbm::parse(&text).unwrap();
    assert_eq!(m.objective, objective);
    for (j, c) in m.categorical.iter().enumerate() {
        assert_eq!(*c, categorical.contains(&j), "{name}: feature {j}");
    }
    let e = Ensemble::new(objective, 0.0, m.trees.clone());
    let imported = import::import(text.as_bytes(), None, "y").unwrap();
    assert_eq!(imported.source.format, import::Format::Lightgbm);
    assert_eq!(imported.source.trees, m.trees.len());
    // A model file round-trips through Keel's own format (version 2) bit for bit.
    let model = keel_ml::Model::from_bytes(&imported.model.to_bytes().unwrap()).unwrap();
    assert_eq!(model, imported.model);
    assert!(
        e.forest().layout().starts_with("bitvector"),
        "{name}: {}",
        e.forest().layout()
    );
    let rows = std::fs::read_to_string(fixture(&format!("{name}.rows.jsonl"))).unwrap();
    let mut n = 0;
    for (i, line) in rows.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let x: Vec<f64> = v["x"].as_array().unwrap().iter().map(f64_of).collect();
        let raw = f64_of(&v["raw"]);
        let by_tree = e.predict_margin_by_tree(&x);
        let fast = e.predict_margin(&x);
        assert_eq!(
            by_tree.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: {by_tree} vs {raw}"
        );
        assert_eq!(
            fast.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: scorer {fast} vs {raw}"
        );
        let arena = e.forest().predict_arena(&x, 0.0);
        assert_eq!(
            arena.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: arena {arena} vs {raw}"
        );
        // The registered form: the whole model, link included.
        assert_eq!(
            model.predict_margin(&x).to_bits(),
            raw.to_bits(),
            "{name} row {i}: model margin"
        );
        let out = model.predict(&x);
        assert_eq!(
            out.to_bits(),
            f64_of(&v["out"]).to_bits(),
            "{name} row {i}: output {out} vs {}",
            f64_of(&v["out"])
        );
        n += 1;
    }
    assert!(n > 900, "{name}: {n} rows");
}

#[test]
fn lightgbm_binary_with_nan_missing_type_is_bit_exact() {
    check_lightgbm("lgb_binary_nan", Objective::Binary, &[]);
}

#[test]
fn lightgbm_regression_with_no_missing_type_reads_nan_as_zero() {
    check_lightgbm("lgb_regression_none", Objective::Regression, &[]);
}

#[test]
fn lightgbm_zero_as_missing_sends_values_near_zero_the_default_way() {
    let text = std::fs::read_to_string(fixture("lgb_regression_zero.txt")).unwrap();
    assert!(
        lightgbm::parse(&text)
            .unwrap()
            .trees
            .iter()
            .flat_map(|t| &t.nodes)
            .any(|n| n.flags & keel_ml::tree::FLAG_ZERO_MISSING != 0),
        "the fixture has zero-missing splits"
    );
    check_lightgbm("lgb_regression_zero", Objective::Regression, &[]);
}

#[test]
fn lightgbm_categorical_bitsets_send_listed_codes_left_and_the_rest_right() {
    check_lightgbm("lgb_binary_categorical", Objective::Binary, &[2]);
}

#[test]
fn hostile_lightgbm_files_are_refused_with_the_place_named() {
    let good = std::fs::read_to_string(fixture("lgb_regression_none.txt")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("not a model".into(), "must start with 'tree'"),
        (
            good.replacen("version=v4", "version=v9", 1),
            "v9 is not supported",
        ),
        (
            good.replacen("objective=regression", "objective=lambdarank", 1),
            "lambdarank",
        ),
        (
            good.replacen("left_child=", "left_child=0 ", 1),
            "left_child",
        ),
        (
            good.replacen("\nthreshold=", "\nthreshold=nan ", 1),
            "Tree=0",
        ),
        (
            good.replacen("is_linear=0", "is_linear=1", 1),
            "linear trees",
        ),
        (
            good.replacen("num_leaves=", "num_leaves=99999999", 1),
            "leaves",
        ),
        (
            good.replacen("split_feature=", "split_feature=77 ", 1),
            "Tree=0",
        ),
    ];
    let mut cases = cases;
    // Cut short: mid-tree, and exactly at a tree boundary (every remaining tree whole).
    cases.push((good[..good.len() / 2].to_string(), "lightgbm"));
    let boundary = good.find("\nTree=3\n").unwrap();
    cases.push((good[..boundary].to_string(), "truncated"));
    let fewer = format!("{}\nend of trees\n", &good[..boundary]);
    cases.push((fewer, "declares 40 trees"));
    for (text, want) in cases {
        let e = lightgbm::parse(&text).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("lightgbm"),
            "want '{want}': {e}"
        );
    }
    // The root's left child pointing back at the root: refused, never walked.
    let at = good.find("\nleft_child=").unwrap() + "\nleft_child=".len();
    let end = at + good[at..].find(' ').unwrap();
    let cyclic = format!("{}0{}", &good[..at], &good[end..]);
    let e = lightgbm::parse(&cyclic).unwrap_err().to_string();
    assert!(e.contains("child 0 out of range or reused"), "{e}");
}

#[test]
fn a_version_1_model_file_still_loads_and_predicts_as_before() {
    // Written by the build before format version 2: five trees of lgb_binary_categorical, init 0.25.
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_v1.keel"))
            .unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
    let m = keel_ml::Model::from_bytes(&bytes).unwrap();
    assert_eq!(m.link, keel_ml::model::Link::Logistic { scale: 1.0 });
    assert_eq!(m.numerics, keel_ml::model::Numerics::F64);
    let text = std::fs::read_to_string(fixture("lgb_binary_categorical.txt")).unwrap();
    let trees: Vec<_> = lightgbm::parse(&text)
        .unwrap()
        .trees
        .into_iter()
        .take(5)
        .collect();
    for x in [[0.0, 0.0, 1.0], [1.5, -2.0, 3.0], [f64::NAN, 0.3, f64::NAN]] {
        let margin = trees.iter().fold(0.25, |s, t| s + t.predict(&x));
        assert_eq!(m.predict(&x).to_bits(), keel_ml::sigmoid(margin).to_bits());
    }
    // Written again, it is version 4 (the current one) and reads back equal.
    let again = m.to_bytes().unwrap();
    assert_eq!(u32::from_le_bytes(again[8..12].try_into().unwrap()), 4);
    assert_eq!(keel_ml::model::FORMAT_VERSION, 4);
    assert_eq!(keel_ml::Model::from_bytes(&again).unwrap(), m);
    // A version from the future is refused by name.
    let mut future = again.clone();
    future[8..12].copy_from_slice(&5u32.to_le_bytes());
    let e = keel_ml::Model::from_bytes(&future).unwrap_err().to_string();
    assert!(e.contains("version 5"), "{e}");
}

#[test]
fn a_version_2_model_file_with_two_class_labels_still_loads() {
    // Version 2's payload: the model with exactly two class labels, field for field as that build wrote it.
    #[derive(serde::Serialize)]
    struct V2<'a> {
        objective: keel_ml::Objective,
        target: &'a str,
        class_labels: Option<[String; 2]>,
        features: &'a [keel_ml::FeatureSpec],
        kind: &'a keel_ml::ModelKind,
        link: keel_ml::model::Link,
        numerics: keel_ml::model::Numerics,
    }
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model_v1.keel"))
            .unwrap();
    let m = keel_ml::Model::from_bytes(&bytes).unwrap();
    let payload = postcard::to_stdvec(&V2 {
        objective: m.objective,
        target: &m.target,
        class_labels: Some(["no".into(), "yes".into()]),
        features: &m.features,
        kind: &m.kind,
        link: m.link,
        numerics: m.numerics,
    })
    .unwrap();
    let mut v2 = b"KEELMDL\0".to_vec();
    v2.extend_from_slice(&2u32.to_le_bytes());
    v2.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v2.extend_from_slice(&payload);
    v2.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&payload));
    let read = keel_ml::Model::from_bytes(&v2).unwrap();
    assert_eq!(
        read.class_labels,
        Some(vec!["no".to_string(), "yes".to_string()])
    );
    assert_eq!(read.kind, m.kind);
    let x = [1.5, -2.0, 3.0];
    assert_eq!(read.predict(&x).to_bits(), m.predict(&x).to_bits());
}

#[test]
fn lightgbm_objectives_links_and_pandas_categories_are_read() {
    let good = std::fs::read_to_string(fixture("lgb_regression_none.txt")).unwrap();
    let poisson = good.replacen("objective=regression", "objective=poisson", 1);
    let m = import::import(poisson.as_bytes(), None, "count")
        .unwrap()
        .model;
    assert_eq!(m.link, keel_ml::model::Link::Exp);
    let x = [0.1, -0.2, 0.3];
    assert_eq!(
        m.predict(&x).to_bits(),
        m.predict_margin(&x).exp().to_bits()
    );
    let scaled = std::fs::read_to_string(fixture("lgb_binary_nan.txt"))
        .unwrap()
        .replacen("sigmoid:1", "sigmoid:0.5", 1);
    let m = import::import(scaled.as_bytes(), None, "y").unwrap().model;
    let x = [0.1, -0.2, 0.3, 0.4];
    let want = 1.0 / (1.0 + (-(0.5 * m.predict_margin(&x))).exp());
    assert_eq!(m.predict(&x).to_bits(), want.to_bits());
    let multi = good.replacen(
        "objective=regression",
        "objective=multiclass num_class:3",
        1,
    );
    let e = import::import(multi.as_bytes(), None, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiclass"), "{e}");

    // pandas categories name the codes of the categorical feature.
    let cat = std::fs::read_to_string(fixture("lgb_binary_categorical.txt")).unwrap();
    let with_pandas = cat.replacen(
        "pandas_categorical:null",
        r#"pandas_categorical:[["a", "b", "c", "d", "e", "f"]]"#,
        1,
    );
    let m = import::import(with_pandas.as_bytes(), None, "y")
        .unwrap()
        .model;
    assert_eq!(
        m.features[2].kind,
        keel_ml::FeatureKind::Categorical {
            levels: ["a", "b", "c", "d", "e", "f"].map(String::from).to_vec()
        }
    );
    assert_eq!(m.features[0].kind, keel_ml::FeatureKind::Numeric);
    let wrong = cat.replacen(
        "pandas_categorical:null",
        r#"pandas_categorical:[["a"], ["b"]]"#,
        1,
    );
    let e = import::import(wrong.as_bytes(), None, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 category lists but 1 features"), "{e}");
    let e = import::import(b"\x00\x01garbage", None, "y")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a model format Keel recognises"), "{e}");
}

#[test]
fn lightgbm_poisson_outputs_the_exp_of_the_margin_bit_for_bit() {
    check_lightgbm("lgb_poisson", Objective::Regression, &[]);
}

/// The real employment data: 15 pandas categories named by their labels, read from a CSV as a user's rows
/// are, predict what LightGBM predicted on the same rows, bit for bit.
#[test]
fn lightgbm_with_pandas_categories_predicts_real_rows_by_label_bit_for_bit() {
    let text = std::fs::read(fixture("lgb_employment.txt")).unwrap();
    let m = import::import(&text, None, "employed").unwrap().model;
    let cats = m
        .features
        .iter()
        .filter(|f| matches!(f.kind, keel_ml::FeatureKind::Categorical { .. }))
        .count();
    assert_eq!((m.features.len(), cats), (16, 15));
    let csv = std::fs::read_to_string(fixture("employment_holdout.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let expected = std::fs::read_to_string(fixture("lgb_employment.expected.txt")).unwrap();
    let enc = m.encoder();
    let mut n = 0;
    for (line, want) in lines.zip(expected.lines()) {
        let cells: Vec<&str> = line.split(',').collect();
        let row: Vec<f64> = m
            .features
            .iter()
            .enumerate()
            .map(|(j, f)| {
                let cell = cells[header.iter().position(|h| *h == f.name).unwrap()];
                match &f.kind {
                    keel_ml::FeatureKind::Numeric | keel_ml::FeatureKind::Time { .. } => {
                        cell.parse().unwrap()
                    }
                    keel_ml::FeatureKind::Categorical { .. } => {
                        enc.level_code(j, cell).map_or(f64::NAN, f64::from)
                    }
                }
            })
            .collect();
        let want = f64::from_bits(u64::from_str_radix(want, 16).unwrap());
        assert_eq!(m.predict(&row).to_bits(), want.to_bits(), "row {n}: {line}");
        n += 1;
    }
    assert_eq!(n, 3000);
}

/// XGBoost's arithmetic: both files (JSON and UBJSON) import to the same model, and the f32 margin and
/// output agree bit for bit with XGBoost on every fixture row, by the compiled scorer and tree by tree.
fn check_xgboost(name: &str, objective: Objective, layout: &str) {
    let json = std::fs::read(fixture(&format!("{name}.json"))).unwrap();
    let ubj = std::fs::read(fixture(&format!("{name}.ubj"))).unwrap();
    let a = import::import(&json, None, "y").unwrap();
    let b = import::import(&ubj, None, "y").unwrap();
    assert_eq!(a.source.format, import::Format::XgboostJson);
    assert_eq!(b.source.format, import::Format::XgboostUbj);
    assert_eq!(a.source.library_version.as_deref(), Some("3.2.0"));
    assert_eq!(a.model, b.model, "{name}: JSON and UBJSON differ");
    let model = keel_ml::Model::from_bytes(&a.model.to_bytes().unwrap()).unwrap();
    assert_eq!(model.objective, objective);
    let keel_ml::ModelKind::Gbdt(e) = &model.kind else {
        panic!("trees")
    };
    assert_eq!(e.forest().layout(), layout, "{name}");
    let rows = std::fs::read_to_string(fixture(&format!("{name}.rows.jsonl"))).unwrap();
    let mut n = 0;
    for (i, line) in rows.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let x: Vec<f64> = v["x"].as_array().unwrap().iter().map(f64_of).collect();
        let raw = f64_of(&v["raw"]);
        let by_tree = f64::from(e.predict_margin_f32_by_tree(&x));
        assert_eq!(
            by_tree.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: tree walk {by_tree} vs {raw}"
        );
        let m = model.predict_margin(&x);
        assert_eq!(
            m.to_bits(),
            raw.to_bits(),
            "{name} row {i} {x:?}: scorer {m} vs {raw}"
        );
        let out = model.predict(&x);
        let want = f64_of(&v["out"]);
        assert_eq!(
            out.to_bits(),
            want.to_bits(),
            "{name} row {i} {x:?}: output {out} vs {want}"
        );
        n += 1;
    }
    assert!(n > 500, "{name}: {n} rows");
}

#[test]
fn xgboost_binary_with_missing_values_both_ways_is_bit_exact() {
    check_xgboost("xgb_binary_nan", Objective::Binary, "bitvector-32");
}

#[test]
fn xgboost_regression_and_poisson_are_bit_exact() {
    check_xgboost("xgb_regression", Objective::Regression, "bitvector-32");
    check_xgboost("xgb_poisson", Objective::Regression, "bitvector-32");
}

#[test]
fn xgboost_categorical_sets_go_right_and_invalid_codes_left() {
    check_xgboost("xgb_categorical", Objective::Binary, "arena");
}

#[test]
fn the_f32_boundary_is_where_rounding_flips() {
    use keel_ml::import::xgboost::below_f32;
    for t in [
        0.5f32,
        -0.5,
        1.0,
        0.1,
        -3.3e-39,
        1e-45,
        f32::MAX,
        -f32::MAX,
        0.0,
        -0.0,
        3.0e38,
    ] {
        let b = below_f32(t);
        assert!((b as f32) < t, "{t}: {b} rounds to {}", b as f32);
        assert!(b.next_up() as f32 >= t, "{t}: {} rounds below", b.next_up());
    }
}

#[test]
fn hostile_xgboost_files_are_refused_with_the_place_named() {
    let good = std::fs::read_to_string(fixture("xgb_regression.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = v.clone();
        f(&mut v);
        v.to_string()
    };
    fn tree0(v: &mut serde_json::Value) -> &mut serde_json::Value {
        &mut v["learner"]["gradient_booster"]["model"]["trees"][0]
    }
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_string(), "not valid JSON"),
        (
            edit(&|v| v["learner"]["gradient_booster"]["name"] = "gblinear".into()),
            "gblinear",
        ),
        (
            edit(&|v| v["learner"]["gradient_booster"]["name"] = "dart".into()),
            "dart model without weight_drop",
        ),
        (
            edit(&|v| v["learner"]["objective"]["name"] = "multi:softprob".into()),
            "multi:softprob",
        ),
        (
            edit(&|v| v["learner"]["learner_model_param"]["num_class"] = "3".into()),
            "objective 'reg:squarederror' with num_class 3",
        ),
        (
            edit(&|v| tree0(v)["left_children"][0] = 0.into()),
            "reached twice",
        ),
        (
            edit(&|v| tree0(v)["left_children"][0] = 99999.into()),
            "out of range",
        ),
        (
            edit(&|v| tree0(v)["split_conditions"][0] = serde_json::Value::Null),
            "split_conditions[0] is not a finite number",
        ),
        (
            edit(&|v| tree0(v)["split_indices"][0] = 77.into()),
            "feature 77",
        ),
        (
            edit(&|v| tree0(v)["tree_param"]["size_leaf_vector"] = "3".into()),
            "vector leaves",
        ),
        (
            edit(&|v| tree0(v)["right_children"] = serde_json::json!([1])),
            "right_children",
        ),
    ];
    for (text, want) in cases {
        let e = import::import(text.as_bytes(), Some(import::Format::XgboostJson), "y")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("xgboost"),
            "want '{want}': {e}"
        );
    }
    // UBJSON: cut short, a count larger than the file, a wrong marker.
    let ubj = std::fs::read(fixture("xgb_regression.ubj")).unwrap();
    let mut huge = ubj[..40].to_vec();
    huge.extend_from_slice(b"[#L\x7f\xff\xff\xff\xff\xff\xff\xff");
    for (bytes, want) in [
        (ubj[..ubj.len() - 7].to_vec(), "left"),
        (huge, "count of"),
        (
            [&b"{L\x00\x00\x00\x00\x00\x00\x00\x01aQ"[..]].concat(),
            "unknown marker",
        ),
    ] {
        let e = import::import(&bytes, Some(import::Format::XgboostUbj), "y")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("UBJSON"),
            "want '{want}': {e}"
        );
    }
}

/// The property sets: 10,000 rows per model, every cell drawn at random from the feature's edge values or at
/// random, pre-scored by the library (`*.property.bin`); Keel's margin and output agree on every row.
fn check_property_set(file: &str, model: &str) {
    let b = std::fs::read(fixture(file)).unwrap();
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nf = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    assert_eq!(b.len(), 8 + 8 * (n * nf + 2 * n));
    let f = |k: usize| f64::from_le_bytes(b[8 + 8 * k..16 + 8 * k].try_into().unwrap());
    let m = import::import(&std::fs::read(fixture(model)).unwrap(), None, "y")
        .unwrap()
        .model;
    let mut edge_cells = 0;
    for i in 0..n {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        edge_cells += x.iter().filter(|v| v.is_nan() || v.fract() != 0.0).count();
        let (raw, out) = (f(n * nf + i), f(n * nf + n + i));
        assert_eq!(
            m.predict_margin(&x).to_bits(),
            raw.to_bits(),
            "{model} row {i} {x:?}"
        );
        assert_eq!(
            m.predict(&x).to_bits(),
            out.to_bits(),
            "{model} row {i} {x:?}"
        );
    }
    assert_eq!(n, 10_000);
    assert!(edge_cells > 5_000, "{edge_cells}");
}

#[test]
fn ten_thousand_random_edge_rows_agree_with_lightgbm_and_xgboost() {
    check_property_set(
        "lgb_binary_categorical.property.bin",
        "lgb_binary_categorical.txt",
    );
    check_property_set("xgb_categorical.property.bin", "xgb_categorical.ubj");
}

#[test]
fn xgboost_dart_scales_each_tree_by_its_weight_bit_for_bit() {
    check_xgboost("xgb_dart", Objective::Binary, "bitvector-32");
}
