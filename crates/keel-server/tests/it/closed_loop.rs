//! The closed loop in one plain server process: an alert rule queues a retraining job; the server's own
//! job worker (a task on its store, no CLI thread) trains the challenger with the champion's stored settings,
//! gates it, and starts its canary, which then answers part of the champion's traffic.

use keel_app::retrain::RetrainSpec;
use keel_app::train::{TrainSettings, TrainSpec};
use keel_core::Role;
use keel_server::alerts::{AlertRule, Condition};
use keel_server::{AppState, ServerConfig};
use keel_store::{JobState, Store};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Labelled rows: below age 85 the label follows age and colour; above it, the score alone decides, a
/// region the 2015 champion never saw (its ages end at 80).
fn write_csv(path: &Path, n: usize, seed: u64, ages: std::ops::Range<f64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let colours = ["blue", "green", "red"];
    let mut s = String::from("age,colour,score,y\n");
    for _ in 0..n {
        let age: f64 = rng.random_range(ages.clone());
        let c = rng.random_range(0..3usize);
        let score: f64 = rng.random_range(0.0..1.0);
        let z = if age > 85.0 {
            (score - 0.5) * 12.0
        } else {
            (age - 45.0) / 10.0 + if c == 2 { 1.0 } else { -0.5 }
        };
        let y = rng.random_bool(1.0 / (1.0 + (-z).exp())) as u8;
        s.push_str(&format!("{age:.2},{},{score:.4},{y}\n", colours[c]));
    }
    std::fs::write(path, s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_queues_a_retrain_that_the_servers_own_worker_trains_gates_and_canaries() {
    let dir = tempfile::tempdir().unwrap();
    let (old, fresh, holdout) = (
        dir.path().join("old.csv"),
        dir.path().join("fresh.csv"),
        dir.path().join("holdout.csv"),
    );
    write_csv(&old, 3000, 1, 18.0..80.0);
    write_csv(&fresh, 3000, 2, 60.0..120.0);
    write_csv(&holdout, 1500, 3, 60.0..120.0);
    let home = dir.path().join("home");
    let store = Arc::new(Store::open(&home).await.unwrap());
    let champion = keel_app::train::train(
        &store,
        TrainSpec {
            data: old.clone(),
            name: "risk".into(),
            settings: TrainSettings {
                target: "y".into(),
                gbdt: keel_ml::gbdt::GbdtParams {
                    n_trees: 40,
                    ..Default::default()
                },
                model: keel_ml::select::Choice::Gbdt,
                ..Default::default()
            },
            test: None,
            aliases: vec!["champion".into()],
            champion_if_none: true,
            description: None,
            reuse_identical: false,
            register: true,
            run: Default::default(),
        },
        "test",
        keel_app::train::no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(champion.version, Some(1));
    let key = keel_engine::keys::create_key(&store, Role::Predictor, "test", "test")
        .await
        .unwrap()
        .key;
    let config = ServerConfig {
        alerts: vec![AlertRule {
            name: "age-drift".into(),
            model: Some("risk".into()),
            condition: Condition::DriftedFeatures { at_least: 1 },
            webhook: None,
            retrain: Some(RetrainSpec {
                data: fresh.clone(),
                holdout: holdout.clone(),
                canary: Some(0.5),
                shadow: false,
                gate: Default::default(),
                trees: None,
            }),
        }],
        ..ServerConfig::default()
    };
    let state = AppState::new(store.clone(), config).await.unwrap();
    state.cache.preload().await.unwrap();
    let worker = state.start_worker();
    let router = keel_server::router(state.clone());
    let predict = |records: Vec<serde_json::Value>| {
        let router = router.clone();
        let key = key.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/v1/models/risk/predict")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    serde_json::json!({"records": records}).to_string(),
                ))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (status, v)
        }
    };
    // Traffic from the new population: ages 60-120.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let records: Vec<serde_json::Value> = (0..400)
        .map(|_| {
            let colour = ["blue", "green", "red"][rng.random_range(0..3usize)];
            serde_json::json!({
                "age": rng.random_range(60.0..120.0),
                "colour": colour,
                "score": rng.random_range(0.0..1.0),
            })
        })
        .collect();
    let (st, v) = predict(records.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["version"] == 1 || v["predictions"].is_array(), "{v}");

    let mut finished = state.jobs.finished();
    let fired = state.evaluate_alerts().await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    // The worker task picks the job up (woken by the alert) and runs it to the end.
    let waited =
        tokio::time::timeout(Duration::from_secs(180), finished.wait_for(|n| *n >= 1)).await;
    let jobs = store.jobs(10).await.unwrap();
    assert!(waited.is_ok(), "the job did not finish: {jobs:?}");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = jobs[0].clone();
    assert_eq!(job.kind, "retrain");
    assert_eq!(job.created_by, "keel (alert age-drift)");
    assert_eq!(job.state, JobState::Succeeded, "{}", job.message);
    assert_eq!(job.result["passed"], true, "{}", job.message);
    assert_eq!(job.result["challenger"], 2);
    assert_eq!(job.result["rollout"][0], "canary at 50 %");
    // The challenger kept the champion's settings (its kind and its tree count).
    let v2 = store
        .get("risk", &keel_store::Selector::Version(2))
        .await
        .unwrap();
    assert_eq!(v2.kind, "gbdt");
    assert_eq!(v2.params["gbdt"]["n_trees"], 40);
    let rollout = store.rollout("risk").await.unwrap().unwrap();
    assert_eq!(rollout.canary_version, Some(2));
    // The champion did not move: the canary is a share of traffic, not a promotion.
    let champ = store
        .get("risk", &keel_store::Selector::Alias("champion".into()))
        .await
        .unwrap();
    assert_eq!(champ.version, 1);
    // Once the server sees the rollout, the canary answers part of `risk`'s requests.
    state.cache.refresh().await.unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for r in records.chunks(1).take(60) {
        let (st, v) = predict(r.to_vec()).await;
        assert_eq!(st, 200, "{v}");
        versions.insert(v["version"].as_i64().unwrap());
    }
    assert_eq!(
        versions,
        [1, 2].into_iter().collect(),
        "both arms answer at 50 %"
    );
    state.jobs.stop();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops on shutdown")
        .unwrap();
    assert_eq!(
        state.worker.get(),
        keel_server::WorkerState::Stopped {
            error: "the job worker was stopped (shutdown)".into()
        }
    );
}
