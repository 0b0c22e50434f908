//! Hot swap: 1,000 alias moves under concurrent prediction load; no request fails and every response is the
//! exact output of the version it names.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_alias_swaps_under_load_lose_and_mix_nothing() {
    let s = server(ServerConfig::default()).await;
    let versions = [model(1, 40), model(2, 60)];
    let rec = record(52.0, "green", 0.7);
    let expected: Vec<u64> = versions
        .iter()
        .map(|m| m.predict(&[52.0, 1.0, 0.7]).to_bits())
        .collect();
    assert_ne!(
        expected[0], expected[1],
        "the two versions must differ for this test to mean anything"
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let router = s.router.clone();
        let key = s.keys[&Role::Predictor].clone();
        let stop = stop.clone();
        let body = rec.to_string();
        let expected = expected.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = [0usize; 2];
            while !stop.load(Ordering::Relaxed) {
                let req = axum::http::Request::builder()
                    .method("POST")
                    .uri("/v1/models/risk@champion/predict")
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let resp = router.clone().oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let v: serde_json::Value = serde_json::from_slice(
                    &axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .unwrap(),
                )
                .unwrap();
                let version = v["version"].as_i64().unwrap() as usize;
                assert!(version == 1 || version == 2);
                assert_eq!(
                    v["probability"].as_f64().unwrap().to_bits(),
                    expected[version - 1],
                    "response mixes versions"
                );
                seen[version - 1] += 1;
                // In-process calls complete without ever waiting; yield so the task moving aliases runs too.
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    for i in 0..1000 {
        let target = if i % 2 == 0 { 2 } else { 1 };
        let (st, _, v) = s
            .call(s.req(
                "PUT",
                "/v1/models/risk/aliases/champion",
                Some(Role::Deployer),
                "application/json",
                format!("{{\"version\": {target}}}"),
            ))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["version"], target);
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0usize; 2];
    for c in clients {
        let seen = c.await.expect("a client saw a failed or mixed response");
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(
        total[0] > 0 && total[1] > 0,
        "both versions must have served: {total:?}"
    );
    // After the last move (to version 1) the alias serves version 1.
    let (_, v) = s.predict("risk@champion", rec).await;
    assert_eq!(v["version"], 1);
}
