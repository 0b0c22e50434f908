//! Monitoring while serving: every prediction lands in a window profile, windows reach the store, and the
//! monitor route compares them with the training reference.

use crate::*;

/// Sends `n` single-record predictions built from `rows`.
async fn send(s: &TestServer, rows: &[f64]) {
    let colours = ["blue", "green", "red"];
    for r in rows.chunks_exact(3) {
        let (st, v) = s
            .predict("risk@champion", record(r[0], colours[r[1] as usize], r[2]))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
}

async fn report(s: &TestServer, query: &str) -> serde_json::Value {
    let (st, _, v) = s
        .call(s.req(
            "GET",
            &format!("/v1/models/risk@champion/monitor{query}"),
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn drifted(v: &serde_json::Value) -> Vec<String> {
    v["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == true)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn served_traffic_like_training_shows_no_drift() {
    let s = server(ServerConfig::default()).await;
    send(&s, &rows(400, 11, 0.0)).await;
    // A batch request counts every record.
    let batch: Vec<serde_json::Value> = (0..50)
        .map(|i| record(30.0 + i as f64, "red", 0.5))
        .collect();
    let (st, _) = s
        .predict("risk@champion", serde_json::json!({"records": batch}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = report(&s, "").await;
    assert_eq!(v["rows"], 450, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["windows"].as_array().unwrap().len(), 1);
    let names: Vec<&str> = v["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["age", "colour", "score", "prediction"]);
    assert_eq!(drifted(&v), Vec::<String>::new(), "{v}");
    // The window is in the store, under this replica.
    let stored = s.state.cache.store().profiles("risk", 1, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1["rows"], 450);
}

#[tokio::test]
async fn shifted_traffic_is_flagged_on_the_feature_and_the_prediction() {
    let s = server(ServerConfig::default()).await;
    send(&s, &rows(400, 12, 35.0)).await;
    let v = report(&s, "?windows=2").await;
    let d = drifted(&v);
    assert!(d.contains(&"age".to_string()), "{v}");
    assert!(
        d.contains(&"prediction".to_string()),
        "older ages mean higher scores: {v}"
    );
    assert!(
        !d.contains(&"colour".to_string()) && !d.contains(&"score".to_string()),
        "{d:?}"
    );
    let (st, h, body) = s
        .call(s.req(
            "GET",
            "/v1/models/risk@champion/monitor?format=html",
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(body.as_str().unwrap().contains("<svg"));
    let (st, _, e) = s
        .call(s.req(
            "GET",
            "/v1/models/risk@champion/monitor?windows=0",
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
}

#[tokio::test]
async fn too_few_rows_say_insufficient_data_and_monitoring_can_be_off() {
    let s = server(ServerConfig::default()).await;
    send(&s, &rows(20, 13, 35.0)).await;
    let v = report(&s, "").await;
    assert_eq!(drifted(&v), Vec::<String>::new());
    assert!(
        v["drift"]["columns"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("insufficient data"),
        "{v}"
    );
    let off = server(ServerConfig {
        monitoring: false,
        ..ServerConfig::default()
    })
    .await;
    send(&off, &rows(200, 14, 0.0)).await;
    assert_eq!(report(&off, "").await["rows"], 0);
}

async fn predict_as(s: &TestServer, rid: &str, body: serde_json::Value) -> f64 {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/models/risk@champion/predict")
        .header(
            "authorization",
            format!("Bearer {}", s.keys[&Role::Predictor]),
        )
        .header("content-type", "application/json")
        .header("x-request-id", rid)
        .body(Body::from(body.to_string()))
        .unwrap();
    let (st, _, v) = s.call(req).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["request_id"], rid);
    v["probability"].as_f64().unwrap()
}

async fn feedback(s: &TestServer, labels: serde_json::Value) -> (StatusCode, serde_json::Value) {
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk@champion/feedback",
            Some(Role::Predictor),
            "application/json",
            serde_json::json!({ "labels": labels }).to_string(),
        ))
        .await;
    (st, v)
}

#[tokio::test]
async fn delayed_labels_join_their_predictions_by_request_id() {
    let s = server(ServerConfig {
        redact: vec!["age".into()],
        prediction_log_rate: 1.0,
        ..ServerConfig::default()
    })
    .await;
    let colours = ["blue", "green", "red"];
    let data = rows(200, 21, 0.0);
    let mut probs = Vec::new();
    for (i, r) in data.chunks_exact(3).enumerate() {
        probs.push(
            predict_as(
                &s,
                &format!("r{i}"),
                record(r[0], colours[r[1] as usize], r[2]),
            )
            .await,
        );
    }
    // The first 100 labels agree with the decision, the next 50 disagree; 10 ids were never served.
    let decision = |p: f64| if p >= 0.5 { 1 } else { 0 };
    let mut labels: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            let d = decision(probs[i]);
            serde_json::json!({"request_id": format!("r{i}"), "label": if i < 100 { d } else { 1 - d }})
        })
        .collect();
    labels.extend(
        (0..10).map(|i| serde_json::json!({"request_id": format!("ghost{i}"), "label": 1})),
    );
    let (st, out) = feedback(&s, serde_json::Value::Array(labels)).await;
    assert_eq!(st, StatusCode::OK, "{out}");
    assert_eq!(
        (
            out["stored"].as_u64(),
            out["replaced"].as_u64(),
            out["unknown"].as_u64()
        ),
        (Some(150), Some(0), Some(10))
    );
    // A second label for r0 replaces the first (as a class label string this time), and is audited.
    let flipped = 1 - decision(probs[0]);
    let (st, out) = feedback(
        &s,
        serde_json::json!([{"request_id": "r0", "label": flipped.to_string()}]),
    )
    .await;
    assert_eq!(
        (st, out["replaced"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{out}"
    );
    let audit = s.state.cache.store().audit_records().await.unwrap();
    assert_eq!(audit.last().unwrap().action, "labels.replace");
    // The join: every labelled prediction carries the output served for its request id.
    let joined = s.state.cache.store().labelled("risk", 0).await.unwrap();
    assert_eq!(joined.len(), 150);
    for l in &joined {
        assert!(l.features[0].is_nan(), "age is redacted in the log");
        assert!(probs.iter().any(|p| (p - l.output).abs() < 1e-12));
    }
    let v = report(&s, "").await;
    let w = &v["realized"][0];
    assert_eq!(w["labelled"], 150, "{v}");
    assert!(
        (w["accuracy"].as_f64().unwrap() - 99.0 / 150.0).abs() < 1e-12,
        "{w}"
    );
    assert!(w["roc_auc"].as_f64().is_some());
    // Intervals, and the same realized performance on the HTML page (a person-readable window, a chart).
    let [lo, hi] =
        [&w["roc_auc_interval"][0], &w["roc_auc_interval"][1]].map(|x| x.as_f64().unwrap());
    let auc = w["roc_auc"].as_f64().unwrap();
    assert!(lo <= auc && auc <= hi && hi - lo > 0.0, "{w}");
    let [alo, ahi] =
        [&w["accuracy_interval"][0], &w["accuracy_interval"][1]].map(|x| x.as_f64().unwrap());
    assert!(alo < 99.0 / 150.0 && 99.0 / 150.0 < ahi, "{w}");
    let (st, _, page) = s
        .call(s.req(
            "GET",
            "/v1/models/risk@champion/monitor?format=html",
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(page.contains("Realized performance"), "no realized section");
    assert!(
        page.contains(&format!("{auc:.4}")),
        "the page lacks the AUC {auc:.4}"
    );
    assert!(page.contains(" UTC</td>"), "windows are not readable times");
    assert!(page.contains("ROC-AUC per window"), "no chart");
    // Labels of the wrong type are refused with their path; nothing is stored.
    let (st, e) = feedback(
        &s,
        serde_json::json!([{"request_id": "r1", "label": "maybe"}, {"label": 1}]),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = e["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["$.labels[0].label", "$.labels[1].request_id"]);
}

#[tokio::test]
async fn the_prediction_log_samples_by_request_id() {
    let s = server(ServerConfig::default()).await;
    let ids: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
    let logged = ids.iter().filter(|id| s.state.logs(id)).count();
    let share = logged as f64 / ids.len() as f64;
    // The default rate, within five standard errors of a binomial share over 20,000 ids.
    let rate = ServerConfig::default().prediction_log_rate;
    let se = (rate * (1.0 - rate) / ids.len() as f64).sqrt();
    assert!(
        rate > 0.0 && (share - rate).abs() < 5.0 * se,
        "{share} vs {rate}"
    );
    // The same id gets the same answer, so every row of a request (and every replica) agrees.
    assert!(ids.iter().all(|id| s.state.logs(id) == s.state.logs(id)));
    let all = server(ServerConfig {
        prediction_log_rate: 1.0,
        ..ServerConfig::default()
    })
    .await;
    assert!(ids.iter().all(|id| all.state.logs(id)));
    let none = server(ServerConfig {
        prediction_log_rate: 0.0,
        ..ServerConfig::default()
    })
    .await;
    assert!(!ids.iter().any(|id| none.state.logs(id)));
}

/// Served rows of a version add up across alias moves and rollbacks: moving `champion` away from v1 retires
/// its loaded copy, moving it back loads a fresh one, and the fresh one's counts add to what was flushed
/// instead of replacing it (the stored row is keyed by model, version, window and replica).
#[tokio::test]
async fn monitoring_counts_add_up_across_alias_moves_and_rollbacks() {
    let s = server(ServerConfig::default()).await;
    send(&s, &rows(300, 21, 0.0)).await;
    s.state.flush_monitoring().await;
    s.state
        .cache
        .set_alias("risk", "champion", 2, "test")
        .await
        .unwrap();
    send(&s, &rows(10, 22, 0.0)).await;
    s.state.flush_monitoring().await;
    // Roll back: v1 is loaded anew with empty counters.
    s.state
        .cache
        .set_alias("risk", "champion", 1, "test")
        .await
        .unwrap();
    send(&s, &rows(1, 23, 0.0)).await;
    s.state.flush_monitoring().await;
    let (st, _, v) = s
        .call(s.req(
            "GET",
            "/v1/models/risk@1/monitor",
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rows"], 301, "{v}");
    let (_, _, v) = s
        .call(s.req(
            "GET",
            "/v1/models/risk@2/monitor",
            Some(Role::Reader),
            "",
            "",
        ))
        .await;
    assert_eq!(v["rows"], 10, "{v}");
    // A second replica's counts for the same window merge at read time.
    let stored: u64 = s
        .state
        .cache
        .store()
        .profiles("risk", 1, 0)
        .await
        .unwrap()
        .iter()
        .map(|(_, c)| c["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 301);
}

/// Feedback flushes the prediction log before joining; that flush must also wait for rows another flush
/// (the periodic writer) has already taken from the buffer but not yet stored, or labels for predictions
/// served a moment ago come back "unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_returns_only_when_rows_another_flush_took_are_stored() {
    let s = server(ServerConfig {
        prediction_log_rate: 1.0,
        ..Default::default()
    })
    .await;
    let now = keel_core::time::now_unix_ms();
    let n = 60_000;
    s.state.log_predictions(
        (0..n)
            .map(|i| keel_store::LoggedPrediction {
                model: "risk".into(),
                version: 1,
                request_id: format!("r{i}"),
                row: 0,
                at_ms: now,
                features: vec![40.0, 1.0, 0.5],
                output: 0.5,
                shadow: None,
                probabilities: None,
                shadow_probabilities: None,
            })
            .collect(),
    );
    let st = s.state.clone();
    let background = tokio::spawn(async move { st.flush_log().await });
    // Wait until the background flush has taken the whole buffer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !s.state.log.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flush never started"
        );
        tokio::task::yield_now().await;
    }
    // What the feedback route does: flush, then join the newest prediction.
    s.state.flush_log().await;
    let out = s
        .state
        .cache
        .store()
        .put_labels(
            "risk",
            &[keel_store::Feedback {
                request_id: format!("r{}", n - 1),
                row: 0,
                label: 1.0,
            }],
            "test",
        )
        .await
        .unwrap();
    assert_eq!((out.stored, out.unknown), (1, 0), "{out:?}");
    background.await.unwrap();
}

/// The prediction log is bounded twice: a full buffer drops (and exports the count of) new rows, and
/// retention deletes the oldest stored rows beyond the configured size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prediction_log_is_bounded_and_its_losses_are_exported() {
    let s = server(ServerConfig {
        prediction_log_rate: 1.0,
        prediction_log_max_rows: 1_000,
        ..Default::default()
    })
    .await;
    let row = |i: usize| keel_store::LoggedPrediction {
        model: "risk".into(),
        version: 1,
        request_id: format!("q{i}"),
        row: 0,
        at_ms: keel_core::time::now_unix_ms() - 10_000 + i as i64,
        features: vec![40.0, 1.0, 0.5],
        output: 0.5,
        shadow: None,
        probabilities: None,
        shadow_probabilities: None,
    };
    let dropped_before = keel_server::metrics::METRICS.log_dropped.get();
    s.state
        .log_predictions((0..keel_server::PREDICTION_LOG_BUFFER).map(row).collect());
    // The buffer is full: these are dropped and counted.
    s.state.log_predictions((0..10).map(row).collect());
    assert!(keel_server::metrics::METRICS.log_dropped.get() >= dropped_before + 10);
    let (_, _, text) = s
        .call(s.req("GET", "/metrics", Some(Role::Reader), "", ""))
        .await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("keel_prediction_log_dropped_total"),
        "not exported"
    );
    s.state.flush_log().await;
    let pruned = s.state.prune_log().await;
    assert_eq!(pruned as usize, keel_server::PREDICTION_LOG_BUFFER - 1_000);
    // The newest rows are kept.
    let newest = format!("q{}", keel_server::PREDICTION_LOG_BUFFER - 1);
    let out = s
        .state
        .cache
        .store()
        .put_labels(
            "risk",
            &[
                keel_store::Feedback {
                    request_id: newest,
                    row: 0,
                    label: 1.0,
                },
                keel_store::Feedback {
                    request_id: "q0".into(),
                    row: 0,
                    label: 1.0,
                },
            ],
            "t",
        )
        .await
        .unwrap();
    assert_eq!((out.stored, out.unknown), (1, 1));
}

/// Version 2 is not preloaded: several first requests for it at once load it concurrently. They must end
/// up sharing the one instance whose profile is flushed (before, the last load replaced the cache's version
/// entry while the reference kept the first, so the counts recorded into the first were never written).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_loads_of_a_version_share_the_flushed_profile() {
    let s = server(ServerConfig::default()).await;
    let c = &s.state.cache;
    let (a, b, d, e) = tokio::join!(
        c.get("risk@2"),
        c.get("risk@2"),
        c.route("risk@2", "r1"),
        c.get("risk@2")
    );
    let (a, b, d, e) = (a.unwrap(), b.unwrap(), d.unwrap().0, e.unwrap());
    for other in [&b, &d, &e] {
        assert!(
            std::sync::Arc::ptr_eq(&a, other),
            "one instance per version"
        );
    }
    let monitored: Vec<_> = c
        .monitored()
        .into_iter()
        .filter(|m| m.version == 2)
        .collect();
    assert_eq!(monitored.len(), 1);
    assert!(std::sync::Arc::ptr_eq(&a, &monitored[0]));
}
