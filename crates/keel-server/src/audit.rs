//! The audit log over HTTP: paged newest first, filtered by model, action and actor, and verified.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::AsAdmin;
use crate::body::query;
use crate::error::{ApiError, ErrorBody};
use crate::versions::AuditEntry;

/// Which records to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records about this model (targets `NAME` and `NAME@…`).
    pub model: Option<String>,
    /// Records with this action (`alias.set`), or every action under a prefix ending in `.` (`guard.`).
    pub action: Option<String>,
    /// Records by this actor (`key:ab12…`, a user name, `keel (rollout judge)`).
    pub actor: Option<String>,
    /// Records older than this sequence number (the previous page's `next_before`).
    #[param(minimum = 1, maximum = 1000000000000000_i64)]
    pub before: Option<i64>,
    /// Records per page (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last one.
    pub next_before: Option<i64>,
    /// Records in the whole log.
    pub total: u64,
}

/// Reads the audit log.
#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn list(
    _: AsAdmin,
    State(st): State<AppState>,
    uri: axum::http::Uri,
) -> Result<Json<AuditPage>, ApiError> {
    let q: AuditQuery = query(&uri)?;
    if let Some(b) = q
        .before
        .filter(|b| !(1..=1_000_000_000_000_000).contains(b))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("before {b} must be a sequence number (1–10^15)"),
        ));
    }
    let page = keel_app::registry::audit(
        st.cache.store(),
        &keel_app::registry::AuditQuery {
            model: q.model,
            action: q.action,
            actor: q.actor,
            before: q.before,
            limit: q.limit,
        },
    )
    .await?;
    Ok(Json(AuditPage {
        records: page.records.into_iter().map(AuditEntry::from).collect(),
        next_before: page.next_before,
        total: page.total as u64,
    }))
}

/// Whether the chain of hashes and its head hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub ok: bool,
    /// Records in the log.
    pub records: u64,
    /// The first record that fails, when one does.
    pub first_bad: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
    /// The head's signature: `valid`, `unchecked`, `unsigned`; absent when there is no head.
    pub signature: Option<String>,
}

/// Verifies the audit log (every record's hash chain and the head kept outside the database).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The verification; `ok: false` names the first bad record", body = Verification),
              (status = 403, body = ErrorBody)))]
pub async fn verify(
    _: AsAdmin,
    State(st): State<AppState>,
) -> Result<Json<Verification>, ApiError> {
    let v = keel_app::registry::verify_audit(st.cache.store()).await?;
    Ok(Json(Verification {
        ok: v.ok,
        records: v.records as u64,
        first_bad: v.first_bad,
        problem: v.problem,
        signature: v.signature,
    }))
}
