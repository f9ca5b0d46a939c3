//! Extractors: what handlers receive instead of raw requests. Each rejects
//! with a problem+json [`ApiError`], never axum's plain-text rejections.

use super::client_ip;
use super::cookies::CookiePolicy;
use crate::problem::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use sesame_core::access::VerifiedClaims;
use sesame_core::engine::Engine;
use sesame_core::session::{DeviceInfo, Transport};
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// What the HTTP layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `public_url`'s origin, e.g. `https://auth.example.com`.
    pub public_origin: String,
    /// Other origins allowed to make credentialed requests.
    pub allowed_origins: Vec<String>,
    /// `allowed_transports`.
    pub allowed_transports: Vec<Transport>,
    /// `trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// SHA-256 of each admin API key.
    pub admin_api_keys: Vec<[u8; 32]>,
    /// SHA-256 of each service API key.
    pub service_api_keys: Vec<[u8; 32]>,
}

impl HttpSettings {
    /// Whether `origin` may make unsafe requests.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_origin || self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// HTTP settings.
    pub http: Arc<HttpSettings>,
    /// Cookie policy.
    pub cookies: Arc<CookiePolicy>,
    /// Wakes and ends revocation feeds.
    pub feed: Arc<super::feed::FeedHub>,
    /// Rate limits; `None` when `rate_limits = false`.
    pub limiter: Option<crate::rate_limit::RateLimiter>,
    /// Queues mail; never waits for the mail server.
    pub mailer: crate::mail::Mailer,
}

/// A JSON body: `application/json` (else 415), ≤ 16 KiB (else 413),
/// well-formed and of the right shape (else 400 `invalid_request`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media());
        }
        let bytes = read_body(req, state).await?;
        object_only(&bytes)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    }
}

/// An optional JSON body: empty is `None`, otherwise as [`JsonBody`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !has_type {
            return Err(ApiError::unsupported_media());
        }
        object_only(&bytes)?;
        serde_json::from_slice(&bytes)
            .map(|v| Self(Some(v)))
            .map_err(|e| ApiError::invalid("body", e.to_string()))
    }
}

/// Every body of the API is a JSON object. serde's derived structs also
/// accept a JSON *array* of the fields in order (`["a@b.c", "pw"]` would log
/// in), so anything else is refused before parsing.
fn object_only(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(ApiError::invalid("body", "must be a JSON object")),
    }
}

/// Reads the body within the router's limit: 413 past it, 400 if unreadable.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large()
            } else {
                ApiError::invalid("body", "could not read the request body")
            }
        })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// Who is calling: resolved client IP and user agent.
#[derive(Debug, Clone)]
pub struct Client(pub DeviceInfo);

impl Client {
    /// The resolved client IP, parsed.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.0.ip.as_deref().and_then(|s| s.parse().ok())
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| {
                client_ip::resolve(a.ip(), &parts.headers, &state.http.trusted_proxies).to_string()
            });
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Ok(Self(DeviceInfo { ip, user_agent }))
    }
}

/// The transport a login asks for with `Sesame-Transport` (absent: hybrid).
#[derive(Debug, Clone, Copy)]
pub struct RequestedTransport(pub Transport);

impl FromRequestParts<AppState> for RequestedTransport {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let t = match parts.headers.get("sesame-transport") {
            None => Transport::Hybrid,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| Transport::parse(s.trim()))
                .ok_or_else(|| {
                    ApiError::invalid("Sesame-Transport", "must be hybrid, cookie or bearer")
                })?,
        };
        if !state.http.allowed_transports.contains(&t) {
            return Err(ApiError::invalid(
                "Sesame-Transport",
                format!("transport {} is not allowed here", t.as_str()),
            ));
        }
        Ok(Self(t))
    }
}

/// The access token of a request: `Authorization: Bearer`, or (only when no
/// `Authorization` header is present) the access cookie.
pub fn access_token(
    headers: &HeaderMap,
    cookies: &CookiePolicy,
) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let s = v.to_str().map_err(|_| ApiError::invalid_token())?;
        let (scheme, token) = s.split_once(' ').ok_or_else(ApiError::invalid_token)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::invalid_token());
        }
        return Ok(Some(token.trim().to_string()));
    }
    cookies.access_cookie(headers)
}

/// A verified access token whose session is live.
#[derive(Debug, Clone)]
pub struct Authenticated(pub VerifiedClaims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token =
            access_token(&parts.headers, &state.cookies)?.ok_or_else(ApiError::invalid_token)?;
        let claims = state.engine.authenticate(&token).await?;
        if claims.claims().cnf.is_some() {
            // A bound token (DESIGN §1): it works only with the cookie it was
            // bound to, or from the network and user agent it was issued to.
            let fp = super::cookies::get(&parts.headers, super::cookies::FP)?;
            let Client(device) = Client::from_request_parts(parts, state).await?;
            let facts = sesame_core::binding::RequestFacts {
                fp_cookie: fp.as_deref(),
                ip: device.ip.as_deref().and_then(|s| s.parse().ok()),
                user_agent: device.user_agent.as_deref().unwrap_or(""),
            };
            state.engine.check_binding(&claims, &facts)?;
        }
        Ok(Self(claims))
    }
}
