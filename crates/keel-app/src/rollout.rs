//! Rollouts: deploy a version as a canary or a shadow next to the champion, judge it from delayed labels with
//! **one** [`RolloutPolicy`] (read from configuration by every front end), promote it or stop it. Every change
//! is one audited store transaction.

use crate::{Error, Result};
use keel_engine::rollout::{Decision, RolloutEvaluation, RolloutPolicy};
use keel_store::{Rollout, Selector, Store};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a version is deployed next to its champion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployMode {
    /// Answers this share (0, 1] of the champion's requests.
    Canary { weight: f64 },
    /// Scores every champion request without answering.
    Shadow,
}

/// A model's rollout and what its labels say so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub model: String,
    /// `None` when nothing runs next to the champion.
    pub rollout: Option<Rollout>,
    pub evaluation: Option<RolloutEvaluation>,
}

/// A promoted canary: the champion alias moved from `before` to `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub model: String,
    pub before: Option<i64>,
    pub after: i64,
    pub evaluation: RolloutEvaluation,
}

/// A rollout the judge acted on, or left running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub evaluation: RolloutEvaluation,
    /// Whether the decision was applied (a rollback, or a promotion the policy allows).
    pub applied: bool,
}

/// `[serve.rollout]` of a configuration file: the one policy the server's judge and `keel deploy` use.
/// Other keys of the file are the server's and are not read here.
pub fn policy_from_toml(text: &str, source: &str) -> Result<RolloutPolicy> {
    crate::config::section(text, source, "rollout")
}

/// The policy in `path` (or the defaults when there is no file).
pub fn policy_from_file(path: Option<&Path>) -> Result<RolloutPolicy> {
    match path {
        None => Ok(RolloutPolicy::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            policy_from_toml(&text, &p.display().to_string())
        }
    }
}

/// Starts (or changes) a canary or a shadow of `model@version`.
pub async fn deploy(
    store: &Store,
    model: &str,
    version: i64,
    mode: DeployMode,
    actor: &str,
) -> Result<Rollout> {
    let weight = match mode {
        DeployMode::Canary { weight } if !(weight > 0.0 && weight <= 1.0) => {
            return Err(Error::input(format!(
                "canary weight {weight} must be a share in (0, 1] (10 % is 0.1)"
            )));
        }
        DeployMode::Canary { weight } => Some(weight),
        DeployMode::Shadow => None,
    };
    Ok(store
        .deploy(
            model,
            version,
            weight,
            actor,
            serde_json::json!({"by": actor}),
        )
        .await?)
}

/// What the labels say about `model`'s running rollout, judged with `policy`.
pub async fn evaluate(
    store: &Store,
    model: &str,
    policy: &RolloutPolicy,
) -> Result<RolloutEvaluation> {
    let r = store
        .rollout(model)
        .await?
        .ok_or_else(|| Error::NotFound(format!("'{model}' has no canary or shadow running")))?;
    evaluate_rollout(store, &r, policy).await
}

async fn evaluate_rollout(
    store: &Store,
    r: &Rollout,
    policy: &RolloutPolicy,
) -> Result<RolloutEvaluation> {
    let champion = store
        .get(&r.model, &Selector::Alias(keel_store::CHAMPION.into()))
        .await?;
    let objective = keel_ml::Objective::from_record(&champion.objective);
    Ok(keel_engine::rollout::evaluate(store, r, champion.version, objective, policy).await?)
}

/// The rollout of `model` and, when one runs, its evaluation.
pub async fn status(store: &Store, model: &str, policy: &RolloutPolicy) -> Result<RolloutStatus> {
    store.get(model, &Selector::Latest).await?;
    let rollout = store.rollout(model).await?;
    let evaluation = match &rollout {
        Some(r) => Some(evaluate_rollout(store, r, policy).await?),
        None => None,
    };
    Ok(RolloutStatus {
        model: model.to_string(),
        rollout,
        evaluation,
    })
}

/// Promotes `model`'s canary to champion (one audited alias move), with the evaluation as evidence.
pub async fn promote(
    store: &Store,
    model: &str,
    policy: &RolloutPolicy,
    actor: &str,
) -> Result<Promotion> {
    let evaluation = evaluate(store, model, policy).await?;
    let (before, after) = store
        .promote_canary(model, actor, evidence(&evaluation))
        .await?;
    Ok(Promotion {
        model: model.to_string(),
        before,
        after,
        evaluation,
    })
}

/// Stops `model`'s canary and shadow; the champion is unchanged.
pub async fn stop(
    store: &Store,
    model: &str,
    policy: &RolloutPolicy,
    actor: &str,
) -> Result<Rollout> {
    let evaluation = evaluate(store, model, policy).await?;
    Ok(store
        .end_rollout(model, "rollout.stop", actor, evidence(&evaluation))
        .await?)
}

fn evidence(ev: &RolloutEvaluation) -> serde_json::Value {
    serde_json::to_value(ev).unwrap_or(serde_json::Value::Null)
}

/// Judges every running canary: rolls it back (audited, champion untouched) when it is worse than the
/// champion beyond the policy, promotes it when it holds up and the policy promotes automatically.
pub async fn judge_all(store: &Store, policy: &RolloutPolicy) -> Result<Vec<Judgement>> {
    const JUDGE: &str = "keel (rollout judge)";
    let mut out = Vec::new();
    for r in store
        .rollouts()
        .await?
        .into_iter()
        .filter(|r| r.canary_version.is_some())
    {
        let evaluation = match evaluate_rollout(store, &r, policy).await {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(model = %r.model, error = %e, "rollout evaluation failed");
                continue;
            }
        };
        let done = match evaluation.decision {
            Decision::Rollback => {
                tracing::warn!(model = %r.model, reason = %evaluation.reason, "canary degraded; rolling back");
                store
                    .end_rollout(&r.model, "rollout.rollback", JUDGE, evidence(&evaluation))
                    .await
                    .map(|_| true)
            }
            Decision::Promote if policy.auto_promote => {
                tracing::info!(model = %r.model, reason = %evaluation.reason, "canary holds up; promoting");
                store
                    .promote_canary(&r.model, JUDGE, evidence(&evaluation))
                    .await
                    .map(|_| true)
            }
            _ => Ok(false),
        };
        let applied = match done {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(model = %r.model, error = %e, "rollout decision failed");
                false
            }
        };
        out.push(Judgement {
            evaluation,
            applied,
        });
    }
    Ok(out)
}
