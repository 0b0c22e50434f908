//! The closed loop end to end on a slice of the real employment data: `keel demo loop` (a real server on
//! loopback, delayed labels, retraining, the gate, a canary, promotion, a rejected shuffled-label challenger,
//! rollback), and the retraining job's own contract: killed mid-way it shows failed and leaves the champion
//! alone; queued it runs in `keel jobs work`; cancelled before it starts it never runs.

use crate::*;

fn champion(home: &Path, model: &str) -> i64 {
    let o = keel(
        home,
        &["models", "show", &format!("{model}@champion"), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout_json(&o)["version"].as_i64().unwrap()
}

#[test]
fn the_demo_loop_retrains_gates_canaries_promotes_rejects_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let o = keel(
        &home,
        &[
            "demo",
            "loop",
            "--rows-per-year",
            "2500",
            "--trees",
            "40",
            "--batch",
            "25",
            "--json",
        ],
    );
    assert!(o.status.success(), "demo failed: {}", stderr(&o));
    let out = stdout_json(&o);
    // Per year: every replayed row was served and got its delayed label; realized AUC is a real number.
    let years = out["years"].as_array().unwrap();
    assert_eq!(years.len(), 3);
    for y in years {
        assert_eq!(y["rows"], 2500, "{y}");
        assert_eq!(y["labels_joined"], 2500, "{y}");
        for (_, r) in y["realized"].as_object().unwrap() {
            let auc = r["roc_auc"].as_f64().unwrap();
            assert!(auc > 0.8 && auc < 1.0, "{y}");
        }
    }
    // 2018 was answered by both the champion (v1) and the canary (v2).
    let r2018 = years[2]["realized"].as_object().unwrap();
    assert!(
        r2018.contains_key("v1") && r2018.contains_key("v2"),
        "{r2018:?}"
    );
    // The retrained challenger passed the gate with a bootstrap interval; the canary was promoted.
    let gate = &out["retrain"]["gate"];
    assert_eq!(gate["passed"], true, "{gate}");
    assert!(gate["delta_lower"].as_f64().unwrap() <= gate["delta"].as_f64().unwrap());
    assert_eq!(out["canary"]["decision"], "promote", "{}", out["canary"]);
    assert_eq!(out["champion_after_canary"], 2);
    // The shuffled-label challenger was rejected, with reasons.
    let bad = &out["bad_challenger"];
    assert_eq!(bad["passed"], false, "{bad}");
    assert_eq!(bad["challenger"], 3);
    let reasons = bad["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().contains("does not beat")),
        "{bad}"
    );
    // Rollback restored the old champion.
    assert_eq!(
        out["rollback"],
        serde_json::json!({"before": 2, "after": 1})
    );
    assert_eq!(champion(&home, "employment-loop"), 1);
    // Every decision is in the audit log, and the chain verifies.
    assert_eq!(out["audit"]["ok"], true);
    let o = keel(&home, &["audit", "export"]);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |action: &str, target: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action && r["target"] == target)
            .cloned()
            .collect::<Vec<_>>()
    };
    let decisions = find("retrain.decision", "employment-loop@2");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["evidence"]["gate"]["passed"], true);
    let rejected = find("retrain.decision", "employment-loop@3");
    assert_eq!(rejected.len(), 1);
    let ev = &rejected[0]["evidence"];
    assert_eq!(ev["gate"]["passed"], false);
    assert!(!ev["gate"]["reasons"].as_array().unwrap().is_empty());
    assert_eq!(ev["champion"], 2);
    assert!(
        ev["holdout_sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(find("deploy.canary", "employment-loop@2").len(), 1);
    // No canary for the rejected challenger.
    assert!(find("deploy.canary", "employment-loop@3").is_empty());
    let moves = find("alias.set", "employment-loop@champion");
    // Registration (v1), promotion (v2, via the rollout judge), rollback (v1).
    let promote = moves
        .iter()
        .find(|r| r["after"]["via"] == "rollout.promote")
        .expect("promotion record");
    assert_eq!(promote["before"]["version"], 1);
    assert_eq!(promote["after"]["version"], 2);
    assert!(
        promote["evidence"]["reason"]
            .as_str()
            .unwrap()
            .contains("canary v2")
    );
    assert_eq!(moves.last().unwrap()["after"]["version"], 1);
    let (code, v) = crate::audit::verify(&home);
    assert_eq!((code, v["ok"].clone()), (0, serde_json::json!(true)));
}

/// A home with a champion `seed` trained on the fixture, plus a retraining file and a holdout.
fn retrain_home(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let home = dir.join("home");
    seed_registry(&home, dir);
    let data = fixture_csv(dir, "more.csv", 3000);
    let holdout = fixture_csv(dir, "holdout.csv", 600);
    (home, data, holdout)
}

#[test]
fn a_retraining_job_killed_mid_way_shows_failed_and_leaves_the_champion() {
    let dir = tempfile::tempdir().unwrap();
    let (home, data, holdout) = retrain_home(dir.path());
    let before = champion(&home, "seed");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["retrain", "seed", "--data", data.to_str().unwrap()])
        .args([
            "--holdout",
            holdout.to_str().unwrap(),
            "--trees",
            "200",
            "--canary",
            "10",
        ])
        .env("KEEL_HOME", &home)
        .env("KEEL_FAILPOINT", "retrain.training")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the failpoint should have killed it");
    // The next look at the queue notices the dead worker.
    let o = keel(&home, &["jobs", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let jobs = stdout_json(&o)["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "failed", "{}", jobs[0]);
    assert!(
        jobs[0]["message"].as_str().unwrap().contains("interrupted"),
        "{}",
        jobs[0]
    );
    assert!(jobs[0]["progress"].as_f64().unwrap() > 0.0);
    assert_eq!(champion(&home, "seed"), before);
    let o = keel(&home, &["deploy", "seed", "--status", "--json"]);
    assert!(stdout_json(&o)["rollout"].is_null());
    let (code, _) = crate::audit::verify(&home);
    assert_eq!(code, 0);
}

#[test]
fn queued_jobs_run_in_the_worker_and_cancelled_ones_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let (home, data, holdout) = retrain_home(dir.path());
    let args = |extra: &[&str]| {
        let mut v = vec!["retrain", "seed", "--data", data.to_str().unwrap()];
        v.extend([
            "--holdout",
            holdout.to_str().unwrap(),
            "--trees",
            "40",
            "--queue",
            "--json",
        ]);
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = keel(&home, &refs);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout_json(&o)
    };
    let first = run(args(&["--shadow"]));
    let second = run(args(&[]));
    assert_eq!(first["state"], "queued");
    let o = keel(
        &home,
        &["jobs", "cancel", &second["id"].to_string(), "--json"],
    );
    assert_eq!(stdout_json(&o)["state"], "cancelled");
    // Cancelling twice is an error that names the state.
    let o = keel(&home, &["jobs", "cancel", &second["id"].to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already cancelled"), "{}", stderr(&o));
    let o = keel(&home, &["jobs", "work", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["ran"], 1);
    let o = keel(&home, &["jobs", "show", &first["id"].to_string(), "--json"]);
    let job = stdout_json(&o);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"], 1.0);
    let challenger = job["result"]["challenger"].as_i64().unwrap();
    // The fixture's challenger trained on 3000 rows beats the 400-row champion; it runs as a shadow.
    assert_eq!(job["result"]["passed"], true, "{job}");
    let o = keel(&home, &["deploy", "seed", "--status", "--json"]);
    let st = stdout_json(&o);
    assert_eq!(st["rollout"]["shadow_version"], challenger, "{st}");
    assert!(st["rollout"]["canary_version"].is_null());
    // By hand: a canary of the challenger, then promotion moves the champion in one audited step.
    let reference = format!("seed@{challenger}");
    let o = keel(&home, &["deploy", &reference, "--canary", "25", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["rollout"]["canary_weight"], 0.25);
    let o = keel(&home, &["deploy", &reference, "--canary", "250"]);
    assert_eq!(o.status.code(), Some(2));
    let o = keel(&home, &["deploy", "seed", "--promote", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(champion(&home, "seed"), challenger);
    let o = keel(&home, &["rollback", "seed", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(champion(&home, "seed"), 1);
    let (code, _) = crate::audit::verify(&home);
    assert_eq!(code, 0);
}

/// `keel retrain … --min-delta 0.5` rejects the challenger: the text output gives the metric delta and warns
/// that the holdout shares rows with the training data, and neither the bare name nor the listing ever points
/// at the rejected version.
#[test]
fn a_rejected_challenger_is_never_served_and_the_rejection_gives_its_delta() {
    let dir = tempfile::tempdir().unwrap();
    let (home, data, _) = retrain_home(dir.path());
    // The holdout is the retraining file itself: every row is shared.
    let o = keel(
        &home,
        &[
            "retrain",
            "seed",
            "--data",
            data.to_str().unwrap(),
            "--holdout",
            data.to_str().unwrap(),
            "--trees",
            "20",
            "--min-delta",
            "0.5",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert!(out.contains("was rejected by the gate"), "{out}");
    assert!(out.contains("delta"), "no delta in: {out}");
    assert!(
        out.contains("3000 rows of the holdout also occur in the training data"),
        "{out}"
    );
    // The rejected v2 exists but a bare name still means v1, in batch scoring and in the listing.
    let scored = dir.path().join("scored.csv");
    let o = keel(
        &home,
        &[
            "predict",
            "--model",
            "seed",
            "--input",
            data.to_str().unwrap(),
            "--output",
            scored.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["version"], 1);
    let listed = stdout_json(&keel(&home, &["models", "list", "--json"]));
    assert_eq!(listed["models"][0]["latest_version"], 2, "{listed}");
    assert_eq!(listed["models"][0]["champion"]["version"], 1, "{listed}");
    let o = keel(&home, &["models", "list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("champion→1"), "{text}");
}
