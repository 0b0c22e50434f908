//! Prometheus metrics, named `keel_<noun>_<unit>` with bounded label sets.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub errors: IntCounterVec,
    pub predictions: IntCounterVec,
    pub loaded: IntGaugeVec,
    pub alerts: IntCounterVec,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "keel_http_requests_total",
            "HTTP requests by route and status",
        ),
        &["route", "status"],
    )
    .expect("metric");
    let latency = HistogramVec::new(
        HistogramOpts::new(
            "keel_http_request_duration_seconds",
            "Request latency by route",
        )
        .buckets(vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            1.0, 5.0,
        ]),
        &["route"],
    )
    .expect("metric");
    let errors = IntCounterVec::new(
        Opts::new("keel_http_errors_total", "Error responses by code"),
        &["code"],
    )
    .expect("metric");
    let predictions = IntCounterVec::new(
        Opts::new(
            "keel_predictions_total",
            "Predicted rows by model, version and class",
        ),
        &["model", "version", "class"],
    )
    .expect("metric");
    let loaded = IntGaugeVec::new(
        Opts::new(
            "keel_model_loaded_info",
            "Loaded model references and the version each serves",
        ),
        &["reference", "version"],
    )
    .expect("metric");
    let alerts = IntCounterVec::new(
        Opts::new("keel_alerts_total", "Alerts that started firing, by rule"),
        &["rule"],
    )
    .expect("metric");
    for c in [
        Box::new(alerts.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(requests.clone()),
        Box::new(latency.clone()),
        Box::new(errors.clone()),
        Box::new(predictions.clone()),
        Box::new(loaded.clone()),
    ] {
        registry.register(c).expect("register metric");
    }
    Metrics {
        registry,
        requests,
        latency,
        errors,
        predictions,
        loaded,
        alerts,
    }
});

pub fn error(code: &str) {
    METRICS.errors.with_label_values(&[code]).inc();
}

/// The text exposition of every metric.
pub fn render(loaded: &[(String, i64)]) -> String {
    METRICS.loaded.reset();
    for (r, v) in loaded {
        METRICS
            .loaded
            .with_label_values(&[r.as_str(), &v.to_string()])
            .set(1);
    }
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut buf)
        .expect("text encoding of metrics");
    String::from_utf8(buf).expect("metrics are UTF-8")
}
