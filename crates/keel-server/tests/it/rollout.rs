//! Rollouts while serving: a canary answers its share of `NAME@champion` request ids (the same id always
//! lands on the same side), a degraded canary is rolled back automatically from delayed labels with the
//! champion untouched, and a shadow scores mirrored traffic into the prediction log without answering.

use crate::*;
use keel_engine::rollout::RolloutPolicy;

/// A model trained on labels that carry no signal.
fn noise_model() -> Model {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let x = rows(2000, 98, 0.0);
    let y: Vec<f64> = (0..2000)
        .map(|_| f64::from(u8::from(rng.random_bool(0.5))))
        .collect();
    let p = GbdtParams {
        n_trees: 40,
        learning_rate: 0.1,
        ..Default::default()
    };
    let (ens, _) = gbdt::train(
        &specs(),
        &x,
        &y,
        Objective::Binary,
        &p,
        None,
        &mut |_, _| true,
    )
    .unwrap();
    Model {
        objective: Objective::Binary,
        target: "y".into(),
        class_labels: Some(vec!["0".into(), "1".into()]),
        features: specs(),
        kind: ModelKind::Gbdt(ens),
        link: keel_ml::model::Link::of(Objective::Binary),
        numerics: keel_ml::model::Numerics::F64,
    }
}

/// The label the data-generating process of `model(1, _)` draws for a row.
fn true_label(rng: &mut rand_chacha::ChaCha8Rng, r: &[f64]) -> i64 {
    let z = (r[0] - 45.0) / 10.0 + if r[1] == 2.0 { 1.0 } else { -0.5 } + r[2] * 2.0;
    i64::from(rng.random_bool(1.0 / (1.0 + (-z).exp())))
}

async fn send(s: &TestServer, rid: &str, reference: &str, r: &[f64]) -> serde_json::Value {
    let colours = ["blue", "green", "red"];
    let req = Request::builder()
        .method("POST")
        .uri(format!("/v1/models/{reference}/predict"))
        .header(
            "authorization",
            format!("Bearer {}", s.keys[&Role::Predictor]),
        )
        .header("content-type", "application/json")
        .header("x-request-id", rid)
        .body(Body::from(
            record(r[0], colours[r[1] as usize], r[2]).to_string(),
        ))
        .unwrap();
    let (st, _, v) = s.call(req).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn label(s: &TestServer, labels: Vec<serde_json::Value>) {
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk/feedback",
            Some(Role::Predictor),
            "application/json",
            serde_json::json!({ "labels": labels }).to_string(),
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_degraded_canary_is_rolled_back_from_delayed_labels() {
    let s = server(ServerConfig {
        prediction_log_rate: 1.0,
        rollout: RolloutPolicy {
            min_labels: 100,
            ..RolloutPolicy::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let store = s.state.cache.store().clone();
    let bad = register(&store, &noise_model(), &[]).await;
    let r = store
        .deploy("risk", bad, Some(0.3), "tester", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((r.canary_version, r.canary_weight), (Some(bad), 0.3));
    s.state.cache.refresh().await.unwrap();
    let data = rows(600, 5, 0.0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let mut by_version = std::collections::HashMap::<i64, usize>::new();
    let mut labels = Vec::new();
    for (i, r) in data.chunks_exact(3).enumerate() {
        let rid = format!("req-{i}");
        let v = send(&s, &rid, "risk@champion", r).await;
        *by_version
            .entry(v["version"].as_i64().unwrap())
            .or_default() += 1;
        // The same request id is routed the same way every time.
        if i < 20 {
            let again = send(&s, &rid, "risk@champion", r).await;
            assert_eq!(again["version"], v["version"]);
        }
        labels.push(serde_json::json!({"request_id": rid, "label": true_label(&mut rng, r)}));
    }
    let canary_share = by_version[&bad] as f64 / 600.0;
    assert!((0.22..0.38).contains(&canary_share), "{by_version:?}");
    // Explicit references are never rerouted.
    let v = send(&s, "pinned", "risk@1", &data[..3]).await;
    assert_eq!(v["version"], 1);
    // Before labels arrive the judge waits.
    let ev = s.state.judge_rollouts().await;
    assert_eq!(ev[0].decision.as_str(), "wait", "{:?}", ev[0]);
    label(&s, labels).await;
    let ev = s.state.judge_rollouts().await;
    assert_eq!(ev[0].decision.as_str(), "rollback", "{:?}", ev[0]);
    let champ = ev[0].champion.as_ref().unwrap().metric.unwrap();
    let canary = ev[0].canary.as_ref().unwrap().metric.unwrap();
    assert!(champ > 0.75 && canary < 0.65, "{champ} vs {canary}");
    assert!(store.rollout("risk").await.unwrap().is_none());
    let audit = store.audit_records().await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.target.as_str()),
        ("rollout.rollback", &*format!("risk@{bad}"))
    );
    assert!(last.evidence.contains("worse by"), "{}", last.evidence);
    // The champion never moved, and now answers everything.
    let champion = store
        .get("risk", &keel_store::Selector::Alias("champion".into()))
        .await
        .unwrap();
    assert_eq!(champion.version, 1);
    for i in 0..50 {
        let v = send(&s, &format!("after-{i}"), "risk@champion", &data[..3]).await;
        assert_eq!(v["version"], 1);
    }
    assert!(store.audit_verify().await.unwrap().ok);
}

#[tokio::test]
async fn a_shadow_scores_mirrored_traffic_without_answering() {
    let s = server(ServerConfig {
        prediction_log_rate: 1.0,
        ..ServerConfig::default()
    })
    .await;
    let store = s.state.cache.store().clone();
    // Version 2 exists (registered by the test server); shadows cannot be the champion itself.
    assert!(
        store
            .deploy("risk", 1, None, "t", serde_json::json!({}))
            .await
            .is_err()
    );
    assert!(
        store
            .deploy("risk", 9, None, "t", serde_json::json!({}))
            .await
            .is_err()
    );
    store
        .deploy("risk", 2, None, "t", serde_json::json!({}))
        .await
        .unwrap();
    s.state.cache.refresh().await.unwrap();
    let data = rows(100, 9, 0.0);
    let mut labels = Vec::new();
    let mut shadow_direct = std::collections::HashMap::new();
    for (i, r) in data.chunks_exact(3).enumerate() {
        let rid = format!("s-{i}");
        let v = send(&s, &rid, "risk@champion", r).await;
        assert_eq!(v["version"], 1, "the shadow never answers");
        let direct = send(&s, &format!("d-{i}"), "risk@2", r).await;
        shadow_direct.insert(rid.clone(), direct["probability"].as_f64().unwrap());
        labels.push(serde_json::json!({"request_id": rid, "label": i % 2}));
    }
    label(&s, labels).await;
    let logged = store.labelled("risk", 0).await.unwrap();
    let mirrored: Vec<_> = logged.iter().filter(|l| l.version == 1).collect();
    assert_eq!(mirrored.len(), 100);
    for l in &mirrored {
        let (v, out) = l.shadow.expect("shadow output logged");
        assert_eq!(v, 2);
        assert!(shadow_direct.values().any(|p| (p - out).abs() < 1e-12));
    }
    let r = store.rollout("risk").await.unwrap().unwrap();
    let ev = keel_engine::rollout::evaluate(
        &store,
        &r,
        1,
        Objective::Binary,
        &RolloutPolicy {
            min_labels: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ev.decision.as_str(), "none");
    assert_eq!(ev.shadow.as_ref().unwrap().labelled, 100);
    assert_eq!(ev.shadow_champion.as_ref().unwrap().labelled, 100);
    // Ending the rollout is audited and stops the mirroring.
    store
        .end_rollout("risk", "rollout.stop", "t", serde_json::json!({}))
        .await
        .unwrap();
    assert!(
        store
            .end_rollout("risk", "rollout.stop", "t", serde_json::json!({}))
            .await
            .is_err()
    );
}
