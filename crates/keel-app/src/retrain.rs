//! Retraining: train a challenger with the champion's stored settings on new data, gate it against the
//! champion on a labelled holdout neither trained on, audit the decision, and start its canary or shadow
//! when it passes. A rejected challenger is registered (for the record) but never made servable.

use crate::train::{Progress, StoredParams, TrainSpec};
use crate::{Error, Result};
use keel_core::Schema;
use keel_ml::gate::{GateOptions, GateReport};
use keel_store::{AuditEvent, Selector, Store, VersionRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

/// What a retraining job does: train a challenger on `data` with the champion's settings, gate it against
/// the champion on the labelled `holdout`, and, when it passes, start a canary and/or a shadow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainSpec {
    /// Training data (CSV or Parquet), with the target column.
    pub data: std::path::PathBuf,
    /// Fresh labelled rows neither model trained on.
    pub holdout: std::path::PathBuf,
    /// Share of champion traffic for the canary of a passing challenger (e.g. 0.1).
    #[serde(default)]
    pub canary: Option<f64>,
    /// Mirror traffic to a passing challenger.
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub gate: keel_ml::gate::GateOptions,
    /// Override the champion's number of trees (others are kept).
    #[serde(default)]
    pub trees: Option<usize>,
}

/// What a retraining produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainOutcome {
    pub champion: i64,
    pub challenger: i64,
    pub passed: bool,
    /// Holdout rows that also occur in the training data (the comparison is optimistic when > 0).
    pub holdout_rows_in_training_data: usize,
    pub gate: GateReport,
    /// What started for a passing challenger: `canary at 10 %`, `shadow`.
    #[serde(default)]
    pub rollout: Vec<String>,
    /// The outcome in words.
    pub message: String,
}

impl RetrainSpec {
    pub fn validate(&self) -> Result<()> {
        if !self.data.exists() {
            return Err(Error::NotFound(format!(
                "data {}: no such file",
                self.data.display()
            )));
        }
        self.gate_spec().validate()
    }

    /// How the challenger is gated and rolled out.
    pub fn gate_spec(&self) -> GateSpec {
        GateSpec {
            holdout: self.holdout.clone(),
            canary: self.canary,
            shadow: self.shadow,
            gate: self.gate.clone(),
        }
    }
}

/// The champion's training settings, applied to new data: exactly what it was trained with (declared schema,
/// slices, sensitive columns, parameters), the same candidate kind, and the spec's overrides.
pub fn challenger_spec(
    champion: &VersionRecord,
    spec: &RetrainSpec,
    data_columns: &[String],
) -> Result<TrainSpec> {
    let stored: StoredParams = serde_json::from_value(champion.params.clone()).map_err(|e| {
        Error::input(format!(
            "{}@{}: its stored training settings cannot be read ({e}); train a new version with keel train",
            champion.model, champion.version
        ))
    })?;
    let mut settings = stored.settings;
    if settings.target.is_empty() {
        return Err(Error::input(format!(
            "{}@{}: its stored settings name no target",
            champion.model, champion.version
        )));
    }
    if let Some(t) = spec.trees {
        settings.gbdt.n_trees = t;
    }
    // The champion's kind, not a fresh choice: the gate compares like with like.
    settings.model = match stored.model.as_deref().unwrap_or(champion.kind.as_str()) {
        "linear" => keel_ml::select::Choice::Linear,
        _ => keel_ml::select::Choice::Gbdt,
    };
    // Columns the champion dropped that the new data lacks need no dropping.
    settings.drop.retain(|c| data_columns.contains(c));
    Ok(TrainSpec {
        data: spec.data.clone(),
        name: champion.model.clone(),
        settings,
        test: Some(spec.holdout.clone()),
        aliases: vec![],
        champion_if_none: false,
        description: Some(format!(
            "Challenger to {}@{} retrained on {}.",
            champion.model,
            champion.version,
            spec.data.display()
        )),
        reuse_identical: false,
        register: true,
        run: crate::runs::RunOptions {
            tags: [(
                "trigger".to_string(),
                format!("retrain of {}@{}", champion.model, champion.version),
            )]
            .into(),
            ..Default::default()
        },
    })
}

/// Loads a labelled file with a model's training schema: (frame, labels as class indices or values).
fn labelled_frame(
    path: &Path,
    record: &VersionRecord,
    target: &str,
    class_labels: &Option<Vec<String>>,
) -> Result<(keel_core::Frame, Vec<f64>)> {
    let schema: Schema = serde_json::from_value(record.schema.clone())
        .map_err(|e| Error::Internal(format!("reading the champion's schema: {e}")))?;
    let (frame, _) = crate::train::load_frame(path, None, Some(&schema))?;
    let col = frame.column(target).ok_or_else(|| {
        Error::input(format!(
            "{}: the target column '{target}' is not in the holdout",
            path.display()
        ))
    })?;
    let y = match class_labels {
        Some(labels) => {
            keel_data::target::map_labels(&frame, target, labels, &path.display().to_string())?
        }
        None => {
            let mut y = Vec::with_capacity(col.len());
            for i in 0..col.len() {
                let v = col.display(i).ok_or_else(|| {
                    Error::input(format!(
                        "{}: row {}: the label '{target}' is missing; the gate needs every holdout row labelled",
                        path.display(),
                        i + 1
                    ))
                })?;
                y.push(v.parse().map_err(|_| {
                    Error::input(format!(
                        "{}: row {}: '{v}' is not a number",
                        path.display(),
                        i + 1
                    ))
                })?);
            }
            y
        }
    };
    Ok((frame, y))
}

/// Retrains `model` as `actor` (job `job` when run by a worker, for the audit trail).
pub async fn retrain(
    store: &Store,
    model: &str,
    spec: &RetrainSpec,
    actor: &str,
    progress: Progress,
) -> Result<RetrainOutcome> {
    spec.validate()?;
    let champion = store
        .get(model, &Selector::Alias(keel_store::CHAMPION.into()))
        .await?;
    let data = spec.data.clone();
    let columns: Vec<String> = tokio::task::spawn_blocking(move || {
        keel_data::read::read_table(&data).map(|t| t.columns.into_iter().map(|c| c.name).collect())
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))??;
    let train_spec = challenger_spec(&champion, spec, &columns)?;
    let trained = crate::train::train(store, train_spec, actor, progress.clone()).await?;
    progress("gating", 0.0);
    let outcome = gate_challenger(
        store,
        &champion,
        trained
            .version
            .ok_or_else(|| Error::Internal("a retrained challenger was not registered".into()))?,
        &spec.gate_spec(),
        Some(&spec.data),
        actor,
    )
    .await?;
    progress("gating", 1.0);
    Ok(outcome)
}

/// How a challenger is gated against the champion, and what starts when it passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Labelled rows neither model trained on.
    pub holdout: std::path::PathBuf,
    /// Share of champion traffic for the canary of a passing challenger (e.g. 0.1).
    #[serde(default)]
    pub canary: Option<f64>,
    /// Mirror traffic to a passing challenger.
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub gate: keel_ml::gate::GateOptions,
}

impl GateSpec {
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.canary
            && !(c > 0.0 && c <= 1.0)
        {
            return Err(Error::input(format!(
                "canary {c} must be a share in (0, 1] (10 % is 0.1)"
            )));
        }
        if !self.holdout.exists() {
            return Err(Error::NotFound(format!(
                "holdout {}: no such file",
                self.holdout.display()
            )));
        }
        Ok(())
    }
}

/// Gates registered version `version` against `champion` on the spec's holdout, audits the decision, and
/// for a passing challenger points the `challenger` alias at it and starts its canary and/or shadow. The
/// champion's stored schema reads the holdout; `training_data`, when known, is checked for holdout rows the
/// challenger trained on. Used by retraining and by imports that name a holdout.
pub async fn gate_challenger(
    store: &Store,
    champion: &VersionRecord,
    version: i64,
    spec: &GateSpec,
    training_data: Option<&Path>,
    actor: &str,
) -> Result<RetrainOutcome> {
    spec.validate()?;
    let model = champion.model.as_str();
    let challenger = store.get(model, &Selector::Version(version)).await?;
    let (old_bytes, new_bytes) = (
        store.model_bytes(champion).await?,
        store.model_bytes(&challenger).await?,
    );
    // The champion's own threshold and sensitive columns, when it stored training settings.
    let settings = serde_json::from_value::<StoredParams>(champion.params.clone())
        .ok()
        .map(|p| p.settings);
    let (spec2, champion2) = (spec.clone(), champion.clone());
    let data = training_data.map(Path::to_path_buf);
    let (report, shared_rows, holdout_hash) = tokio::task::spawn_blocking(move || -> Result<_> {
        let m_old = keel_ml::Model::from_bytes(&old_bytes)?;
        let m_new = keel_ml::Model::from_bytes(&new_bytes)?;
        let (holdout, y) = labelled_frame(
            &spec2.holdout,
            &champion2,
            &m_old.target,
            &m_old.class_labels,
        )?;
        let opts = GateOptions {
            sensitive: match (&settings, spec2.gate.sensitive.is_empty()) {
                (Some(s), true) => s.sensitive.clone(),
                _ => spec2.gate.sensitive.clone(),
            },
            threshold: settings.as_ref().map_or(0.5, |s| s.threshold),
            // A regression is judged on the champion's own loss (deviance for a Poisson model, …).
            loss: settings.as_ref().map_or(keel_ml::Loss::L2, |s| s.gbdt.loss),
            ..spec2.gate.clone()
        };
        let report: GateReport = keel_ml::gate::compare(&m_old, &m_new, &holdout, &y, &opts)?;
        let holdout_hash = keel_data::hash::file_sha256(&spec2.holdout)?;
        // Holdout rows the challenger trained on make the gate optimistic; row hashes find them cheaply.
        let shared_rows = match &data {
            Some(d) => keel_data::hash::shared_rows(
                &keel_data::read::read_table(d)?,
                &keel_data::read::read_table(&spec2.holdout)?,
            )?,
            None => 0,
        };
        Ok((report, shared_rows, holdout_hash))
    })
    .await
    .map_err(|e| Error::Internal(format!("gating task: {e}")))??;
    let evidence = json!({
        "champion": champion.version,
        "challenger": version,
        "holdout": spec.holdout,
        "holdout_sha256": holdout_hash,
        "data": training_data,
        "holdout_rows_in_training_data": shared_rows,
        "gate": report,
    });
    store
        .audit(
            AuditEvent::new(actor, "retrain.decision", &format!("{model}@{version}"))
                .after(json!({"passed": report.passed}))
                .evidence(evidence.clone()),
        )
        .await?;
    let comparison = format!(
        "{} {:.4} vs champion v{} {:.4}, delta {:+.4} [{:+.4}, {:+.4}]",
        report.metric,
        report.challenger,
        champion.version,
        report.champion,
        report.delta,
        report.delta_lower,
        report.delta_upper
    );
    let mut started = Vec::new();
    let message = if report.passed {
        store.set_alias(model, "challenger", version, actor).await?;
        if let Some(w) = spec.canary {
            store
                .deploy(model, version, Some(w), actor, evidence.clone())
                .await?;
            started.push(format!("canary at {:.0} %", w * 100.0));
        }
        if spec.shadow {
            store
                .deploy(model, version, None, actor, evidence.clone())
                .await?;
            started.push("shadow".to_string());
        }
        format!(
            "challenger {model}@{version} passed the gate ({comparison}){}",
            if started.is_empty() {
                String::new()
            } else {
                format!("; started {}", started.join(" and "))
            }
        )
    } else {
        format!(
            "challenger {model}@{version} was rejected by the gate ({comparison}): {}",
            report.reasons.join("; ")
        )
    };
    let message = match (shared_rows, training_data) {
        (0, _) | (_, None) => message,
        (n, Some(d)) => format!(
            "{message}\nwarning: {n} rows of the holdout also occur in the training data {}: the gate's comparison is optimistic for the challenger; use a holdout the challenger never saw",
            d.display()
        ),
    };
    Ok(RetrainOutcome {
        champion: champion.version,
        challenger: version,
        passed: report.passed,
        holdout_rows_in_training_data: shared_rows,
        gate: report,
        rollout: started,
        message,
    })
}
