//! A model trained elsewhere, end to end: a LightGBM model trained on the real employment data (fixture from
//! `scripts/import-fixtures.sh`) is imported with labelled reference rows, gated against a Keel-trained
//! champion on a holdout, canaried, served bit for bit as LightGBM predicts, monitored, promoted and rolled
//! back; a hostile file registers nothing.

use crate::serve::http;
use crate::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keel-ml/tests/fixtures/import")
        .join(name)
}

fn champion(home: &Path) -> i64 {
    let o = keel(home, &["models", "show", "emp@champion", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout_json(&o)["version"].as_i64().unwrap()
}

#[test]
fn an_imported_lightgbm_model_is_carded_gated_canaried_served_monitored_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // 3,000 employment rows LightGBM did not train on: Keel's champion trains on the first 1,500, the import
    // is evaluated on the next 750 and gated on the last 750.
    let csv = std::fs::read_to_string(fixture("employment_holdout.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3000);
    let part = |name: &str, r: std::ops::Range<usize>| {
        write(
            dir.path(),
            name,
            &format!("{header}\n{}\n", rows[r].join("\n")),
        )
    };
    let (train, reference, holdout) = (
        part("train.csv", 0..1500),
        part("reference.csv", 1500..2250),
        part("holdout.csv", 2250..3000),
    );
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            train.to_str().unwrap(),
            "--target",
            "employed",
            "--name",
            "emp",
            "--trees",
            "5",
            "--model",
            "gbdt",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(champion(&home), 1);

    let model_file = fixture("lgb_employment.txt");
    let o = keel(
        &home,
        &[
            "models",
            "import",
            model_file.to_str().unwrap(),
            "--name",
            "emp",
            "--reference",
            reference.to_str().unwrap(),
            "--target",
            "employed",
            "--sensitive",
            "SEX",
            "--holdout",
            holdout.to_str().unwrap(),
            "--canary",
            "50",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(out["version"], 2, "{out}");
    assert_eq!(out["source"]["library"], "LightGBM");
    assert_eq!(out["source"]["trees"], 60);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&model_file).unwrap()))
    };
    assert_eq!(out["source"]["sha256"], sha.as_str());
    assert_eq!(out["evaluated_rows"], 750);
    assert!(out["metrics"]["auc"].as_f64().unwrap() > 0.8, "{out}");
    assert_eq!(out["missing"].as_array().unwrap().len(), 0);
    // The gate compared it with Keel's 5-tree champion on the holdout, and it passed into a canary.
    let gate = &out["gate"];
    assert_eq!(gate["champion"], 1, "{gate}");
    assert_eq!(gate["passed"], true, "{gate}");
    assert_eq!(gate["rollout"][0], "canary at 50 %", "{gate}");
    assert!(
        gate["gate"]["challenger"].as_f64().unwrap() > gate["gate"]["champion"].as_f64().unwrap()
    );
    assert_eq!(champion(&home), 1, "a canary is not the champion");

    // The card: where it came from, metrics with intervals, SHAP over its features, fairness by SEX.
    let o = keel(&home, &["models", "card", "emp@2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&o);
    assert_eq!(
        card["imported"]["sha256"],
        sha.as_str(),
        "{}",
        card["imported"]
    );
    assert_eq!(card["imported"]["format"], "lightgbm");
    let auc = &card["evaluation"]["metrics"]["auc"];
    assert!(
        auc["lower"].as_f64() < auc["value"].as_f64()
            && auc["value"].as_f64() < auc["upper"].as_f64(),
        "{auc}"
    );
    let shap = card["evaluation"]["shap"]["features"].as_array().unwrap();
    assert_eq!(shap.len(), 16);
    assert_eq!(card["evaluation"]["fairness"][0]["column"], "SEX");
    let html = std::fs::read_to_string(home.join("cards/emp/v2.html")).unwrap();
    assert!(
        html.contains("Imported model") && html.contains(&sha),
        "the HTML card names the file"
    );

    // Served: the version answers with LightGBM's own probabilities, bit for bit, from labels in JSON.
    let expected: Vec<f64> = std::fs::read_to_string(fixture("lgb_employment.expected.txt"))
        .unwrap()
        .lines()
        .map(|l| f64::from_bits(u64::from_str_radix(l, 16).unwrap()))
        .collect();
    let names: Vec<&str> = header.split(',').collect();
    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    for i in 2250..2350 {
        let cells: Vec<&str> = rows[i].split(',').collect();
        let mut record = serde_json::Map::new();
        for (n, c) in names.iter().zip(&cells) {
            if *n == "employed" {
                continue;
            }
            let v = if *n == "AGEP" {
                serde_json::json!(c.parse::<f64>().unwrap())
            } else {
                serde_json::json!(c)
            };
            record.insert(n.to_string(), v);
        }
        let (st, body) = http(
            &addr,
            "POST",
            "/v1/models/emp@2/predict",
            None,
            &serde_json::Value::Object(record).to_string(),
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["probability"].as_f64().unwrap().to_bits(),
            expected[i].to_bits(),
            "row {i}: {v}"
        );
    }
    // Monitored against the reference data's bins and counts.
    let (st, body) = http(&addr, "GET", "/v1/models/emp@2/monitor", None, "");
    assert_eq!(st, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["rows"], 100, "{report}");
    let columns: Vec<&str> = report["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        columns.contains(&"SCHL") && columns.contains(&"prediction"),
        "{columns:?}"
    );
    drop(server);

    // Promoted, then rolled back: the champion moves to the import and back to Keel's model.
    let o = keel(&home, &["deploy", "emp", "--promote", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(champion(&home), 2);
    let o = keel(&home, &["rollback", "emp", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(champion(&home), 1);
}

#[test]
fn hostile_model_files_are_refused_and_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let good = std::fs::read_to_string(fixture("lgb_binary_nan.txt")).unwrap();
    // The first tree's first threshold made NaN.
    let at = good.find("\nthreshold=").unwrap() + "\nthreshold=".len();
    let end = at + good[at..].find(' ').unwrap();
    let nan = format!("{}nan{}", &good[..at], &good[end..]);
    let cases = [
        (
            "garbage.bin",
            "\u{0}\u{1}PK not a model".to_string(),
            "not a model format Keel recognises",
        ),
        (
            "truncated.txt",
            good[..good.len() / 2].to_string(),
            "lightgbm",
        ),
        (
            "cyclic.txt",
            good.replacen("\nleft_child=", "\nleft_child=0 ", 1),
            "Tree=0",
        ),
        ("nan.txt", nan, "NaN"),
        (
            "huge.txt",
            good.replacen("num_leaves=", "num_leaves=99999999", 1),
            "leaves",
        ),
    ];
    for (name, text, want) in cases {
        let f = write(dir.path(), name, &text);
        let o = keel(
            &home,
            &["models", "import", f.to_str().unwrap(), "--name", "bad"],
        );
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(want) && e.contains(name), "{name}: {e}");
    }
    let o = keel(&home, &["models", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["models"], serde_json::json!([]));
    // Without reference data: registered, the card says what is missing.
    let f = write(dir.path(), "ok.txt", &good);
    let o = keel(
        &home,
        &[
            "models",
            "import",
            f.to_str().unwrap(),
            "--name",
            "plain",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(out["evaluated_rows"], 0);
    assert_eq!(out["missing"].as_array().unwrap().len(), 3, "{out}");
    let html = std::fs::read_to_string(home.join("cards/plain/v1.html")).unwrap();
    assert!(
        html.contains("Not measured"),
        "the card says what is missing"
    );
}

/// A scikit-learn model exported with skl2onnx reads a positional tensor: imported with reference data its
/// features take the data's column names, its card carries metrics and SHAP (covers counted from the
/// reference rows), and served it answers with ONNX Runtime's probabilities bit for bit; a wrong count of
/// names is refused naming both counts.
#[test]
fn an_onnx_scikit_learn_model_is_named_by_its_reference_data_carded_and_served_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let csv = std::fs::read_to_string(fixture("employment_holdout.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let reference = write(
        dir.path(),
        "reference.csv",
        &format!("{header}\n{}\n", rows[..1000].join("\n")),
    );
    let model_file = fixture("skl_employment.onnx");

    // Too few names: refused, nothing registered.
    let o = keel(
        &home,
        &[
            "models",
            "import",
            model_file.to_str().unwrap(),
            "--name",
            "skl",
            "--features",
            "AGEP,SCHL",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("16 features") && e.contains("names 2"), "{e}");
    let o = keel(&home, &["models", "list", "--json"]);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!listed.contains("\"skl\""), "{listed}");

    let o = keel(
        &home,
        &[
            "models",
            "import",
            model_file.to_str().unwrap(),
            "--name",
            "skl",
            "--reference",
            reference.to_str().unwrap(),
            "--target",
            "employed",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(out["source"]["format"], "onnx", "{out}");
    assert_eq!(out["source"]["library"], "ONNX");
    assert_eq!(out["source"]["trees"], 60);
    assert!(
        out["source"]["library_version"]
            .as_str()
            .unwrap()
            .starts_with("skl2onnx"),
        "{out}"
    );
    let names: Vec<&str> = out["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let header_names: Vec<&str> = header.split(',').filter(|c| *c != "employed").collect();
    assert_eq!(names, header_names);
    assert_eq!(out["evaluated_rows"], 1000);
    assert!(out["metrics"]["auc"].as_f64().unwrap() > 0.8, "{out}");

    let o = keel(&home, &["models", "card", "skl@1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&o);
    assert!(
        card["kind"]
            .as_str()
            .unwrap()
            .starts_with("ONNX tree ensemble"),
        "{}",
        card["kind"]
    );
    let shap = card["evaluation"]["shap"]["features"].as_array().unwrap();
    assert_eq!(shap.len(), 16);
    // SHAP over reference covers: some feature matters.
    assert!(
        shap.iter().any(|f| f[1].as_f64().unwrap() > 0.01),
        "{shap:?}"
    );

    let expected: Vec<f64> = std::fs::read_to_string(fixture("skl_employment.expected.txt"))
        .unwrap()
        .lines()
        .map(|l| f64::from_bits(u64::from_str_radix(l, 16).unwrap()))
        .collect();
    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let names: Vec<&str> = header.split(',').collect();
    for i in 2000..2060 {
        let cells: Vec<&str> = rows[i].split(',').collect();
        let mut record = serde_json::Map::new();
        for (n, c) in names.iter().zip(&cells) {
            if *n != "employed" {
                record.insert(n.to_string(), serde_json::json!(c.parse::<f64>().unwrap()));
            }
        }
        let (st, body) = http(
            &addr,
            "POST",
            "/v1/models/skl/predict",
            None,
            &serde_json::Value::Object(record).to_string(),
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["probability"].as_f64().unwrap().to_bits(),
            expected[i].to_bits(),
            "row {i}: {v}"
        );
    }
}

/// With `--features onnx-runtime`, a neural network (a scikit-learn MLP exported by skl2onnx) imports with
/// labelled reference rows, gets a card that says SHAP does not apply, serves ONNX Runtime's probabilities bit
/// for bit, and is monitored.
#[cfg(feature = "onnx-runtime")]
#[test]
fn an_onnx_neural_network_is_carded_served_bit_for_bit_and_monitored() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let b = std::fs::read(fixture("mlp_binary.rows.bin")).unwrap();
    let n = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
    let nf = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let f = |k: usize| f64::from_le_bytes(b[8 + 8 * k..16 + 8 * k].try_into().unwrap());
    // The first 300 fixture rows are ordinary draws; their label is the rule the network learned.
    let mut csv = String::from("a,b,c,d,y\n");
    for i in 0..300 {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        let y = u8::from(x[0] + x[1] - x[2] * x[3] > 0.0);
        csv.push_str(&format!("{},{},{},{},{y}\n", x[0], x[1], x[2], x[3]));
    }
    let reference = write(dir.path(), "reference.csv", &csv);
    let model_file = fixture("mlp_binary.onnx");
    let o = keel(
        &home,
        &[
            "models",
            "import",
            model_file.to_str().unwrap(),
            "--name",
            "nn",
            "--reference",
            reference.to_str().unwrap(),
            "--target",
            "y",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(
        out["features"],
        serde_json::json!(["a", "b", "c", "d"]),
        "{out}"
    );
    assert_eq!(out["evaluated_rows"], 300);
    assert!(out["metrics"]["auc"].as_f64().unwrap() > 0.8, "{out}");
    let o = keel(&home, &["models", "card", "nn@1", "--json"]);
    let card = stdout_json(&o);
    assert!(
        card["kind"].as_str().unwrap().contains("ONNX Runtime"),
        "{}",
        card["kind"]
    );
    assert!(
        card["limitations"].to_string().contains("No SHAP"),
        "{}",
        card["limitations"]
    );

    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    for i in 300..340 {
        let x: Vec<f64> = (0..nf).map(|j| f(i * nf + j)).collect();
        let body = serde_json::json!({"a": x[0], "b": x[1], "c": x[2], "d": x[3]}).to_string();
        let (st, resp) = http(&addr, "POST", "/v1/models/nn/predict", None, &body);
        assert_eq!(st, 200, "{resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        let want = f(n * nf + n + i);
        assert_eq!(
            v["probability"].as_f64().unwrap().to_bits(),
            want.to_bits(),
            "row {i}: {v}"
        );
    }
    let (st, body) = http(&addr, "GET", "/v1/models/nn/monitor", None, "");
    assert_eq!(st, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["rows"], 40, "{report}");
}

/// A linear model from skl2onnx imported without reference data: registered as an ONNX linear model, and
/// what is missing says drift waits for reference data (a model without trees has no split points to bin by).
#[test]
fn an_onnx_linear_model_without_reference_data_says_what_monitoring_needs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model_file = fixture("skl_logreg.onnx");
    let o = keel(
        &home,
        &[
            "models",
            "import",
            model_file.to_str().unwrap(),
            "--name",
            "lr",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(out["features"].as_array().unwrap().len(), 20, "{out}");
    assert_eq!(out["features"][0], "f0");
    let missing = out["missing"].to_string();
    assert!(missing.contains("drift is not measured until"), "{missing}");
    let o = keel(&home, &["models", "card", "lr@1", "--json"]);
    let card = stdout_json(&o);
    assert!(
        card["kind"]
            .as_str()
            .unwrap()
            .starts_with("ONNX linear model"),
        "{}",
        card["kind"]
    );
    assert!(
        card["limitations"].to_string().contains("No SHAP"),
        "{}",
        card["limitations"]
    );
}

/// A LightGBM three-class model imported with labelled reference rows: the card evaluates it per class, the
/// server answers every class's probability exactly as LightGBM computed it, and explains a named class.
#[test]
fn an_imported_lightgbm_multiclass_model_is_carded_per_class_and_served_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let b = std::fs::read(fixture("lgb_multiclass.multi.bin")).unwrap();
    let u = |k: usize| u32::from_le_bytes(b[4 * k..4 * k + 4].try_into().unwrap()) as usize;
    let (n, nf, k) = (u(0), u(1), u(2));
    let f = |i: usize| f64::from_le_bytes(b[12 + 8 * i..20 + 8 * i].try_into().unwrap());
    // The first 400 rows are random draws (no edge values): reference rows labelled with LightGBM's most
    // probable class, every seventh moved to the next class so the holdout metrics are not perfect.
    let mut csv = String::from("Column_0,Column_1,Column_2,Column_3,y\n");
    for i in 0..400 {
        let p: Vec<f64> = (0..k).map(|c| f(n * nf + n * k + i * k + c)).collect();
        let best = (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        let label = if i % 7 == 0 { (best + 1) % k } else { best };
        let x: Vec<String> = (0..nf).map(|j| f(i * nf + j).to_string()).collect();
        csv += &format!("{},{label}\n", x.join(","));
    }
    let reference = write(dir.path(), "reference.csv", &csv);
    let o = keel(
        &home,
        &[
            "models",
            "import",
            fixture("lgb_multiclass.txt").to_str().unwrap(),
            "--name",
            "lgbm3",
            "--reference",
            reference.to_str().unwrap(),
            "--target",
            "y",
            "--alias",
            "champion",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&keel(&home, &["models", "card", "lgbm3@1", "--json"]));
    assert_eq!(card["objective"], "multiclass", "{card}");
    let ev = &card["evaluation"];
    let confusion = ev["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 3, "{ev}");
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 400);
    let acc = ev["metrics"]["accuracy"]["value"].as_f64().unwrap();
    assert!((acc - 342.0 / 400.0).abs() < 1e-12, "{acc}");
    assert!(
        ev["shap"]["features"].as_array().unwrap().len() == 4,
        "{ev}"
    );

    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    for i in [3usize, 117, 260] {
        let body = format!(
            r#"{{"Column_0": {}, "Column_1": {}, "Column_2": {}, "Column_3": {}}}"#,
            f(i * nf),
            f(i * nf + 1),
            f(i * nf + 2),
            f(i * nf + 3)
        );
        let (st, text) = crate::serve::http(
            &addr,
            "POST",
            "/v1/models/lgbm3/predict?explain_class=2",
            None,
            &body,
        );
        assert_eq!(st, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for c in 0..k {
            let want = f(n * nf + n * k + i * k + c);
            let got = v["probabilities"][c.to_string()].as_f64().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "row {i} class {c}: {v}");
        }
        assert_eq!(v["explanation"]["class"], "2", "{v}");
    }
}
