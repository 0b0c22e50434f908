//! API-key authentication, role checks and per-key rate limits.

use axum::http::{StatusCode, header};
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

impl Caller {
    /// How the audit log names this caller: `key:<id>`, or `no-auth` when auth is off.
    pub fn actor(&self) -> String {
        self.key_id
            .as_ref()
            .map_or_else(|| "no-auth".to_string(), |k| format!("key:{k}"))
    }
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

    fn check(&self, key: &String) -> bool {
        match &self.limiter {
            None => true,
            Some(l) => l.check_key(key).is_ok(),
        }
    }
}

/// Proof that the request carries a key whose role allows at least role number `R` (see [`role_of`]). Taken
/// as a handler's first argument, it refuses the request with 401, 403 or 429 before anything else is read.
/// With auth disabled (`--no-auth`, never silently) every request is an admin.
pub struct Authorized<const R: u8>(pub Caller);

/// Routes that read models, metrics and reports.
pub type AsReader = Authorized<0>;
/// Routes that predict.
pub type AsPredictor = Authorized<1>;
/// Routes that move aliases.
pub type AsDeployer = Authorized<2>;
/// Routes that manage keys.
pub type AsAdmin = Authorized<3>;

/// The role an [`Authorized`] parameter stands for.
pub const fn role_of(r: u8) -> Role {
    match r {
        0 => Role::Reader,
        1 => Role::Predictor,
        2 => Role::Deployer,
        _ => Role::Admin,
    }
}

impl<const R: u8> axum::extract::FromRequestParts<AppState> for Authorized<R> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        authorize(st, &parts.headers, peer, role_of(R))
            .await
            .map(Authorized)
    }
}

/// What full key verifications (argon2, milliseconds each) may cost: a few at a time, and per client address
/// a token bucket of verifications of keys not yet verified (a wrong secret is never cached, so a flood of
/// them is what this bounds; a client with a good key verifies it once).
pub struct VerifyLimits {
    slots: tokio::sync::Semaphore,
    per_address: Option<DefaultKeyedRateLimiter<Option<std::net::IpAddr>>>,
}

impl VerifyLimits {
    pub fn new(concurrent: usize, per_second: u32, burst: u32) -> Self {
        VerifyLimits {
            slots: tokio::sync::Semaphore::new(concurrent.max(1)),
            per_address: NonZeroU32::new(per_second).map(|rate| {
                let burst = NonZeroU32::new(burst.max(1)).expect("positive");
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
            }),
        }
    }
}

/// Checks the bearer key against `needed`: the caller, or the refusal to send. `peer` is the client's address
/// (absent for in-process calls, which share one budget).
pub async fn authorize(
    st: &AppState,
    headers: &axum::http::HeaderMap,
    peer: Option<std::net::IpAddr>,
    needed: Role,
) -> Result<Caller, Response> {
    if !st.config.auth {
        return Ok(Caller {
            key_id: None,
            role: Role::Admin,
        });
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 7235 §2.1): `bearer`, `BEARER` and `Bearer` alike.
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token)
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized(AuthFailure::Missing))?;
    let verdict = match st.keys.cached(presented) {
        Some(hit) => Ok(hit),
        None => {
            if let Some(l) = &st.verify_limits.per_address
                && l.check_key(&peer).is_err()
            {
                crate::metrics::METRICS.auth_throttled.inc();
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "auth_rate_limited",
                    "too many key verifications from this address; retry later",
                )
                .retry_after(1)
                .into_response());
            }
            let _slot = st
                .verify_limits
                .slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let keys = st.keys.clone();
            let p = presented.to_string();
            match tokio::task::spawn_blocking(move || keys.verify(&p)).await {
                Ok(v) => v,
                Err(_) => Err(AuthFailure::Invalid),
            }
        }
    };
    let (id, role) = verdict.map_err(unauthorized)?;
    if !role.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key has role '{role}'; the route needs '{needed}' or higher"),
        )
        .into_response());
    }
    if !st.limiter.check(&id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this key",
        )
        .retry_after(1)
        .into_response());
    }
    Ok(Caller {
        key_id: Some(id),
        role,
    })
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
