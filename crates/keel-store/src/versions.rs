//! Managing versions after registration: descriptions, tags, archiving and deletion, each audited.
//!
//! Invariants: a version an alias or a live rollout points at can be neither archived nor deleted (move the
//! alias first); no alias may point at an archived version; a deleted version's number is never reused; its
//! artifact blob goes only when no other version refers to it, after the transaction that removed the row,
//! so a crash leaves at most an unreferenced blob.

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use std::collections::BTreeMap;

use crate::audit::{self, AuditEvent};
use crate::registry::Store;
use crate::{Error, Result};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// What pins a version: its aliases and live rollouts, as words for an error message.
async fn pinned_by(tx: &mut Tx, model: &str, version: i64) -> Result<Vec<String>> {
    let mut why: Vec<String> = sqlx::query_scalar::<_, String>(
        "SELECT alias FROM aliases WHERE model = $1 AND version = $2 ORDER BY alias",
    )
    .bind(model)
    .bind(version)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|a| format!("alias '{a}'"))
    .collect();
    let rollout: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT canary_version, shadow_version FROM rollouts WHERE model = $1")
            .bind(model)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((canary, shadow)) = rollout {
        if canary == Some(version) {
            why.push("the live canary".into());
        }
        if shadow == Some(version) {
            why.push("the live shadow".into());
        }
    }
    Ok(why)
}

async fn exists(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    model: &str,
    version: i64,
) -> Result<Option<bool>> {
    let row: Option<Option<String>> = sqlx::query_scalar(
        "SELECT archived_at FROM model_versions WHERE model = $1 AND version = $2",
    )
    .bind(model)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|a| a.is_some()))
}

fn unknown(model: &str, version: i64) -> Error {
    Error::UnknownVersion {
        model: model.to_string(),
        selector: version.to_string(),
    }
}

/// Refuses an alias move onto an archived version.
pub(crate) async fn ensure_not_archived(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    model: &str,
    version: i64,
) -> Result<()> {
    if exists(tx, model, version).await? == Some(true) {
        return Err(Error::Conflict(format!(
            "{model}@{version} is archived; restore it first (keel models archive {model}@{version} --restore)"
        )));
    }
    Ok(())
}

impl Store {
    /// Archives (or, with `archived = false`, restores) a version. Returns whether anything changed.
    pub async fn set_archived(
        &self,
        model: &str,
        version: i64,
        archived: bool,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let Some(was) = exists(&mut tx, model, version).await? else {
            return Err(unknown(model, version));
        };
        if was == archived {
            return Ok(false);
        }
        if archived {
            let pins = pinned_by(&mut tx, model, version).await?;
            if !pins.is_empty() {
                return Err(Error::Conflict(format!(
                    "{model}@{version} is in use ({}); point that elsewhere first (keel models alias …, keel rollout …)",
                    pins.join(", ")
                )));
            }
        }
        sqlx::query("UPDATE model_versions SET archived_at = $1 WHERE model = $2 AND version = $3")
            .bind(archived.then(keel_core::time::now_rfc3339))
            .bind(model)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        let action = if archived {
            "model.archive"
        } else {
            "model.restore"
        };
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, action, &format!("{model}@{version}"))
                .before(serde_json::json!({ "archived": was }))
                .after(serde_json::json!({ "archived": archived })),
        )
        .await?;
        self.before_commit(&mut tx, &record).await?;
        tx.commit().await?;
        self.after_audit(&record);
        Ok(true)
    }

    /// Deletes a version no alias or rollout points at. Its number is never reused; its artifact is removed
    /// when no other version refers to it (returns whether it was).
    pub async fn delete_version(&self, model: &str, version: i64, actor: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if exists(&mut tx, model, version).await?.is_none() {
            return Err(unknown(model, version));
        }
        let pins = pinned_by(&mut tx, model, version).await?;
        if !pins.is_empty() {
            return Err(Error::Conflict(format!(
                "{model}@{version} is in use ({}); point that elsewhere first, then delete it",
                pins.join(", ")
            )));
        }
        let (uri, sha, kind, dataset): (String, String, String, String) = sqlx::query_as(
            "SELECT artifact_uri, artifact_sha256, kind, dataset_hash FROM model_versions WHERE model = $1 AND version = $2",
        )
        .bind(model)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM version_tags WHERE model = $1 AND version = $2",
            "DELETE FROM profiles WHERE model = $1 AND version = $2",
            "DELETE FROM model_versions WHERE model = $1 AND version = $2",
        ] {
            sqlx::query(sql)
                .bind(model)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO deleted_versions(model, version, deleted_at, deleted_by) VALUES ($1, $2, $3, $4)")
            .bind(model)
            .bind(version)
            .bind(keel_core::time::now_rfc3339())
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE runs SET model = NULL, version = NULL WHERE model = $1 AND version = $2",
        )
        .bind(model)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        let still_used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM model_versions WHERE artifact_uri = $1)
                  + (SELECT COUNT(*) FROM run_artifacts WHERE uri = $1)",
        )
        .bind(&uri)
        .fetch_one(&mut *tx)
        .await?;
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "model.delete", &format!("{model}@{version}")).before(
                serde_json::json!({ "kind": kind, "artifact_sha256": sha, "dataset_hash": dataset }),
            ),
        )
        .await?;
        self.before_commit(&mut tx, &record).await?;
        tx.commit().await?;
        self.after_audit(&record);
        if still_used > 0 {
            return Ok(false);
        }
        crate::failpoint("registry.delete_before_blob");
        match self.artifacts.delete(&ObjectPath::from(uri.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => {
                // The version is gone; an unreferenced blob is harmless (`keel check` reports none missing).
                tracing::warn!(error = %e, uri, "could not remove the deleted version's artifact");
                Ok(false)
            }
        }
    }

    /// Sets a version's description and merges tags into its tags (an empty value removes a tag), audited.
    pub async fn annotate_version(
        &self,
        model: &str,
        version: i64,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
        actor: &str,
    ) -> Result<()> {
        if let Some(d) = description
            && d.len() > 5000
        {
            return Err(Error::InvalidContent {
                what: "description",
                message: format!("{} bytes, at most 5000", d.len()),
            });
        }
        for (k, v) in tags {
            crate::registry::validate_name("tag key", k)?;
            if v.len() > 5000 {
                return Err(Error::InvalidContent {
                    what: "tag value",
                    message: format!("'{k}': {} bytes, at most 5000", v.len()),
                });
            }
        }
        let mut tx = self.write_tx().await?;
        if exists(&mut tx, model, version).await?.is_none() {
            return Err(unknown(model, version));
        }
        let before: String = sqlx::query_scalar(
            "SELECT version_description FROM model_versions WHERE model = $1 AND version = $2",
        )
        .bind(model)
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(d) = description {
            sqlx::query(
                "UPDATE model_versions SET version_description = $1 WHERE model = $2 AND version = $3",
            )
            .bind(d)
            .bind(model)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        for (k, v) in tags {
            if v.is_empty() {
                sqlx::query(
                    "DELETE FROM version_tags WHERE model = $1 AND version = $2 AND key = $3",
                )
                .bind(model)
                .bind(version)
                .bind(k)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "INSERT INTO version_tags(model, version, key, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT(model, version, key) DO UPDATE SET value = excluded.value",
                )
                .bind(model)
                .bind(version)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
        }
        let record = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "model.annotate", &format!("{model}@{version}"))
                .before(serde_json::json!({ "description": before }))
                .after(serde_json::json!({ "description": description, "tags": tags })),
        )
        .await?;
        self.before_commit(&mut tx, &record).await?;
        tx.commit().await?;
        self.after_audit(&record);
        Ok(())
    }
}
