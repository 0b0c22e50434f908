//! API-key authentication, role checks and per-key rate limits.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use keel_core::Role;
use keel_engine::keys::AuthFailure;
use std::num::NonZeroU32;

use crate::AppState;
use crate::error::ApiError;

/// Who is calling (set by [`require`]).
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub role: Role,
}

/// Token buckets per key id.
pub struct KeyLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl KeyLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(1)).expect("positive");
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        KeyLimiter { limiter }
    }

    fn check(&self, key: &str) -> bool {
        match &self.limiter {
            None => true,
            Some(l) => l.check_key(&key.to_string()).is_ok(),
        }
    }
}

/// Middleware requiring a key with at least `needed` (unless auth is disabled).
pub async fn require(
    State((st, needed)): State<(AppState, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    if !st.config.auth {
        req.extensions_mut().insert(Caller {
            key_id: None,
            role: Role::Admin,
        });
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_string());
    let Some(presented) = presented else {
        return unauthorized(AuthFailure::Missing);
    };
    let verdict = match st.keys.cached(&presented) {
        Some(hit) => Ok(hit),
        None => {
            let keys = st.keys.clone();
            let p = presented.clone();
            match tokio::task::spawn_blocking(move || keys.verify(&p)).await {
                Ok(v) => v,
                Err(_) => Err(AuthFailure::Invalid),
            }
        }
    };
    let (id, role) = match verdict {
        Ok(v) => v,
        Err(f) => return unauthorized(f),
    };
    if !role.allows(needed) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key has role '{role}'; the route needs '{needed}' or higher"),
        )
        .into_response();
    }
    if !st.limiter.check(&id) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this key",
        )
        .retry_after(1)
        .into_response();
    }
    req.extensions_mut().insert(Caller {
        key_id: Some(id),
        role,
    });
    next.run(req).await
}

fn unauthorized(f: AuthFailure) -> Response {
    let message = match f {
        AuthFailure::Missing => "an API key is required: send 'Authorization: Bearer <key>'",
        AuthFailure::Invalid => "the API key is not valid",
        AuthFailure::Revoked => "the API key was revoked",
    };
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}
