//! What replicas sharing one database need from it: a change counter (every audited change moves it, so a
//! replica polls one number instead of re-reading every alias), LISTEN/NOTIFY on Postgres as a hint that it
//! moved, and leases with fencing tokens for the loops exactly one replica may run (rollout judge, alert
//! evaluation, retention).
//!
//! Invariants:
//! - The counter moves in the transaction of the change, so a replica that reads a new value also reads the
//!   change. A notification is sent at commit and never for a rolled-back change; it can be lost (a dropped
//!   connection), which is why the counter is polled too and a reconnect forces a full reload.
//! - A lease is taken and checked under the store's write lock ([`crate::Store::write_tx`]), so "who holds it"
//!   is linearisable with every fenced write. A store made with [`crate::Store::fenced`] refuses to write once
//!   its lease is gone (expired, or taken over with a higher token), so a paused or partitioned former holder
//!   can never act after its successor started.

use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, AuditEvent};
use crate::{Backend, Error, Result, Store};

/// The Postgres channel changes are announced on.
pub const CHANNEL: &str = "keel_changes";

/// A lease on a named single-writer role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Grows with every change of holder: a write fenced with an older token is refused.
    pub token: i64,
    /// Unix milliseconds until which the lease is held unless renewed.
    pub expires_ms: i64,
}

/// What a change listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    /// Something changed (the counter moved).
    Changed,
    /// The listening connection was lost and re-established: notifications may have been missed, reload.
    Reconnected,
}

/// Notifications of changes (Postgres LISTEN), as a hint next to polling [`Store::change_counter`].
pub struct ChangeListener {
    inner: sqlx::postgres::PgListener,
}

impl ChangeListener {
    /// Waits for the next notification, or for a lost connection (reported once, then listening resumes).
    pub async fn next(&mut self) -> Result<ChangeEvent> {
        match self.inner.try_recv().await? {
            Some(_) => Ok(ChangeEvent::Changed),
            None => Ok(ChangeEvent::Reconnected),
        }
    }
}

impl Store {
    /// Moves the change counter inside `tx` (called for every audited change) and, on Postgres, queues a
    /// notification that is delivered at commit.
    pub(crate) async fn bump_changes(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<()> {
        let counter: i64 = sqlx::query_scalar(
            "UPDATE changes SET counter = counter + 1 WHERE id = 1 RETURNING counter",
        )
        .fetch_one(&mut **tx)
        .await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(counter.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The change counter: it moves with every audited change (alias moves, rollouts, keys, registrations).
    pub async fn change_counter(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT counter FROM changes WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Listens for changes on Postgres (None on SQLite, where polling the counter is all there is). The
    /// connection is named `application_name` (`keel-listen-PID` by default) so operators can find it.
    pub async fn listen_changes(&self, application_name: &str) -> Result<Option<ChangeListener>> {
        let Some(url) = self.database_url.as_deref() else {
            return Ok(None);
        };
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}application_name={application_name}");
        let mut inner = sqlx::postgres::PgListener::connect(&url)
            .await
            .map_err(|e| Error::Unavailable {
                what: "PostgreSQL",
                target: crate::redact_url(&url),
                reason: e.to_string(),
            })?;
        inner.listen(CHANNEL).await?;
        Ok(Some(ChangeListener { inner }))
    }

    /// Takes or renews the lease `name` for `holder` for `ttl_ms`. Returns it when `holder` holds it now; None
    /// while another holder's lease has not expired. A change of holder is audited (`lease.takeover`).
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Lease>> {
        let now = keel_core::time::now_unix_ms();
        let mut tx = self.unfenced_write_tx().await?;
        let before = sqlx::query("SELECT holder, token, expires_ms FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| {
                (
                    r.get::<String, _>("holder"),
                    r.get::<i64, _>("token"),
                    r.get::<i64, _>("expires_ms"),
                )
            });
        let token = match &before {
            Some((h, _, exp)) if h != holder && *exp >= now => return Ok(None),
            Some((h, t, exp)) if h == holder && *exp >= now => *t,
            Some((_, t, _)) => t + 1,
            None => 1,
        };
        let expires_ms = now + ttl_ms;
        sqlx::query(
            "INSERT INTO leases(name, holder, token, expires_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
                 expires_ms = excluded.expires_ms",
        )
        .bind(name)
        .bind(holder)
        .bind(token)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await?;
        let changed_hands = before
            .as_ref()
            .is_none_or(|(h, t, _)| h != holder || *t != token);
        if changed_hands {
            let r = audit::append_in(
                &mut tx,
                &AuditEvent::new(holder, "lease.takeover", &format!("lease/{name}"))
                    .before(before.as_ref().map_or(
                        serde_json::Value::Null,
                        |(h, t, e)| serde_json::json!({"holder": h, "token": t, "expires_ms": e}),
                    ))
                    .after(serde_json::json!({"holder": holder, "token": token, "ttl_ms": ttl_ms})),
            )
            .await?;
            self.before_commit(&mut tx, &r).await?;
            tx.commit().await?;
            self.after_audit(&r);
        } else {
            tx.commit().await?;
        }
        Ok(Some(Lease {
            name: name.to_string(),
            holder: holder.to_string(),
            token,
            expires_ms,
        }))
    }

    /// Gives the lease up at once (a clean shutdown), so the next holder need not wait for it to expire.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        let mut tx = self.unfenced_write_tx().await?;
        sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This store, fenced by `lease`: every write it makes first checks, under the write lock, that the lease
    /// is still held with this token and unexpired, and fails with [`Error::LeaseLost`] otherwise.
    pub fn fenced(&self, lease: &Lease) -> Store {
        let mut s = self.clone();
        s.fence = Some(lease.clone());
        s
    }

    /// Inside a write transaction: refuses when this store is fenced by a lease it no longer holds.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<()> {
        let Some(f) = &self.fence else {
            return Ok(());
        };
        let row: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT holder, token, expires_ms FROM leases WHERE name = $1")
                .bind(&f.name)
                .fetch_optional(&mut **tx)
                .await?;
        let now = keel_core::time::now_unix_ms();
        match row {
            Some((h, t, exp)) if h == f.holder && t == f.token && exp >= now => Ok(()),
            _ => Err(Error::LeaseLost {
                name: f.name.clone(),
                token: f.token,
            }),
        }
    }
}
