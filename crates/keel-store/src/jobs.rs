//! The persisted job queue (retraining) and live rollouts (canary and shadow versions next to a champion).
//!
//! Jobs move `queued → running → succeeded | failed | cancelled`. A worker claims the oldest queued job in
//! one write transaction, so two workers never run the same job; it reports progress as a heartbeat and learns
//! of a cancellation request in the same call. A job whose worker died (its process is gone, or its heartbeat
//! is older than the stale limit) is marked failed by [`Store::recover_jobs`], so a killed job never stays
//! "running" and never touched the champion: promotion is a separate, audited step.
//!
//! Every rollout change (canary, shadow, promotion, rollback) is one transaction with its audit record.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::audit::{self, AuditEvent};
use crate::registry::{Store, set_alias_in};
use crate::{Error, Result, failpoint};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Failed,
        }
    }

    /// Whether the job is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// One job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub model: String,
    /// What to do (for retraining: data, holdout, gate options), as given when queued.
    pub spec: Value,
    pub state: JobState,
    /// 0..1.
    pub progress: f64,
    pub stage: String,
    pub message: String,
    /// What the job produced (for retraining: the challenger version and the gate report).
    pub result: Value,
    pub cancel_requested: bool,
    pub worker: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl JobRecord {
    fn from_row(r: &sqlx::any::AnyRow) -> JobRecord {
        let json = |c: &str| serde_json::from_str(&r.get::<String, _>(c)).unwrap_or(Value::Null);
        JobRecord {
            id: r.get("id"),
            kind: r.get("kind"),
            model: r.get("model"),
            spec: json("spec"),
            state: JobState::parse(&r.get::<String, _>("state")),
            progress: r.get("progress"),
            stage: r.get("stage"),
            message: r.get("message"),
            result: json("result"),
            cancel_requested: r.get::<i64, _>("cancel_requested") != 0,
            worker: r.get("worker"),
            created_by: r.get("created_by"),
            created_at: r.get("created_at"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
        }
    }
}

/// A live rollout of a model: a canary version taking a share of its champion's traffic and/or a shadow
/// version scored on mirrored traffic without answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub model: String,
    pub canary_version: Option<i64>,
    /// Share of champion traffic (0..1) answered by the canary.
    pub canary_weight: f64,
    pub shadow_version: Option<i64>,
    pub started_at: String,
    pub started_ms: i64,
}

/// This process, as a job worker: `host:pid`.
pub fn worker_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the worker `id` is known to be gone: it ran on this host and its process no longer exists.
fn worker_gone(id: &str) -> bool {
    let Some((host, pid)) = id.rsplit_once(':') else {
        return true;
    };
    host == hostname()
        && pid
            .parse::<u32>()
            .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

impl Store {
    /// Queues a job (audited as `job.queue` by `actor`).
    pub async fn enqueue_job(
        &self,
        kind: &str,
        model: &str,
        spec: &Value,
        actor: &str,
    ) -> Result<JobRecord> {
        crate::registry::validate_name("model name", model)?;
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs(kind, model, spec, state, created_by, created_at) VALUES ($1, $2, $3, 'queued', $4, $5)
             RETURNING id",
        )
        .bind(kind)
        .bind(model)
        .bind(spec.to_string())
        .bind(actor)
        .bind(keel_core::time::now_rfc3339())
        .fetch_one(&mut *tx)
        .await?;
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "job.queue", &format!("job/{id}"))
                .after(serde_json::json!({"kind": kind, "model": model, "spec": spec})),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        self.job(id).await
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<JobRecord> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::Invalid {
                what: "job",
                message: format!("there is no job {id}"),
            })?;
        Ok(JobRecord::from_row(&row))
    }

    /// The latest `limit` jobs, newest first.
    pub async fn jobs(&self, limit: i64) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(JobRecord::from_row).collect())
    }

    /// Claims the oldest queued job for `worker` (it becomes running), if there is one.
    pub async fn claim_job(&self, worker: &str) -> Result<Option<JobRecord>> {
        self.claim(None, worker).await
    }

    /// Claims job `id` for `worker` if it is still queued.
    pub async fn claim_job_id(&self, id: i64, worker: &str) -> Result<Option<JobRecord>> {
        self.claim(Some(id), worker).await
    }

    /// One statement: the oldest queued job becomes running. Postgres skips rows another worker has locked
    /// (`FOR UPDATE SKIP LOCKED`), so concurrent workers never claim one job twice; SQLite's write transaction
    /// already admits one claimer at a time.
    async fn claim(&self, only: Option<i64>, worker: &str) -> Result<Option<JobRecord>> {
        let lock = match self.backend {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', worker = $1, heartbeat_ms = $2, started_at = $3, stage = 'starting'
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND ($4 IS NULL OR id = $5) ORDER BY id LIMIT 1{lock})
             RETURNING id"
        );
        let mut tx = match self.backend {
            crate::Backend::Sqlite => self.write_tx().await?,
            crate::Backend::Postgres => self.pool.begin().await?,
        };
        let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(keel_core::time::now_unix_ms())
            .bind(keel_core::time::now_rfc3339())
            .bind(only)
            .bind(only)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        match id {
            Some(id) => Ok(Some(self.job(id).await?)),
            None => Ok(None),
        }
    }

    /// Records progress (and the heartbeat) of a running job. Returns whether a cancellation was requested.
    pub async fn job_progress(&self, id: i64, progress: f64, stage: &str) -> Result<bool> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET progress = $1, stage = $2, heartbeat_ms = $3 WHERE id = $4 AND state = 'running'
             RETURNING cancel_requested",
        )
        .bind(progress.clamp(0.0, 1.0))
        .bind(stage)
        .bind(keel_core::time::now_unix_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        // A job that is no longer running (recovered as failed by another process) stops too.
        Ok(cancel.is_none_or(|c| c != 0))
    }

    /// Ends a running job.
    pub async fn finish_job(
        &self,
        id: i64,
        state: JobState,
        message: &str,
        result: &Value,
    ) -> Result<()> {
        if !state.is_final() {
            return Err(Error::Invalid {
                what: "job state",
                message: format!("{} is not a final state", state.as_str()),
            });
        }
        failpoint("jobs.before_finish");
        sqlx::query(
            "UPDATE jobs SET state = $1, message = $2, result = $3, finished_at = $4,
                 progress = CASE WHEN $5 = 'succeeded' THEN 1 ELSE progress END
             WHERE id = $6 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(result.to_string())
        .bind(keel_core::time::now_rfc3339())
        .bind(state.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Cancels a job: a queued one at once, a running one at its next progress report. Audited.
    pub async fn cancel_job(&self, id: i64, actor: &str) -> Result<JobRecord> {
        let job = self.job(id).await?;
        if job.state.is_final() {
            return Err(Error::Invalid {
                what: "job",
                message: format!("job {id} is already {}", job.state.as_str()),
            });
        }
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1,
                 state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                 finished_at = CASE WHEN state = 'queued' THEN $1 ELSE finished_at END,
                 message = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE message END
             WHERE id = $2",
        )
        .bind(keel_core::time::now_rfc3339())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "job.cancel", &format!("job/{id}"))
                .before(serde_json::json!({"state": job.state})),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        self.job(id).await
    }

    /// Marks running jobs whose worker is gone (process not alive on this host) or silent for longer than
    /// `stale_ms` as failed. Returns their ids.
    pub async fn recover_jobs(&self, stale_ms: i64) -> Result<Vec<i64>> {
        let now = keel_core::time::now_unix_ms();
        let rows = sqlx::query("SELECT id, worker, heartbeat_ms FROM jobs WHERE state = 'running'")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: i64 = r.get("id");
            let worker: Option<String> = r.get("worker");
            let beat: Option<i64> = r.get("heartbeat_ms");
            let me = worker_id();
            // On one machine (SQLite) a worker whose process is gone is known at once; across machines only
            // the heartbeat lease says so.
            let gone = match self.backend {
                crate::Backend::Sqlite => worker.as_deref().is_none_or(worker_gone),
                crate::Backend::Postgres => worker.is_none(),
            };
            let silent = beat.is_none_or(|b| now - b > stale_ms);
            if worker.as_deref() != Some(me.as_str()) && (gone || silent) {
                let why = format!(
                    "interrupted: worker {} stopped {}",
                    worker.as_deref().unwrap_or("?"),
                    if gone {
                        "(its process is gone)"
                    } else {
                        "reporting progress"
                    }
                );
                let n = sqlx::query(
                    "UPDATE jobs SET state = 'failed', message = $1, finished_at = $2 WHERE id = $3 AND state = 'running'",
                )
                .bind(&why)
                .bind(keel_core::time::now_rfc3339())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if n > 0 {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// The live rollout of `model`, if any.
    pub async fn rollout(&self, model: &str) -> Result<Option<Rollout>> {
        let row = sqlx::query("SELECT * FROM rollouts WHERE model = $1")
            .bind(model)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(rollout_from_row))
    }

    /// Every live rollout.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        let rows = sqlx::query("SELECT * FROM rollouts ORDER BY model")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(rollout_from_row).collect())
    }

    /// Starts (or changes) a canary (`weight` in (0, 1]) or a shadow (`weight` `None`) of `model@version`,
    /// audited as `deploy.canary` / `deploy.shadow` with the rollout before and after.
    pub async fn deploy(
        &self,
        model: &str,
        version: i64,
        canary_weight: Option<f64>,
        actor: &str,
        evidence: Value,
    ) -> Result<Rollout> {
        if let Some(w) = canary_weight
            && !(w > 0.0 && w <= 1.0)
        {
            return Err(Error::Invalid {
                what: "canary weight",
                message: format!("{w} must be a share in (0, 1] (e.g. 0.1 for 10 %)"),
            });
        }
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM model_versions WHERE model = $1 AND version = $2",
        )
        .bind(model)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(Error::UnknownVersion {
                model: model.to_string(),
                selector: version.to_string(),
            });
        }
        let champion: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM aliases WHERE model = $1 AND alias = 'champion'",
        )
        .bind(model)
        .fetch_optional(&mut *tx)
        .await?;
        if champion.is_none() {
            return Err(Error::Invalid {
                what: "deployment",
                message: format!(
                    "'{model}' has no champion to run a canary or shadow next to; set one with keel models alias {model} champion VERSION"
                ),
            });
        }
        if champion == Some(version) {
            return Err(Error::Invalid {
                what: "deployment",
                message: format!("{model}@{version} is already the champion"),
            });
        }
        let before = sqlx::query("SELECT * FROM rollouts WHERE model = $1")
            .bind(model)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| rollout_from_row(&r));
        let (now, now_ms) = (
            keel_core::time::now_rfc3339(),
            keel_core::time::now_unix_ms(),
        );
        let mut after = before.clone().unwrap_or(Rollout {
            model: model.to_string(),
            canary_version: None,
            canary_weight: 0.0,
            shadow_version: None,
            started_at: now.clone(),
            started_ms: now_ms,
        });
        let action = match canary_weight {
            Some(w) => {
                if after.canary_version != Some(version) {
                    after.started_at = now;
                    after.started_ms = now_ms;
                }
                after.canary_version = Some(version);
                after.canary_weight = w;
                "deploy.canary"
            }
            None => {
                after.shadow_version = Some(version);
                "deploy.shadow"
            }
        };
        sqlx::query(
            "INSERT INTO rollouts(model, canary_version, canary_weight, shadow_version, started_at, started_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(model) DO UPDATE SET canary_version = excluded.canary_version,
                 canary_weight = excluded.canary_weight, shadow_version = excluded.shadow_version,
                 started_at = excluded.started_at, started_ms = excluded.started_ms",
        )
        .bind(model)
        .bind(after.canary_version)
        .bind(after.canary_weight)
        .bind(after.shadow_version)
        .bind(&after.started_at)
        .bind(after.started_ms)
        .execute(&mut *tx)
        .await?;
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, action, &format!("{model}@{version}"))
                .before(serde_json::to_value(&before).unwrap_or(Value::Null))
                .after(serde_json::to_value(&after).unwrap_or(Value::Null))
                .evidence(evidence),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok(after)
    }

    /// Promotes the canary: the champion alias moves to it and the rollout ends, in one audited transaction
    /// (`rollout.promote`, with the previous champion in `before`, so `keel rollback` can restore it).
    /// Returns (previous champion, new champion).
    pub async fn promote_canary(
        &self,
        model: &str,
        actor: &str,
        evidence: Value,
    ) -> Result<(Option<i64>, i64)> {
        let mut tx = self.write_tx().await?;
        let rollout = sqlx::query("SELECT * FROM rollouts WHERE model = $1")
            .bind(model)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| rollout_from_row(&r));
        let Some(version) = rollout.as_ref().and_then(|r| r.canary_version) else {
            return Err(Error::Invalid {
                what: "promotion",
                message: format!(
                    "'{model}' has no canary to promote (keel deploy {model}@V --canary 10 starts one)"
                ),
            });
        };
        let before: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM aliases WHERE model = $1 AND alias = 'champion'",
        )
        .bind(model)
        .fetch_optional(&mut *tx)
        .await?;
        set_alias_in(
            &mut tx,
            model,
            "champion",
            version,
            &keel_core::time::now_rfc3339(),
        )
        .await?;
        sqlx::query("DELETE FROM rollouts WHERE model = $1")
            .bind(model)
            .execute(&mut *tx)
            .await?;
        failpoint("rollout.promote_before_audit");
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "alias.set", &format!("{model}@champion"))
                .before(serde_json::json!({ "version": before }))
                .after(serde_json::json!({ "version": version, "via": "rollout.promote", "rollout": rollout }))
                .evidence(evidence),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok((before, version))
    }

    /// Ends the rollout of `model` without promoting (the champion keeps all traffic), audited as `action`
    /// (`rollout.rollback` when metrics degraded, `rollout.stop` by hand) with the evidence. Returns the
    /// rollout that ended.
    pub async fn end_rollout(
        &self,
        model: &str,
        action: &str,
        actor: &str,
        evidence: Value,
    ) -> Result<Rollout> {
        let mut tx = self.write_tx().await?;
        let Some(before) = sqlx::query("SELECT * FROM rollouts WHERE model = $1")
            .bind(model)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| rollout_from_row(&r))
        else {
            return Err(Error::Invalid {
                what: "rollout",
                message: format!("'{model}' has no canary or shadow running"),
            });
        };
        sqlx::query("DELETE FROM rollouts WHERE model = $1")
            .bind(model)
            .execute(&mut *tx)
            .await?;
        let target = match before.canary_version.or(before.shadow_version) {
            Some(v) => format!("{model}@{v}"),
            None => model.to_string(),
        };
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, action, &target)
                .before(serde_json::to_value(&before).unwrap_or(Value::Null))
                .after(Value::Null)
                .evidence(evidence),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok(before)
    }
}

fn rollout_from_row(r: &sqlx::any::AnyRow) -> Rollout {
    Rollout {
        model: r.get("model"),
        canary_version: r.get("canary_version"),
        canary_weight: r.get("canary_weight"),
        shadow_version: r.get("shadow_version"),
        started_at: r.get("started_at"),
        started_ms: r.get("started_ms"),
    }
}
