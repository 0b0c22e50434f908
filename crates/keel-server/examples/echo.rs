//! The ceiling for bench/serving.sh: a bare axum server that parses a JSON body and echoes it back, on the same
//! runtime and HTTP stack as `keel serve`. Usage: `echo PORT`.

use axum::routing::post;
use axum::{Json, Router};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8090);
    let app = Router::new().route(
        "/echo",
        post(|Json(v): Json<serde_json::Value>| async move { Json(v) }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("addr")
    );
    axum::serve(listener, app).await.expect("serve");
}
