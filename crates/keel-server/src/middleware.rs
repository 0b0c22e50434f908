//! Request ids, tracing spans and request metrics, in one layer.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

use crate::metrics::METRICS;

/// The id of the request being served (set by [`request_context`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(rand::random);

/// 20 hex digits: a random per-process prefix (8) and a counter (12).
fn new_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = (u128::from(*PREFIX) << 48)
        | u128::from(COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff);
    let digits: Vec<u8> = (0..20)
        .rev()
        .map(|i| HEX[((n >> (4 * i)) & 0xf) as usize])
        .collect();
    String::from_utf8(digits).expect("hex digits are ASCII")
}

/// Takes `x-request-id` from the client (when sane) or makes one, puts it in a tracing span and on the response,
/// and records the request in the metrics.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_id);
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let elapsed = start.elapsed();
    METRICS
        .requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    METRICS
        .latency
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            micros = elapsed.as_micros() as u64,
            "request served"
        );
    });
    resp
}
