//! RAG collections in the shared store (Quickwit's shape: immutable index files in object storage, the
//! pointer in the database). A generation is published by uploading every file of its directory under
//! `collections/NAME/GENERATION/` and then switching the collection's row from the generation it was built on
//! to the new one, by compare-and-swap: a writer that lost a race gets [`Error::Conflict`] and nothing
//! changes. Readers fetch a generation once into a local directory keyed by its id.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use std::path::Path;

use crate::audit::{self, AuditEvent};
use crate::{Error, Result, Store};

fn prefix(name: &str, generation: &str) -> String {
    format!("collections/{name}/{generation}")
}

fn check_part(what: &'static str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what,
            message: format!("'{s}' must be letters, digits, '-', '_' or '.'"),
        })
    }
}

/// Every file under `dir`, as (path relative to `dir` with `/` separators, absolute path), sorted.
fn files_under(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::Io {
            path: d.clone(),
            source: e,
        })?;
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().map_err(|e| Error::Io {
                path: p.clone(),
                source: e,
            })?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Store {
    /// Whether artifacts live in shared object storage (replicas share no disk), rather than under the home.
    pub fn shares_files(&self) -> bool {
        self.artifact_root.is_none()
    }

    /// The published generation of collection `name`, if it was ever published.
    pub async fn collection_generation(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM collections WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every published collection and its generation, by name.
    pub async fn collection_generations(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT name, generation FROM collections ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Uploads the generation in `dir` and makes it the collection's current one, if the current one is still
    /// `base` (None: the collection was not published yet). Audited as `collection.publish`.
    pub async fn publish_collection(
        &self,
        name: &str,
        generation: &str,
        dir: &Path,
        base: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        check_part("collection name", name)?;
        check_part("generation", generation)?;
        let files = files_under(dir)?;
        if files.is_empty() {
            return Err(Error::Invalid {
                what: "generation",
                message: format!("{} holds no files", dir.display()),
            });
        }
        let mut bytes_total = 0u64;
        for (rel, path) in &files {
            let bytes = tokio::fs::read(path).await.map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?;
            bytes_total += bytes.len() as u64;
            self.artifacts
                .put(
                    &ObjectPath::from(format!("{}/{rel}", prefix(name, generation))),
                    PutPayload::from(Bytes::from(bytes)),
                )
                .await?;
        }
        crate::failpoint("collections.before_switch");
        let now = keel_core::time::now_rfc3339();
        let mut tx = self.write_tx().await?;
        let switched = match base {
            None => sqlx::query(
                "INSERT INTO collections(name, generation, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT(name) DO NOTHING",
            )
            .bind(name)
            .bind(generation)
            .bind(&now)
            .bind(actor)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(b) => sqlx::query(
                "UPDATE collections SET generation = $1, updated_at = $2, updated_by = $3
                 WHERE name = $4 AND generation = $5",
            )
            .bind(generation)
            .bind(&now)
            .bind(actor)
            .bind(name)
            .bind(b)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if switched != 1 {
            return Err(Error::Conflict(format!(
                "collection '{name}' was changed by another writer while this one was built on {}; nothing was \
                 published: run it again",
                base.unwrap_or("no generation")
            )));
        }
        let r = audit::append_in(
            &mut tx,
            &AuditEvent::new(actor, "collection.publish", &format!("collection/{name}"))
                .before(serde_json::json!({"generation": base}))
                .after(serde_json::json!({
                    "generation": generation, "files": files.len(), "bytes": bytes_total,
                })),
        )
        .await?;
        self.before_commit(&mut tx, &r).await?;
        tx.commit().await?;
        self.after_audit(&r);
        Ok(())
    }

    /// Downloads generation `generation` of collection `name` into `into` (created; its files as published).
    pub async fn fetch_collection(
        &self,
        name: &str,
        generation: &str,
        into: &Path,
    ) -> Result<usize> {
        check_part("collection name", name)?;
        check_part("generation", generation)?;
        let root = prefix(name, generation);
        let listed: Vec<_> = self
            .artifacts
            .list(Some(&ObjectPath::from(root.as_str())))
            .collect()
            .await;
        let mut n = 0;
        for meta in listed {
            let meta = meta?;
            let key = meta.location.to_string();
            let rel = key
                .strip_prefix(&root)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or_default();
            if rel.is_empty() || rel.split('/').any(|p| p == ".." || p.is_empty()) {
                continue;
            }
            let to = into.join(rel);
            if let Some(parent) = to.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| Error::Io {
                        path: parent.to_path_buf(),
                        source: e,
                    })?;
            }
            let bytes = self.artifacts.get(&meta.location).await?.bytes().await?;
            tokio::fs::write(&to, &bytes).await.map_err(|e| Error::Io {
                path: to.clone(),
                source: e,
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::Invalid {
                what: "collection",
                message: format!(
                    "generation {generation} of '{name}' has no files in the artifact store"
                ),
            });
        }
        Ok(n)
    }
}
