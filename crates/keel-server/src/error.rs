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
            E::Invalid { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_reference", e.to_string())
            }
            E::ReadOnly { .. }
            | E::Io { .. }
            | E::Database(_)
            | E::Artifact(_)
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
