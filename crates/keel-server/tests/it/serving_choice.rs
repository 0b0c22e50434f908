//! What a bare model name serves, models of other kinds next to tabular ones, and the OpenAI-shaped model list.

use crate::*;

/// v1 is the champion, v2 is newer but was never made servable (a rejected challenger looks exactly like
/// this): a bare name serves v1, before and after a refresh, and only `risk@2` reaches v2.
#[tokio::test]
async fn a_bare_name_serves_the_champion_never_the_newest_version() {
    let s = server(ServerConfig::default()).await;
    let (st, v) = s.predict("risk", record(60.0, "red", 0.9)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 1, "{v}");
    // A third version lands (as a challenger would); a refresh must not swap the bare name to it.
    register(s.state.cache.store(), &model(3, 20), &["challenger"]).await;
    let moved = s.state.cache.refresh().await.unwrap();
    assert!(moved.is_empty(), "nothing moved, yet {moved:?}");
    let (_, v) = s.predict("risk", record(60.0, "red", 0.9)).await;
    assert_eq!(v["version"], 1, "{v}");
    let (_, v) = s.predict("risk@2", record(60.0, "red", 0.9)).await;
    assert_eq!(v["version"], 2, "{v}");
    // Moving the champion moves the bare name.
    s.state
        .cache
        .set_alias("risk", "champion", 3, "test")
        .await
        .unwrap();
    s.state.cache.refresh().await.unwrap();
    let (_, v) = s.predict("risk", record(60.0, "red", 0.9)).await;
    assert_eq!(v["version"], 3, "{v}");
}

/// A model with no champion is served only by explicit version; the bare name gets a 404 that says what
/// to do.
#[tokio::test]
async fn a_model_without_a_champion_is_not_served_by_its_bare_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    register(&store, &model(1, 10), &["staging"]).await;
    let state = AppState::new(store.clone(), ServerConfig::default())
        .await
        .unwrap();
    let p = state.cache.preload().await.unwrap();
    assert!(p.loaded.is_empty() && p.failed.is_empty(), "{p:?}");
    let e = state.cache.get("risk").await.err().unwrap();
    let api: keel_server::error::ApiError = e.into();
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.code, "no_alias");
    assert!(
        api.message.contains("keel models alias risk champion"),
        "{}",
        api.message
    );
    assert!(state.cache.get("risk@1").await.is_ok());
}

/// A guard model registered next to tabular models: preloading skips it and loads every champion after it,
/// and asking it for a prediction is a 422 that names what it is.
#[tokio::test]
async fn a_guard_model_never_breaks_serving_of_tabular_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    // Alphabetically before `risk`, like `guard` before most names.
    store
        .register(NewVersion {
            model: "aaa-guard".into(),
            description: "a guard".into(),
            kind: keel_server::guard::GUARD_KIND.into(),
            objective: "injection".into(),
            model_bytes: b"not a tabular model".to_vec(),
            params: serde_json::json!({}),
            metrics: serde_json::json!({}),
            schema: serde_json::json!({"input": "text"}),
            card: serde_json::json!({}),
            dataset_hash: "d".into(),
            code_version: "test".into(),
            created_by: "test".into(),
            aliases: vec!["champion".into()],
            champion_if_none: false,
            profile: serde_json::Value::Null,
        })
        .await
        .unwrap();
    register(&store, &model(1, 10), &["champion"]).await;
    let key = keel_engine::keys::create_key(&store, Role::Predictor, "t", "t")
        .await
        .unwrap()
        .key;
    let state = AppState::new(store.clone(), ServerConfig::default())
        .await
        .unwrap();
    let p = state.cache.preload().await.unwrap();
    assert_eq!(p.loaded, vec!["risk@champion".to_string()]);
    assert!(p.failed.is_empty(), "{p:?}");
    state.ready.store(true, Ordering::Release);
    let router = keel_server::router(state.clone());
    let req = |uri: &str| {
        axum::http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({"text": "hello"}).to_string(),
            ))
            .unwrap()
    };
    let resp = router
        .clone()
        .oneshot(req("/v1/models/aaa-guard@champion/predict"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_a_tabular_model", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("guard model"),
        "{v}"
    );
    assert_eq!(state.cache.loaded(), vec![("risk@champion".to_string(), 1)]);
}

/// `GET /v1/models` is OpenAI's list shape and still carries Keel's registry listing.
#[tokio::test]
async fn the_model_list_is_openai_shaped_and_keeps_the_registry_fields() {
    let s = server(ServerConfig::default()).await;
    let (st, _, v) = s
        .call(s.req("GET", "/v1/models", Some(Role::Reader), "", ""))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    let risk = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "risk")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(risk["object"], "model");
    assert_eq!(risk["owned_by"], "keel");
    assert!(risk["created"].as_i64().unwrap() > 1_700_000_000, "{risk}");
    assert_eq!(risk["latest_version"], 2);
    assert_eq!(risk["aliases"]["champion"], 1);
    assert_eq!(risk["champion"]["version"], 1);
    assert_eq!(risk["champion"]["metrics"]["auc"], 0.8);
}
