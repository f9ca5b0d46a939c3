//! What the layer and the extractors answer when they refuse a request:
//! RFC 9457 `application/problem+json`, in exactly the shape the Sesame
//! server uses, so a client handles a resource server's 401 the same way as
//! the auth server's.
//!
//! What a client sees is deliberately coarse: every token failure (missing,
//! malformed, bad signature, unknown key, expired, wrong audience, binding
//! mismatch) is the same 401 `invalid_token`; the reason is logged at debug.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sesame_core::session::RevokeReason;

/// A refusal by the layer or an extractor. Cheap to copy: it is stored in
/// request extensions when the layer does not answer by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRejection {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    reason: Option<&'static str>,
}

impl AuthRejection {
    const fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            status,
            code,
            title,
            reason: None,
        }
    }

    /// 401 `invalid_token`, for every token failure.
    pub const fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is missing or invalid",
        )
    }

    /// 401 `session_revoked` (or `session_expired` for the `expired` reason,
    /// as the server answers), with the `reason` member. `None` is a reason
    /// this version does not know; it is still a revocation.
    pub fn session_revoked(reason: Option<RevokeReason>) -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "session_revoked",
            "The session has ended",
        );
        if reason == Some(RevokeReason::Expired) {
            p.code = "session_expired";
        }
        p.reason = Some(reason.map_or("revoked", RevokeReason::as_str));
        p
    }

    /// 503 `revocation_feed_stale` (`on_stale = closed`).
    pub const fn feed_stale() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "revocation_feed_stale",
            "Revocations cannot be checked right now; try again",
        )
    }

    /// 403 `csrf_rejected`.
    pub const fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_rejected",
            "Cross-site request refused",
        )
    }

    /// 400 `duplicate_cookie`.
    pub const fn duplicate_cookie() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "duplicate_cookie",
            "A Sesame cookie appears more than once",
        )
    }

    /// 500: an extractor was used on a route the layer does not wrap.
    pub const fn layer_missing() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The revocation reason, for `session_revoked`.
    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    fn detail(&self) -> Option<&'static str> {
        match self.code {
            "csrf_rejected" => Some("The request's Origin (or Referer) is not an allowed origin"),
            _ => None,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "type".into(),
            format!("https://sesame.dev/problems/{}", self.code).into(),
        );
        body.insert("title".into(), self.title.into());
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("code".into(), self.code.into());
        if let Some(d) = self.detail() {
            body.insert("detail".into(), d.into());
        }
        if let Some(r) = self.reason {
            body.insert("reason".into(), r.into());
        }
        let mut res = (self.status, serde_json::Value::Object(body).to_string()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == "invalid_token" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}
