//! The one place errors become HTTP: a stable code, a status, a message, and the offending JSON paths.
//! Body: `{"error": {"code", "message", "details": [{"path", "problem"}]}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_core::ErrorClass;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `schema_mismatch`, `unknown_model`, `rate_limited`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Detail {
    /// JSON path of the offending value, e.g. `$.records[2].AGEP`.
    pub path: String,
    /// Machine-readable problem, e.g. `wrong_type`, `missing_field`, `unseen_category`.
    pub problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<Detail>) -> Self {
        self.details = details;
        self
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::error(self.code);
        if self.status.is_server_error() {
            tracing::error!(code = self.code, status = self.status.as_u16(), message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<keel_engine::Error> for ApiError {
    fn from(e: keel_engine::Error) -> Self {
        match e {
            keel_engine::Error::Store(s) => s.into(),
            keel_engine::Error::Model(m) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model_error",
                m.to_string(),
            ),
            keel_engine::Error::Invalid(m) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "model_error", m)
            }
            keel_engine::Error::NoReference(m) => {
                ApiError::new(StatusCode::CONFLICT, "no_monitoring_reference", m)
            }
            e @ keel_engine::Error::NotTabular { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_tabular_model",
                e.to_string(),
            ),
        }
    }
}

impl From<keel_store::Error> for ApiError {
    fn from(e: keel_store::Error) -> Self {
        use keel_store::Error as E;
        match &e {
            E::UnknownModel(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_model", e.to_string())
            }
            E::UnknownVersion { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_version", e.to_string())
            }
            E::NoAlias { .. } => ApiError::new(StatusCode::NOT_FOUND, "no_alias", e.to_string()),
            E::LastAdmin(_) => ApiError::new(StatusCode::CONFLICT, "last_admin_key", e.to_string()),
            E::UnknownRun(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_run", e.to_string()),
            E::UnknownArtifact { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_artifact", e.to_string())
            }
            E::InvalidContent { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            ),
            E::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            E::LeaseLost { .. } => ApiError::new(StatusCode::CONFLICT, "lease_lost", e.to_string()),
            E::Invalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_reference", e.to_string())
            }
            E::ReadOnly { .. }
            | E::Io { .. }
            | E::Database(_)
            | E::Artifact(_)
            | E::Unavailable { .. }
            | E::SchemaBehind { .. }
            | E::Corrupt { .. } => {
                tracing::error!(error = %e, "store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the registry is unavailable",
                )
                .retry_after(1)
            }
        }
    }
}

impl From<keel_data::Error> for ApiError {
    fn from(e: keel_data::Error) -> Self {
        match e.class() {
            ErrorClass::Input | ErrorClass::Usage | ErrorClass::CheckFailed => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", e.to_string())
            }
            ErrorClass::Io | ErrorClass::Internal => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<keel_rag::Error> for ApiError {
    fn from(e: keel_rag::Error) -> Self {
        use keel_rag::Error as E;
        match &e {
            E::UnknownCollection(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_collection", e.to_string())
            }
            E::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            E::Model(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                e.to_string(),
            ),
            E::Io { .. } | E::Corrupt(_) | E::Index(_) => {
                tracing::error!(error = %e, "collection error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "collection_error",
                    "the collection could not be read; the error was logged",
                )
            }
        }
    }
}

/// The application layer's errors as HTTP: the one mapping every route uses.
impl From<keel_app::Error> for ApiError {
    fn from(e: keel_app::Error) -> Self {
        use keel_app::Error as E;
        match e {
            E::Input(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            E::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            E::Cancelled(m) => ApiError::new(StatusCode::CONFLICT, "cancelled", m),
            E::Store(e) => e.into(),
            E::Engine(e) => e.into(),
            E::Data(e) => e.into(),
            E::Rag(e) => e.into(),
            E::Ml(e) => match e.class() {
                ErrorClass::Input | ErrorClass::Usage | ErrorClass::CheckFailed => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
                }
                _ => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "model_error",
                    e.to_string(),
                ),
            },
            E::Monitor(e) => match e.class() {
                ErrorClass::Input | ErrorClass::Usage | ErrorClass::CheckFailed => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
                }
                _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            },
            E::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", m)
            }
            E::Busy(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "model_busy", m).retry_after(5)
            }
            E::GuardUnavailable(m) => ApiError::new(StatusCode::CONFLICT, "guard_unavailable", m),
            e @ E::Blocked { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "content_blocked", e.to_string())
            }
            E::GuardModel(e) => {
                ApiError::new(StatusCode::CONFLICT, "guard_unavailable", e.to_string())
            }
            e @ E::Io { .. } => {
                tracing::error!(error = %e, "i/o error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an i/o error was logged",
                )
            }
            E::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }
}
