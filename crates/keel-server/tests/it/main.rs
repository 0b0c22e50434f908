//! HTTP tests of keel-server: in-process through the Router, against a real registry in a temporary home.

mod alerts;
mod api;
mod auth;
mod closed_loop;
mod guard;
mod lifecycle;
mod monitor;
mod rag;
mod rollout;
mod serving_choice;
mod swap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use keel_core::{ColumnSchema, ColumnType, Role, Schema};
use keel_ml::gbdt::{self, GbdtParams};
use keel_ml::{FeatureKind, FeatureSpec, Model, ModelKind, Objective};
use keel_server::{AppState, ServerConfig};
use keel_store::{NewVersion, Store};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tower::ServiceExt;

pub struct TestServer {
    pub router: Router,
    pub state: AppState,
    pub keys: std::collections::HashMap<Role, String>,
    pub _dir: tempfile::TempDir,
}

pub fn specs() -> Vec<FeatureSpec> {
    vec![
        FeatureSpec {
            name: "age".into(),
            kind: FeatureKind::Numeric,
        },
        FeatureSpec {
            name: "colour".into(),
            kind: FeatureKind::Categorical {
                levels: vec!["blue".into(), "green".into(), "red".into()],
            },
        },
        FeatureSpec {
            name: "score".into(),
            kind: FeatureKind::Numeric,
        },
    ]
}

/// A model trained on synthetic data; `seed` changes the data, so versions predict differently.
pub fn model(seed: u64, trees: usize) -> Model {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = 2000;
    let mut x = Vec::with_capacity(n * 3);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let age: f64 = rng.random_range(18.0..80.0);
        let colour = rng.random_range(0..3u32) as f64;
        let score: f64 = rng.random_range(0.0..1.0);
        let z = (age - 45.0) / 10.0
            + if colour == 2.0 { 1.0 } else { -0.5 }
            + score * (seed as f64 + 1.0);
        y.push(if rng.random_bool(1.0 / (1.0 + (-z).exp())) {
            1.0
        } else {
            0.0
        });
        x.extend_from_slice(&[age, colour, score]);
    }
    let p = GbdtParams {
        n_trees: trees,
        learning_rate: 0.1,
        seed,
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

pub fn training_schema() -> Schema {
    Schema {
        target: Some("y".into()),
        columns: vec![
            ColumnSchema::new("age", ColumnType::Numeric),
            ColumnSchema::new("colour", ColumnType::Categorical),
            ColumnSchema {
                nullable: true,
                ..ColumnSchema::new("score", ColumnType::Numeric)
            },
        ],
    }
}

/// `n` plausible encoded rows (age, colour code, score); `age_shift` moves the ages.
pub fn rows(n: usize, seed: u64, age_shift: f64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .flat_map(|_| {
            [
                rng.random_range(18.0..80.0) + age_shift,
                rng.random_range(0..3u32) as f64,
                rng.random_range(0.0..1.0),
            ]
        })
        .collect()
}

/// The monitoring reference a training run would store: bins from training rows, holdout counts.
pub fn reference_profile(m: &Model) -> serde_json::Value {
    use keel_monitor::ProfileSpec;
    let features = vec![
        ("age".to_string(), None),
        (
            "colour".to_string(),
            Some(vec!["blue".into(), "green".into(), "red".into()]),
        ),
        ("score".to_string(), None),
    ];
    let spec = ProfileSpec::from_training(
        &features,
        &rows(2000, 7, 0.0),
        10,
        ProfileSpec::probability_bins(),
    );
    let holdout = rows(1000, 8, 0.0);
    let reference = spec.profile(&holdout, &m.predict_rows(&holdout));
    serde_json::json!({"spec": spec, "reference": reference})
}

pub async fn register(store: &Store, m: &Model, aliases: &[&str]) -> i64 {
    let v = store
        .register(NewVersion {
            model: "risk".into(),
            description: "test".into(),
            kind: "gbdt".into(),
            objective: "binary".into(),
            model_bytes: m.to_bytes().unwrap(),
            params: serde_json::json!({"threshold": 0.5}),
            metrics: serde_json::json!({"auc": 0.8}),
            schema: serde_json::to_value(training_schema()).unwrap(),
            card: serde_json::json!({}),
            dataset_hash: "sha256:test".into(),
            code_version: "test".into(),
            created_by: "test".into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            champion_if_none: false,
            profile: reference_profile(m),
        })
        .await
        .unwrap();
    v.version
}

pub async fn server(config: ServerConfig) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    register(&store, &model(1, 40), &["champion"]).await;
    register(&store, &model(2, 60), &[]).await;
    let mut keys = std::collections::HashMap::new();
    for role in [Role::Reader, Role::Predictor, Role::Deployer, Role::Admin] {
        keys.insert(
            role,
            keel_engine::keys::create_key(&store, role, "test", "test")
                .await
                .unwrap()
                .key,
        );
    }
    let state = AppState::new(store, config).await.unwrap();
    state.cache.preload().await.unwrap();
    state.ready.store(true, Ordering::Release);
    TestServer {
        router: keel_server::router(state.clone()),
        state,
        keys,
        _dir: dir,
    }
}

pub fn record(age: f64, colour: &str, score: f64) -> serde_json::Value {
    serde_json::json!({"age": age, "colour": colour, "score": score})
}

impl TestServer {
    pub async fn call(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, v)
    }

    pub fn req(
        &self,
        method: &str,
        uri: &str,
        role: Option<Role>,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Request<Body> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(r) = role {
            b = b.header("authorization", format!("Bearer {}", self.keys[&r]));
        }
        if !content_type.is_empty() {
            b = b.header("content-type", content_type);
        }
        b.body(body.into()).unwrap()
    }

    pub async fn predict(
        &self,
        reference: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let (s, _, v) = self
            .call(self.req(
                "POST",
                &format!("/v1/models/{reference}/predict"),
                Some(Role::Predictor),
                "application/json",
                body.to_string(),
            ))
            .await;
        (s, v)
    }
}

pub use keel_testkit::eventually;
