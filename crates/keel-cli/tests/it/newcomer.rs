//! What a new user hits first, on data nobody tuned Keel for (NannyML's car-loan set, with a `yes`/`no`
//! target): the user's own labels everywhere, a bare name that means the champion, batch scoring that checks
//! rows as HTTP does and quarantines the bad ones, an honest choice between trees and a linear model, and a
//! CLI that behaves in a pipe.

use crate::*;
use std::path::{Path, PathBuf};

/// The first `rows` rows of a NannyML car-loan file as CSV: the id and the seven features, plus (when the
/// file has it) `repaid` spelled `yes`/`no`; prediction columns and the timestamp dropped.
fn car_loans(dir: &Path, asset_name: &str, out: &str, rows: usize, with_target: bool) -> PathBuf {
    let text = std::fs::read_to_string(asset(asset_name)).unwrap();
    let mut csv = String::from(
        "id,car_value,salary_range,debt_to_income_ratio,loan_length,repaid_loan_on_prev_car,size_of_downpayment,driver_tenure",
    );
    csv.push_str(if with_target { ",repaid\n" } else { "\n" });
    for line in text.lines().skip(1).take(rows) {
        let f: Vec<&str> = line.split(',').collect();
        csv.push_str(&f[..8].join(","));
        if with_target {
            csv.push_str(if f[8] == "1.0" { ",yes" } else { ",no" });
        }
        csv.push('\n');
    }
    write(dir, out, &csv)
}

/// The car-loan reference rows with `repaid` spelled `yes`/`no`.
fn loans_csv(dir: &Path, rows: usize) -> PathBuf {
    car_loans(
        dir,
        "synthetic_car_loan_reference.csv",
        "loans.csv",
        rows,
        true,
    )
}

/// The car-loan data-quality rows (missing values in columns that never miss in the reference).
fn loans_dq_csv(dir: &Path, rows: usize) -> PathBuf {
    car_loans(
        dir,
        "synthetic_car_loan_dq_analysis.csv",
        "loans_dq.csv",
        rows,
        false,
    )
}

/// `keel predict --model MODEL --input INPUT --output OUTPUT` plus `extra`.
fn train(home: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "repaid",
        "--name",
        "loans",
        "--json",
    ];
    if !extra.contains(&"--trees") {
        args.extend_from_slice(&["--trees", "40"]);
    }
    args.extend_from_slice(extra);
    let o = keel(home, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout_json(&o)
}

#[test]
fn the_users_labels_and_the_champion_survive_serving_feedback_and_a_second_training() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = loans_csv(dir.path(), 3000);
    let v1 = train(&home, &data, &[]);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["aliases"], serde_json::json!(["champion"]), "{v1}");
    // A second training registers v2 but does not take the champion.
    let v2 = train(&home, &data, &["--trees", "5", "--seed", "3"]);
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["aliases"], serde_json::json!([]), "{v2}");
    let listed = stdout_json(&keel(&home, &["models", "list", "--json"]));
    let m = &listed["models"][0];
    assert_eq!(m["champion"]["version"], 1, "{listed}");
    assert_eq!(m["latest_version"], 2);
    assert_eq!(m["aliases"]["champion"], 1);

    let server = serve(&home, &["--prediction-log-rate", "1"]);
    let addr = format!("127.0.0.1:{}", server.port);
    let record = r#"{"car_value": 39811.0, "salary_range": "40K - 60K €", "debt_to_income_ratio": 0.63,
        "loan_length": 19.0, "repaid_loan_on_prev_car": false, "size_of_downpayment": "40%", "driver_tenure": 0.21}"#;
    let (st, body) = crate::serve::http(&addr, "POST", "/v1/models/loans/predict", None, record);
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], 1, "a bare name serves the champion: {v}");
    let label = v["prediction"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(label == "yes" || label == "no", "{v}");
    // Feedback in the user's words, right after the prediction.
    let rid = v["request_id"].as_str().unwrap();
    let fb = format!(r#"{{"labels": [{{"request_id": "{rid}", "label": "yes"}}]}}"#);
    let (st, body) = crate::serve::http(&addr, "POST", "/v1/models/loans/feedback", None, &fb);
    assert_eq!(st, 200, "{body}");
    let out: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (out["stored"].as_u64(), out["unknown"].as_u64()),
        (Some(1), Some(0)),
        "{out}"
    );
    // SHAP output carries the label too.
    let (st, body) = crate::serve::http(
        &addr,
        "POST",
        "/v1/models/loans/predict?explain=true",
        None,
        record,
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["prediction"],
        label
    );
    drop(server);
    // The monitor report prints windows as times a person reads, with the realized line for the label.
    let o = keel(&home, &["monitor", "report", "--model", "loans"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let window = text
        .lines()
        .find(|l| l.trim_start().starts_with("window "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(window.contains(" UTC: "), "{window}");

    // Batch output uses the labels as well.
    let out = dir.path().join("scored.csv");
    let o = predict(&home, "loans", &data, &out, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = std::fs::read_to_string(&out).unwrap();
    let header: Vec<&str> = scored.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "prediction").unwrap();
    let labels: std::collections::BTreeSet<&str> = scored
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').nth(header.len() - 1 - at).unwrap())
        .collect();
    assert_eq!(labels, ["no", "yes"].into(), "{:?}", &scored[..200]);
}

#[test]
fn batch_scoring_checks_rows_as_http_does_and_quarantines_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let training = loans_csv(dir.path(), 3000);
    train(&home, &training, &["--model", "gbdt"]);
    // Categories of salary_range (column 2) and size_of_downpayment (column 6) seen in training.
    let seen: std::collections::HashSet<(usize, String)> = std::fs::read_to_string(&training)
        .unwrap()
        .lines()
        .skip(1)
        .flat_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [(2, f[2].to_string()), (6, f[6].to_string())]
        })
        .collect();
    let input = loans_dq_csv(dir.path(), 400);
    // Rows with an empty feature cell (the reference never misses) or an unseen category: 1-based data
    // rows of the file.
    let expected_bad: Vec<u64> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .skip(1)
        .enumerate()
        .filter(|(_, l)| {
            let f: Vec<&str> = l.split(',').collect();
            f[1..].iter().any(|c| c.is_empty())
                || [2, 6]
                    .iter()
                    .any(|&j| !seen.contains(&(j, f[j].to_string())))
        })
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert!(!expected_bad.is_empty());
    let out = dir.path().join("scored.csv");
    let o = predict(&home, "loans@champion", &input, &out, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = stdout_json(&o);
    assert_eq!(
        s["bad_rows"].as_u64().unwrap() as usize,
        expected_bad.len(),
        "{s}"
    );
    assert_eq!(
        s["scored"].as_u64().unwrap() as usize,
        400 - expected_bad.len()
    );
    let first = &s["problems"][0];
    assert_eq!(first["row"].as_u64().unwrap(), expected_bad[0], "{s}");
    assert_eq!(first["problem"], "null_not_allowed", "{s}");
    // Good rows are written, bad ones quarantined with their file row numbers and problems.
    let scored = std::fs::read_to_string(&out).unwrap();
    assert_eq!(scored.lines().count(), 1 + 400 - expected_bad.len());
    let q = std::fs::read_to_string(dir.path().join("scored.quarantine.csv")).unwrap();
    let rows: Vec<u64> = q
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, expected_bad);
    assert!(q.contains("null is not allowed"), "{}", &q[..300]);

    // One non-numeric cell: its row is reported by file row and column, the rest is scored.
    let text = std::fs::read_to_string(loans_csv(dir.path(), 50)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut f: Vec<&str> = lines[7].split(',').collect();
    f[1] = "abc";
    lines[7] = f.join(",");
    let bad_cell = write(dir.path(), "bad_cell.csv", &(lines.join("\n") + "\n"));
    let o = predict(&home, "loans", &bad_cell, &out, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = stdout_json(&o);
    assert_eq!(s["bad_rows"], 1, "{s}");
    assert_eq!(s["problems"][0]["row"], 7, "{s}");
    assert_eq!(s["problems"][0]["column"], "car_value", "{s}");
    assert_eq!(s["problems"][0]["problem"], "wrong_type", "{s}");
    assert_eq!(s["scored"], 49);

    // Reject mode: nothing written at all.
    let rejected = dir.path().join("rejected.csv");
    let o = predict(
        &home,
        "loans",
        &input,
        &rejected,
        &["--on-bad-rows", "reject"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!rejected.exists());
    assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
}

/// Tiny trees lose to logistic regression on this data: `--model gbdt` says so on the card and in the
/// output; `auto` (the default) registers the linear model, chosen on a validation split.
#[test]
fn training_says_when_the_linear_baseline_wins_and_auto_registers_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = loans_csv(dir.path(), 3000);
    let weak = [
        "--trees",
        "3",
        "--num-leaves",
        "2",
        "--learning-rate",
        "0.01",
    ];
    let mut args = vec!["--model", "gbdt"];
    args.extend_from_slice(&weak);
    let forced = train(&home, &data, &args);
    assert_eq!(forced["kind"], "gbdt");
    let limitations = forced["limitations"].to_string();
    assert!(
        limitations.contains("linear baseline beat the registered gradient-boosted trees"),
        "{limitations}"
    );
    assert_eq!(forced["selection"]["requested"], "gbdt");
    let auto = train(&home, &data, &weak);
    assert_eq!(auto["kind"], "linear", "{}", auto["selection"]);
    assert_eq!(auto["selection"]["chosen"], "linear");
    assert!(
        auto["selection"]["reason"]
            .as_str()
            .unwrap()
            .contains("validation split"),
        "{}",
        auto["selection"]
    );
    assert!(auto["trees"].is_null());
    // The card shows the choice; the audit record carries it.
    let card = std::fs::read_to_string(auto["card_html"].as_str().unwrap()).unwrap();
    assert!(card.contains("Model choice"), "card lacks the choice");
    let audit = keel(&home, &["audit", "export"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("model.register") && l.contains("\"selection\"")),
        "{text}"
    );
    // The linear champion serves.
    let o = keel(&home, &["models", "show", "loans@2", "--json"]);
    assert_eq!(stdout_json(&o)["kind"], "linear");
}

#[test]
fn early_stopping_reports_the_trees_it_kept_and_the_actor_is_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = loans_csv(dir.path(), 3000);
    let out = train(
        &home,
        &data,
        &[
            "--model",
            "gbdt",
            "--trees",
            "400",
            "--learning-rate",
            "0.3",
            "--early-stopping",
            "5",
        ],
    );
    let kept = out["early_stopping"]["best_iteration"].as_u64().unwrap();
    assert!(kept < 400, "{out}");
    assert_eq!(out["trees"].as_u64(), Some(kept), "{out}");
    // No USER in the environment: the OS account, never "unknown".
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["models", "show", "loans", "--json"])
        .env("KEEL_HOME", &home)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("KEEL_USER")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let by = stdout_json(&o)["created_by"].as_str().unwrap().to_string();
    assert!(!by.is_empty() && by != "unknown", "{by}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["models", "alias", "loans", "staging", "1"])
        .env("KEEL_HOME", &home)
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("KEEL_USER")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let audit = String::from_utf8_lossy(&keel(&home, &["audit", "export"]).stdout).to_string();
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("alias.set") && !last.contains("\"actor\":\"unknown\""),
        "{last}"
    );
}

/// `keel … --json | head -c 1`: the reader goes away; keel ends quietly (SIGPIPE), no panic message.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    // After head exits, every later keel in the loop writes into a closed pipe.
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 10); do '{}' models list --json; done | head -c 1 > /dev/null",
            env!("CARGO_BIN_EXE_keel")
        ))
        .env("KEEL_HOME", &home)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
}

/// `keel deploy NAME --status` speaks to a person without `--json`.
#[test]
fn deploy_status_is_text_unless_json_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let o = keel(&home, &["deploy", "seed", "--status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("seed: no canary or shadow running"),
        "{text}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let o = keel(&home, &["deploy", "seed", "--status", "--json"]);
    assert!(stdout_json(&o)["rollout"].is_null());
}

/// A card write killed mid-way leaves a temporary file; the next write removes it (its writer is gone).
#[test]
fn a_killed_card_write_leaves_no_temporary_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    seed_registry(&home, dir.path());
    let cards = home.join("cards").join("seed");
    // What a writer killed before its rename leaves (pid 999999 does not exist).
    std::fs::write(cards.join(".v2.html.tmp-999999"), b"half a card").unwrap();
    let o = keel(&home, &["models", "card", "seed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let left: Vec<String> = std::fs::read_dir(&cards)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
