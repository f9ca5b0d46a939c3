//! The engine's one error type. Each variant maps to one stable problem
//! `code` at the HTTP boundary; what a client learns is deliberately coarse
//! (`InvalidToken` never says why), while logs keep the detail.

use crate::rotation::ReuseClass;
use crate::session::RevokeReason;
use crate::store::StoreError;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON member.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// What went wrong, from a client's point of view.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 400 `invalid_request`.
    #[error("invalid request")]
    InvalidInput(Vec<FieldError>),
    /// 400 `transport_mismatch`.
    #[error("refresh token presented on the wrong channel for this session")]
    TransportMismatch,
    /// 401 `invalid_credentials`.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// 401 `invalid_token`.
    #[error("invalid access token")]
    InvalidToken,
    /// 401 `session_revoked`.
    #[error("session revoked: {0}")]
    SessionRevoked(RevokeReason),
    /// 401 `session_expired`.
    #[error("session expired")]
    SessionExpired,
    /// 401 `refresh_token_invalid`.
    #[error("invalid refresh token")]
    RefreshTokenInvalid,
    /// 401 `refresh_token_stale`.
    #[error("refresh token already rotated")]
    RefreshTokenStale,
    /// 401 `refresh_token_reused`. The class is for operators (logs and
    /// metrics); clients only ever see the code.
    #[error("refresh token reuse detected; session revoked")]
    RefreshTokenReused(ReuseClass),
    /// 403 `email_not_verified` (only after a correct password).
    #[error("email address not verified")]
    EmailNotVerified,
    /// 403 `account_disabled` (only after a correct password).
    #[error("account disabled")]
    AccountDisabled,
    /// 404 `not_found`.
    #[error("not found")]
    NotFound,
    /// 401 `handoff_code_invalid`: unknown, used or expired handoff code.
    #[error("invalid handoff code")]
    HandoffInvalid,
    /// 401 `mfa_required`: the password was right and a second factor is
    /// needed; no tokens yet. The challenge is a one-time token for
    /// `POST /auth/login/mfa`.
    #[error("second factor required")]
    MfaRequired {
        /// The challenge (`smc_…`).
        challenge: String,
        /// Accepted methods.
        methods: Vec<&'static str>,
    },
    /// 401 `invalid_mfa_code`: wrong, reused or expired code.
    #[error("invalid second-factor code")]
    InvalidMfaCode,
    /// 401 `mfa_challenge_invalid`: unknown, used up or expired challenge
    /// (log in again).
    #[error("invalid or expired MFA challenge")]
    MfaChallengeInvalid,
    /// 403 `reauthentication_required`: the session's last credential check
    /// is older than `max_auth_age`.
    #[error("re-authentication required")]
    ReauthenticationRequired,
    /// 400 `link_invalid`: unknown, used or expired verification or reset
    /// token.
    #[error("invalid or expired link")]
    LinkInvalid,
    /// 409 `mfa_already_enabled`.
    #[error("a second factor is already enabled")]
    MfaAlreadyEnabled,
    /// 409 `mfa_not_pending`: confirm without an enrolment in progress.
    #[error("no second-factor enrolment in progress")]
    MfaNotPending,
    /// 409 `email_taken`.
    #[error("email already registered")]
    EmailTaken,
    /// 409 `session_limit_reached`.
    #[error("session limit reached")]
    SessionLimitReached,
    /// 429 `rate_limited`: a host-side limit refused the attempt.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// 503 `overloaded`.
    #[error("overloaded")]
    Overloaded,
    /// 503 `storage_unavailable`.
    #[error("storage unavailable")]
    StorageUnavailable(#[source] StoreError),
    /// 500: a bug or corrupt data; details only in logs.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StorageUnavailable(e),
            StoreError::Conflict => Self::Internal("unexpected store conflict".into()),
            StoreError::Other(src) => Self::Internal(format!("store: {src}")),
        }
    }
}

impl Error {
    /// One invalid field.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidInput(vec![FieldError {
            field,
            message: message.into(),
        }])
    }
}
