//! Alert rules: firing once per episode, audit and metrics, and webhooks retried against a local receiver.

use crate::*;
use keel_server::alerts::{AlertRule, Condition, post_with_retry, webhook_client};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// A webhook receiver on a free loopback port: answers 500 to the first `failures` requests, then 200 (or
/// hangs for 10 s on every request when `hang`). Returns its URL and the bodies it accepted.
async fn receiver(
    failures: usize,
    hang: bool,
) -> (
    String,
    Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    Arc<AtomicUsize>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (seen.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let (seen, calls) = (s2.clone(), c2.clone());
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if hang {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                if n < failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                seen.lock().unwrap().push(v);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen, calls)
}

#[tokio::test]
async fn webhooks_are_retried_with_backoff_until_the_receiver_answers() {
    let (url, seen, calls) = receiver(2, false).await;
    let client = webhook_client(Duration::from_secs(2));
    let start = Instant::now();
    let n = post_with_retry(
        &client,
        &url,
        &serde_json::json!({"x": 1}),
        4,
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Backoff: 50 ms, then 100 ms.
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_receiver_that_hangs_or_is_gone_costs_bounded_time() {
    let (url, _, calls) = receiver(0, true).await;
    let client = webhook_client(Duration::from_millis(200));
    let e = post_with_retry(
        &client,
        &url,
        &serde_json::json!({}),
        3,
        Duration::from_millis(20),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("3 attempts failed") && e.contains("timed out"),
        "{e}"
    );
    // Bounded by the client's time limit: every attempt ended in a timeout, not a hang.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Nobody listening at all.
    let e = post_with_retry(
        &client,
        "http://127.0.0.1:9/none",
        &serde_json::json!({}),
        2,
        Duration::from_millis(10),
    )
    .await
    .unwrap_err();
    assert!(e.starts_with("2 attempts failed"), "{e}");
}

#[tokio::test]
async fn drift_fires_an_alert_once_with_audit_metric_and_webhook() {
    let (url, seen, _) = receiver(1, false).await;
    let files = tempfile::tempdir().unwrap();
    let (fresh, holdout) = (
        files.path().join("fresh.parquet"),
        files.path().join("holdout.parquet"),
    );
    std::fs::write(&fresh, b"").unwrap();
    std::fs::write(&holdout, b"").unwrap();
    let rule = AlertRule {
        name: "age-drift".into(),
        model: Some("risk".into()),
        condition: Condition::DriftedFeatures { at_least: 1 },
        webhook: Some(url),
        retrain: Some(keel_app::retrain::RetrainSpec {
            data: fresh.clone(),
            holdout: holdout.clone(),
            canary: Some(0.1),
            shadow: false,
            gate: Default::default(),
            trees: None,
        }),
    };
    let quiet = AlertRule {
        name: "never".into(),
        model: Some("other-model".into()),
        condition: Condition::PredictionDrift,
        webhook: None,
        retrain: None,
    };
    let s = server(ServerConfig {
        alerts: vec![rule, quiet],
        ..ServerConfig::default()
    })
    .await;
    let colours = ["blue", "green", "red"];
    for r in rows(400, 31, 35.0).chunks_exact(3) {
        let (st, _) = s
            .predict("risk@champion", record(r[0], colours[r[1] as usize], r[2]))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let fired = s.state.evaluate_alerts().await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (
            fired[0].alert.as_str(),
            fired[0].model.as_str(),
            fired[0].version
        ),
        ("age-drift", "risk", 1)
    );
    assert!(fired[0].reason.contains("age"), "{}", fired[0].reason);
    // Still drifting: no second notification.
    assert!(s.state.evaluate_alerts().await.is_empty());
    let audit = s.state.cache.store().audit_records().await.unwrap();
    let fires: Vec<_> = audit.iter().filter(|r| r.action == "alert.fire").collect();
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].target, "risk@1");
    // The rule queued one retraining job with its spec (no worker runs in this test; see closed_loop.rs).
    let jobs = s.state.cache.store().jobs(10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].model.as_str()),
        ("retrain", "risk")
    );
    assert_eq!(jobs[0].state, keel_store::JobState::Queued);
    assert_eq!(jobs[0].spec["canary"], 0.1);
    assert_eq!(jobs[0].created_by, "keel (alert age-drift)");
    // The webhook got it on the second attempt (the receiver fails once).
    for _ in 0..50 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["alert"], "age-drift");
    let (_, _, metrics) = s
        .call(s.req("GET", "/metrics", Some(Role::Reader), "", ""))
        .await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("keel_alerts_total{rule=\"age-drift\"} 1")
    );
}

#[test]
fn bad_rules_are_refused_at_start_up() {
    let rule = |when: Condition, webhook: Option<&str>| ServerConfig {
        alerts: vec![AlertRule {
            name: "r".into(),
            model: None,
            condition: when,
            webhook: webhook.map(str::to_string),
            retrain: None,
        }],
        ..ServerConfig::default()
    };
    assert!(
        rule(
            Condition::MetricBelow {
                metric: "f1".into(),
                floor: 0.5
            },
            None
        )
        .validate()
        .unwrap_err()
        .contains("metric 'f1'")
    );
    assert!(
        rule(Condition::PredictionDrift, Some("ftp://x"))
            .validate()
            .unwrap_err()
            .contains("webhook")
    );
    assert!(
        rule(Condition::PredictionDrift, Some("http://127.0.0.1:1/x"))
            .validate()
            .is_ok()
    );
    let from_toml: ServerConfig = toml::from_str(
        "[[alerts]]\nname = \"a\"\nwhen = \"drifted_features\"\nat_least = 3\nwebhook = \"http://127.0.0.1:9/h\"\n",
    )
    .unwrap();
    assert_eq!(
        from_toml.alerts[0].condition,
        Condition::DriftedFeatures { at_least: 3 }
    );
    assert!(
        rule(
            Condition::FairnessAbove {
                gap: "vibes".into(),
                ceiling: 0.1,
                column: None
            },
            None
        )
        .validate()
        .unwrap_err()
        .contains("gap 'vibes'")
    );
    // A fairness rule that retrains, from TOML.
    let from_toml: ServerConfig = toml::from_str(
        "[[alerts]]\nname = \"parity\"\nwhen = \"fairness_above\"\ngap = \"demographic_parity_difference\"\nceiling = 0.1\ncolumn = \"SEX\"\n[alerts.retrain]\ndata = \"a.parquet\"\nholdout = \"b.parquet\"\ncanary = 0.1\n",
    )
    .unwrap();
    from_toml.validate().unwrap();
    assert_eq!(
        from_toml.alerts[0].condition,
        Condition::FairnessAbove {
            gap: "demographic_parity_difference".into(),
            ceiling: 0.1,
            column: Some("SEX".into())
        }
    );
    assert_eq!(
        from_toml.alerts[0].retrain.as_ref().unwrap().canary,
        Some(0.1)
    );
}
