//! Runs and experiments end to end: `keel train` records runs (registered or not), a Python script using
//! plain `requests` logs a run with 100 metric steps to a running `keel serve`, and `keel runs compare`
//! shows the two side by side, only what differs. Version deletion and archiving through the CLI.

use crate::{cache_dir, keel, seed_registry, serve, stderr, stdout_json, write};

const SCRIPT: &str = r#"
import sys, requests
base = sys.argv[1]
s = requests.Session()
r = s.post(f"{base}/v1/runs", json={"experiment": "seed", "name": "torch-mlp", "tags": {"framework": "torch"}})
r.raise_for_status()
run = r.json()["id"]
r = s.post(f"{base}/v1/runs/{run}/log-batch", json={"params": {"learning_rate": 0.01, "hidden": 64, "optimizer": "adam"}})
r.raise_for_status()
# 100 steps of a falling loss, in batches of 25 (one HTTP call each).
for start in range(0, 100, 25):
    batch = [{"key": "loss", "value": 1.0 / (step + 1), "step": step} for step in range(start, start + 25)]
    batch += [{"key": "auc", "value": 0.5 + step / 250.0, "step": step} for step in range(start, start + 25)]
    r = s.post(f"{base}/v1/runs/{run}/log-batch", json={"metrics": batch})
    r.raise_for_status()
    assert r.json()["metrics"] == 50, r.text
r = s.put(f"{base}/v1/runs/{run}/artifacts/weights/model.pt", data=b"\x00\x01 not really torch")
assert r.status_code == 201, r.text
# A parameter logged again with another value is refused, and so is a bad metric key, naming where.
r = s.post(f"{base}/v1/runs/{run}/log-batch", json={"params": {"learning_rate": 0.1}})
assert r.status_code == 409, r.text
r = s.post(f"{base}/v1/runs/{run}/log-batch", json={"metrics": [{"key": "ok", "value": 1}, {"key": "../bad", "value": 1}]})
assert r.status_code == 422 and "metrics[1].key" in r.text, r.text
r = s.post(f"{base}/v1/runs/{run}/end", json={"status": "finished"})
r.raise_for_status()
assert r.json()["status"] == "finished"
r = s.post(f"{base}/v1/runs/{run}/log-batch", json={"metrics": [{"key": "loss", "value": 0.0, "step": 100}]})
assert r.status_code == 409, r.text
h = s.get(f"{base}/v1/runs/{run}/metrics/loss").json()
assert len(h["values"]) == 100 and h["values"][99]["value"] == 0.01, h
assert s.get(f"{base}/v1/runs/{run}/artifacts/weights/model.pt").content == b"\x00\x01 not really torch"
print(run)
"#;

#[test]
fn a_requests_script_logs_a_run_that_compares_with_a_trained_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = seed_registry(&home, dir.path());

    // `keel train` recorded a run that registered seed@1.
    let o = keel(&home, &["runs", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs = stdout_json(&o)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let trained = runs[0].clone();
    assert_eq!(trained["source"], "train");
    assert_eq!(trained["registered"], "seed@1");
    assert_eq!(trained["experiment"], "seed");
    assert!(
        trained["metrics"]["auc"]["lower"].as_f64().unwrap()
            <= trained["metrics"]["auc"]["value"].as_f64().unwrap()
    );
    assert!(
        trained["data_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        trained["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "card.json")
    );

    // A run without a version: the registry is unchanged, the model file is the run's artifact.
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "10",
            "--learning-rate",
            "0.2",
            "--no-register",
            "--tag",
            "idea=faster",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout_json(&o);
    assert!(out["version"].is_null(), "{out}");
    let quick_run = out["run_id"].as_str().unwrap().to_string();
    let o = keel(&home, &["models", "show", "seed", "--json"]);
    assert_eq!(stdout_json(&o)["versions"].as_array().unwrap().len(), 1);
    let o = keel(&home, &["runs", "show", &quick_run[..8], "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout_json(&o);
    assert!(shown["registered"].is_null());
    assert_eq!(shown["tags"]["idea"], "faster");
    assert!(
        shown["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "model.keel")
    );

    // The user's own script logs to a running server.
    let served = serve(&home, &[]);
    let python = cache_dir().join("openai-venv/bin/python");
    assert!(
        python.exists(),
        "the test venv is missing; scripts/test.sh creates it"
    );
    let script = write(dir.path(), "track.py", SCRIPT);
    let o = std::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}", served.port))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the script failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let client_run = String::from_utf8_lossy(&o.stdout).trim().to_string();
    served.stop();

    // Compared side by side: only what differs.
    let trained_id = trained["id"].as_str().unwrap();
    let o = keel(
        &home,
        &["runs", "compare", trained_id, &client_run, "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let c = stdout_json(&o);
    assert_eq!(c["runs"].as_array().unwrap().len(), 2);
    let row = |section: &str, key: &str| {
        c[section]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{section}.{key} missing from {c}"))
    };
    let loss = row("metrics", "loss");
    assert!(loss["values"][0].is_null());
    assert_eq!(loss["values"][1]["steps"], 100);
    assert_eq!(loss["values"][1]["value"], 0.01);
    assert_eq!(row("params", "learning_rate")["values"][1], "0.01");
    assert_eq!(
        row("attributes", "source")["values"],
        serde_json::json!(["train", "client"])
    );
    // Both are in experiment "seed": the same attribute is not a difference.
    assert!(
        c["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["key"] != "experiment"),
        "{c}"
    );

    let o = keel(&home, &["runs", "compare", trained_id, &client_run]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("torch-mlp") && text.contains("loss") && text.contains("100 steps"),
        "{text}"
    );
    let o = keel(&home, &["runs", "experiments", "--json"]);
    assert_eq!(
        stdout_json(&o)["experiments"],
        serde_json::json!([{"experiment": "seed", "runs": 3}])
    );
    let o = keel(&home, &["runs", "list", "--experiment", "seed"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).lines().count() == 4,
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Versions: the champion cannot be deleted; a second version can, and its number is not reused.
    let o = keel(&home, &["models", "delete", "seed@1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("alias 'champion'"), "{}", stderr(&o));
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "5",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keel(
        &home,
        &[
            "models",
            "annotate",
            "seed@2",
            "--description",
            "five trees",
            "--tag",
            "size=small",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["tags"]["size"], "small");
    let o = keel(&home, &["models", "archive", "seed@2", "--json"]);
    assert_eq!(stdout_json(&o)["outcome"], "archived");
    let o = keel(&home, &["models", "alias", "seed", "staging", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("archived"), "{}", stderr(&o));
    let o = keel(&home, &["models", "delete", "seed@2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["outcome"], "deleted");
    // The run that registered it no longer points at a version.
    let o = keel(&home, &["runs", "list", "--json"]);
    let runs = stdout_json(&o)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r["registered"] != "seed@2"));
    let o = keel(
        &home,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "seed",
            "--trees",
            "5",
            "--json",
        ],
    );
    assert_eq!(stdout_json(&o)["version"], 3);
    let o = keel(&home, &["audit", "verify", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `keel tune` with a fixed seed finds the same best parameters twice; every trial is a run tagged with its
/// parent; the defaults are trial 0 and reach the last rung; `--register` trains the best and registers it.
#[test]
fn tuning_is_deterministic_records_every_trial_and_registers_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = crate::fixture_csv(dir.path(), "tune.csv", 600);
    let tune = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "--data",
            data.to_str().unwrap(),
            "--target",
            "y",
            "--name",
            "tuned",
            "--trees",
            "30",
            "--trials",
            "6",
            "--folds",
            "3",
            "--seed",
            "7",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = keel(&home, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout_json(&o)
    };
    let first = tune(&[]);
    let second = tune(&[]);
    assert_eq!(first["best_params"], second["best_params"]);
    assert_eq!(first["best_score"], second["best_score"]);
    assert_eq!(first["metric"], "auc");
    assert_eq!(first["rungs"], serde_json::json!([10, 30]));
    let trials = first["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let defaults = trials.iter().find(|t| t["baseline"] == true).unwrap();
    assert_eq!(defaults["trees"], 30, "the defaults reach the last rung");
    assert_eq!(first["baseline_score"], defaults["score"]);
    assert!(first["registered"].is_null());
    // Nothing registered: the registry has no model.
    let o = keel(&home, &["models", "list", "--json"]);
    assert_eq!(stdout_json(&o)["models"], serde_json::json!([]));
    // Two searches: two parents and twelve trials, each trial tagged with its parent.
    let o = keel(&home, &["runs", "list", "--experiment", "tuned", "--json"]);
    let runs = stdout_json(&o)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 14);
    let parent = first["run_id"].as_str().unwrap();
    let children: Vec<_> = runs
        .iter()
        .filter(|r| r["tags"]["tuning_run"] == parent)
        .collect();
    assert_eq!(children.len(), 6);
    assert!(
        children
            .iter()
            .all(|r| r["source"] == "tune" && r["metrics"]["cv_auc"]["value"].is_number())
    );

    let third = tune(&["--register"]);
    let reg = &third["registered"];
    assert_eq!(reg["version"], 1, "{third}");
    let o = keel(&home, &["models", "show", "tuned@1", "--json"]);
    let shown = stdout_json(&o);
    assert_eq!(
        shown["params"]["gbdt"]["num_leaves"],
        third["best_params"]["num_leaves"]
    );
    assert_eq!(
        shown["params"]["gbdt"]["learning_rate"],
        third["best_params"]["learning_rate"]
    );
}
