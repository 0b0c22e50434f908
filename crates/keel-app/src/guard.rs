//! Guards: their configuration (`[serve.guard]`), the guard model in the registry (resolved, loaded, and
//! reloaded when its reference moves), and the two stages every guarded generation passes: the input stage
//! over a question or chat messages, and the output stage over an answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use keel_guard::policy::{Action, Decision, IngestPolicy, Policy, PolicyOverride};
use keel_guard::{Guard, GuardModel, ScanOptions};
use keel_store::{Selector, Store, VersionRecord};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// Per-collection ingest policies (indirect injection in documents), read by every ingest.
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

/// The registry kind of guard models.
pub const GUARD_KIND: &str = "guard";

/// Why the guard model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no guard model '{0}' in the registry; train one with `keel guard train`")]
    Missing(String),
    #[error("'{reference}' is a {kind} model, not a guard model")]
    WrongKind { reference: String, kind: String },
    #[error(transparent)]
    Store(#[from] keel_store::Error),
    #[error(transparent)]
    Guard(#[from] keel_guard::Error),
}

impl LoadError {
    pub fn class(&self) -> keel_core::ErrorClass {
        match self {
            LoadError::Store(e) => e.class(),
            LoadError::Guard(e) => e.class(),
            _ => keel_core::ErrorClass::Input,
        }
    }
}

/// The registered version a guard reference names (`guard`, `guard@champion`, `guard@3`), checked to be a
/// guard model.
pub async fn resolve(store: &Store, reference: &str) -> Result<VersionRecord, LoadError> {
    let (name, sel) = Selector::parse(reference)?;
    let v = match store.get(&name, &sel).await {
        Ok(v) => v,
        Err(keel_store::Error::UnknownModel(_) | keel_store::Error::UnknownVersion { .. }) => {
            return Err(LoadError::Missing(reference.into()));
        }
        Err(e) => return Err(e.into()),
    };
    if v.kind != GUARD_KIND {
        return Err(LoadError::WrongKind {
            reference: reference.into(),
            kind: v.kind,
        });
    }
    Ok(v)
}

/// A ready guard for `model`: an encoder guard gets the local MiniLM from the asset cache
/// (`$KEEL_CACHE/all-MiniLM-L6-v2`, loaded once per process and shared). Blocking: call it off the reactor.
pub fn build_guard(model: &GuardModel) -> std::result::Result<Guard, keel_guard::Error> {
    if model.encoder.is_none() {
        return Guard::new(model);
    }
    static MINILM: std::sync::Mutex<Option<Arc<keel_rag::embed::MiniLm>>> =
        std::sync::Mutex::new(None);
    let emb = {
        let mut slot = MINILM.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(m) => m.clone(),
            None => {
                let dir = keel_core::cache_dir().join("all-MiniLM-L6-v2");
                let m = Arc::new(keel_rag::embed::MiniLm::load(&dir).map_err(|e| {
                    keel_guard::Error::Model(format!(
                        "this guard model's encoder needs all-MiniLM-L6-v2: {e} (run `scripts/fetch-assets.sh minilm`)"
                    ))
                })?);
                *slot = Some(m.clone());
                m
            }
        }
    };
    Guard::with_encoder(model, emb)
}

/// Loads a guard model from the registry by reference.
pub async fn load_model(store: &Store, reference: &str) -> Result<GuardModel, LoadError> {
    let v = resolve(store, reference).await?;
    let bytes = store.model_bytes(&v).await?;
    Ok(GuardModel::from_bytes(&bytes)?)
}

/// The guard model of a long-running process: loaded on first use and reloaded when the reference moves
/// (`keel guard train` registers a new champion): the reference is re-resolved at most once per `refresh`, and
/// a new version is loaded on the blocking pool while callers keep the old one.
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

    pub async fn guard(&self, store: &Store) -> Result<Arc<Guard>> {
        Ok(self.current(store).await?.1)
    }

    /// The guard and the route's policy when guards are enabled; `None` when they are off.
    pub async fn for_route(
        &self,
        store: &Store,
        route: &str,
    ) -> Result<Option<(Arc<Guard>, Policy)>> {
        if !self.config.enabled {
            return Ok(None);
        }
        Ok(Some((self.guard(store).await?, self.config.policy(route))))
    }

    /// The loaded guard with its registry version.
    pub async fn current(&self, store: &Store) -> Result<(i64, Arc<Guard>)> {
        let due = {
            let mut c = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            match *c {
                Some(t) if t.elapsed() < self.refresh => false,
                _ => {
                    *c = Some(Instant::now());
                    true
                }
            }
        };
        let loaded = || {
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        if !due && let Some(cur) = loaded() {
            return Ok(cur);
        }
        let _one_loader = self.loading.lock().await;
        let v = match resolve(store, &self.config.model).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(cur) = loaded() {
                    tracing::warn!(error = %e, "guard model reference did not resolve; keeping the loaded version");
                    return Ok(cur);
                }
                return Err(Error::GuardUnavailable(e.to_string()));
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
            .map_err(|e| Error::GuardUnavailable(e.to_string()))?;
        let g = crate::rag::blocking(move || {
            GuardModel::from_bytes(&bytes)
                .and_then(|m| build_guard(&m))
                .map_err(|e| Error::GuardUnavailable(e.to_string()))
        })
        .await?;
        let cur = (v.version, Arc::new(g));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(cur.clone());
        tracing::info!(reference = %self.config.model, version = v.version, "guard model loaded");
        Ok(cur)
    }
}

/// Which stage of a guarded generation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Input,
    Output,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Output => "output",
        }
    }
}

/// One stage's decision, with the text as redacted for logs (never the raw text).
#[derive(Debug, Clone)]
pub struct GuardStage {
    pub stage: Stage,
    pub decision: Decision,
    pub logged: String,
}

impl GuardStage {
    /// The input stage over one text: every input detector, then the policy.
    pub fn input(guard: &Guard, policy: &Policy, text: &str) -> GuardStage {
        let report = guard.scan(text, &ScanOptions::input());
        GuardStage {
            stage: Stage::Input,
            decision: policy.decide(text, &report),
            logged: keel_guard::policy::redacted_for_log(text, &report),
        }
    }

    /// The input stage over chat messages: each user and tool message is scanned; injection anywhere blocks
    /// (by policy), PII and secrets are redacted in place. The decision covers all of them.
    pub fn messages(
        guard: &Guard,
        policy: &Policy,
        messages: &mut [keel_rag::llm::ChatMessage],
    ) -> GuardStage {
        let mut logged = String::new();
        let mut all = Decision {
            action: Action::Allow,
            blocked: false,
            review: false,
            reasons: Vec::new(),
            text: String::new(),
            counts: Vec::new(),
            blocked_by: Vec::new(),
        };
        for m in messages
            .iter_mut()
            .filter(|m| m.role == "user" || m.role == "tool")
        {
            let GuardStage {
                decision: d,
                logged: redacted,
                ..
            } = GuardStage::input(guard, policy, &m.content);
            if !logged.is_empty() {
                logged.push_str(" | ");
            }
            logged.push_str(&redacted);
            if d.action >= Action::Redact && !d.blocked {
                m.content = d.text.clone();
            }
            all.action = all.action.max(d.action);
            all.blocked |= d.blocked;
            all.review |= d.review;
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
        GuardStage {
            stage: Stage::Input,
            decision: all,
            logged,
        }
    }

    /// The output stage over a whole answer: PII/secret redaction, canary and system-prompt leak checks.
    pub fn output(
        guard: &Guard,
        policy: &Policy,
        text: &str,
        canaries: &[String],
        system_prompt: Option<&str>,
    ) -> GuardStage {
        let opts = ScanOptions {
            injection: false,
            pii: true,
            secrets: true,
            canaries,
            system_prompt,
        };
        let report = guard.scan(text, &opts);
        GuardStage {
            stage: Stage::Output,
            decision: policy.decide(text, &report),
            logged: keel_guard::policy::redacted_for_log(text, &report),
        }
    }

    /// The error for a blocked input stage.
    pub fn blocked(&self, what: &str) -> Error {
        Error::Blocked {
            what: what.into(),
            detectors: self
                .decision
                .blocked_by
                .iter()
                .map(|d| d.to_string())
                .collect(),
            reasons: self.decision.reasons.clone(),
        }
    }
}

/// What a blocked answer says instead.
pub const BLOCKED_ANSWER: &str =
    "[Keel blocked this answer: it would have disclosed protected content.]";

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
