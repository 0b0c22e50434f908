//! A three-class model through every path a binary one takes, on the real multiclass data (nannyml's synthetic
//! credit-card products: prepaid, highstreet, upmarket): train, card, batch, serve with per-class
//! probabilities, explain the predicted or a named class, feedback in the data's own labels, realized
//! accuracy and predicted-class drift, the retraining gate on log loss, a canary judged on log loss, promotion
//! and rollback.

use crate::*;
use std::collections::BTreeSet;

const COLUMNS: [&str; 8] = [
    "acq_channel",
    "app_behavioral_score",
    "requested_credit_limit",
    "app_channel",
    "credit_bureau_score",
    "stated_income",
    "is_customer",
    "y_true",
];
const CLASSES: [&str; 3] = ["highstreet_card", "prepaid_card", "upmarket_card"];

/// Rows `range` of the reference file, with the features and the label only (the file's own predictions
/// would leak the answer).
fn slice(dir: &Path, name: &str, range: std::ops::Range<usize>) -> PathBuf {
    let text = std::fs::read_to_string(asset("mc_reference.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at: Vec<usize> = COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let mut out = COLUMNS.join(",") + "\n";
    for line in lines.skip(range.start).take(range.len()) {
        let f: Vec<&str> = line.split(',').collect();
        out += &at.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    write(dir, name, &out)
}

/// The feature records (JSON) and labels of rows `range` of a file written by [`slice`].
fn records(path: &Path, range: std::ops::Range<usize>) -> (Vec<serde_json::Value>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut recs = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines().skip(1 + range.start).take(range.len()) {
        let f: Vec<&str> = line.split(',').collect();
        let mut r = serde_json::Map::new();
        for (i, c) in COLUMNS[..7].iter().enumerate() {
            let v = match (f[i].parse::<f64>(), f[i]) {
                (Ok(x), _) => serde_json::json!(x),
                (_, "True") => serde_json::json!(true),
                (_, "False") => serde_json::json!(false),
                _ => serde_json::json!(f[i]),
            };
            r.insert(c.to_string(), v);
        }
        recs.push(serde_json::Value::Object(r));
        labels.push(f[7].to_string());
    }
    (recs, labels)
}

fn post(addr: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let (st, text) = crate::serve::http(addr, "POST", path, None, &body.to_string());
    assert_eq!(st, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A prediction request with the request id given (`x-request-id`): the canary split hashes the id, so named
/// ids make the split the same on every run.
fn predict_with_id(addr: &str, id: &str, records: &[serde_json::Value]) -> serde_json::Value {
    let body = serde_json::json!({ "records": records }).to_string();
    let (st, text) = crate::serve::http_with(
        addr,
        "POST",
        "/v1/models/cards/predict",
        None,
        &[("x-request-id", id)],
        &body,
    );
    assert_eq!(st, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Serves `records` through `NAME@champion` in requests of 50 (request ids `{ids}0`, `{ids}1`, …) and sends
/// every label back; returns the responses' versions.
fn serve_and_label(
    addr: &str,
    ids: &str,
    recs: &[serde_json::Value],
    labels: &[String],
) -> Vec<i64> {
    let mut versions = Vec::new();
    for (n, (chunk, truth)) in recs.chunks(50).zip(labels.chunks(50)).enumerate() {
        let v = predict_with_id(addr, &format!("{ids}{n}"), chunk);
        let rid = v["request_id"].as_str().unwrap().to_string();
        let preds = v["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), chunk.len());
        versions.push(v["version"].as_i64().unwrap());
        let fb: Vec<serde_json::Value> = truth
            .iter()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"request_id": rid, "row": i, "label": l}))
            .collect();
        let out = post(
            addr,
            "/v1/models/cards/feedback",
            &serde_json::json!({ "labels": fb }),
        );
        assert_eq!(out["stored"].as_u64(), Some(chunk.len() as u64), "{out}");
    }
    versions
}

#[test]
fn a_three_class_model_goes_through_every_path_a_binary_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let small = slice(dir.path(), "small.csv", 0..600);
    let retrain = slice(dir.path(), "retrain.csv", 1000..7000);
    let holdout = slice(dir.path(), "holdout.csv", 7000..10000);
    let traffic = slice(dir.path(), "traffic.csv", 10000..11000);

    // Train: a text target with three values is a multiclass target, judged on log loss.
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            small.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "cards",
            "--trees",
            "40",
            "--model",
            "gbdt",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v1 = stdout_json(&o);
    assert_eq!(v1["objective"], "multiclass", "{v1}");
    for m in [
        "log_loss",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "top2_accuracy",
    ] {
        assert!(v1["metrics"][m].is_number(), "{m}: {v1}");
    }
    let card = stdout_json(&keel(&home, &["models", "card", "cards@1", "--json"]));
    assert_eq!(card["class_labels"], serde_json::json!(CLASSES), "{card}");
    let ev = &card["evaluation"];
    assert_eq!(ev["confusion"].as_array().unwrap().len(), 3);
    assert_eq!(ev["classes"][2]["label"], "upmarket_card");
    let html = std::fs::read_to_string(v1["card_html"].as_str().unwrap()).unwrap();
    assert!(html.contains("Confusion matrix") && html.contains("Calibration per class"));

    // Batch: the label and one probability column per class, summing to one.
    let scored = dir.path().join("scored.csv");
    let o = predict(&home, "cards", &traffic, &scored, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&scored).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let cols: Vec<usize> = CLASSES
        .iter()
        .map(|c| {
            let name = format!("probability_{c}");
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("{header:?}"))
        })
        .collect();
    let pred_at = header.iter().position(|h| *h == "prediction").unwrap();
    let mut predicted = BTreeSet::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let p: Vec<f64> = cols.iter().map(|&i| f[i].parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{line}");
        let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(f[pred_at], CLASSES[best], "{line}");
        predicted.insert(f[pred_at].to_string());
    }
    assert_eq!(predicted.len(), 3, "every class is predicted somewhere");

    // Serve: the label, the predicted class's probability, every class's; explanations of the predicted class
    // or a named one; a class the model does not have is refused by name.
    let (recs, labels) = records(&traffic, 0..1000);
    {
        let server = serve(&home, &["--prediction-log-rate", "1"]);
        let addr = format!("127.0.0.1:{}", server.port);
        let v = post(&addr, "/v1/models/cards/predict?explain=true", &recs[0]);
        let probs = v["probabilities"]
            .as_object()
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(
            probs.keys().collect::<Vec<_>>(),
            CLASSES.iter().collect::<Vec<_>>()
        );
        let label = v["prediction"].as_str().unwrap();
        assert_eq!(v["probability"], probs[label], "{v}");
        assert!(
            probs
                .values()
                .all(|p| p.as_f64().unwrap() <= v["probability"].as_f64().unwrap())
        );
        assert_eq!(v["explanation"]["class"], label, "{v}");
        let other = CLASSES.iter().find(|c| **c != label).unwrap();
        let v = post(
            &addr,
            &format!("/v1/models/cards/predict?explain_class={other}&top_k=3"),
            &recs[0],
        );
        assert_eq!(v["explanation"]["class"], *other, "{v}");
        assert_eq!(
            v["explanation"]["contributions"].as_array().unwrap().len(),
            3
        );
        let (st, body) = crate::serve::http(
            &addr,
            "POST",
            "/v1/models/cards/predict?explain_class=gold_card",
            None,
            &recs[0].to_string(),
        );
        assert_eq!(st, 400, "{body}");
        assert!(
            body.contains("gold_card") && body.contains("upmarket_card"),
            "{body}"
        );
        // Served traffic with its labels, in the data's own words.
        let versions = serve_and_label(&addr, "cards-", &recs[..500], &labels[..500]);
        assert!(versions.iter().all(|v| *v == 1));
        server.stop();
    }
    // Monitoring: realized accuracy from the labels, and the predicted class's distribution against the
    // reference.
    let o = keel(&home, &["monitor", "report", "--model", "cards", "--json"]);
    let report = stdout_json(&o);
    let realized = report["realized"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    let labelled: u64 = realized
        .iter()
        .map(|r| r["labelled"].as_u64().unwrap())
        .sum();
    assert!(labelled >= 500, "{report}");
    let acc = realized[0]["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(acc > 0.5 && acc < 0.95, "{report}");
    let columns = report["drift"]["columns"].as_array().unwrap();
    let prediction = columns.iter().find(|c| c["name"] == "prediction").unwrap();
    assert_eq!(prediction["kind"], "categorical", "{prediction}");
    assert_eq!(
        prediction["histogram"]["labels"],
        serde_json::json!([CLASSES[0], CLASSES[1], CLASSES[2], "missing or unseen"])
    );
    // 500 served rows and the two explained ones (the refused request scored nothing).
    assert_eq!(prediction["current_rows"], 502, "{prediction}");
    assert!(prediction["p_value"].is_number(), "{prediction}");

    // Retraining: the challenger trained on 10× the rows beats the champion on log loss, with a paired
    // interval, and starts as a canary.
    let o = keel(
        &home,
        &[
            "retrain",
            "cards",
            "--data",
            retrain.to_str().unwrap(),
            "--holdout",
            holdout.to_str().unwrap(),
            "--canary",
            "50",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let job = stdout_json(&o);
    let gate = &job["result"]["gate"];
    assert_eq!(gate["metric"], "log_loss", "{job}");
    assert_eq!(gate["passed"], true, "{job}");
    assert!(gate["champion"].as_f64().unwrap() > gate["challenger"].as_f64().unwrap());
    assert!(gate["delta_lower"].as_f64().unwrap() > 0.0, "{gate}");

    // The canary answers part of the traffic; both arms are judged on realized log loss (the log holds every
    // class's probability), as the gate judged.
    {
        let server = serve(&home, &["--prediction-log-rate", "1"]);
        let addr = format!("127.0.0.1:{}", server.port);
        // Ids whose hashes send five of the ten requests to the 50 % canary (random ids made the split, and
        // whether the canary reached the 200 labels it is judged on, a matter of luck).
        let versions = serve_and_label(&addr, "traffic-", &recs[500..], &labels[500..]);
        assert!(
            versions.contains(&1) && versions.contains(&2),
            "{versions:?}"
        );
    }
    let status = stdout_json(&keel(&home, &["deploy", "cards", "--status", "--json"]));
    let eval = &status["evaluation"];
    assert_eq!(eval["metric"], "log_loss", "{status}");
    assert!(eval["canary"]["labelled"].as_u64().unwrap() > 0, "{status}");
    for arm in ["champion", "canary"] {
        // Three classes: a log loss between 0 and that of a uniform guess (ln 3) and then some.
        let m = eval[arm]["metric"]
            .as_f64()
            .unwrap_or_else(|| panic!("{arm} has no log loss: {status}"));
        assert!(m > 0.0 && m < 1.5, "{arm}: {status}");
    }
    let o = keel(&home, &["deploy", "cards", "--promote", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout_json(&keel(
        &home,
        &["models", "show", "cards@champion", "--json"],
    ));
    assert_eq!(shown["version"], 2);
    // Rollback restores v1, and v1 still serves three classes.
    let o = keel(&home, &["rollback", "cards", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout_json(&keel(
        &home,
        &["models", "show", "cards@champion", "--json"],
    ));
    assert_eq!(shown["version"], 1);
    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let v = post(&addr, "/v1/models/cards/predict", &recs[1]);
    assert_eq!(v["version"], 1);
    assert_eq!(v["probabilities"].as_object().unwrap().len(), 3);
}
