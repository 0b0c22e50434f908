//! Jobs: long work (training, retraining) as persisted, typed records that a worker runs. A front end
//! queues a [`JobSpec`] and answers at once (`202 Accepted` over HTTP); the [`Worker`], a library task that
//! `keel serve` runs next to the server on the same store and `keel jobs work` runs alone, claims it, reports
//! progress (which is also how it learns of a cancellation) and records the final state and a typed result.

use crate::guard::GuardConfig;
use crate::import::{ImportOutcome, ImportSpec};
use crate::rag::{IngestOutcome, IngestScreen, IngestSpec, RagState};
use crate::retrain::{RetrainOutcome, RetrainSpec};
use crate::train::{Progress, TrainOutcome, TrainSpec};
use crate::{Error, Result};
use futures_util::FutureExt;
use keel_store::{JobRecord, JobState, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Jobs whose worker has not reported for this long are marked failed.
pub const STALE_MS: i64 = 120_000;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Train and register a new version ([`TrainSpec`]).
    Train,
    /// Train a challenger with the champion's settings, gate it, start its rollout ([`RetrainSpec`]).
    Retrain,
    /// Embed and index documents into a RAG collection ([`IngestSpec`]).
    Ingest,
    /// Import a model trained elsewhere and register it ([`ImportSpec`]).
    Import,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Train => "train",
            JobKind::Retrain => "retrain",
            JobKind::Ingest => "ingest",
            JobKind::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Result<JobKind> {
        match s {
            "train" => Ok(JobKind::Train),
            "retrain" => Ok(JobKind::Retrain),
            "ingest" => Ok(JobKind::Ingest),
            "import" => Ok(JobKind::Import),
            other => Err(Error::input(format!(
                "unknown job kind '{other}' (train, retrain, ingest or import)"
            ))),
        }
    }
}

/// A job's typed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec", rename_all = "snake_case")]
pub enum JobSpec {
    Train(Box<TrainSpec>),
    Retrain(RetrainSpec),
    Ingest(IngestSpec),
    Import(Box<ImportSpec>),
}

/// A job's typed result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult {
    Import(Box<ImportOutcome>),
    Retrain(Box<RetrainOutcome>),
    Train(Box<TrainOutcome>),
    Ingest(Box<IngestOutcome>),
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Train(_) => JobKind::Train,
            JobSpec::Retrain(_) => JobKind::Retrain,
            JobSpec::Ingest(_) => JobKind::Ingest,
            JobSpec::Import(_) => JobKind::Import,
        }
    }

    /// The spec as a stored job keeps it (without the kind, which has its own column).
    pub fn to_value(&self) -> Result<serde_json::Value> {
        match self {
            JobSpec::Train(s) => serde_json::to_value(&**s),
            JobSpec::Retrain(s) => serde_json::to_value(s),
            JobSpec::Ingest(s) => serde_json::to_value(s),
            JobSpec::Import(s) => serde_json::to_value(&**s),
        }
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Reads the spec of a stored job.
    pub fn of(job: &JobRecord) -> Result<JobSpec> {
        let bad = |e: serde_json::Error| {
            Error::input(format!("job {}: the spec is invalid: {e}", job.id))
        };
        Ok(match JobKind::parse(&job.kind)? {
            JobKind::Train => JobSpec::Train(Box::new(
                serde_json::from_value(job.spec.clone()).map_err(bad)?,
            )),
            JobKind::Retrain => {
                JobSpec::Retrain(serde_json::from_value(job.spec.clone()).map_err(bad)?)
            }
            JobKind::Ingest => {
                JobSpec::Ingest(serde_json::from_value(job.spec.clone()).map_err(bad)?)
            }
            JobKind::Import => JobSpec::Import(Box::new(
                serde_json::from_value(job.spec.clone()).map_err(bad)?,
            )),
        })
    }

    fn validate(&self) -> Result<()> {
        match self {
            JobSpec::Train(s) => {
                s.validate()?;
                for p in std::iter::once(&s.data).chain(&s.test) {
                    if !p.exists() {
                        return Err(Error::NotFound(format!("{}: no such file", p.display())));
                    }
                }
                Ok(())
            }
            JobSpec::Retrain(s) => s.validate(),
            JobSpec::Ingest(s) => s.check(),
            JobSpec::Import(s) => s.validate(),
        }
    }
}

/// Queues `spec` for `model` as `actor`. With `unless_pending`, a job of the same kind already queued or
/// running for the model is returned instead of a new one (alert rules fire repeatedly).
pub async fn enqueue(
    store: &Store,
    model: &str,
    spec: &JobSpec,
    actor: &str,
    unless_pending: bool,
) -> Result<JobRecord> {
    spec.validate()?;
    if let JobSpec::Retrain(_) = spec {
        // The champion must exist before anything is queued.
        store
            .get(
                model,
                &keel_store::Selector::Alias(keel_store::CHAMPION.into()),
            )
            .await
            .map_err(|e| {
                Error::input(format!(
                    "{e}: retraining gates a challenger against '{model}@champion'"
                ))
            })?;
    }
    let kind = spec.kind().as_str();
    if unless_pending
        && let Some(j) = store
            .jobs(1000)
            .await?
            .into_iter()
            .find(|j| j.model == model && j.kind == kind && !j.state.is_final())
    {
        return Ok(j);
    }
    let value = spec.to_value()?;
    Ok(store.enqueue_job(kind, model, &value, actor).await?)
}

/// Where the worker stands, as health checks see it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkerState {
    /// This process runs no worker.
    #[default]
    Off,
    Running,
    /// The last attempt failed (out of file descriptors, say); it is retried with backoff.
    Retrying {
        error: String,
        failures: u32,
    },
    /// The worker ended: jobs queued here will not run until a restart.
    Stopped {
        error: String,
    },
}

/// The worker's state, shared with health checks.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    state: std::sync::Mutex<WorkerState>,
}

impl WorkerHealth {
    pub fn set(&self, s: WorkerState) {
        *self.state.lock().expect("worker state") = s;
    }

    pub fn get(&self) -> WorkerState {
        self.state.lock().expect("worker state").clone()
    }
}

/// Overall progress of a job from its stage and the stage's fraction.
fn overall(kind: JobKind, stage: &str, f: f64) -> f64 {
    use crate::train::stage::*;
    let f = f.clamp(0.0, 1.0);
    let (start, width) = match stage {
        READING => (0.0, 0.05),
        CHOOSING => (0.05, 0.15),
        TRAINING => (0.2, 0.6),
        EVALUATING => (0.8, 0.05),
        REGISTERING => (0.85, 0.05),
        _ => (0.9, 0.1),
    };
    let p = start + width * f;
    match kind {
        JobKind::Retrain => p,
        JobKind::Train => (p / 0.9).min(1.0),
        JobKind::Ingest => f,
        JobKind::Import => match stage {
            READING => 0.1 * f,
            EVALUATING => 0.1 + 0.7 * f,
            _ => 0.8 + 0.2 * f,
        },
    }
}

/// Runs a claimed job to its end and records the outcome; returns the final record. `ui` also receives
/// progress (a terminal's progress bar); `stopping` set means the process is shutting down: the job stops
/// at its next progress report and is recorded as cancelled.
pub async fn run_job(
    store: &Store,
    job: JobRecord,
    ui: Option<Progress>,
    stopping: Option<Arc<AtomicBool>>,
) -> Result<JobRecord> {
    let rag = RagContext::defaults(store.home());
    run_job_with(store, &rag, job, ui, stopping).await
}

/// What ingest jobs need: the collections with their embedding models, and the guard settings for the
/// injection screen (`[serve.llm]` and `[serve.guard]`).
pub struct RagContext {
    pub rag: Arc<RagState>,
    pub guard: GuardConfig,
}

impl RagContext {
    /// The default settings on `home`'s collections.
    pub fn defaults(home: &std::path::Path) -> RagContext {
        RagContext {
            rag: Arc::new(RagState::new(home, Default::default())),
            guard: GuardConfig::default(),
        }
    }
}

/// Embeds and indexes an ingest job's documents, screening them per the collection's policy.
async fn ingest(
    store: &Store,
    ctx: &RagContext,
    spec: IngestSpec,
    hook: Progress,
) -> Result<IngestOutcome> {
    let screen = if spec.screen {
        IngestScreen::resolve(store, &ctx.guard, &spec.collection, true).await?
    } else {
        IngestScreen {
            screening: "off (screen = false)".into(),
            ..IngestScreen::resolve_none()
        }
    };
    // Shared collections: build on the published generation, publish the new one by compare-and-swap.
    let base = crate::rag::sync_collection(store, ctx.rag.root(), &spec.collection).await?;
    let name = spec.collection.clone();
    let embedder: Arc<dyn keel_rag::Embedder> = match ctx.rag.collection(&spec.collection) {
        Ok(c) => {
            crate::rag::check_embedder(&c, spec.embedder)?;
            ctx.rag.embedder_for(&c).await?
        }
        Err(_) => {
            ctx.rag
                .local_embedder(spec.embedder.unwrap_or_default())
                .await?
        }
    };
    hook(crate::train::stage::READING, 0.0);
    let progress = Box::new(move |done: usize, total: usize| {
        hook("embedding", done as f64 / total.max(1) as f64);
    });
    let outcome = crate::rag::ingest(
        embedder,
        ctx.rag.root().to_path_buf(),
        spec,
        screen,
        progress,
    )
    .await?;
    crate::rag::publish_collection(
        store,
        ctx.rag.root(),
        &name,
        base.as_deref(),
        "keel (ingest job)",
    )
    .await?;
    Ok(outcome)
}

/// [`run_job`] with the RAG settings of the process (what `keel serve`'s worker uses).
pub async fn run_job_with(
    store: &Store,
    rag: &RagContext,
    job: JobRecord,
    ui: Option<Progress>,
    stopping: Option<Arc<AtomicBool>>,
) -> Result<JobRecord> {
    let id = job.id;
    let spec = JobSpec::of(&job);
    let kind = spec.as_ref().map(JobSpec::kind).unwrap_or(JobKind::Retrain);
    let cancel = Arc::new(AtomicBool::new(false));
    // Set once a training-stage progress is in the store (the crash test kills the job after that).
    let recorded_training = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::watch::channel((0.0f64, String::from("starting"), 0.0f64));
    let hook: Progress = {
        let cancel = cancel.clone();
        let stopping = stopping.clone();
        let recorded = recorded_training.clone();
        Arc::new(move |stage: &str, f: f64| {
            tx.send_replace((overall(kind, stage, f), stage.to_string(), f));
            if stage == crate::train::stage::TRAINING
                && f >= 0.5
                && keel_store::failpoint_armed("retrain.training")
            {
                // Crash test: die mid-training once the store shows how far the job got. This runs on the
                // training thread, which the reporter task does not need.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !recorded.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                keel_store::failpoint("retrain.training");
            }
            let ui_ok = ui.as_ref().is_none_or(|u| u(stage, f));
            ui_ok
                && !cancel.load(Ordering::Relaxed)
                && !stopping.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
        })
    };
    // Progress goes to the store from its own task, at most twice a second, so training never waits on
    // the database; the same call tells whether a cancellation was requested.
    let reporter = {
        let cancel = cancel.clone();
        let recorded = recorded_training.clone();
        let store_ref: &Store = store;
        async move {
            while rx.changed().await.is_ok() {
                let (p, stage, f) = rx.borrow_and_update().clone();
                match store_ref.job_progress(id, p, &stage).await {
                    Ok(true) => cancel.store(true, Ordering::Relaxed),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(job = id, error = %e, "could not record job progress"),
                }
                if stage == crate::train::stage::TRAINING && f > 0.0 {
                    recorded.store(true, Ordering::Release);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let work = async {
        let r = match spec {
            Err(e) => Err(e),
            Ok(JobSpec::Train(s)) => crate::train::train(store, *s, &job.created_by, hook.clone())
                .await
                .map(|o| JobResult::Train(Box::new(o))),
            Ok(JobSpec::Retrain(s)) => {
                let actor = format!("{} (job {id})", job.created_by);
                crate::retrain::retrain(store, &job.model, &s, &actor, hook.clone())
                    .await
                    .map(|o| JobResult::Retrain(Box::new(o)))
            }
            Ok(JobSpec::Ingest(s)) => ingest(store, rag, s, hook.clone())
                .await
                .map(|o| JobResult::Ingest(Box::new(o))),
            Ok(JobSpec::Import(s)) => {
                let actor = format!("{} (job {id})", job.created_by);
                crate::import::import(store, *s, &actor, hook.clone())
                    .await
                    .map(|o| JobResult::Import(Box::new(o)))
            }
        };
        drop(hook);
        r
    };
    let (outcome, ()) = tokio::join!(work, reporter);
    let shutting_down = stopping.is_some_and(|s| s.load(Ordering::Relaxed));
    let (state, message, result) = match outcome {
        Ok(r) => {
            let message = match &r {
                JobResult::Train(o) => match o.version {
                    Some(v) => format!("registered {}@{v}", o.model),
                    None => format!("recorded run {}", o.run_id.as_deref().unwrap_or("")),
                },
                JobResult::Import(o) => match &o.gate {
                    Some(g) => format!("imported {}@{}; {}", o.model, o.version, g.message),
                    None => format!("imported {}@{}", o.model, o.version),
                },
                JobResult::Retrain(o) => o.message.clone(),
                JobResult::Ingest(o) => format!(
                    "{}: {} documents, {} chunks ({} embedded)",
                    o.collection, o.report.documents, o.report.chunks, o.report.embedded_chunks
                ),
            };
            (
                JobState::Succeeded,
                message,
                serde_json::to_value(&r).unwrap_or_default(),
            )
        }
        Err(e) if e.is_cancelled() => (
            JobState::Cancelled,
            if shutting_down {
                "cancelled: the worker shut down; nothing was registered".to_string()
            } else {
                "cancelled while training; nothing was registered".to_string()
            },
            serde_json::Value::Null,
        ),
        Err(e) => (JobState::Failed, e.to_string(), serde_json::Value::Null),
    };
    store.finish_job(id, state, &message, &result).await?;
    Ok(store.job(id).await?)
}

/// The job worker: claims queued jobs one at a time and runs them on the store it was given.
pub struct Worker {
    store: Arc<Store>,
    rag: RagContext,
    health: Arc<WorkerHealth>,
    id: String,
    stopping: Arc<AtomicBool>,
    wake: tokio::sync::Notify,
    poll: Duration,
    /// How many jobs this worker has finished (whatever their final state).
    finished: tokio::sync::watch::Sender<u64>,
}

impl Worker {
    pub fn new(store: Arc<Store>) -> Arc<Worker> {
        let rag = RagContext::defaults(store.home());
        Self::with_rag(store, rag)
    }

    /// A worker whose ingest jobs use these RAG settings (`keel serve` passes its own).
    pub fn with_rag(store: Arc<Store>, rag: RagContext) -> Arc<Worker> {
        Arc::new(Worker {
            store,
            rag,
            health: Arc::new(WorkerHealth::default()),
            id: keel_store::worker_id(),
            stopping: Arc::new(AtomicBool::new(false)),
            wake: tokio::sync::Notify::new(),
            poll: Duration::from_secs(1),
            finished: tokio::sync::watch::Sender::new(0),
        })
    }

    pub fn health(&self) -> Arc<WorkerHealth> {
        self.health.clone()
    }

    /// The number of jobs this worker has finished, as it changes: await it instead of polling the queue.
    pub fn finished(&self) -> tokio::sync::watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// Looks at the queue now instead of at the next poll (a job was just queued in this process).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming jobs; a running job stops at its next progress report (recorded as cancelled).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Marks jobs of dead workers failed, claims the oldest queued job and runs it; `None` when the queue is
    /// empty.
    pub async fn run_next(&self) -> Result<Option<JobRecord>> {
        keel_store::panicpoint("worker.poll");
        for id in self.store.recover_jobs(STALE_MS).await? {
            tracing::warn!(
                job = id,
                "job interrupted (its worker stopped); marked failed"
            );
        }
        let Some(job) = self.store.claim_job(&self.id).await? else {
            return Ok(None);
        };
        tracing::info!(job = job.id, kind = %job.kind, model = %job.model, "job started");
        let done = run_job_with(
            &self.store,
            &self.rag,
            job,
            None,
            Some(self.stopping.clone()),
        )
        .await?;
        tracing::info!(job = done.id, state = done.state.as_str(), message = %done.message, "job finished");
        self.finished.send_modify(|n| *n += 1);
        Ok(Some(done))
    }

    /// Runs queued jobs until none is left; returns the finished records.
    pub async fn drain(&self) -> Result<Vec<JobRecord>> {
        let mut done = Vec::new();
        while let Some(j) = self.run_next().await? {
            done.push(j);
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
        }
        Ok(done)
    }

    /// Runs jobs until [`Worker::stop`]: polls once a second (or when woken). It survives transient
    /// failures, errors and panics alike (each is logged, reported in [`WorkerHealth`] and retried with
    /// exponential backoff from 1 s to 30 s).
    pub async fn run(self: Arc<Self>) {
        self.health.set(WorkerState::Running);
        let mut failures = 0u32;
        while !self.stopping.load(Ordering::Relaxed) {
            let step = std::panic::AssertUnwindSafe(self.run_next())
                .catch_unwind()
                .await;
            let error = match step {
                Ok(Ok(Some(_))) => {
                    self.recovered(&mut failures);
                    continue;
                }
                Ok(Ok(None)) => {
                    self.recovered(&mut failures);
                    self.idle(self.poll).await;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into()),
            };
            failures = failures.saturating_add(1);
            let wait = Duration::from_secs((1u64 << (failures - 1).min(5)).min(30));
            tracing::warn!(error = %error, failures, retry_in_s = wait.as_secs(), "job worker failed; retrying");
            self.health.set(WorkerState::Retrying { error, failures });
            self.idle(wait).await;
        }
        self.health.set(WorkerState::Stopped {
            error: "the job worker was stopped (shutdown)".into(),
        });
    }

    fn recovered(&self, failures: &mut u32) {
        if *failures > 0 {
            *failures = 0;
            self.health.set(WorkerState::Running);
        }
    }

    async fn idle(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(spec: &JobSpec) -> JobRecord {
        let (kind, value) = (spec.kind().as_str(), spec.to_value().unwrap());
        serde_json::from_value(serde_json::json!({
            "id": 7, "kind": kind, "model": "m", "spec": value, "state": "queued", "progress": 0.0,
            "stage": "", "message": "", "result": null, "cancel_requested": false, "worker": null,
            "created_by": "t", "created_at": "now", "started_at": null, "finished_at": null
        }))
        .unwrap()
    }

    #[test]
    fn a_queued_spec_reads_back_as_it_was_written() {
        let train = JobSpec::Train(Box::new(TrainSpec {
            data: "/d/train.csv".into(),
            name: "m".into(),
            settings: crate::train::TrainSettings {
                target: "y".into(),
                slices: vec!["region".into()],
                ..Default::default()
            },
            test: Some("/d/test.csv".into()),
            aliases: vec!["candidate".into()],
            champion_if_none: true,
            description: Some("d".into()),
            reuse_identical: false,
            register: true,
            run: Default::default(),
        }));
        assert_eq!(JobSpec::of(&stored(&train)).unwrap(), train);
        let retrain = JobSpec::Retrain(RetrainSpec {
            data: "/d/new.csv".into(),
            holdout: "/d/holdout.csv".into(),
            canary: Some(0.1),
            shadow: true,
            gate: Default::default(),
            trees: Some(50),
        });
        assert_eq!(JobSpec::of(&stored(&retrain)).unwrap(), retrain);
        let ingest = JobSpec::Ingest(IngestSpec {
            max_tokens: 120,
            screen: false,
            ..IngestSpec::new("kb", "/d/docs")
        });
        assert_eq!(JobSpec::of(&stored(&ingest)).unwrap(), ingest);
        // A misspelt field is refused with the job named, not ignored.
        let mut bad = stored(&train);
        bad.spec["tset"] = serde_json::json!("/d/test.csv");
        let e = JobSpec::of(&bad).unwrap_err().to_string();
        assert!(e.contains("job 7") && e.contains("tset"), "{e}");
    }
}
