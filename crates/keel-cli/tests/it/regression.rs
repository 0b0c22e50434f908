//! Regression end to end on nannyml's used-car prices: split-conformal intervals on the card (coverage measured
//! on holdout rows the calibration did not see), served with every prediction and in batch output, and checked
//! on fresh labels by monitoring; a Poisson model of accident counts; a loss refusing labels it cannot take.

use crate::*;

/// The first `n` rows of `file` (header kept), without the file's own predictions.
fn head(dir: &Path, file: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(asset(file)).unwrap();
    let out: Vec<&str> = text.lines().take(n + 1).collect();
    write(dir, file, &(out.join("\n") + "\n"))
}

#[test]
fn regression_serves_conformal_intervals_that_cover_what_they_promise() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = asset("regression_synthetic_reference.csv");
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "cars",
            "--drop",
            "id,y_pred,timestamp",
            "--test-size",
            "0.5",
            "--trees",
            "60",
            "--model",
            "gbdt",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&keel(&home, &["models", "card", "cars@1", "--json"]));
    let iv = &card["evaluation"]["interval"];
    let coverage = iv["coverage"].as_f64().unwrap_or_else(|| panic!("{card}"));
    let half = iv["half_width"].as_f64().unwrap();
    // 30,000 holdout rows: 15,000 calibrate, 15,000 measure (measured: 0.9075).
    eprintln!(
        "conformal 90 % interval: ± {half:.1}, coverage {coverage:.4} on {} rows",
        iv["coverage_rows"]
    );
    assert_eq!(iv["coverage_rows"], 15000);
    assert!((0.89..=0.91).contains(&coverage), "{iv}");
    let html = std::fs::read_to_string(home.join("cards/cars/v1.html")).unwrap();
    assert!(
        html.contains("Prediction intervals"),
        "the card explains the interval"
    );

    // Batch output carries the interval's ends.
    let analysis = head(dir.path(), "regression_synthetic_analysis.csv", 600);
    let scored = dir.path().join("scored.csv");
    let o = predict(&home, "cars", &analysis, &scored, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&scored).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{header:?}"))
    };
    let (p, lo, hi) = (at("prediction"), at("interval_lower"), at("interval_upper"));
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .map(|v| v.parse().unwrap_or(f64::NAN))
            .collect();
        assert!(
            (f[p] - f[lo] - half).abs() < 1e-6 && (f[hi] - f[p] - half).abs() < 1e-6,
            "{line}"
        );
    }

    // Served: the interval with every prediction; labels that arrive later give the realized coverage.
    let targets: std::collections::HashMap<String, String> =
        std::fs::read_to_string(asset("regression_synthetic_analysis_targets.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.split_once(',')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
    let server = serve(&home, &["--prediction-log-rate", "1"]);
    let addr = format!("127.0.0.1:{}", server.port);
    let cols = [
        "car_age",
        "km_driven",
        "price_new",
        "accident_count",
        "door_count",
        "fuel",
        "transmission",
    ];
    let text = std::fs::read_to_string(&analysis).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    for line in text.lines().skip(1).take(300) {
        let f: Vec<&str> = line.split(',').collect();
        let mut rec = serde_json::Map::new();
        for c in cols {
            let v = f[header.iter().position(|h| *h == c).unwrap()];
            rec.insert(
                c.into(),
                v.parse::<f64>()
                    .map_or(serde_json::json!(v), |x| serde_json::json!(x)),
            );
        }
        let (st, body) = crate::serve::http(
            &addr,
            "POST",
            "/v1/models/cars/predict",
            None,
            &serde_json::Value::Object(rec).to_string(),
        );
        assert_eq!(st, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (pred, lo, hi) = (
            v["prediction"].as_f64().unwrap(),
            v["interval"][0].as_f64().unwrap(),
            v["interval"][1].as_f64().unwrap(),
        );
        assert!(
            (pred - lo - half).abs() < 1e-6 && (hi - pred - half).abs() < 1e-6,
            "{v}"
        );
        let label = &targets[f[0]];
        let fb = format!(
            r#"{{"labels": [{{"request_id": "{}", "label": {label}}}]}}"#,
            v["request_id"].as_str().unwrap()
        );
        let (st, body) = crate::serve::http(&addr, "POST", "/v1/models/cars/feedback", None, &fb);
        assert_eq!(st, 200, "{body}");
    }
    server.stop();
    let report = stdout_json(&keel(
        &home,
        &["monitor", "report", "--model", "cars", "--json"],
    ));
    let realized = &report["realized"][0];
    assert_eq!(realized["labelled"], 300, "{report}");
    let fresh = realized["interval_coverage"]
        .as_f64()
        .unwrap_or_else(|| panic!("{realized}"));
    eprintln!("coverage on 300 fresh labels: {fresh:.3}");
    let ci = realized["interval_coverage_interval"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() <= fresh && fresh <= ci[1].as_f64().unwrap());
    assert!(fresh > 0.5, "{realized}");
}

#[test]
fn a_poisson_model_of_counts_reports_its_deviance_and_gamma_refuses_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = head(dir.path(), "regression_synthetic_reference.csv", 8000);
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "accident_count",
            "--name",
            "accidents",
            "--drop",
            "id,y_pred,y_true,timestamp",
            "--objective",
            "poisson",
            "--trees",
            "60",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    let m = &out["metrics"];
    assert!(m["poisson_deviance"].as_f64().unwrap() > 0.0, "{out}");
    assert!(m["rmse"].is_number() && m["mae"].is_number(), "{out}");
    let card = stdout_json(&keel(&home, &["models", "card", "accidents@1", "--json"]));
    assert_eq!(card["selection"]["metric"], "poisson_deviance", "{card}");
    // Gamma needs positive targets: a zero count (set on the fifth row here) is refused.
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut f: Vec<&str> = lines[5].split(',').collect();
    f[4] = "0.0";
    lines[5] = f.join(",");
    let zeros = write(dir.path(), "zeros.csv", &(lines.join("\n") + "\n"));
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            zeros.to_str().unwrap(),
            "--target",
            "accident_count",
            "--name",
            "accidents",
            "--drop",
            "id,y_pred,y_true,timestamp",
            "--objective",
            "gamma",
            "--model",
            "gbdt",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("gamma loss needs positive targets") && e.contains("row 5:"),
        "{e}"
    );
}

/// `--split time:COLUMN` trains on the past and evaluates on the latest rows; training warns about a column that
/// is the target in disguise and about holdout rows duplicated from training rows.
#[test]
fn a_time_split_evaluates_on_the_latest_rows_and_leaks_are_called_out() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = head(dir.path(), "regression_synthetic_reference.csv", 3000);
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "cars",
            "--drop",
            "id,y_pred",
            "--split",
            "time:timestamp",
            "--test-size",
            "0.25",
            "--trees",
            "30",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert_eq!(
        (out["rows_train"].as_u64(), out["rows_test"].as_u64()),
        (Some(2250), Some(750))
    );
    assert!(out["warnings"].is_null(), "no leak in these columns: {out}");
    let card = stdout_json(&keel(&home, &["models", "card", "cars@1", "--json"]));
    let split = card["data"]["split"].as_str().unwrap();
    // The file is in time order: the last 750 rows are the latest.
    let text = std::fs::read_to_string(&data).unwrap();
    let stamps: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    let first_test = &stamps[2250][..19];
    assert!(
        split.starts_with("time split on 'timestamp'") && split.contains(first_test),
        "{split} (first holdout timestamp {first_test})"
    );
    // A bad column name is refused with the columns listed.
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "cars",
            "--split",
            "time:when",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("time:when: no such column"),
        "{}",
        stderr(&o)
    );

    // A leak: the final price recorded after the sale (the target, rounded), and the first 400 rows twice.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let y_at = header.iter().position(|h| *h == "y_true").unwrap();
    lines[0] += ",final_price";
    for l in lines.iter_mut().skip(1) {
        let y: f64 = l.split(',').nth(y_at).unwrap().parse().unwrap();
        *l += &format!(",{}", (y / 10.0).round() * 10.0);
    }
    let copies: Vec<String> = lines[1..401].to_vec();
    lines.extend(copies);
    let leaky = write(dir.path(), "leaky.csv", &(lines.join("\n") + "\n"));
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            leaky.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "leaky",
            "--drop",
            "id,y_pred",
            "--trees",
            "30",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "warning: Possible leak: 'final_price' alone predicts the holdout's target (r2 "
        ),
        "{text}"
    );
    assert!(
        text.contains("holdout rows also appear among the training rows"),
        "{text}"
    );
    let card = stdout_json(&keel(&home, &["models", "card", "leaky@1", "--json"]));
    let leak = &card["leakage"];
    assert_eq!(leak["suspects"][0]["feature"], "final_price", "{leak}");
    let shared = leak["shared_rows"].as_u64().unwrap();
    // 400 duplicated rows, a 20 % random holdout: a pair is split across train and holdout with probability
    // 2 × 0.8 × 0.2, about 128 holdout rows (measured: 143).
    assert!((80..=200).contains(&shared), "{leak}");
}

/// `--monotone` holds for the registered trees: scored along a grid of car ages, a price never rises.
#[test]
fn monotone_constraints_from_the_command_line_hold_on_served_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = head(dir.path(), "regression_synthetic_reference.csv", 4000);
    let args = |model: &str| {
        vec![
            "train".to_string(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--target".into(),
            "y_true".into(),
            "--name".into(),
            "cars".into(),
            "--drop".into(),
            "id,y_pred,timestamp".into(),
            "--trees".into(),
            "60".into(),
            "--monotone".into(),
            "car_age:-1,price_new:+1".into(),
            "--model".into(),
            model.into(),
        ]
    };
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let o = keel(&home, &refs(&args("linear")));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot honour them"), "{}", stderr(&o));
    let o = keel(&home, &refs(&args("auto")));
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&keel(&home, &["models", "card", "cars@1", "--json"]));
    assert!(
        card["limitations"]
            .to_string()
            .contains("car_age decreasing, price_new increasing"),
        "{}",
        card["limitations"]
    );
    // A grid: four base cars, car age 0 to 20.
    let mut grid =
        String::from("car_age,km_driven,price_new,accident_count,door_count,fuel,transmission\n");
    for base in [
        "80000,30000,1,4,diesel,manual",
        "150000,52000,3,5,gas,automatic",
    ] {
        for age in 0..=20 {
            grid += &format!("{age},{base}\n");
        }
    }
    let input = write(dir.path(), "grid.csv", &grid);
    let out = dir.path().join("scored.csv");
    let o = predict(&home, "cars", &input, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "prediction").unwrap();
    let preds: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(at).unwrap().parse().unwrap())
        .collect();
    for car in preds.chunks(21) {
        assert!(car.windows(2).all(|w| w[1] <= w[0]), "{car:?}");
        assert!(car[0] > car[20], "age matters: {car:?}");
    }
}

/// `--time-features timestamp` turns the used-car data's timestamps into features (a part with one value, the
/// year, is left out with why); requests and batch files then send the timestamp itself, checked like any
/// other field, and explanations name the parts.
#[test]
fn timestamps_become_features_on_request_and_are_sent_as_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = head(dir.path(), "regression_synthetic_reference.csv", 3000);
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y_true",
            "--name",
            "cars",
            "--drop",
            "id,y_pred",
            "--time-features",
            "timestamp",
            "--trees",
            "30",
            "--model",
            "gbdt",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let card = stdout_json(&keel(&home, &["models", "card", "cars@1", "--json"]));
    let features: Vec<&str> = card["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for part in ["day", "day_of_week", "hour", "elapsed_days"] {
        assert!(
            features.contains(&format!("timestamp.{part}").as_str()),
            "{features:?}"
        );
    }
    // These rows cover 28 hours of January 2017: one year, one month.
    let dropped = card["data"]["dropped"].to_string();
    for part in ["year", "month"] {
        let name = format!("timestamp.{part}");
        assert!(!features.contains(&name.as_str()), "{features:?}");
        assert!(dropped.contains(&name), "{dropped}");
    }

    // An unknown part and a column that is not a timestamp are refused before any work.
    for (flag, says) in [
        ("timestamp:weekday", "unknown part 'weekday'"),
        ("fuel", "not a timestamp"),
    ] {
        let o = keel(
            &home,
            &[
                "train",
                "--data",
                data.to_str().unwrap(),
                "--target",
                "y_true",
                "--name",
                "cars",
                "--time-features",
                flag,
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }

    // Batch: the file's timestamp column is read for the parts.
    let scored = dir.path().join("scored.csv");
    let o = predict(&home, "cars", &data, &scored, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&scored).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let first: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    let batch_prediction: f64 = first[at("prediction")].parse().unwrap();

    // Served: the same row, sent with its timestamp, predicts the same; the parts are explained.
    let server = serve(&home, &[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let mut rec = serde_json::Map::new();
    for c in [
        "car_age",
        "km_driven",
        "price_new",
        "accident_count",
        "door_count",
        "fuel",
        "transmission",
        "timestamp",
    ] {
        let v = first[at(c)];
        rec.insert(
            c.into(),
            v.parse::<f64>()
                .map_or(serde_json::json!(v), |x| serde_json::json!(x)),
        );
    }
    let post = |path: &str, body: &serde_json::Value| {
        let (st, text) = crate::serve::http(&addr, "POST", path, None, &body.to_string());
        (
            st,
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
    };
    let record = serde_json::Value::Object(rec.clone());
    let (st, v) = post("/v1/models/cars/predict?explain=true&top_k=20", &record);
    assert_eq!(st, 200, "{v}");
    assert!(
        (v["prediction"].as_f64().unwrap() - batch_prediction).abs() < 1e-6,
        "served {v} vs batch {batch_prediction}"
    );
    assert!(
        v["explanation"].to_string().contains("timestamp.hour"),
        "{v}"
    );
    // A malformed timestamp and a derived name sent as a field are refused with their paths.
    let mut bad = rec.clone();
    bad.insert("timestamp".into(), serde_json::json!("last tuesday"));
    let (st, v) = post("/v1/models/cars/predict", &serde_json::Value::Object(bad));
    assert_eq!(st, 422, "{v}");
    assert!(v.to_string().contains("$.timestamp"), "{v}");
    let mut derived = rec.clone();
    derived.remove("timestamp");
    derived.insert("timestamp.hour".into(), serde_json::json!(8));
    let (st, v) = post(
        "/v1/models/cars/predict",
        &serde_json::Value::Object(derived),
    );
    assert_eq!(st, 422, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("missing_field") && text.contains("unknown_field"),
        "{v}"
    );
}
