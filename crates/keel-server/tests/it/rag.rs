//! The generative routes with the real local models (MiniLM, SmolLM2 from the asset cache): RAG queries,
//! embeddings, OpenAI-compatible chat completions (plain and streamed over a real socket), and the remote answer
//! mode pointed at a second real Keel server.

use axum::http::StatusCode;
use keel_core::Role;
use keel_rag::collection::{Collection, CollectionConfig};
use keel_server::ServerConfig;
use keel_server::rag::{AnswerMode, LlmConfig, RagState};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::{TestServer, server};

const DOCS: &[(&str, &str)] = &[
    (
        "copy.md",
        "# Objects\n\n## How do I copy an object?\n\nUse copy.copy for a shallow copy and copy.deepcopy for a deep copy.\n",
    ),
    (
        "trees.rst",
        "Trees\n=====\n\nWhy are the leaves green?\n-------------------------\n\nLeaves contain chlorophyll, a pigment that reflects green light.\n",
    ),
];

/// A test server whose home holds a collection `kb` of two small documents.
pub async fn with_collection(config: ServerConfig) -> TestServer {
    let t = server(config).await;
    let docs = t._dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (name, text) in DOCS {
        std::fs::write(docs.join(name), text).unwrap();
    }
    let home = t._dir.path().to_path_buf();
    let embedder = t.state.rag.embedder().await.unwrap();
    tokio::task::spawn_blocking(move || {
        Collection::ingest(
            &home.join("rag"),
            "kb",
            &docs,
            embedder.as_ref(),
            Some(CollectionConfig::default()),
            None,
            &mut |_, _| {},
        )
        .unwrap()
    })
    .await
    .unwrap();
    t
}

async fn post(t: &TestServer, uri: &str, role: Option<Role>, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = t
        .call(t.req("POST", uri, role, "application/json", body.to_string()))
        .await;
    (s, v)
}

#[tokio::test]
async fn rag_query_answers_with_citations_and_refuses_bad_input() {
    let t = with_collection(ServerConfig::default()).await;
    let (s, h, v) = t
        .call(t.req(
            "POST",
            "/v1/rag/kb/query",
            Some(Role::Predictor),
            "application/json",
            json!({"question": "How can I make a deep copy?"}).to_string(),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["answer"].as_str().unwrap().contains("copy.deepcopy"),
        "{v}"
    );
    assert_eq!(v["citations"][0]["document"], "copy.md");
    assert_eq!(v["citations"][0]["section"], "How do I copy an object?");
    assert_eq!(v["grounded"], true);
    assert_eq!(v["mode"], "extractive");
    assert_eq!(v["trace_id"], h["x-request-id"].to_str().unwrap());
    assert!(v["sentences"][0]["supported"].as_bool().unwrap());

    let (s, v) = post(
        &t,
        "/v1/rag/nope/query",
        Some(Role::Predictor),
        json!({"question": "x"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_collection"))
    );
    let (s, v) = post(
        &t,
        "/v1/rag/kb/query",
        Some(Role::Predictor),
        json!({"question": "why ".repeat(25_000)}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 8192")
    );
    let (s, v) = post(
        &t,
        "/v1/rag/kb/query",
        Some(Role::Predictor),
        json!({"question": "x", "mode": "psychic"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("$.mode")
    );
    let (s, _) = post(
        &t,
        "/v1/rag/kb/query",
        Some(Role::Reader),
        json!({"question": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = post(&t, "/v1/rag/kb/query", None, json!({"question": "x"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn embeddings_are_openai_shaped_and_checked() {
    let t = server(ServerConfig::default()).await;
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": ["This is an example sentence", "Each sentence is converted"], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    let e0: Vec<f64> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    assert_eq!(e0.len(), 384);
    assert!((e0[0] - 0.067657).abs() < 2e-5, "{}", e0[0]);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 10);

    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": ["ok", 3]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("$.input[1]"),
        "{v}"
    );
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": "x", "model": "text-embedding-3-large"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("model_not_found"))
    );
    let (s, _) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": []}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Whitespace is text (the spec's minLength is 1); only an empty string is refused.
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": "\u{a0}"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": ""}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Embedding requests are bounded by inputs and by tokens before any work, and work whose request went away
/// (here: over the generative time limit) stops at its next step instead of running to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_work_is_bounded_and_stops_when_its_request_is_gone() {
    let mut config = ServerConfig::default();
    config.llm.timeout_ms = 300;
    let t = server(config).await;
    // Load the model outside the 300 ms limit.
    assert!(t.state.rag.embedder().await.is_ok());
    let long = "word ".repeat(300);
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": vec!["short text"; 300]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("256"),
        "{v}"
    );
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": vec![long.as_str(); 200]}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_tokens")),
        "{v}"
    );
    // 120 full-window texts: seconds of work, far over the 300 ms limit.
    let before = keel_server::metrics::METRICS.embeddings_cancelled.get();
    let (s, v) = post(
        &t,
        "/v1/embeddings",
        Some(Role::Predictor),
        json!({"input": vec![long.as_str(); 120]}),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while keel_server::metrics::METRICS.embeddings_cancelled.get() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned work never stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "keel-local",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
        ],
        "max_tokens": 10,
        "temperature": 0,
        "stream": stream,
    })
}

#[tokio::test]
async fn chat_completions_plain_and_streamed_over_a_socket_agree() {
    let t = server(ServerConfig::default()).await;
    let (s, v) = post(
        &t,
        "/v1/chat/completions",
        Some(Role::Predictor),
        chat_body(false),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("Paris"), "{text}");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    // Streamed over a real connection, as an OpenAI client reads it: the deltas add up to the same text.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = t.router.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let mut resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&t.keys[&Role::Predictor])
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut raw = String::new();
    let mut reads = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
        reads += 1;
    }
    assert!(reads > 1, "the answer came in one piece");
    let events: Vec<&str> = raw
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("an SSE data line"))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(chunks.last().unwrap()["choices"][0]["finish_reason"].is_string());
}

#[tokio::test]
async fn chat_completions_reject_bad_requests_with_paths() {
    let t = server(ServerConfig::default()).await;
    let cases = [
        (json!({"messages": "hi"}), "$.messages"),
        (json!({"messages": []}), "$.messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "$.messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": {"deep": {"deeper": [1, [2, [3]]]}}}]}),
            "$.messages[0].content",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}),
            "$.messages[0].content[0]",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "$.max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "$.temperature",
        ),
    ];
    for (body, path) in cases {
        let (s, v) = post(
            &t,
            "/v1/chat/completions",
            Some(Role::Predictor),
            body.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(path),
            "{body}: {v}"
        );
    }
    let (s, v) = post(
        &t,
        "/v1/chat/completions",
        Some(Role::Predictor),
        json!({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("model_not_found"))
    );
    let (s, v) = post(
        &t,
        "/v1/chat/completions",
        Some(Role::Predictor),
        json!({"messages": [{"role": "user", "content": "x".repeat(70_000)}]}),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, _, _) = t
        .call(t.req(
            "POST",
            "/v1/chat/completions",
            Some(Role::Predictor),
            "application/json",
            b"{\"messages\": [\xff]}".to_vec(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn remote_mode_answers_through_a_real_keel_server_and_falls_back_when_it_is_gone() {
    // The upstream: a second Keel server without auth, serving its local model on a real socket.
    let upstream = server(ServerConfig {
        auth: false,
        ..ServerConfig::default()
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = upstream.router.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = with_collection(ServerConfig::default()).await;
    let home = t._dir.path();
    let mut config = LlmConfig {
        max_tokens: 24,
        ..LlmConfig::default()
    };
    config.remote.base_url = Some(format!("http://{addr}/v1"));
    config.remote.model = "keel-local".into();
    let rag = Arc::new(RagState::new(home, config.clone()));
    let c = rag.collection("kb").unwrap();
    let question = keel_app::rag::Question {
        question: "Why are the leaves green?".into(),
        mode: AnswerMode::Remote,
        options: Default::default(),
        max_tokens: 24,
    };
    let a = keel_app::rag::answer(&rag, c.clone(), question.clone(), None)
        .await
        .unwrap();
    let r = &a.result;
    assert_eq!(a.mode, AnswerMode::Remote);
    assert!(a.fallback.is_none());
    assert!(a.usage.unwrap().completion_tokens > 0);
    assert!(!r.answer.is_empty() && r.answer != keel_rag::query::NOT_FOUND);
    assert_eq!(r.citations[0].document, "trees.rst");
    assert!(!r.sentences.is_empty());

    // An unreachable upstream: a clear reason, and the extractive answer still comes back.
    config.remote.base_url = Some("http://127.0.0.1:9/v1".into());
    config.remote.timeout_ms = 2000;
    let rag = Arc::new(RagState::new(home, config));
    let a = keel_app::rag::answer(&rag, c, question, None)
        .await
        .unwrap();
    let r = &a.result;
    assert_eq!(a.mode, AnswerMode::Extractive);
    let f = a.fallback.unwrap();
    assert!(
        f.contains("unreachable") && f.contains("127.0.0.1:9"),
        "{f}"
    );
    assert!(r.answer.contains("chlorophyll"), "{}", r.answer);
}
