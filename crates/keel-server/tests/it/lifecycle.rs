//! The lifecycle over HTTP, against the server's own job worker: train (upload and server path) as jobs,
//! cancel a queued one, read versions, cards, lineage and aliases, run and stop a canary, roll back, read
//! and verify the audit log; and a RAG collection built from uploaded documents.

use crate::{TestServer, server};
use axum::http::StatusCode;
use keel_core::Role;
use keel_server::ServerConfig;
use serde_json::{Value, json};
use std::time::Duration;

const BOUNDARY: &str = "keel-test-boundary-7d1f";

/// A `multipart/form-data` body: text fields, then files (field, file name, content).
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &str)]) -> String {
    let mut b = String::new();
    for (name, value) in fields {
        b.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    for (name, file, content) in files {
        b.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n"
        ));
    }
    b.push_str(&format!("--{BOUNDARY}--\r\n"));
    b
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

async fn send(
    t: &TestServer,
    method: &str,
    uri: &str,
    role: Role,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (ct, b) = match body {
        Some(v) => ("application/json", v.to_string()),
        None => ("", String::new()),
    };
    let (s, _, v) = t.call(t.req(method, uri, Some(role), ct, b)).await;
    (s, v)
}

/// Waits until the server's worker has finished `n` jobs in all.
/// Waits until `n` jobs have finished and returns `job` as it stands then.
async fn settled(t: &TestServer, job: &Value, n: u64) -> Value {
    finished(t, n).await;
    send(
        t,
        "GET",
        &format!("/v1/jobs/{}", job["id"]),
        Role::Reader,
        None,
    )
    .await
    .1
}

async fn finished(t: &TestServer, n: u64) {
    let mut rx = t.state.jobs.finished();
    let done = tokio::time::timeout(Duration::from_secs(240), rx.wait_for(|k| *k >= n)).await;
    let jobs = t.state.cache.store().jobs(20).await.unwrap();
    assert!(done.is_ok(), "the worker did not finish {n} jobs: {jobs:?}");
}

fn loans_csv(n: usize, seed: u64) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut s = String::from("age,colour,score,y\n");
    for _ in 0..n {
        let age: f64 = rng.random_range(18.0..80.0);
        let c = ["blue", "green", "red"][rng.random_range(0..3usize)];
        let score: f64 = rng.random_range(0.0..1.0);
        let z = (age - 45.0) / 10.0 + if c == "red" { 1.0 } else { -0.5 } + score;
        let y = rng.random_bool(1.0 / (1.0 + (-z).exp())) as u8;
        s.push_str(&format!("{age:.2},{c},{score:.4},{y}\n"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_lifecycle_runs_over_http_through_the_servers_worker() {
    let t = server(ServerConfig::default()).await;
    let data = t._dir.path().join("loans.csv");
    std::fs::write(&data, loans_csv(1500, 1)).unwrap();
    let spec = json!({"target": "y", "model_requested": "gbdt", "gbdt": {"n_trees": 20}});

    // A reader cannot train; a deployer can. Without a worker running, the job waits and can be cancelled.
    let mut body = spec.clone();
    body["name"] = json!("loans");
    body["data"] = json!(data);
    let (s, v) = send(
        &t,
        "POST",
        "/v1/jobs/train",
        Role::Reader,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let req = t.req(
        "POST",
        "/v1/jobs/train",
        Some(Role::Deployer),
        "application/json",
        body.to_string(),
    );
    let (s, headers, queued) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["state"], "queued");
    let id = queued["id"].as_i64().unwrap();
    assert_eq!(headers["location"], format!("/v1/jobs/{id}").as_str());
    let (s, v) = send(
        &t,
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    let (s, v) = send(
        &t,
        "POST",
        &format!("/v1/jobs/{id}/cancel"),
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = send(&t, "GET", "/v1/jobs/999999", Role::Reader, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = send(&t, "GET", "/v1/jobs/abc", Role::Reader, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // A bad spec is refused before anything is queued, naming the value and where it is.
    let mut bad = body.clone();
    bad["test_size"] = json!("lots");
    let (s, v) = send(&t, "POST", "/v1/jobs/train", Role::Deployer, Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"lots\", expected f64"),
        "{v}"
    );

    // Now with the worker: an upload (multipart) becomes version 1, the champion.
    let worker = t.state.start_worker();
    let mut up_spec = spec.clone();
    up_spec["name"] = json!("loans");
    up_spec["aliases"] = json!(["champion"]);
    let form = multipart(
        &[("spec", &up_spec.to_string())],
        &[("data", "loans.csv", &loans_csv(1500, 1))],
    );
    let req = t.req(
        "POST",
        "/v1/jobs/train",
        Some(Role::Deployer),
        &multipart_type(),
        form,
    );
    let (s, _, job) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    finished(&t, 1).await;
    let (s, job) = send(
        &t,
        "GET",
        &format!("/v1/jobs/{}", job["id"]),
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["version"], 1, "{job}");
    assert_eq!(job["progress"], 1.0, "{job}");

    // A path on the server becomes version 2 (no alias), trained on other rows.
    std::fs::write(&data, loans_csv(1500, 2)).unwrap();
    let (s, job) = send(&t, "POST", "/v1/jobs/train", Role::Deployer, Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    finished(&t, 2).await;
    let (_, jobs) = send(
        &t,
        "GET",
        "/v1/jobs?model=loans&state=succeeded",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2, "{jobs}");
    let (s, v) = send(&t, "GET", "/v1/jobs?colour=red", Role::Reader, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Versions, cards, lineage.
    let (s, v) = send(&t, "GET", "/v1/models/loans/versions", Role::Reader, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let versions: Vec<i64> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);
    let (_, v) = send(
        &t,
        "GET",
        "/v1/models/loans/versions/champion",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["params"]["target"], "y", "{v}");
    let (_, card) = send(
        &t,
        "GET",
        "/v1/models/loans/versions/1/card",
        Role::Reader,
        None,
    )
    .await;
    assert!(card["card"]["evaluation"].is_object(), "{card}");
    let (s, html) = send(
        &t,
        "GET",
        "/v1/models/loans/versions/1/card?format=html",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.as_str().unwrap().contains("<html"), "{html}");
    let (_, lineage) = send(
        &t,
        "GET",
        "/v1/models/loans/versions/2/lineage",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(lineage["data"], json!(data), "{lineage}");
    assert!(
        lineage["dataset_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{lineage}"
    );
    assert!(
        lineage["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "model.register" && e["target"] == "loans@2"),
        "{lineage}"
    );
    let (s, v) = send(&t, "GET", "/v1/models/loans@1/versions", Role::Reader, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // A canary of version 2: started, read, stopped.
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollout",
        Role::Deployer,
        Some(json!({"version": 2, "mode": "canary", "weight": 0.5})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["canary_version"], 2);
    let (_, v) = send(&t, "GET", "/v1/models/loans/rollout", Role::Reader, None).await;
    assert_eq!(v["rollout"]["canary_version"], 2, "{v}");
    assert_eq!(v["evaluation"]["decision"], "wait", "{v}");
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollout/promote",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollout/stop",
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = send(&t, "GET", "/v1/models/loans/rollout", Role::Reader, None).await;
    assert!(v["rollout"].is_null(), "{v}");
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollout/stop",
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // An alias move and its rollback; the server serves the rolled-back version at once.
    let (s, v) = send(
        &t,
        "PUT",
        "/v1/models/loans/aliases/champion",
        Role::Deployer,
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollback",
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["before"].as_i64(), v["version"].as_i64()),
        (Some(2), Some(1))
    );
    let (_, v) = send(&t, "GET", "/v1/models/loans/aliases", Role::Reader, None).await;
    assert_eq!(v["aliases"], json!({"champion": 1}));
    let (s, v) = t
        .predict(
            "loans",
            json!({"records": [crate::record(50.0, "red", 0.5)]}),
        )
        .await;
    assert_eq!((s, v["version"].as_i64()), (StatusCode::OK, Some(1)), "{v}");
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/loans/rollback",
        Role::Deployer,
        Some(json!({"alias": "staging"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // The audit log: admins only, filtered, paged newest first, verified.
    let (s, _) = send(&t, "GET", "/v1/audit", Role::Deployer, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, page) = send(
        &t,
        "GET",
        "/v1/audit?model=loans&action=alias.",
        Role::Admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let records = page["records"].as_array().unwrap();
    assert!(records.len() >= 2, "{page}");
    assert!(
        records
            .iter()
            .all(|r| r["action"].as_str().unwrap().starts_with("alias.")
                && r["target"].as_str().unwrap().starts_with("loans@")),
        "{page}"
    );
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let (_, first) = send(
        &t,
        "GET",
        "/v1/audit?model=loans&action=alias.&limit=1",
        Role::Admin,
        None,
    )
    .await;
    assert_eq!(first["records"][0]["seq"], seqs[0]);
    let next = first["next_before"].as_i64().unwrap();
    let (_, second) = send(
        &t,
        "GET",
        &format!("/v1/audit?model=loans&action=alias.&limit=1&before={next}"),
        Role::Admin,
        None,
    )
    .await;
    assert_eq!(second["records"][0]["seq"], seqs[1]);
    let (_, v) = send(&t, "GET", "/v1/audit?actor=nobody", Role::Admin, None).await;
    assert_eq!(v["records"], json!([]));
    let (s, v) = send(&t, "GET", "/v1/audit/verify", Role::Admin, None).await;
    assert_eq!((s, &v["ok"]), (StatusCode::OK, &json!(true)), "{v}");

    // Drift history of the served champion (no traffic windows yet beyond the one request).
    let (s, v) = send(
        &t,
        "GET",
        "/v1/models/loans/drift?windows=3",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 1);
    assert!(v["windows"].is_array(), "{v}");

    t.state.jobs.stop();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_documents_become_a_collection_that_answers_and_forgets() {
    let t = server(ServerConfig::default()).await;
    let worker = t.state.start_worker();
    // Not multipart, and multipart without files: refused, nothing queued.
    let (s, v) = send(
        &t,
        "POST",
        "/v1/rag/collections/kb/documents",
        Role::Deployer,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let req = t.req(
        "POST",
        "/v1/rag/collections/kb/documents",
        Some(Role::Deployer),
        &multipart_type(),
        multipart(&[("screen", "false")], &[]),
    );
    let (s, _, v) = t.call(req).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(t.state.cache.store().jobs(10).await.unwrap().is_empty());

    let form = multipart(
        &[("max_tokens", "120")],
        &[
            (
                "file",
                "tides.md",
                "# Tides\n\nTides are caused by the gravitational pull of the Moon and, to a lesser degree, the Sun on the oceans.\n",
            ),
            (
                "file",
                "bees.md",
                "# Bees\n\nHoney bees communicate the direction of flowers to each other with a waggle dance.\n",
            ),
        ],
    );
    let req = t.req(
        "POST",
        "/v1/rag/collections/kb/documents",
        Some(Role::Deployer),
        &multipart_type(),
        form,
    );
    let (s, _, job) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "ingest");
    let job = settled(&t, &job, 1).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["documents"], 2, "{job}");
    assert!(
        job["result"]["screening"]
            .as_str()
            .unwrap()
            .starts_with("off"),
        "no guard model is registered: {job}"
    );

    let (_, v) = send(&t, "GET", "/v1/rag/collections", Role::Reader, None).await;
    assert_eq!(v["collections"][0]["collection"], "kb", "{v}");
    assert_eq!(v["collections"][0]["documents"], 2, "{v}");
    let (_, v) = send(
        &t,
        "GET",
        "/v1/rag/collections/kb/chunks?document=bees.md",
        Role::Reader,
        None,
    )
    .await;
    assert!(v["total"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        v["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["document"] == "bees.md"),
        "{v}"
    );
    let (s, v) = send(
        &t,
        "POST",
        "/v1/rag/kb/query",
        Role::Predictor,
        Some(json!({"question": "What causes tides?"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["citations"][0]["document"], "tides.md", "{v}");

    // The embedding model is chosen per collection: another model for "kb" (built with MiniLM) and an unknown
    // one are refused before anything is queued; a new collection built with MPNet answers with it.
    let bees = (
        "file",
        "bees.md",
        "# Bees\n\nHoney bees dance to show where flowers are.\n",
    );
    for (embedder, says) in [
        ("mpnet", "all-MiniLM-L6-v2"),
        ("bert-large", "minilm or mpnet"),
    ] {
        let req = t.req(
            "POST",
            "/v1/rag/collections/kb/documents",
            Some(Role::Deployer),
            &multipart_type(),
            multipart(&[("embedder", embedder)], &[bees]),
        );
        let (s, _, v) = t.call(req).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v.to_string().contains(says), "{v}");
    }
    assert_eq!(t.state.cache.store().jobs(10).await.unwrap().len(), 1);
    let req = t.req(
        "POST",
        "/v1/rag/collections/kb-mpnet/documents",
        Some(Role::Deployer),
        &multipart_type(),
        multipart(&[("embedder", "mpnet")], &[bees]),
    );
    let (s, _, job) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = settled(&t, &job, 2).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (_, v) = send(&t, "GET", "/v1/rag/collections", Role::Reader, None).await;
    let mp = v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == "kb-mpnet")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        mp["embedder"], "sentence-transformers/all-mpnet-base-v2",
        "{v}"
    );
    let (s, v) = send(
        &t,
        "POST",
        "/v1/rag/kb-mpnet/query",
        Role::Predictor,
        Some(json!({"question": "How do bees show each other where flowers are?"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["citations"][0]["document"], "bees.md", "{v}");

    let (s, v) = send(
        &t,
        "DELETE",
        "/v1/rag/collections/kb/documents/tides.md",
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["removed"], 1);
    let (s, v) = send(
        &t,
        "DELETE",
        "/v1/rag/collections/kb/documents/tides.md",
        Role::Deployer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (_, v) = send(
        &t,
        "GET",
        "/v1/rag/collections/kb/chunks",
        Role::Reader,
        None,
    )
    .await;
    assert!(
        v["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["document"] == "bees.md"),
        "{v}"
    );
    let (s, v) = send(
        &t,
        "GET",
        "/v1/rag/collections/nope/chunks",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    t.state.jobs.stop();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops")
        .unwrap();
}

/// An import over HTTP: the model file and its reference rows uploaded, a job that registers the version
/// with the card of an evaluated model, the predictions of the library; a broken file fails the job and
/// registers nothing; a body naming another model is refused.
#[tokio::test]
async fn an_uploaded_lightgbm_model_becomes_a_version_through_an_import_job() {
    let t = server(ServerConfig::default()).await;
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-ml/tests/fixtures/import");
    let model = std::fs::read_to_string(fixtures.join("lgb_employment.txt")).unwrap();
    let csv = std::fs::read_to_string(fixtures.join("employment_holdout.csv")).unwrap();
    let reference: String = csv.lines().take(801).collect::<Vec<_>>().join("\n");
    let worker = t.state.start_worker();
    let spec = json!({"target": "employed", "sensitive": ["SEX"], "aliases": ["champion"]});
    let form = multipart(
        &[("spec", &spec.to_string())],
        &[
            ("model", "model.txt", &model),
            ("reference", "reference.csv", &reference),
        ],
    );
    let req = t.req(
        "POST",
        "/v1/models/employment/import",
        Some(Role::Deployer),
        &multipart_type(),
        form,
    );
    let (s, _, job) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "import");
    let job = settled(&t, &job, 1).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["version"], 1, "{job}");
    assert_eq!(job["result"]["evaluated_rows"], 800, "{job}");
    let (_, card) = send(
        &t,
        "GET",
        "/v1/models/employment/versions/1/card",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(card["card"]["imported"]["library"], "LightGBM", "{card}");
    assert!(
        card["card"]["evaluation"]["metrics"]["auc"]["value"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    // The champion now answers with LightGBM's probability for row 0, bit for bit.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let mut record = serde_json::Map::new();
    for (n, c) in header.iter().zip(&row) {
        if *n != "employed" {
            let v = if *n == "AGEP" {
                json!(c.parse::<f64>().unwrap())
            } else {
                json!(c)
            };
            record.insert(n.to_string(), v);
        }
    }
    let (s, v) = t.predict("employment", Value::Object(record)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let want = std::fs::read_to_string(fixtures.join("lgb_employment.expected.txt")).unwrap();
    let want = f64::from_bits(u64::from_str_radix(want.lines().next().unwrap(), 16).unwrap());
    assert_eq!(
        v["probability"].as_f64().unwrap().to_bits(),
        want.to_bits(),
        "{v}"
    );

    // A truncated file: the job fails naming the problem, and no version 2 appears.
    let form = multipart(&[], &[("model", "cut.txt", &model[..model.len() / 3])]);
    let req = t.req(
        "POST",
        "/v1/models/employment/import",
        Some(Role::Deployer),
        &multipart_type(),
        form,
    );
    let (s, _, job) = t.call(req).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = settled(&t, &job, 2).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["message"].as_str().unwrap().contains("lightgbm"),
        "{job}"
    );
    let (_, v) = send(
        &t,
        "GET",
        "/v1/models/employment/versions",
        Role::Reader,
        None,
    )
    .await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
    // The path names the model; a body naming another is refused before anything is queued.
    let (s, v) = send(
        &t,
        "POST",
        "/v1/models/employment/import",
        Role::Deployer,
        Some(json!({"file": "/nonexistent", "name": "other"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    drop(worker);
}

/// An ONNX import over HTTP with files named on the server: `feature_names` names the positional inputs, the
/// job registers the version, and the champion answers with ONNX Runtime's probability bit for bit; a wrong
/// count of names fails the job naming both counts and registers nothing.
#[tokio::test]
async fn an_onnx_model_named_by_feature_names_becomes_a_version_through_an_import_job() {
    let t = server(ServerConfig::default()).await;
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-ml/tests/fixtures/import");
    let csv = std::fs::read_to_string(fixtures.join("employment_holdout.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.csv");
    std::fs::write(
        &reference,
        csv.lines().take(601).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let names: Vec<&str> = header
        .iter()
        .copied()
        .filter(|c| *c != "employed")
        .collect();
    let worker = t.state.start_worker();
    let file = fixtures.join("skl_employment.onnx");
    let (s, job) = send(
        &t,
        "POST",
        "/v1/models/emp/import",
        Role::Deployer,
        Some(json!({"file": file, "format": "onnx", "feature_names": ["AGEP", "SCHL"]})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = settled(&t, &job, 1).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["message"].as_str().unwrap().contains("16 features"),
        "{job}"
    );

    let (s, job) = send(
        &t,
        "POST",
        "/v1/models/emp/import",
        Role::Deployer,
        Some(json!({
            "file": file, "feature_names": names, "reference": reference,
            "target": "employed", "aliases": ["champion"]
        })),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = settled(&t, &job, 2).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["version"], 1, "{job}");
    assert_eq!(job["result"]["evaluated_rows"], 600, "{job}");
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let mut record = serde_json::Map::new();
    for (n, c) in header.iter().zip(&row) {
        if *n != "employed" {
            record.insert(n.to_string(), json!(c.parse::<f64>().unwrap()));
        }
    }
    let (s, v) = t.predict("emp", Value::Object(record)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let want = std::fs::read_to_string(fixtures.join("skl_employment.expected.txt")).unwrap();
    let want = f64::from_bits(u64::from_str_radix(want.lines().next().unwrap(), 16).unwrap());
    assert_eq!(
        v["probability"].as_f64().unwrap().to_bits(),
        want.to_bits(),
        "{v}"
    );
    drop(worker);
}
