//! Imported models predict bit for bit what their source library predicts, on rows that probe every split:
//! thresholds and their f32/f64 neighbours, NaN, ±inf, ±0, tiny and huge values, negative, fractional,
//! unlisted and huge category codes (fixtures from `scripts/import-fixtures.sh`, LightGBM 4.7.0).

use keel_ml::Objective;
use keel_ml::gbdt::Ensemble;
use keel_ml::import::lightgbm;
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
        let out = match objective {
            Objective::Binary => 1.0 / (1.0 + (-(m.sigmoid * raw)).exp()),
            Objective::Regression => raw,
        };
        assert_eq!(
            out.to_bits(),
            f64_of(&v["out"]).to_bits(),
            "{name} row {i}: output"
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
