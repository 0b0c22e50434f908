//! RAG use cases: collections (ingest with the injection screen, list, chunks, delete) and answers
//! (extractive, local model or remote upstream) with the input and output guards around them.
//!
//! Models load on first use, on the blocking pool; every embedding, retrieval and generation runs there too,
//! never on the reactor. Collections are cached open and reopened when their `CURRENT` generation changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use keel_guard::Guard;
use keel_guard::policy::{Action, Decision, IngestAction, IngestPolicy, Policy};
use keel_rag::collection::{Collection, CollectionConfig, IngestReport, Screen, ScreenAction};
use keel_rag::llm::{GenOptions, LocalLlm};
use keel_rag::query::{QueryOptions, QueryResult};
use keel_rag::{Embedder, LocalModel, MiniLm};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::guard::{GuardConfig, GuardStage};
use crate::openai::{
    REMOTE_EMBEDDER_PREFIX, RemoteConfig, RemoteEmbedder, RemoteEmbeddingsConfig, RemoteError,
    RemoteLlm,
};

/// Generative settings (`[serve.llm]` in `keel.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Where the local models are (default: the asset cache, `$KEEL_CACHE` or `~/.cache/keel`).
    pub assets_dir: Option<PathBuf>,
    /// Most tokens generated for one answer unless the request asks for fewer.
    pub max_tokens: usize,
    /// Longest a generative request (RAG query, embeddings, chat) may take before it is answered with 503;
    /// a streamed answer only until its first byte.
    pub timeout_ms: u64,
    /// The upstream OpenAI-compatible endpoint for `mode = "remote"`.
    pub remote: RemoteConfig,
    /// An OpenAI-compatible embeddings endpoint to build collections with instead of the local MiniLM.
    pub embeddings: RemoteEmbeddingsConfig,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            assets_dir: None,
            max_tokens: 256,
            timeout_ms: 120_000,
            remote: RemoteConfig::default(),
            embeddings: RemoteEmbeddingsConfig::default(),
        }
    }
}

impl LlmConfig {
    pub fn assets(&self) -> PathBuf {
        self.assets_dir.clone().unwrap_or_else(keel_core::cache_dir)
    }
    pub fn minilm_dir(&self) -> PathBuf {
        self.model_dir(LocalModel::MiniLm)
    }
    /// Where a local embedding model's files are.
    pub fn model_dir(&self, m: LocalModel) -> PathBuf {
        self.assets().join(m.dir_name())
    }
    pub fn llm_path(&self) -> PathBuf {
        self.assets()
            .join("smollm2")
            .join("SmolLM2-135M-Instruct.Q4_1.gguf")
    }
}

/// Longest a request waits for the local model before it is told the model is busy.
pub const GENERATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The id under which Keel's local chat model answers besides its own name.
pub const LOCAL_MODEL_ALIAS: &str = "keel-local";

/// Runs CPU work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("worker failed: {e}")))?
}

/// True while whoever started some blocking work still wants its result; dropping it (a request's future
/// dropped by a timeout or a closed connection) turns the flag off, and generation stops at the next token.
pub struct Wanted(pub Arc<AtomicBool>);

impl Wanted {
    pub fn new() -> Self {
        Wanted(Arc::new(AtomicBool::new(true)))
    }
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Default for Wanted {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Collections and generative models of one Keel home.
pub struct RagState {
    root: PathBuf,
    pub config: LlmConfig,
    embedder: OnceCell<Arc<MiniLm>>,
    mpnet: OnceCell<Arc<MiniLm>>,
    llm: OnceCell<Arc<LocalLlm>>,
    pub remote: Option<RemoteLlm>,
    remote_embedder: Option<Arc<RemoteEmbedder>>,
    collections: Mutex<HashMap<String, (String, Arc<Collection>)>>,
    /// One local generation at a time (it uses every core); others wait at most [`GENERATION_WAIT`].
    generation: Arc<tokio::sync::Semaphore>,
}

/// Where a home's collections live.
pub fn collections_root(home: &Path) -> PathBuf {
    home.join("rag")
}

impl RagState {
    /// Collections under `home/rag`; models from `config`.
    pub fn new(home: &Path, config: LlmConfig) -> RagState {
        let remote = RemoteLlm::new(&config.remote).ok();
        let remote_embedder = RemoteEmbedder::new(&config.embeddings).ok().map(Arc::new);
        RagState {
            remote_embedder,
            root: collections_root(home),
            config,
            embedder: OnceCell::new(),
            mpnet: OnceCell::new(),
            llm: OnceCell::new(),
            remote,
            collections: Mutex::new(HashMap::new()),
            generation: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Where the collections are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The chat models this state can answer as (id, owner): the remote upstream's model when one is
    /// configured, and the local model when its weights are in the asset cache (by its alias, and by its own
    /// name once loaded).
    pub fn chat_models(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(r) = &self.remote {
            out.push((r.model().to_string(), "upstream".to_string()));
        }
        if self.config.llm_path().exists() {
            out.push((LOCAL_MODEL_ALIAS.to_string(), "keel".to_string()));
            if let Some(llm) = self.llm.get() {
                out.push((llm.id().to_string(), "keel".to_string()));
            }
        }
        out
    }

    /// The default local embedding model (MiniLM), loaded once.
    pub async fn embedder(&self) -> Result<Arc<MiniLm>> {
        self.local_embedder(LocalModel::MiniLm).await
    }

    /// A local embedding model, loaded once.
    pub async fn local_embedder(&self, m: LocalModel) -> Result<Arc<MiniLm>> {
        let dir = self.config.model_dir(m);
        let cell = match m {
            LocalModel::MiniLm => &self.embedder,
            LocalModel::MpNet => &self.mpnet,
        };
        cell.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || MiniLm::load(&dir).map(Arc::new))
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?
                .map_err(|e| Error::Unavailable(e.to_string()))
        })
        .await
        .cloned()
    }

    /// A turn at the local model: generations run one at a time, and a caller that cannot get a turn within
    /// [`GENERATION_WAIT`] is told the model is busy ([`Error::Busy`]) instead of queueing into its time limit.
    pub async fn generation_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        match tokio::time::timeout(GENERATION_WAIT, self.generation.clone().acquire_owned()).await {
            Ok(p) => Ok(p.expect("the semaphore is never closed")),
            Err(_) => Err(Error::Busy(
                "the local model is busy with other requests; retry shortly".into(),
            )),
        }
    }

    pub async fn llm(&self) -> Result<Arc<LocalLlm>> {
        let path = self.config.llm_path();
        self.llm
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || LocalLlm::load(&path).map(Arc::new))
                    .await
                    .map_err(|e| Error::Unavailable(e.to_string()))?
                    .map_err(|e| Error::Unavailable(e.to_string()))
            })
            .await
            .cloned()
    }

    /// The embedder a collection was built with: the local MiniLM, or the configured remote endpoint.
    pub async fn embedder_for(&self, c: &Collection) -> Result<Arc<dyn Embedder>> {
        let id = &c.manifest.embedder;
        if !id.starts_with(REMOTE_EMBEDDER_PREFIX) {
            let m = LocalModel::from_id(id).unwrap_or_default();
            return Ok(self.local_embedder(m).await?);
        }
        match &self.remote_embedder {
            Some(r) if r.id() == *id => Ok(r.clone()),
            _ => Err(Error::Unavailable(format!(
                "collection '{}' was built with {id}; configure [serve.llm.embeddings] (base_url, model) to query it",
                c.manifest.name
            ))),
        }
    }

    /// The collection's current generation, opened once and reopened after each ingest.
    pub fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        keel_rag::collection::validate_name(name)?;
        let current = std::fs::read_to_string(self.root.join(name).join("CURRENT"))
            .map(|s| s.trim().to_string())
            .map_err(|_| keel_rag::Error::UnknownCollection(name.into()))?;
        if let Some((g, c)) = self
            .collections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && *g == current
        {
            return Ok(c.clone());
        }
        let c = Arc::new(Collection::open(&self.root, name)?);
        let generation = c.manifest.generation.clone();
        self.collections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (generation, c.clone()));
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Collections

/// One collection at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionSummary {
    pub collection: String,
    pub documents: usize,
    pub chunks: usize,
    /// The embedding model's id (`sentence-transformers/all-MiniLM-L6-v2`,
    /// `sentence-transformers/all-mpnet-base-v2`, or `remote:{model}@{url}`).
    pub embedder: String,
    pub fusion_weight: f64,
    /// Whether `keel rag tune` set the fusion weight from judged queries.
    pub tuned: bool,
    /// The generation `CURRENT` names.
    pub generation: String,
}

/// Every collection under `root`, by name.
pub fn list(root: &Path) -> Result<Vec<CollectionSummary>> {
    let mut out = Vec::new();
    for n in keel_rag::collection::list(root)? {
        let c = Collection::open(root, &n)?;
        out.push(summary(&c));
    }
    Ok(out)
}

/// A collection's summary.
pub fn summary(c: &Collection) -> CollectionSummary {
    CollectionSummary {
        collection: c.manifest.name.clone(),
        documents: c.manifest.documents.len(),
        chunks: c.chunks.len(),
        embedder: c.manifest.embedder.clone(),
        fusion_weight: c.manifest.config.fusion_weight,
        tuned: c.manifest.config.tuned,
        generation: c.manifest.generation.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Collections shared by replicas

/// Points the local copy's `CURRENT` (in the collection directory `dir`) at `generation`, atomically.
fn set_local_generation(dir: &Path, generation: &str) -> Result<()> {
    let current = dir.join("CURRENT");
    let tmp = dir.join(format!("CURRENT.{}", std::process::id()));
    std::fs::write(&tmp, format!("{generation}\n")).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &current).map_err(|e| Error::io(&current, e))
}

/// The local copy's current generation of collection `name` (`CURRENT` under `root`), if any.
fn local_generation(root: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(root.join(name).join("CURRENT"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// When the store's files are shared (object storage): brings the local copy of collection `name` to its
/// published generation, downloading that generation once into `root/NAME/GENERATION` (fetched into a
/// temporary directory, then renamed, then `CURRENT` switched). Returns the published generation (None when
/// the collection was never published, or when files are local and there is nothing to share).
pub async fn sync_collection(
    store: &keel_store::Store,
    root: &Path,
    name: &str,
) -> Result<Option<String>> {
    if !store.shares_files() {
        return Ok(None);
    }
    keel_rag::collection::validate_name(name)?;
    let Some(published) = store.collection_generation(name).await? else {
        return Ok(None);
    };
    if local_generation(root, name).as_deref() == Some(published.as_str()) {
        return Ok(Some(published));
    }
    let dir = root.join(name);
    let target = dir.join(&published);
    if !target.join("manifest.json").exists() {
        let tmp = dir.join(format!(".fetch-{published}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        if let Err(e) = store.fetch_collection(name, &published, &tmp).await {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
    }
    set_local_generation(&dir, &published)?;
    Ok(Some(published))
}

/// [`sync_collection`] for every published collection (before listing them).
pub async fn sync_all(store: &keel_store::Store, root: &Path) -> Result<()> {
    if !store.shares_files() {
        return Ok(());
    }
    for (name, _) in store.collection_generations().await? {
        sync_collection(store, root, &name).await?;
    }
    Ok(())
}

/// When the store's files are shared: publishes the local current generation of `name` if it is not `base`
/// (the generation the change was built on, from [`sync_collection`]): its files are uploaded, then the
/// collection's pointer is switched from `base` by compare-and-swap, so a concurrent writer's generation is
/// never overwritten (that writer's publish fails with a conflict instead).
pub async fn publish_collection(
    store: &keel_store::Store,
    root: &Path,
    name: &str,
    base: Option<&str>,
    actor: &str,
) -> Result<()> {
    if !store.shares_files() {
        return Ok(());
    }
    let Some(local) = local_generation(root, name) else {
        return Ok(());
    };
    if Some(local.as_str()) == base {
        return Ok(());
    }
    store
        .publish_collection(name, &local, &root.join(name).join(&local), base, actor)
        .await?;
    Ok(())
}

/// When the store's files are shared: after a change made in place to the local current generation (a tuned
/// fusion weight in its manifest), publishes it as a new generation (a copy under a new id), since published
/// generations are immutable.
pub async fn republish_collection(
    store: &keel_store::Store,
    root: &Path,
    name: &str,
    base: Option<&str>,
    actor: &str,
) -> Result<()> {
    if !store.shares_files() {
        return Ok(());
    }
    let Some(current) = local_generation(root, name) else {
        return Ok(());
    };
    let dir = root.join(name);
    let fresh = format!(
        "gen-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos()),
        std::process::id()
    );
    copy_dir(&dir.join(&current), &dir.join(&fresh))?;
    let manifest_path = dir.join(&fresh).join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    let mut manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{}: {e}", manifest_path.display())))?;
    manifest["generation"] = serde_json::Value::String(fresh.clone());
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("JSON serialises"),
    )
    .map_err(|e| Error::io(&manifest_path, e))?;
    set_local_generation(&dir, &fresh)?;
    publish_collection(store, root, name, base, actor).await
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for e in std::fs::read_dir(from)
        .map_err(|e| Error::io(from, e))?
        .flatten()
    {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// Removes documents (by their path in the collection) from a collection; at least one must be there.
pub fn delete_documents(root: &Path, collection: &str, documents: &[String]) -> Result<usize> {
    if documents.is_empty() {
        return Err(Error::input("name at least one document to delete"));
    }
    let n = Collection::delete_documents(root, collection, documents)?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "none of {} is a document of '{collection}' (list them with keel rag chunks or GET /v1/rag/collections/{collection}/chunks)",
            documents.join(", ")
        )));
    }
    Ok(n)
}

/// What to ingest and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSpec {
    pub collection: String,
    /// A file or a folder of documents (Markdown, HTML, text, PDF).
    pub path: PathBuf,
    /// Most tokens per chunk.
    #[serde(default = "default_chunk_tokens")]
    pub max_tokens: usize,
    /// Tokens shared by consecutive chunks.
    #[serde(default = "default_overlap")]
    pub overlap: usize,
    /// Screen new chunks for indirect prompt injection with the registered guard model, per the
    /// collection's ingest policy.
    #[serde(default = "yes")]
    pub screen: bool,
    /// The local embedding model of a new collection (default MiniLM); an existing collection keeps its own,
    /// and naming another is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder: Option<LocalModel>,
}

fn default_chunk_tokens() -> usize {
    keel_rag::chunk::ChunkOptions::default().max_tokens
}
fn default_overlap() -> usize {
    keel_rag::chunk::ChunkOptions::default().overlap_tokens
}
fn yes() -> bool {
    true
}

impl IngestSpec {
    pub fn new(collection: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        IngestSpec {
            collection: collection.into(),
            path: path.into(),
            max_tokens: default_chunk_tokens(),
            overlap: default_overlap(),
            screen: true,
            embedder: None,
        }
    }

    /// Checks the spec before any model loads: the collection name, the path, the chunk sizes.
    pub fn check(&self) -> Result<()> {
        keel_rag::collection::validate_name(&self.collection)?;
        if !self.path.exists() {
            return Err(Error::input(format!(
                "{}: no such file or folder",
                self.path.display()
            )));
        }
        if self.max_tokens == 0 || self.overlap >= self.max_tokens {
            return Err(Error::input(format!(
                "chunks of {} tokens overlapping by {}: a chunk needs more tokens than its overlap",
                self.max_tokens, self.overlap
            )));
        }
        Ok(())
    }
}

/// Checks that `wanted` (when named) is the model an existing collection `c` was built with: vectors of two
/// models cannot share one index.
pub fn check_embedder(c: &Collection, wanted: Option<LocalModel>) -> Result<()> {
    match wanted {
        Some(m) if m.id() != c.manifest.embedder => Err(Error::input(format!(
            "collection '{}' was built with {}, not {}: its vectors cannot be mixed (ingest into a new collection, or leave the embedder out)",
            c.manifest.name,
            c.manifest.embedder,
            m.id()
        ))),
        _ => Ok(()),
    }
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestOutcome {
    pub collection: String,
    #[serde(flatten)]
    pub report: IngestReport,
    /// Whether the injection screen ran and why not.
    pub screening: String,
    pub seconds: f64,
}

/// The injection screen a collection's ingest uses: its policy from `[serve.guard.collections]`, and the
/// guard model when the policy acts and one is registered.
pub struct IngestScreen {
    pub policy: IngestPolicy,
    pub guard: Option<Arc<Guard>>,
    /// Whether the screen runs and why not.
    pub screening: String,
}

impl IngestScreen {
    /// No screen.
    pub fn resolve_none() -> IngestScreen {
        IngestScreen {
            policy: IngestPolicy::default(),
            guard: None,
            screening: "off".into(),
        }
    }

    /// Resolves the screen for `collection`: `guard` loads the model on demand (a missing one turns the screen
    /// off with the reason; any other load failure is an error).
    pub async fn resolve(
        store: &keel_store::Store,
        config: &GuardConfig,
        collection: &str,
        wanted: bool,
    ) -> Result<IngestScreen> {
        let policy = config.ingest_policy(collection);
        let mut screen = IngestScreen {
            policy,
            guard: None,
            screening: "off (not requested)".into(),
        };
        if !wanted {
            return Ok(screen);
        }
        if screen.policy.injection == IngestAction::Allow {
            screen.screening =
                format!("off ([serve.guard.collections.{collection}] injection = \"allow\")");
            return Ok(screen);
        }
        match crate::guard::load_model(store, &config.model).await {
            Ok(m) => {
                let g = blocking(move || Ok(crate::guard::build_guard(&m)?)).await?;
                screen.guard = Some(Arc::new(g));
                screen.screening = format!("on ({})", ingest_action_name(screen.policy.injection));
            }
            Err(e @ crate::guard::LoadError::Missing(_)) => screen.screening = format!("off: {e}"),
            Err(e) => return Err(e.into()),
        }
        Ok(screen)
    }
}

fn ingest_action_name(a: IngestAction) -> &'static str {
    match a {
        IngestAction::Flag => "flag",
        IngestAction::Quarantine => "quarantine",
        IngestAction::Exclude => "exclude",
        IngestAction::Allow => "allow",
    }
}

/// Embeds and indexes a file or folder into a collection (a new generation, switched atomically), screening
/// new chunks for indirect injection. `progress(done, total)` sees the embedded chunks; CPU work runs on the
/// blocking pool.
pub async fn ingest(
    embedder: Arc<dyn Embedder>,
    root: PathBuf,
    spec: IngestSpec,
    screen: IngestScreen,
    mut progress: Box<dyn FnMut(usize, usize) + Send>,
) -> Result<IngestOutcome> {
    spec.check()?;
    let started = std::time::Instant::now();
    blocking(move || {
        let config = CollectionConfig {
            chunk: keel_rag::chunk::ChunkOptions {
                max_tokens: spec.max_tokens,
                overlap_tokens: spec.overlap,
            },
            ..Default::default()
        };
        let action = match screen.policy.injection {
            IngestAction::Flag => Some(ScreenAction::Flag),
            IngestAction::Quarantine => Some(ScreenAction::Quarantine),
            IngestAction::Exclude => Some(ScreenAction::Exclude),
            IngestAction::Allow => None,
        };
        let policy = screen.policy.clone();
        let guard = screen.guard.clone();
        let check = |text: &str| -> Option<String> {
            let g = guard.as_ref()?;
            let v = g.document_injection(text);
            let t = policy.threshold.unwrap_or(v.threshold);
            (v.score > t).then(|| {
                format!(
                    "prompt injection (score {:.2}; {})",
                    v.score,
                    v.reasons.join("; ")
                )
            })
        };
        let active = screen.guard.as_ref().zip(action).map(|(_, action)| Screen {
            check: &check,
            action,
        });
        let report = Collection::ingest(
            &root,
            &spec.collection,
            &spec.path,
            embedder.as_ref(),
            Some(config),
            active.as_ref(),
            &mut |done, total| progress(done, total),
        )?;
        Ok(IngestOutcome {
            collection: spec.collection,
            report,
            screening: screen.screening,
            seconds: started.elapsed().as_secs_f64(),
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------------------------
// Answers

/// How an answer is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    Extractive,
    Local,
    Remote,
}

impl std::str::FromStr for AnswerMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<AnswerMode, String> {
        match s {
            "extractive" => Ok(AnswerMode::Extractive),
            "local" => Ok(AnswerMode::Local),
            "remote" => Ok(AnswerMode::Remote),
            _ => Err(format!(
                "answer mode '{s}' must be extractive, local or remote"
            )),
        }
    }
}

/// Receives a local model's answer piece by piece as it is generated (returning `false` stops it).
pub type TextSink = Box<dyn FnMut(&str) -> bool + Send>;

/// Tokens a generated answer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// An answer with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub result: QueryResult,
    /// The mode that produced it (extractive when a remote upstream failed).
    pub mode: AnswerMode,
    /// Why a generated answer fell back to the extractive one (an unreachable upstream, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A question to a collection.
#[derive(Debug, Clone)]
pub struct Question {
    pub question: String,
    pub mode: AnswerMode,
    pub options: QueryOptions,
    pub max_tokens: usize,
}

/// Answers a question from `c`; a failing remote falls back to the extractive answer. `on_text` sees a local
/// model's text as it is generated.
pub async fn answer(
    rag: &RagState,
    c: Arc<Collection>,
    q: Question,
    mut on_text: Option<TextSink>,
) -> Result<Answer> {
    keel_rag::query::check_question(&q.question)?;
    let Question {
        question,
        mode,
        options: opts,
        max_tokens,
    } = q;
    let embedder = rag.embedder_for(&c).await?;
    let cc = c.clone();
    let qq = question.clone();
    let plain = |result, mode| Answer {
        result,
        mode,
        fallback: None,
        usage: None,
    };
    if mode == AnswerMode::Extractive {
        let r = blocking(move || Ok(keel_rag::query::answer(&cc, embedder.as_ref(), &qq, &opts)?))
            .await?;
        return Ok(plain(r, mode));
    }
    let (citations, confident) = blocking(move || {
        Ok(keel_rag::query::retrieve(
            &cc,
            embedder.as_ref(),
            &qq,
            &opts,
        )?)
    })
    .await?;
    if !confident {
        return Ok(plain(
            keel_rag::query::not_found(citations, opts.retrieval),
            mode,
        ));
    }
    let messages =
        keel_rag::llm::rag_messages(&question, &keel_rag::query::passages(&c, &citations));
    let gen_opts = GenOptions {
        max_tokens,
        ..GenOptions::default()
    };
    let generation = match mode {
        AnswerMode::Local => {
            let llm = rag.llm().await?;
            let slot = rag.generation_slot().await?;
            let wanted = Wanted::new();
            let flag = wanted.flag();
            let g = blocking(move || {
                let _slot = slot;
                let mut sink = |piece: &str| {
                    flag.load(Ordering::Relaxed) && on_text.as_mut().is_none_or(|f| f(piece))
                };
                Ok(llm.chat(&messages, &gen_opts, &mut sink)?)
            })
            .await?;
            drop(wanted);
            g
        }
        _ => {
            let remote = match &rag.remote {
                Some(r) => r.chat(&messages, &gen_opts).await,
                None => Err(RemoteError::NotConfigured),
            };
            match remote {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "remote LLM failed; answering extractively");
                    let embedder = rag.embedder_for(&c).await?;
                    let r = blocking(move || {
                        Ok(keel_rag::query::answer(
                            &c,
                            embedder.as_ref(),
                            &question,
                            &opts,
                        )?)
                    })
                    .await?;
                    return Ok(Answer {
                        result: r,
                        mode: AnswerMode::Extractive,
                        fallback: Some(e.to_string()),
                        usage: None,
                    });
                }
            }
        }
    };
    let usage = Usage {
        prompt_tokens: generation.prompt_tokens,
        completion_tokens: generation.completion_tokens,
    };
    let r = keel_rag::query::generated(&c, &generation.text, citations, &opts);
    Ok(Answer {
        result: r,
        mode,
        fallback: None,
        usage: Some(usage),
    })
}

/// What the guards decided about one answer, stage by stage, for the caller to count, log and audit.
#[derive(Debug, Clone)]
pub struct Guarded<T> {
    pub value: T,
    /// Each stage that ran: its decision and the text as redacted for logs.
    pub stages: Vec<GuardStage>,
}

/// The guarded answer pipeline: the question passes the route's input guards (blocked → [`Error::Blocked`];
/// PII and secrets redacted), the answer is produced, and the answer passes the output guards (blocked → the
/// blocked answer; redacted in place). Without a guard this is [`answer`]. `on_stage` sees each stage's
/// decision as it is made (a blocked question included).
pub async fn guarded_answer(
    rag: &RagState,
    c: Arc<Collection>,
    mut q: Question,
    guard: Option<(Arc<Guard>, Policy)>,
    on_stage: &(dyn Fn(&GuardStage) + Send + Sync),
) -> Result<Answer> {
    let Some((g, policy)) = guard else {
        return answer(rag, c, q, None).await;
    };
    let input = {
        let (g, policy, text) = (g.clone(), policy.clone(), q.question.clone());
        blocking(move || Ok(GuardStage::input(&g, &policy, &text))).await?
    };
    on_stage(&input);
    if input.decision.blocked {
        return Err(input.blocked("question"));
    }
    if input.decision.action >= Action::Redact {
        q.question = input.decision.text.clone();
    }
    let mut a = answer(rag, c, q, None).await?;
    let text = a.result.answer.clone();
    let output = blocking(move || Ok(GuardStage::output(&g, &policy, &text, &[], None))).await?;
    on_stage(&output);
    apply_output(&output.decision, &mut a.result.answer);
    Ok(a)
}

/// Applies an output decision to an answer: blocked → [`crate::guard::BLOCKED_ANSWER`], redacted → the
/// redacted text.
pub fn apply_output(d: &Decision, answer: &mut String) {
    if d.blocked {
        *answer = crate::guard::BLOCKED_ANSWER.to_string();
    } else if d.action >= Action::Redact {
        *answer = d.text.clone();
    }
}
