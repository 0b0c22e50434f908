//! Guardrails over HTTP: `POST /v1/guard/scan`, and the guard stages of the chat gateway
//! (`POST /v1/chat/completions` with `[serve.guard] enabled = true`): input guards → model → output guards.
//!
//! The guard model (injection classifier + PII lexicon) is a registry artifact, loaded on first use on the
//! blocking pool. Every decision other than allow is counted in `keel_guard_decisions_total`, logged with
//! reasons only (never the text), and written to the audit log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keel_guard::policy::{Action, Decision, IngestPolicy, Policy, PolicyOverride};
use keel_guard::{Guard, GuardModel, ScanOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::AsPredictor;
use crate::error::ApiError;
use crate::middleware::RequestId;

/// Which model the gateway puts behind its guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Upstream {
    /// The local model (SmolLM2 from the asset cache).
    #[default]
    Local,
    /// The OpenAI-compatible endpoint of `[serve.llm.remote]`.
    Remote,
}

/// `[serve.guard]` in `keel.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Guards on `/v1/chat/completions` (the gateway) and `/v1/rag/{collection}/query`. `/v1/guard/scan`
    /// works either way.
    pub enabled: bool,
    /// The guard model reference in the registry (`keel guard train` registers `guard`, alias champion).
    pub model: String,
    /// The model behind `/v1/chat/completions`, guarded or not.
    pub upstream: Upstream,
    /// Plant a canary token in system prompts and stop any answer that repeats it.
    pub canary: bool,
    /// The policy every route uses unless `routes` names it.
    pub policy: Policy,
    /// Per-route changes to `policy`: `chat` (the gateway), `rag` (`/v1/rag/{collection}/query`), `scan`
    /// (`/v1/guard/scan`); fields a route does not name keep the default policy's.
    pub routes: BTreeMap<String, PolicyOverride>,
    /// Per-collection ingest policies (indirect injection in documents), read by `keel rag ingest`.
    pub collections: BTreeMap<String, IngestPolicy>,
    /// Tell blocked callers the detectors' full reasons (scores, thresholds, rules). Off by default: a
    /// caller learns only which detector blocked it.
    pub expose_reasons: bool,
    /// Put the (redacted) text of acting decisions in log lines. Off by default: logs carry detectors,
    /// reasons, the text's length and a hash, never user text.
    pub log_text: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: false,
            model: "guard@champion".into(),
            upstream: Upstream::Local,
            canary: true,
            policy: Policy::default(),
            routes: BTreeMap::new(),
            collections: BTreeMap::new(),
            expose_reasons: false,
            log_text: false,
        }
    }
}

impl GuardConfig {
    pub fn policy(&self, route: &str) -> Policy {
        match self.routes.get(route) {
            Some(o) => self.policy.with(o),
            None => self.policy.clone(),
        }
    }
    pub fn ingest_policy(&self, collection: &str) -> IngestPolicy {
        self.collections
            .get(collection)
            .cloned()
            .unwrap_or_default()
    }
}

pub use keel_app::guard::{GUARD_KIND, LoadError, load_model, resolve};

/// The server's guard: configuration and the model, loaded on first use and reloaded when the reference
/// moves (`keel guard train` registers a new champion): the reference is re-resolved at most once per
/// `refresh_interval_ms`, and a new version is loaded on the blocking pool while requests keep the old one.
pub struct GuardState {
    pub config: GuardConfig,
    refresh: Duration,
    current: RwLock<Option<(i64, Arc<Guard>)>>,
    checked: Mutex<Option<Instant>>,
    loading: tokio::sync::Mutex<()>,
}

impl GuardState {
    pub fn new(config: GuardConfig, refresh: Duration) -> GuardState {
        GuardState {
            config,
            refresh,
            current: RwLock::new(None),
            checked: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn guard(&self, store: &keel_store::Store) -> Result<Arc<Guard>, ApiError> {
        Ok(self.current(store).await?.1)
    }

    /// The loaded guard with its registry version.
    pub async fn current(&self, store: &keel_store::Store) -> Result<(i64, Arc<Guard>), ApiError> {
        let due = {
            let mut c = self.checked.lock().expect("guard check lock");
            match *c {
                Some(t) if t.elapsed() < self.refresh => false,
                _ => {
                    *c = Some(Instant::now());
                    true
                }
            }
        };
        let loaded = || self.current.read().expect("guard lock").clone();
        if !due && let Some(cur) = loaded() {
            return Ok(cur);
        }
        let _one_loader = self.loading.lock().await;
        let unavailable = |e: String| ApiError::new(StatusCode::CONFLICT, "guard_unavailable", e);
        let v = match resolve(store, &self.config.model).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(cur) = loaded() {
                    tracing::warn!(error = %e, "guard model reference did not resolve; keeping the loaded version");
                    return Ok(cur);
                }
                return Err(unavailable(e.to_string()));
            }
        };
        if let Some(cur) = loaded()
            && cur.0 == v.version
        {
            return Ok(cur);
        }
        let bytes = store
            .model_bytes(&v)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let g = crate::rag::blocking(move || {
            GuardModel::from_bytes(&bytes)
                .and_then(|m| Guard::new(&m))
                .map_err(|e| unavailable(e.to_string()))
        })
        .await?;
        let cur = (v.version, Arc::new(g));
        *self.current.write().expect("guard lock") = Some(cur.clone());
        tracing::info!(reference = %self.config.model, version = v.version, "guard model loaded");
        Ok(cur)
    }
}

/// One guard decision to count, log and audit.
pub struct Record<'a> {
    pub route: &'a str,
    pub stage: &'a str,
    pub decision: &'a Decision,
    pub actor: String,
    pub request_id: &'a str,
    /// The text with every PII and secret finding replaced (`policy::redacted_for_log`), for the log line.
    pub redacted: Option<String>,
    /// More evidence for the audit record (usage, latency).
    pub extra: Value,
}

/// Most characters of redacted text in one log line (only with `log_text`).
const LOGGED_CHARS: usize = 200;

/// What a guard decision's log line says about the text: by default only its length in characters and a
/// hash (to correlate lines about one text), never the text: detectors miss things (an unrecognised passport
/// number, a password in prose), so even redacted text can carry personal data. `log_text` adds the first 200
/// characters as redacted for logs.
pub fn logged_text(redacted: Option<&str>, log_text: bool) -> (usize, String, Option<String>) {
    let Some(t) = redacted else {
        return (0, String::new(), None);
    };
    let hash = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(t.as_bytes())[..8])
    };
    let text = log_text.then(|| t.chars().take(LOGGED_CHARS).collect());
    (t.chars().count(), hash, text)
}

/// Counts a decision; one that acted is logged (reasons, and the text only as redacted for logs) and
/// audited (reasons, counts, request id, usage; never the text).
pub fn record(st: &AppState, r: Record) {
    let d = r.decision;
    crate::metrics::METRICS
        .guard_decisions
        .with_label_values(&[r.route, r.stage, d.action.as_str()])
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
        stage = r.stage,
        action = d.action.as_str(),
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
        "route": r.route, "stage": r.stage, "action": d.action.as_str(), "reasons": d.reasons,
        "counts": d.counts.iter().map(|(k, n)| (k.to_string(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "request_id": r.request_id,
    });
    if let (Some(e), Some(extra)) = (evidence.as_object_mut(), r.extra.as_object()) {
        e.extend(extra.clone());
    }
    let action = format!("guard.{}", d.action.as_str());
    let target = format!("{}:{}", r.route, r.stage);
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
    responses((status = 200, description = "Findings (character offsets), the injection score and the policy decision, with the redacted text when something was redacted"),
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
            stage: "input",
            decision: &decision,
            actor: caller.0.actor(),
            request_id: &rid.0.0,
            redacted: Some(logged),
            extra: Value::Null,
        },
    );
    Ok(axum::Json(report_json))
}

/// Input guards over chat messages: each user and tool message is scanned; injection anywhere blocks (by
/// policy), PII and secrets are redacted in place. Returns the decision over all messages and their text as
/// redacted for logs.
pub fn guard_messages(
    guard: &Guard,
    policy: &Policy,
    messages: &mut [keel_rag::llm::ChatMessage],
) -> (Decision, String) {
    let mut logged = String::new();
    let mut all = Decision {
        action: Action::Allow,
        blocked: false,
        reasons: Vec::new(),
        text: String::new(),
        counts: Vec::new(),
        blocked_by: Vec::new(),
    };
    for m in messages
        .iter_mut()
        .filter(|m| m.role == "user" || m.role == "tool")
    {
        let (d, redacted) = guard_input(guard, policy, &m.content);
        if !logged.is_empty() {
            logged.push_str(" | ");
        }
        logged.push_str(&redacted);
        if d.action >= Action::Redact && !d.blocked {
            m.content = d.text.clone();
        }
        all.action = all.action.max(d.action);
        all.blocked |= d.blocked;
        all.reasons.extend(d.reasons);
        for b in d.blocked_by {
            if !all.blocked_by.contains(&b) {
                all.blocked_by.push(b);
            }
        }
        for (k, n) in d.counts {
            match all.counts.iter_mut().find(|(c, _)| *c == k) {
                Some(e) => e.1 += n,
                None => all.counts.push((k, n)),
            }
        }
    }
    (all, logged)
}

/// Input guards over one text (every input detector) with the policy's decision; also the text as redacted
/// for logs.
pub fn guard_input(guard: &Guard, policy: &Policy, text: &str) -> (Decision, String) {
    let report = guard.scan(text, &ScanOptions::input());
    (
        policy.decide(text, &report),
        keel_guard::policy::redacted_for_log(text, &report),
    )
}

/// The answer to a request the input guards blocked: the detectors that blocked it, never the text, and by
/// default never scores, thresholds or rule names (an attacker would tune against them); `expose_reasons`
/// adds the full reasons.
pub fn blocked(what: &str, d: &Decision, expose_reasons: bool) -> ApiError {
    let detectors = if d.blocked_by.is_empty() {
        "policy".to_string()
    } else {
        d.blocked_by.join(", ")
    };
    let mut message = format!("Keel's input guards blocked this {what} (detector: {detectors})");
    if expose_reasons {
        message.push_str(": ");
        message.push_str(&d.reasons.join("; "));
    }
    ApiError::new(StatusCode::BAD_REQUEST, "content_blocked", message)
}

/// Output guards over a whole answer: PII/secret redaction, canary and system-prompt leak checks. Returns the
/// decision and the answer as redacted for logs.
pub fn guard_output(
    guard: &Guard,
    policy: &Policy,
    text: &str,
    canaries: &[String],
    system_prompt: Option<&str>,
) -> (Decision, String) {
    let opts = ScanOptions {
        injection: false,
        pii: true,
        secrets: true,
        canaries,
        system_prompt,
    };
    let report = guard.scan(text, &opts);
    (
        policy.decide(text, &report),
        keel_guard::policy::redacted_for_log(text, &report),
    )
}

/// What a blocked answer says instead.
pub const BLOCKED_ANSWER: &str =
    "[Keel blocked this answer: it would have disclosed protected content.]";

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            action: keel_guard::policy::Action::Block,
            blocked: true,
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

    #[test]
    fn a_blocked_caller_learns_the_detector_not_the_score() {
        let e = blocked("request", &decision(), false);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("detector: injection"), "{}", e.message);
        assert!(
            !e.message.contains("score")
                && !e.message.contains("0.422")
                && !e.message.contains("rule"),
            "{}",
            e.message
        );
        let e = blocked("request", &decision(), true);
        assert!(e.message.contains("score 1.000 > 0.422"), "{}", e.message);
    }
}
