//! Guardrails over HTTP: `POST /v1/guard/scan`, and the guard stages of the chat gateway
//! (`POST /v1/chat/completions` with `[serve.guard] enabled = true`): input guards → model → output guards.
//!
//! The guard model (injection classifier + PII lexicon) is a registry artifact, loaded on first use on the
//! blocking pool. Every decision other than allow is counted in `keel_guard_decisions_total`, logged with
//! reasons only (never the text), and written to the audit log.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keel_guard::ScanOptions;
use keel_guard::policy::{Action, Decision};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::AsPredictor;
use crate::error::ApiError;
use crate::middleware::RequestId;

pub use keel_app::guard::{
    BLOCKED_ANSWER, GUARD_KIND, GuardConfig, GuardStage, GuardState, LoadError, Stage, Upstream,
    load_model, logged_text, resolve,
};

/// One guard decision to count, log and audit.
pub struct Record<'a> {
    pub route: &'a str,
    pub stage: Stage,
    pub decision: &'a Decision,
    pub actor: String,
    pub request_id: &'a str,
    /// The text with every PII and secret finding replaced (`policy::redacted_for_log`), for the log line.
    pub redacted: Option<String>,
    /// More evidence for the audit record (usage, latency).
    pub extra: Value,
}

/// Counts a decision; one that acted is logged (reasons, and the text only as redacted for logs) and
/// audited (reasons, counts, request id, usage; never the text).
pub fn record(st: &AppState, r: Record) {
    let d = r.decision;
    crate::metrics::METRICS
        .guard_decisions
        .with_label_values(&[r.route, r.stage.as_str(), d.action.as_str()])
        .inc();
    for (detector, n) in &d.counts {
        crate::metrics::METRICS
            .guard_findings
            .with_label_values(&[detector])
            .inc_by(*n as u64);
    }
    if d.action == Action::Allow {
        return;
    }
    let (chars, hash, text) = logged_text(r.redacted.as_deref(), st.guard.config.log_text);
    tracing::info!(
        route = r.route,
        stage = r.stage.as_str(),
        action = d.action.as_str(),
        review = d.review,
        detectors = ?d.counts,
        reasons = ?d.reasons,
        request_id = r.request_id,
        text_chars = chars,
        text_sha256_64 = %hash,
        text = text.as_deref().unwrap_or("(not logged; [serve.guard] log_text = true logs it redacted)"),
        "guard decision"
    );
    let store = st.cache.store().clone();
    let mut evidence = serde_json::json!({
        "route": r.route, "stage": r.stage.as_str(), "action": d.action.as_str(), "review": d.review, "reasons": d.reasons,
        "counts": d.counts.iter().map(|(k, n)| (k.to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "request_id": r.request_id,
    });
    if let (Some(e), Some(extra)) = (evidence.as_object_mut(), r.extra.as_object()) {
        e.extend(extra.clone());
    }
    let action = format!("guard.{}", d.action.as_str());
    let target = format!("{}:{}", r.route, r.stage.as_str());
    let actor = r.actor;
    tokio::spawn(async move {
        if let Err(e) = store
            .audit(keel_store::AuditEvent::new(&actor, &action, &target).evidence(evidence))
            .await
        {
            tracing::warn!(error = %e, "could not audit a guard decision");
        }
    });
}

/// Most text one scan accepts (the body limit applies first).
pub const MAX_SCAN_BYTES: usize = 1 << 20;

/// A text to scan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The text (at most 1 MiB).
    pub text: String,
    /// Model output checks: the system prompt it must not repeat.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Model output checks: canary tokens it must not contain.
    #[serde(default)]
    pub canaries: Vec<String>,
    /// Which route's policy decides (default `scan`).
    #[serde(default)]
    pub route: Option<String>,
}

/// Scans a text with every detector and applies the route's policy.
#[utoipa::path(post, path = "/v1/guard/scan", tag = "guard",
    request_body = ScanRequest,
    responses((status = 200, description = "Findings (character offsets), the injection score and the policy decision, with the redacted text when something was redacted", body = crate::schemas::ScanReport),
              (status = 413, description = "Text over 1 MiB", body = crate::error::ErrorBody),
              (status = 422, description = "Invalid request", body = crate::error::ErrorBody),
              (status = 409, description = "No guard model registered (train one with keel guard train)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn scan(
    caller: AsPredictor,
    State(st): State<AppState>,
    rid: axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<Value>, ApiError> {
    let bytes = crate::routes::read_body(body, &headers, st.config.body_limit_bytes).await?;
    let req: ScanRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("expected {{\"text\": \"...\"}}: {e}"),
        )
    })?;
    if req.text.len() > MAX_SCAN_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text_too_large",
            format!(
                "$.text: {} bytes; at most {MAX_SCAN_BYTES} are scanned",
                req.text.len()
            ),
        ));
    }
    let route = req.route.clone().unwrap_or_else(|| "scan".into());
    let policy = st.guard.config.policy(&route);
    let (version, guard) = st.guard.current(st.cache.store()).await?;
    let started = Instant::now();
    let (report_json, (decision, logged)) = crate::rag::blocking(move || {
        let opts = ScanOptions {
            canaries: &req.canaries,
            system_prompt: req.system_prompt.as_deref(),
            ..ScanOptions::input()
        };
        let report = guard.scan(&req.text, &opts);
        let d = policy.decide(&req.text, &report);
        let logged = keel_guard::policy::redacted_for_log(&req.text, &report);
        let mut v = keel_guard::report_json(&req.text, &report, &d);
        v["model_version"] = version.into();
        Ok((v, (d, logged)))
    })
    .await?;
    crate::metrics::METRICS
        .guard_seconds
        .with_label_values(&["scan"])
        .observe(started.elapsed().as_secs_f64());
    record(
        &st,
        Record {
            route: "scan",
            stage: Stage::Input,
            decision: &decision,
            actor: caller.0.actor(),
            request_id: &rid.0.0,
            redacted: Some(logged),
            extra: Value::Null,
        },
    );
    Ok(axum::Json(report_json))
}

/// The answer to a request the input guards blocked: the detectors that blocked it, never the text, and by
/// default never scores, thresholds or rule names (an attacker would tune against them); `expose_reasons`
/// adds the full reasons.
pub fn blocked(e: keel_app::Error, expose_reasons: bool) -> ApiError {
    let mut message = e.to_string();
    if let keel_app::Error::Blocked { reasons, .. } = &e
        && expose_reasons
    {
        message.push_str(": ");
        message.push_str(&reasons.join("; "));
    }
    match e {
        keel_app::Error::Blocked { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "content_blocked", message)
        }
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            action: keel_guard::policy::Action::Block,
            blocked: true,
            review: false,
            reasons: vec![
                "injection: score 1.000 > 0.422 (rule: ignore previous instructions)".into(),
            ],
            text: String::new(),
            counts: vec![("injection", 1)],
            blocked_by: vec!["injection"],
        }
    }

    #[test]
    fn logs_carry_no_user_text_unless_asked() {
        // A passport number and a password no detector recognises.
        let t = "my passport is X12345678 and my password is hunter2-blue";
        let (chars, hash, text) = logged_text(Some(t), false);
        assert_eq!(chars, t.chars().count());
        assert_eq!(hash.len(), 16);
        assert_eq!(text, None);
        let (_, hash2, text) = logged_text(Some(t), true);
        assert_eq!(hash, hash2);
        assert_eq!(text.as_deref(), Some(t));
    }

    fn stage() -> GuardStage {
        GuardStage {
            stage: Stage::Input,
            decision: decision(),
            logged: String::new(),
        }
    }

    #[test]
    fn a_blocked_caller_learns_the_detector_not_the_score() {
        let e = blocked(stage().blocked("request"), false);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("detector: injection"), "{}", e.message);
        assert!(
            !e.message.contains("score")
                && !e.message.contains("0.422")
                && !e.message.contains("rule"),
            "{}",
            e.message
        );
        let e = blocked(stage().blocked("request"), true);
        assert!(e.message.contains("score 1.000 > 0.422"), "{}", e.message);
    }
}
