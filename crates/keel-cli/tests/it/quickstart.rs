//! The quickstart on the real employment data.

use crate::*;

#[test]
fn quickstart_trains_evaluates_and_registers_employment_v1() {
    asset("employment_MA_reference.pq");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let o = keel(&home, &["quickstart", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = stdout_json(&o);
    assert_eq!(r["model"], "employment");
    assert_eq!(r["version"], 1);
    assert_eq!(r["aliases"], serde_json::json!(["champion"]));
    let auc = r["metrics"]["auc"].as_f64().unwrap();
    assert!(auc >= 0.903, "holdout AUC {auc}");
    let ci = &r["metrics_ci"]["auc"];
    assert!(ci["lower"].as_f64().unwrap() < auc && auc < ci["upper"].as_f64().unwrap());
    assert!(r["baseline_metrics"]["auc"].as_f64().unwrap() < auc);
    assert_eq!(
        r["rows_train"].as_u64().unwrap() + r["rows_test"].as_u64().unwrap(),
        68_785
    );
    assert!(r["train_seconds"].as_f64().unwrap() > 0.0);
    let fair: Vec<&str> = r["fairness"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["column"].as_str().unwrap())
        .collect();
    assert_eq!(fair, ["SEX", "RAC1P", "AGEP"]);

    let html = std::fs::read_to_string(r["card_html"].as_str().unwrap()).unwrap();
    for needle in [
        "Intended use",
        "Holdout metrics",
        "SHAP",
        "Fairness",
        "Lineage",
        "Limitations",
        "<svg",
    ] {
        assert!(html.contains(needle), "card lacks {needle}");
    }

    // Running it again finds the identical version instead of registering another.
    let o = keel(&home, &["quickstart", "--json"]);
    let again = stdout_json(&o);
    assert_eq!(again["version"], 1);
    assert_eq!(again["reused"], true);
    assert_eq!(again["metrics"]["auc"], r["metrics"]["auc"]);

    let o = keel(&home, &["models", "card", "employment@champion", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&o);
    assert_eq!(card["version"], 1);
    assert!(
        card["lineage"]["dataset_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        card["evaluation"]["shap"]["features"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );
}
