//! `keel data validate` on the real data-quality files and on fixtures.

use crate::*;

fn quarantined_rows(path: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("__row,__reasons,"), "{header}");
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn data_quality_faults_are_reported_by_row_and_column_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = asset("synthetic_car_loan_dq_reference.csv");
    let o = keel(
        &home,
        &["data", "validate", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = stdout_json(&o);
    assert_eq!(r["valid"], false);
    assert_eq!(r["rows"], 50_000);
    let v = r["violations"].as_array().unwrap();
    // 5,000 empty salary_range cells and 5,000 empty driver_tenure cells.
    let count = |col: &str| {
        v.iter()
            .filter(|x| x["column"] == col && x["rule"] == "not_null")
            .count()
    };
    assert_eq!(count("salary_range"), 5000);
    assert_eq!(count("driver_tenure"), 5000);
    assert!(
        v.iter()
            .all(|x| x["row"].as_u64().is_some_and(|r| (1..=50_000).contains(&r)))
    );
    let invalid = r["invalid_rows"].as_u64().unwrap() as usize;
    // 511 rows have both cells empty (the file is pinned by checksum).
    assert_eq!(invalid, 9489);
    let q = quarantined_rows(r["quarantine"].as_str().unwrap());
    assert_eq!(q.len(), invalid);
    // Row numbers in the quarantine match the violations and carry their reasons.
    let first = &v[0];
    let first_row = first["row"].as_u64().unwrap().to_string();
    let qrow = q.iter().find(|r| r[0] == first_row).unwrap();
    assert!(qrow[1].contains(first["column"].as_str().unwrap()));

    // The clean reference passes.
    let clean = asset("synthetic_car_loan_reference.csv");
    let o = keel(
        &home,
        &["data", "validate", clean.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(stdout_json(&o)["invalid_rows"], 0);
}

#[test]
fn a_reference_schema_catches_unseen_categories_in_the_analysis_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let file = asset("synthetic_car_loan_dq_analysis.csv");
    let reference = asset("synthetic_car_loan_reference.csv");
    let q = dir.path().join("bad.csv");
    let o = keel(
        &home,
        &[
            "data",
            "validate",
            file.to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
            "--quarantine",
            q.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = stdout_json(&o);
    let v = r["violations"].as_array().unwrap();
    let unseen: Vec<_> = v.iter().filter(|x| x["rule"] == "allowed").collect();
    assert_eq!(
        unseen.len(),
        700,
        "the dq analysis file has 700 rows with an unseen down payment"
    );
    assert!(
        unseen
            .iter()
            .all(|x| x["column"] == "size_of_downpayment" && x["value"] == "50%")
    );
    assert!(
        v.iter()
            .any(|x| x["column"] == "salary_range" && x["rule"] == "not_null")
    );
    // The reference has a target column the analysis file lacks.
    assert!(
        v.iter().any(|x| x["column"] == "repaid"
            && x["rule"] == "missing_column"
            && x["row"].is_null())
    );
    assert_eq!(
        quarantined_rows(q.to_str().unwrap()).len(),
        r["invalid_rows"].as_u64().unwrap() as usize
    );
}

#[test]
fn declared_rules_are_enforced_with_row_column_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = write(
        dir.path(),
        "d.csv",
        "id,age,colour,y\n1,34,red,1\n2,-3,blue,0\n2,51,purple,1\n4,abc,red,0\n",
    );
    let schema = write(
        dir.path(),
        "s.toml",
        r#"target = "y"
[[column]]
name = "id"
type = "integer"
unique = true
[[column]]
name = "age"
type = "integer"
min = 0
max = 120
[[column]]
name = "colour"
type = "categorical"
allowed = ["red", "blue"]
[[column]]
name = "y"
type = "boolean"
"#,
    );
    let o = keel(
        &home,
        &[
            "data",
            "validate",
            data.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = stdout_json(&o);
    let got: Vec<(u64, String, String, String)> = r["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["row"].as_u64().unwrap(),
                v["column"].as_str().unwrap().to_string(),
                v["rule"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = vec![
        (2, "age".to_string(), "min".to_string(), "-3".to_string()),
        (3, "colour".into(), "allowed".into(), "purple".into()),
        (3, "id".into(), "unique".into(), "2".into()),
        (4, "age".into(), "type".into(), "abc".into()),
    ];
    assert_eq!(got, want);
    assert_eq!(r["invalid_rows"], 3);
    // A valid file under the same schema exits 0.
    let ok = write(
        dir.path(),
        "ok.csv",
        "id,age,colour,y\n1,34,red,true\n2,3,blue,false\n",
    );
    let o = keel(
        &home,
        &[
            "data",
            "validate",
            ok.to_str().unwrap(),
            "--schema",
            schema.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn profile_reports_counts_quantiles_and_a_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_csv(dir.path(), "f.csv", 300);
    let o = keel(
        &dir.path().join("h"),
        &["data", "profile", data.to_str().unwrap(), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let p = stdout_json(&o);
    assert_eq!(p["rows"], 300);
    assert!(p["dataset_hash"].as_str().unwrap().starts_with("sha256:"));
    let x = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "x")
        .unwrap();
    assert_eq!(x["type"], "numeric");
    assert_eq!(x["numeric"]["quantiles"].as_array().unwrap().len(), 7);
    let c = p["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "c")
        .unwrap();
    assert_eq!(c["type"], "categorical");
    assert_eq!(c["distinct"], 3);
}
