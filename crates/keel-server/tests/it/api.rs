//! Predictions, every kind of bad input, tabular bodies, and the committed OpenAPI document.

use crate::*;

#[tokio::test]
async fn single_and_batch_predictions_carry_model_version_and_request_id() {
    let s = server(ServerConfig::default()).await;
    let m = model(1, 40);
    let (st, v) = s.predict("risk@champion", record(60.0, "red", 0.9)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "risk");
    assert_eq!(v["version"], 1);
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let p = v["probability"].as_f64().unwrap();
    assert_eq!(
        p.to_bits(),
        m.predict(&[60.0, 2.0, 0.9]).to_bits(),
        "served probability differs from the model's"
    );
    assert_eq!(v["prediction"], if p >= 0.5 { 1 } else { 0 });

    let body =
        serde_json::json!({"records": [record(20.0, "blue", 0.1), record(70.0, "green", 0.5)]});
    let (st, v) = s.predict("risk@2", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 2);
    assert_eq!(v["predictions"].as_array().unwrap().len(), 2);

    // The client's request id is echoed.
    let mut req = s.req(
        "POST",
        "/v1/models/risk/predict",
        Some(Role::Predictor),
        "application/json",
        record(1.0, "red", 0.0).to_string(),
    );
    req.headers_mut()
        .insert("x-request-id", "client-id-42".parse().unwrap());
    let (_, h, v) = s.call(req).await;
    assert_eq!(h["x-request-id"], "client-id-42");
    assert_eq!(v["request_id"], "client-id-42");
}

#[tokio::test]
async fn explanations_sum_to_the_margin() {
    let s = server(ServerConfig::default()).await;
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk/predict?explain=true&top_k=3",
            Some(Role::Predictor),
            "application/json",
            record(50.0, "green", 0.3).to_string(),
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let e = &v["explanation"];
    let contributions = e["contributions"].as_array().unwrap();
    assert_eq!(contributions.len(), 3);
    let sum: f64 = contributions
        .iter()
        .map(|c| c[1].as_f64().unwrap())
        .sum::<f64>()
        + e["expected_value"].as_f64().unwrap();
    let p = v["probability"].as_f64().unwrap();
    assert!(
        (1.0 / (1.0 + (-sum).exp()) - p).abs() < 1e-9,
        "SHAP sum {sum} vs probability {p}"
    );
}

struct Bad {
    name: &'static str,
    uri: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
    path: Option<&'static str>,
}

fn bad_inputs() -> Vec<Bad> {
    let p = "/v1/models/risk/predict".to_string();
    let mut deep = String::new();
    for _ in 0..10_000 {
        deep.push('[');
    }
    let many: Vec<serde_json::Value> = (0..10_000).map(|i| record(i as f64, "red", 0.5)).collect();
    vec![
        Bad { name: "malformed JSON", uri: p.clone(), content_type: "application/json", body: b"{\"age\": 3,".to_vec(), status: StatusCode::BAD_REQUEST, code: "malformed_json", path: None },
        Bad { name: "wrong content type", uri: p.clone(), content_type: "text/plain", body: b"age=3".to_vec(), status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: "unsupported_media_type", path: None },
        Bad { name: "10 MB body", uri: p.clone(), content_type: "application/json", body: vec![b' '; 10 * 1024 * 1024], status: StatusCode::PAYLOAD_TOO_LARGE, code: "body_too_large", path: None },
        Bad {
            name: "10,000 records",
            uri: p.clone(),
            content_type: "application/json",
            body: serde_json::json!({"records": many}).to_string().into_bytes(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_many_records",
            path: None,
        },
        Bad { name: "deep nesting", uri: p.clone(), content_type: "application/json", body: deep.into_bytes(), status: StatusCode::BAD_REQUEST, code: "malformed_json", path: None },
        Bad {
            name: "string where a number belongs",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": "forty", "colour": "red", "score": 0.1}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.age"),
        },
        Bad { name: "NaN literal", uri: p.clone(), content_type: "application/json", body: br#"{"age": NaN, "colour": "red", "score": 0.1}"#.to_vec(), status: StatusCode::BAD_REQUEST, code: "malformed_json", path: None },
        Bad {
            name: "NaN as a string",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": 3, "colour": "red", "score": "NaN"}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.score"),
        },
        Bad {
            name: "number out of range",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": 1e999, "colour": "red", "score": 0.1}"#.to_vec(),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            path: None,
        },
        Bad {
            name: "unseen category in a batch",
            uri: p.clone(),
            content_type: "application/json",
            body: serde_json::json!({"records": [record(1.0, "red", 0.1), record(2.0, "purple", 0.1)]}).to_string().into_bytes(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.records[1].colour"),
        },
        Bad {
            name: "missing field",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": 3, "score": 0.1}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.colour"),
        },
        Bad {
            name: "unknown field",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": 3, "colour": "red", "score": 0.1, "zip": "02139"}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.zip"),
        },
        Bad {
            name: "null where training had none",
            uri: p.clone(),
            content_type: "application/json",
            body: br#"{"age": null, "colour": "red", "score": 0.1}"#.to_vec(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "schema_mismatch",
            path: Some("$.age"),
        },
        Bad { name: "a boolean for a numeric feature", uri: p.clone(), content_type: "application/json", body: br#"{"age": true, "colour": "red", "score": 0.1}"#.to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.age") },
        Bad { name: "1e308", uri: p.clone(), content_type: "application/json", body: br#"{"age": 1e308, "colour": "red", "score": 0.1}"#.to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.age") },
        Bad { name: "2^64", uri: p.clone(), content_type: "application/json", body: br#"{"age": 18446744073709551616, "colour": "red", "score": 0.1}"#.to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.age") },
        Bad { name: "records not an array", uri: p.clone(), content_type: "application/json", body: br#"{"records": 5}"#.to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.records") },
        Bad { name: "unknown model", uri: "/v1/models/ghost/predict".into(), content_type: "application/json", body: record(1.0, "red", 0.1).to_string().into_bytes(), status: StatusCode::NOT_FOUND, code: "unknown_model", path: None },
        Bad { name: "unknown version", uri: "/v1/models/risk@9/predict".into(), content_type: "application/json", body: record(1.0, "red", 0.1).to_string().into_bytes(), status: StatusCode::NOT_FOUND, code: "unknown_version", path: None },
        Bad { name: "unknown alias", uri: "/v1/models/risk@canary/predict".into(), content_type: "application/json", body: record(1.0, "red", 0.1).to_string().into_bytes(), status: StatusCode::NOT_FOUND, code: "no_alias", path: None },
        Bad { name: "unknown query parameter", uri: format!("{p}?explian=true"), content_type: "application/json", body: record(1.0, "red", 0.1).to_string().into_bytes(), status: StatusCode::BAD_REQUEST, code: "invalid_query", path: None },
        Bad { name: "CSV with a missing column", uri: p.clone(), content_type: "text/csv", body: b"age,colour\n3,red\n".to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.columns.score") },
        // CSV cells pass the same value checks as JSON values: nulls where training had none, non-finite
        // numbers (also spelled 1e999 or inf), unseen categories.
        Bad { name: "CSV with a null where training had none", uri: p.clone(), content_type: "text/csv", body: b"age,colour,score\n3,red,0.1\n,red,0.2\n".to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.rows[1].age") },
        Bad { name: "CSV with a non-finite number", uri: p.clone(), content_type: "text/csv", body: b"age,colour,score\n1e999,red,0.1\n".to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.rows[0].age") },
        Bad { name: "CSV with an unseen category", uri: p.clone(), content_type: "text/csv", body: b"age,colour,score\n3,purple,0.1\n".to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.rows[0].colour") },
        Bad { name: "CSV with a bad cell", uri: p.clone(), content_type: "text/csv", body: b"age,colour,score\n3,red,0.1\nold,red,0.2\n".to_vec(), status: StatusCode::UNPROCESSABLE_ENTITY, code: "schema_mismatch", path: Some("$.rows[1].age") },
        Bad { name: "garbage Arrow stream", uri: p.clone(), content_type: "application/vnd.apache.arrow.stream", body: b"not arrow".to_vec(), status: StatusCode::BAD_REQUEST, code: "malformed_body", path: None },
        Bad { name: "unknown route", uri: "/v2/nothing".into(), content_type: "application/json", body: b"{}".to_vec(), status: StatusCode::NOT_FOUND, code: "not_found", path: None },
    ]
}

async fn good_round(s: &TestServer, n: usize) {
    for i in 0..n {
        let (st, _) = s
            .predict(
                "risk",
                record(20.0 + (i % 50) as f64, ["red", "blue", "green"][i % 3], 0.5),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_the_right_4xx_and_leave_the_server_unaffected() {
    let s = server(ServerConfig::default()).await;
    good_round(&s, 300).await;
    let mut failures = Vec::new();
    for round in 0..3 {
        for b in bad_inputs() {
            let (st, _, v) = s
                .call(s.req(
                    "POST",
                    &b.uri,
                    Some(Role::Predictor),
                    b.content_type,
                    b.body,
                ))
                .await;
            if st != b.status || v["error"]["code"] != b.code {
                failures.push(format!("{}: got {st} {}", b.name, v["error"]));
                continue;
            }
            if let Some(path) = b.path {
                let paths: Vec<&str> = v["error"]["details"]
                    .as_array()
                    .map(|d| d.iter().filter_map(|x| x["path"].as_str()).collect())
                    .unwrap_or_default();
                if !paths.contains(&path) {
                    failures.push(format!("{}: details lack path {path}: {paths:?}", b.name));
                }
            }
            if round == 0 && v["error"]["message"].as_str().is_none_or(str::is_empty) {
                failures.push(format!("{}: empty message", b.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The server still answers good requests after the abuse. Whether it got slower or holds memory is
    // measured where timings mean something: bench/abuse.sh (a live server, peak RSS per hostile body).
    good_round(&s, 300).await;
}

#[tokio::test]
async fn csv_and_arrow_bodies_are_scored() {
    let s = server(ServerConfig::default()).await;
    let m = model(1, 40);
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk@champion/predict",
            Some(Role::Predictor),
            "text/csv",
            "age,colour,score\n30,red,0.5\n61,blue,\n",
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert!(preds[1].get("explanation").is_none());
    assert_eq!(
        preds[1]["probability"].as_f64().unwrap().to_bits(),
        m.predict(&[61.0, 0.0, f64::NAN]).to_bits()
    );

    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema as ArrowSchema};
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("age", DataType::Float64, false),
        Field::new("colour", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(vec![25.0, 44.0, 71.0])),
            Arc::new(StringArray::from(vec!["green", "red", "blue"])),
            Arc::new(Float64Array::from(vec![Some(0.2), None, Some(0.9)])),
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let (st, _, v) = s
        .call(s.req(
            "POST",
            "/v1/models/risk@1/predict",
            Some(Role::Predictor),
            "application/vnd.apache.arrow.stream",
            buf,
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    assert_eq!(
        preds[2]["probability"].as_f64().unwrap().to_bits(),
        m.predict(&[71.0, 0.0, 0.9]).to_bits()
    );
}

#[tokio::test]
async fn readiness_waits_for_models_and_metrics_report_them() {
    let s = server(ServerConfig::default()).await;
    s.state.ready.store(false, Ordering::Release);
    let (st, h, _) = s.call(s.req("GET", "/readyz", None, "", "")).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.contains_key("retry-after"));
    s.state.ready.store(true, Ordering::Release);
    assert_eq!(
        s.call(s.req("GET", "/readyz", None, "", "")).await.0,
        StatusCode::OK
    );
    s.predict("risk", record(30.0, "red", 0.5)).await;
    let (_, _, text) = s
        .call(s.req("GET", "/metrics", Some(Role::Reader), "", ""))
        .await;
    let text = text.as_str().unwrap();
    for needle in [
        "keel_http_requests_total",
        "keel_http_request_duration_seconds_bucket",
        "keel_predictions_total",
        "keel_model_loaded_info{reference=\"risk@champion\",version=\"1\"} 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_retry_after() {
    let s = server(ServerConfig {
        concurrency_limit: 1,
        max_records: 1000,
        ..Default::default()
    })
    .await;
    // Heavy requests: 1000 rows with SHAP each.
    let body = serde_json::json!({"records": (0..1000).map(|i| record(i as f64 % 80.0, "red", 0.5)).collect::<Vec<_>>()}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let router = s.router.clone();
        let req = s.req(
            "POST",
            "/v1/models/risk/predict?explain=true",
            Some(Role::Predictor),
            "application/json",
            body.clone(),
        );
        tasks.push(tokio::spawn(
            async move { router.oneshot(req).await.unwrap() },
        ));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.headers()["retry-after"], "1");
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
}

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let committed = include_str!("../../../../openapi.json");
    let generated = keel_server::openapi::spec_json();
    assert_eq!(
        committed.trim_end(),
        generated.trim_end(),
        "openapi.json is out of date: run `cargo run -p keel-cli -- openapi --out openapi.json`"
    );
    // Every operation has its own id (client generators name methods after them).
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str()
                && let Some(other) = seen.insert(id.to_string(), format!("{method} {path}"))
            {
                panic!("operationId '{id}' is used by {other} and {method} {path}");
            }
        }
    }
}

/// 2,000 seeded mutations of a valid Arrow IPC body: each is scored or refused with a 4xx, never a 500 (they
/// used to panic inside arrow).
#[tokio::test]
async fn mutated_arrow_bodies_are_refused_never_crash() {
    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema as ArrowSchema};
    let s = server(ServerConfig::default()).await;
    let schema = Arc::new(ArrowSchema::new(vec![
        Field::new("age", DataType::Float64, false),
        Field::new("colour", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(vec![25.0, 44.0, 71.0])),
            Arc::new(StringArray::from(vec!["green", "red", "blue"])),
            Arc::new(Float64Array::from(vec![Some(0.2), None, Some(0.9)])),
        ],
    )
    .unwrap();
    let mut good = Vec::new();
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut good, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut server_errors = Vec::new();
    for i in 0..2000 {
        let mut body = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..body.len());
            body[at] = rng.random();
        }
        let (st, _, v) = s
            .call(s.req(
                "POST",
                "/v1/models/risk@1/predict",
                Some(Role::Predictor),
                "application/vnd.apache.arrow.stream",
                body,
            ))
            .await;
        if st.is_server_error() {
            server_errors.push(format!("mutation {i}: {st} {v}"));
        }
    }
    assert!(server_errors.is_empty(), "{}", server_errors.join("\n"));
}
