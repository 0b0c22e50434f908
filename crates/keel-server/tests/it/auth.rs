//! The auth matrix: every route that needs a key answers 401 without one, 403 with a role one below the one it
//! needs, and serves with the right role; open routes need nothing.

use crate::*;

#[tokio::test]
async fn every_route_enforces_its_role() {
    let s = server(ServerConfig::default()).await;
    // A third version to delete, and two runs to log to and compare.
    let store = s.state.cache.store();
    register(store, &model(3, 20), &[]).await;
    let mut run_ids = vec![];
    for _ in 0..2 {
        let r = store
            .create_run(keel_store::NewRun {
                experiment: "auth".into(),
                source: "client".into(),
                created_by: "test".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        run_ids.push(r.id);
    }
    store
        .put_run_artifact(&run_ids[0], "notes.txt", b"hi")
        .await
        .unwrap();
    let run = run_ids[0].clone();
    let compare = format!("/v1/runs/compare?ids={},{}", run_ids[0], run_ids[1]);
    let alias_body = r#"{"version": 1}"#;
    let key_body = r#"{"role": "reader"}"#;
    let predict_body = record(30.0, "red", 0.5).to_string();
    let routes: Vec<(&str, &str, Role, &str, String)> = vec![
        ("GET", "/v1/models", Role::Reader, "", String::new()),
        (
            "GET",
            "/v1/models/risk@champion",
            Role::Reader,
            "",
            String::new(),
        ),
        ("GET", "/metrics", Role::Reader, "", String::new()),
        (
            "GET",
            "/v1/models/risk@champion/monitor",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "POST",
            "/v1/models/risk/predict",
            Role::Predictor,
            "application/json",
            predict_body,
        ),
        (
            "POST",
            "/v1/models/risk/feedback",
            Role::Predictor,
            "application/json",
            r#"{"labels": []}"#.into(),
        ),
        (
            "PUT",
            "/v1/models/risk/aliases/challenger",
            Role::Deployer,
            "application/json",
            alias_body.into(),
        ),
        (
            "POST",
            "/v1/keys",
            Role::Admin,
            "application/json",
            key_body.into(),
        ),
        ("GET", "/v1/keys", Role::Admin, "", String::new()),
        (
            "GET",
            "/v1/models/risk/versions",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            "/v1/models/risk/versions/1",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            "/v1/models/risk/versions/champion/card",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            "/v1/models/risk/versions/1/lineage",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            "/v1/models/risk/aliases",
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            "/v1/models/risk/drift",
            Role::Reader,
            "",
            String::new(),
        ),
        ("GET", "/v1/jobs", Role::Reader, "", String::new()),
        (
            "GET",
            "/v1/rag/collections",
            Role::Reader,
            "",
            String::new(),
        ),
        ("GET", "/v1/runs", Role::Reader, "", String::new()),
        ("GET", "/v1/experiments", Role::Reader, "", String::new()),
        (
            "POST",
            "/v1/runs",
            Role::Predictor,
            "application/json",
            r#"{"experiment": "auth"}"#.into(),
        ),
        (
            "POST",
            format!("/v1/runs/{run}/log-batch").leak(),
            Role::Predictor,
            "application/json",
            r#"{"params": {"lr": 0.1}, "metrics": [{"key": "loss", "value": 0.5, "step": 1}]}"#
                .into(),
        ),
        (
            "PUT",
            format!("/v1/runs/{run}/artifacts/plots/a.txt").leak(),
            Role::Predictor,
            "application/octet-stream",
            "bytes".into(),
        ),
        (
            "GET",
            format!("/v1/runs/{run}/artifacts/notes.txt").leak(),
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            format!("/v1/runs/{run}/metrics/loss").leak(),
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "GET",
            compare.clone().leak(),
            Role::Reader,
            "",
            String::new(),
        ),
        (
            "PATCH",
            "/v1/models/risk/versions/2",
            Role::Deployer,
            "application/json",
            r#"{"description": "second", "tags": {"team": "risk"}}"#.into(),
        ),
        (
            "POST",
            "/v1/models/risk/versions/2/archive",
            Role::Deployer,
            "application/json",
            r#"{"restore": true}"#.into(),
        ),
        (
            "DELETE",
            "/v1/models/risk/versions/3",
            Role::Admin,
            "",
            String::new(),
        ),
        (
            "POST",
            "/v1/models/risk/rollout",
            Role::Deployer,
            "application/json",
            r#"{"version": 2, "mode": "shadow"}"#.into(),
        ),
        (
            "GET",
            "/v1/models/risk/rollout",
            Role::Reader,
            "",
            String::new(),
        ),
        ("GET", "/v1/audit", Role::Admin, "", String::new()),
        ("GET", "/v1/audit/verify", Role::Admin, "", String::new()),
    ];
    let below = |r: Role| match r {
        Role::Reader => None,
        Role::Predictor => Some(Role::Reader),
        Role::Deployer => Some(Role::Predictor),
        Role::Admin => Some(Role::Deployer),
    };
    for (method, uri, needed, ct, body) in &routes {
        let (st, h, v) = s.call(s.req(method, uri, None, ct, body.clone())).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without a key: {v}"
        );
        assert_eq!(v["error"]["code"], "unauthorized");
        assert_eq!(h["www-authenticate"], "Bearer");
        if let Some(low) = below(*needed) {
            let (st, _, v) = s
                .call(s.req(method, uri, Some(low), ct, body.clone()))
                .await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {uri} with {low}: {v}");
            assert_eq!(v["error"]["code"], "forbidden");
        }
        for role in [Role::Reader, Role::Predictor, Role::Deployer, Role::Admin]
            .into_iter()
            .filter(|r| r.allows(*needed))
        {
            let (st, _, v) = s
                .call(s.req(method, uri, Some(role), ct, body.clone()))
                .await;
            assert!(st.is_success(), "{method} {uri} with {role}: {st} {v}");
        }
    }
    // A wrong key is 401, whatever its shape.
    for bad in [
        "nonsense",
        "keel_nope_nope",
        &format!("{}x", s.keys[&Role::Admin]),
    ] {
        let req = axum::http::Request::builder()
            .uri("/v1/models")
            .header("authorization", format!("Bearer {bad}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(s.call(req).await.0, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Open routes.
    for uri in ["/healthz", "/readyz", "/openapi.json"] {
        let (st, _, _) = s.call(s.req("GET", uri, None, "", "")).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn revoked_keys_stop_working() {
    let s = server(ServerConfig::default()).await;
    let (st, _, created) = s
        .call(s.req(
            "POST",
            "/v1/keys",
            Some(Role::Admin),
            "application/json",
            r#"{"role": "predictor"}"#,
        ))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let with = |k: &str| {
        axum::http::Request::builder()
            .method("POST")
            .uri("/v1/models/risk/predict")
            .header("authorization", format!("Bearer {k}"))
            .header("content-type", "application/json")
            .body(Body::from(record(40.0, "blue", 0.1).to_string()))
            .unwrap()
    };
    assert_eq!(s.call(with(&key)).await.0, StatusCode::OK);
    let (st, _, _) = s
        .call(s.req(
            "DELETE",
            &format!("/v1/keys/{id}"),
            Some(Role::Admin),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, v) = s.call(with(&key)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));
}

#[tokio::test]
async fn per_key_rate_limits_answer_429_with_retry_after() {
    let s = server(ServerConfig {
        rate_limit_per_second: 2,
        rate_limit_burst: 3,
        ..Default::default()
    })
    .await;
    let mut limited = 0;
    for _ in 0..10 {
        let (st, h, v) = s
            .call(s.req("GET", "/v1/models", Some(Role::Reader), "", ""))
            .await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert_eq!(v["error"]["code"], "rate_limited");
            assert_eq!(h["retry-after"], "1");
        }
    }
    assert!(limited >= 6, "only {limited} of 10 were limited");
    // Another key has its own bucket.
    let (st, _, _) = s
        .call(s.req("GET", "/v1/models", Some(Role::Admin), "", ""))
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn auth_can_be_disabled_explicitly() {
    let s = server(ServerConfig {
        auth: false,
        ..Default::default()
    })
    .await;
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk/predict",
            None,
            "application/json",
            record(30.0, "red", 0.2).to_string(),
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Without auth nobody is identified, so no credentials are minted or revoked here: a key made by a
    // --no-auth server would be accepted by the authenticated servers sharing its home.
    let before = s.state.cache.store().keys().await.unwrap().len();
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/keys",
            None,
            "application/json",
            r#"{"role": "admin"}"#,
        ))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth_disabled")),
        "{v}"
    );
    let id = s.keys[&Role::Reader].split('_').nth(1).unwrap().to_string();
    let (st, _, _) = s
        .call(s.req("DELETE", &format!("/v1/keys/{id}"), None, "", ""))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let keys = s.state.cache.store().keys().await.unwrap();
    assert_eq!(keys.len(), before);
    assert!(keys.iter().all(|k| k.revoked_at.is_none()));
}

/// Key ids are public. A flood of wrong secrets for a real id costs at most a budget of argon2 verifications
/// per client address (then 429 without verifying), refusals look the same whether or not the id exists,
/// and a client whose key was verified before is not affected.
#[tokio::test]
async fn wrong_secret_floods_are_bounded_per_address_and_reveal_no_ids() {
    let s = server(ServerConfig {
        auth_attempts_per_second: 2,
        auth_attempts_burst: 5,
        ..Default::default()
    })
    .await;
    // The reader's key is verified once (and cached) before the flood.
    let (st, _, _) = s
        .call(s.req("GET", "/v1/models", Some(Role::Reader), "", ""))
        .await;
    assert_eq!(st, StatusCode::OK);
    let real = &s.keys[&Role::Predictor];
    let id = real.split('_').nth(1).unwrap();
    let with = |key: String| {
        Request::builder()
            .method("GET")
            .uri("/v1/models")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let wrong = format!("keel_{id}_{}", "x".repeat(40));
    let unknown = format!("keel_NOSUCHIDxxx_{}", "x".repeat(40));
    let (a, _, va) = s.call(with(wrong.clone())).await;
    let (b, _, vb) = s.call(with(unknown)).await;
    assert_eq!((a, b), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(va, vb, "a refusal must not tell whether the id exists");
    let mut throttled = 0;
    for _ in 0..30 {
        let (st, h, v) = s.call(with(wrong.clone())).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
            assert_eq!(v["error"]["code"], "auth_rate_limited");
            assert_eq!(h["retry-after"], "1");
        } else {
            assert_eq!(st, StatusCode::UNAUTHORIZED);
        }
    }
    assert!(
        throttled >= 20,
        "only {throttled} of 30 were refused before verifying"
    );
    // The cached key still works during the flood.
    let (st, _, _) = s
        .call(s.req("GET", "/v1/models", Some(Role::Reader), "", ""))
        .await;
    assert_eq!(st, StatusCode::OK);
}

/// `POST /v1/keys` has its own small body limit and a length limit on the description; every refusal uses the
/// JSON error envelope. (A 50 MiB description used to be stored and audited.)
#[tokio::test]
async fn key_requests_are_bounded_and_refused_in_the_error_envelope() {
    let s = server(ServerConfig::default()).await;
    let post = |body: String| {
        s.req(
            "POST",
            "/v1/keys",
            Some(Role::Admin),
            "application/json",
            body,
        )
    };
    let huge = format!(
        r#"{{"role": "reader", "description": "{}"}}"#,
        "x".repeat(1 << 20)
    );
    let (st, _, v) = s.call(post(huge)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");
    let long = format!(
        r#"{{"role": "reader", "description": "{}"}}"#,
        "x".repeat(600)
    );
    let (st, _, v) = s.call(post(long)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("$.description"),
        "{v}"
    );
    let (st, _, v) = s.call(post("{not json".into())).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_body");
    let (st, _, v) = s.call(post(r#"{"role": "emperor"}"#.into())).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_role"))
    );
    let (st, _, v) = s
        .call(post(r#"{"role": "reader", "description": "ok"}"#.into()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Nothing of the refused requests reached the audit log.
    let audit = s.state.cache.store().audit_records().await.unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "key.create").count(),
        5,
        "4 fixture keys + 1"
    );
}

/// The bearer scheme is case-insensitive (RFC 7235), and the last active admin key cannot be revoked.
#[tokio::test]
async fn bearer_is_case_insensitive_and_the_last_admin_key_stays() {
    let s = server(ServerConfig::default()).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let req = Request::builder()
            .method("GET")
            .uri("/v1/models")
            .header(
                "authorization",
                format!("{scheme} {}", s.keys[&Role::Reader]),
            )
            .body(Body::empty())
            .unwrap();
        let (st, _, _) = s.call(req).await;
        assert_eq!(st, StatusCode::OK, "{scheme}");
    }
    let admin = s.keys[&Role::Admin].split('_').nth(1).unwrap().to_string();
    let (st, _, v) = s
        .call(s.req(
            "DELETE",
            &format!("/v1/keys/{admin}"),
            Some(Role::Admin),
            "",
            "",
        ))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_admin_key")),
        "{v}"
    );
    // With a second admin, the first can go.
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/keys",
            Some(Role::Admin),
            "application/json",
            r#"{"role": "admin"}"#,
        ))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _, _) = s
        .call(s.req(
            "DELETE",
            &format!("/v1/keys/{admin}"),
            Some(Role::Admin),
            "",
            "",
        ))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}
