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
