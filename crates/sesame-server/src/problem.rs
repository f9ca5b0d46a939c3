//! Errors as RFC 9457 `application/problem+json`, each with a stable `code`
//! and `type` URI. What a client sees is deliberately coarse; details go to
//! the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sesame_core::Error;
use sesame_core::session::RevokeReason;

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<String>,
    extra: serde_json::Map<String, serde_json::Value>,
    retry_after: Option<u64>,
    /// Expire Sesame's cookies with this answer (the session is over).
    pub(crate) end_session: bool,
    /// Answer `WWW-Authenticate` for an API key.
    api_key: bool,
}

impl ApiError {
    /// A problem with `status`, `code` and a human `title`.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            status,
            code,
            title,
            detail: None,
            extra: Default::default(),
            retry_after: None,
            end_session: false,
            api_key: false,
        }
    }

    /// Adds a human-readable detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    fn with(mut self, k: &str, v: serde_json::Value) -> Self {
        self.extra.insert(k.into(), v);
        self
    }

    /// 400 `invalid_request` with one error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is invalid",
        )
        .with(
            "errors",
            json!([{ "field": field, "message": message.into() }]),
        )
    }

    /// 403 `csrf_rejected`.
    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_rejected",
            "Cross-site request refused",
        )
        .detail("The request's Origin (or Referer) is not an allowed origin")
    }

    /// 400 `duplicate_cookie`.
    pub fn duplicate_cookie() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "duplicate_cookie",
            "A Sesame cookie appears more than once",
        )
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found")
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        )
    }

    /// 413.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body too large",
        )
    }

    /// 431.
    pub fn headers_too_large() -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "Request headers too large",
        )
    }

    /// 415.
    pub fn unsupported_media() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send application/json",
        )
    }

    /// 401 `invalid_token`.
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is missing or invalid",
        )
    }

    /// 401 `invalid_api_key`: the admin API or the revocation feed without
    /// a configured key. `WWW-Authenticate` names the scheme.
    pub fn invalid_api_key() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "An API key is missing or invalid",
        );
        e.api_key = true;
        e
    }

    /// 429 `rate_limited`, with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests; try again later",
        )
        .retry(retry_after_secs.max(1))
    }

    /// 503 `storage_unavailable`.
    pub fn storage_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "The store is unavailable; try again",
        )
        .retry(1)
    }

    fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// `code: detail` (or the title), for command-line errors.
    pub fn describe(&self) -> String {
        let what = self
            .extra
            .get("errors")
            .map(|e| e.to_string())
            .or_else(|| self.detail.clone())
            .unwrap_or_else(|| self.title.to_owned());
        format!("{}: {what}", self.code)
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        match e {
            Error::InvalidInput(errors) => {
                let list: Vec<_> = errors
                    .iter()
                    .map(|e| json!({ "field": e.field, "message": e.message }))
                    .collect();
                Self::new(S::BAD_REQUEST, "invalid_request", "The request is invalid")
                    .with("errors", json!(list))
            }
            Error::TransportMismatch => Self::new(
                S::BAD_REQUEST,
                "transport_mismatch",
                "The refresh token arrived on the wrong channel for this session",
            ),
            Error::InvalidCredentials => Self::new(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid email or password",
            ),
            Error::InvalidToken => Self::invalid_token(),
            Error::SessionRevoked(reason) => {
                let mut e = Self::new(S::UNAUTHORIZED, "session_revoked", "The session has ended")
                    .with("reason", json!(reason.as_str()));
                e.end_session = true;
                if reason == RevokeReason::Expired {
                    e.code = "session_expired";
                }
                e
            }
            Error::SessionExpired => {
                let mut e = Self::new(
                    S::UNAUTHORIZED,
                    "session_expired",
                    "The session has expired",
                );
                e.end_session = true;
                e
            }
            Error::RefreshTokenInvalid => Self::new(
                S::UNAUTHORIZED,
                "refresh_token_invalid",
                "The refresh token is invalid",
            ),
            Error::RefreshTokenStale => Self::new(
                S::UNAUTHORIZED,
                "refresh_token_stale",
                "The refresh token was already rotated; use the newer one",
            ),
            Error::RefreshTokenReused(_) => {
                let mut e = Self::new(
                    S::UNAUTHORIZED,
                    "refresh_token_reused",
                    "The refresh token was used twice; the session was ended to protect it",
                );
                e.end_session = true;
                e
            }
            Error::EmailNotVerified => Self::new(
                S::FORBIDDEN,
                "email_not_verified",
                "Verify your email address first",
            ),
            Error::AccountDisabled => {
                Self::new(S::FORBIDDEN, "account_disabled", "This account is disabled")
            }
            Error::NotFound => Self::not_found(),
            Error::HandoffInvalid => Self::new(
                S::UNAUTHORIZED,
                "handoff_code_invalid",
                "The handoff code is unknown, used or expired",
            ),
            Error::MfaRequired { challenge, methods } => Self::new(
                S::UNAUTHORIZED,
                "mfa_required",
                "Enter the code from your authenticator app",
            )
            .with("challenge", json!(challenge))
            .with("methods", json!(methods)),
            Error::InvalidMfaCode => Self::new(
                S::UNAUTHORIZED,
                "invalid_mfa_code",
                "The code is wrong, already used or expired",
            ),
            Error::MfaChallengeInvalid => Self::new(
                S::UNAUTHORIZED,
                "mfa_challenge_invalid",
                "The sign-in step expired or was used up; sign in again",
            ),
            Error::ReauthenticationRequired => Self::new(
                S::FORBIDDEN,
                "reauthentication_required",
                "Confirm your password (or a second-factor code) first",
            ),
            Error::LinkInvalid => Self::new(
                S::BAD_REQUEST,
                "link_invalid",
                "The link is unknown, already used or expired",
            ),
            Error::MfaAlreadyEnabled => Self::new(
                S::CONFLICT,
                "mfa_already_enabled",
                "A second factor is already enabled; remove it first",
            ),
            Error::MfaNotPending => Self::new(
                S::CONFLICT,
                "mfa_not_pending",
                "No second-factor enrolment is in progress",
            ),
            Error::EmailTaken => Self::new(
                S::CONFLICT,
                "email_taken",
                "An account with this email already exists",
            ),
            Error::SessionLimitReached => Self::new(
                S::CONFLICT,
                "session_limit_reached",
                "Too many active sessions; sign out elsewhere first",
            ),
            Error::RateLimited { retry_after } => Self::rate_limited(retry_after),
            Error::Overloaded => Self::new(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many sign-ins at once; try again",
            )
            .retry(1),
            Error::StorageUnavailable(src) => {
                tracing::error!(error = %src, source = ?std::error::Error::source(&src), "store unavailable");
                Self::storage_unavailable()
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::new(S::INTERNAL_SERVER_ERROR, "internal_error", "Internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "type".into(),
            json!(format!("https://sesame.dev/problems/{}", self.code)),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("code".into(), json!(self.code));
        if let Some(d) = &self.detail {
            body.insert("detail".into(), json!(d));
        }
        body.extend(self.extra);
        let mut res = (self.status, serde_json::Value::Object(body).to_string()).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.api_key {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sesame-api\""),
            );
        }
        if self.code == "invalid_token" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.end_session {
            res.extensions_mut()
                .insert(crate::http::cookies::EndSession);
        }
        res
    }
}
