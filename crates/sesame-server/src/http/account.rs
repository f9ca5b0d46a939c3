//! The account-lifecycle routes of §3/§4: the second login step, email
//! verification, password reset, re-authentication, email change, the TOTP
//! factor and self-service delete. Thin, like routes.rs: limits, extract,
//! call the engine, shape the answer.
//!
//! Requests that would reveal whether an address has an account (forgot,
//! resend by address) answer 202 first and do their work in a task, so the
//! answer and its timing are the same for every address.

use super::extract::{AppState, Authenticated, Client, JsonBody, OptionalJson, access_token};
use super::openapi::{
    Accepted, Problem, Reauthenticated, RecoveryCodes, TokenResponse, TotpEnrolmentResponse,
    UserResponse,
};
use super::routes::{account_key, ended, ip_key, limit, login_ctx, token_response, user_json};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sesame_core::Error;
use sesame_core::ids::UserId;

/// The second login step.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaLogin {
    /// The `challenge` of the `mfa_required` answer (`smc_…`).
    challenge: String,
    /// A six-digit TOTP code or a recovery code (`xxxx-xxxx-xxxx-xxxx`).
    #[schema(example = "123456")]
    code: String,
}

/// A one-time token from a mailed link's fragment.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkToken {
    /// The `token` of the link (`/verify#token=…`).
    token: String,
}

/// A password reset.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordReset {
    /// The `token` of the reset link (`/reset#token=…`).
    token: String,
    /// The new password: 8–1024 characters, not a common one.
    #[schema(format = Password, min_length = 8, max_length = 1024)]
    password: String,
}

/// An email address.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailBody {
    /// The address.
    #[schema(format = Email, example = "ada@example.com")]
    email: String,
}

/// Who asks for a new verification link when not signed in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResendBody {
    /// The account's address (ignored when an access token is presented).
    #[schema(format = Email, example = "ada@example.com")]
    email: Option<String>,
}

/// A fresh credential check: exactly one of the two.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reauthenticate {
    /// The account's password.
    #[schema(format = Password)]
    password: Option<String>,
    /// A TOTP or recovery code (accounts with a second factor).
    code: Option<String>,
}

/// A second-factor code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    /// The six-digit code from the authenticator app.
    #[schema(example = "123456")]
    code: String,
}

const P400: &str = "`invalid_request` (with `errors[]`) or `duplicate_cookie`.";

/// One second-factor check for `user` against `rate_limit_mfa_account`:
/// one budget shared by the login step, re-authentication and enrolment.
async fn mfa_limit(state: &AppState, route: &'static str, user: UserId) -> Result<(), Error> {
    let Some(l) = &state.limiter else {
        return Ok(());
    };
    l.check(&format!("mfa:user:{user}"), l.limits().mfa_account)
        .await
        .map_err(|wait| {
            crate::telemetry::rate_limited(route, "account");
            Error::RateLimited {
                retry_after: wait.secs(),
            }
        })
}

/// Completes a login that answered `mfa_required`.
#[utoipa::path(
    post,
    path = "/auth/login/mfa",
    tag = "auth",
    request_body = MfaLogin,
    responses(
        (status = 200, description = "Signed in; the session carries `aal2`.", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "As for login, by the transport chosen at login."))),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_mfa_code` (wrong, used or expired code; five per challenge) or `mfa_challenge_invalid` (unknown, used up or expired challenge: sign in again).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected` or `account_disabled`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`session_limit_reached`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): per client IP, and per account (`rate_limit_mfa_account`; the challenge stays usable).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login_mfa(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: super::extract::RequestedTransport,
    JsonBody(b): JsonBody<MfaLogin>,
) -> Result<Response, ApiError> {
    limit(
        &state,
        "login_mfa",
        "ip",
        |l| l.verify_ip,
        &ip_key(client.ip()),
    )
    .await?;
    let ctx = login_ctx(&state, &headers, client, transport)?;
    let gate = |user: UserId| {
        let state = state.clone();
        async move { mfa_limit(&state, "login_mfa", user).await }
    };
    let result = state
        .engine
        .login_mfa(&b.challenge, &b.code, &ctx, gate)
        .await;
    crate::telemetry::login(&result);
    Ok(token_response(&state, StatusCode::OK, &result?))
}

/// Proves an email address with the token of a verification link.
#[utoipa::path(
    post,
    path = "/auth/verify",
    tag = "account",
    request_body = LinkToken,
    responses(
        (status = 204, description = "Verified."),
        (status = 400, description = "`link_invalid` (unknown, used or expired link, or one for an address the account no longer has) or `invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    client: Client,
    JsonBody(b): JsonBody<LinkToken>,
) -> Result<StatusCode, ApiError> {
    limit(
        &state,
        "verify",
        "ip",
        |l| l.verify_ip,
        &ip_key(client.ip()),
    )
    .await?;
    state
        .engine
        .verify_email(&b.token, client.0.ip.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification link: to the signed-in user (access token), or
/// to an address (for users who cannot sign in before verifying) with the
/// same answer whether or not it has an account.
#[utoipa::path(
    post,
    path = "/auth/verify/resend",
    tag = "account",
    request_body(content = ResendBody, description = "`{email}` when not signed in; nothing (or `{}`) with an access token."),
    security((), ("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 202, description = "If the address has an unverified account, a link is on its way.", body = Accepted),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` and the other access-token problems, when one is presented.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): per IP and per account (`rate_limit_forgot_*`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn resend_verification(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    OptionalJson(b): OptionalJson<ResendBody>,
) -> Result<Response, ApiError> {
    limit(
        &state,
        "verify_resend",
        "ip",
        |l| l.forgot_ip,
        &ip_key(client.ip()),
    )
    .await?;
    if let Some(token) = access_token(&headers, &state.cookies)? {
        let claims = state.engine.authenticate(&token).await?;
        limit(
            &state,
            "verify_resend",
            "account",
            |l| l.forgot_account,
            &format!("user:{}", claims.user_id()),
        )
        .await?;
        state.engine.resend_verification(claims.user_id()).await?;
        return Ok(accepted("verification_sent"));
    }
    let Some(email) = b.and_then(|b| b.email) else {
        return Err(ApiError::invalid(
            "email",
            "required unless an access token is presented",
        ));
    };
    check_email(&email)?;
    limit(
        &state,
        "verify_resend",
        "account",
        |l| l.forgot_account,
        &format!("acct:{}", account_key(&email)),
    )
    .await?;
    let engine = state.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.resend_verification_to(&email).await {
            tracing::warn!(error = %e, "verification resend failed");
        }
    });
    Ok(accepted("verification_sent"))
}

fn check_email(email: &str) -> Result<(), ApiError> {
    sesame_core::ids::Email::parse(email)
        .map(|_| ())
        .map_err(|e| ApiError::invalid("email", e.to_string()))
}

fn accepted(status: &'static str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": status, "detail": "If the address has an account, a message is on its way." })),
    )
        .into_response()
}

/// Asks for a password-reset link. Always 202, in the same time.
#[utoipa::path(
    post,
    path = "/auth/password/forgot",
    tag = "account",
    request_body = EmailBody,
    responses(
        (status = 202, description = "If the address has an account, a reset link is on its way (valid `password_reset_ttl`).", body = Accepted),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): per IP and per account (`rate_limit_forgot_*`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn forgot_password(
    State(state): State<AppState>,
    client: Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Result<Response, ApiError> {
    limit(
        &state,
        "forgot",
        "ip",
        |l| l.forgot_ip,
        &ip_key(client.ip()),
    )
    .await?;
    // The shape of an address says nothing about accounts: check it here.
    check_email(&b.email)?;
    limit(
        &state,
        "forgot",
        "account",
        |l| l.forgot_account,
        &format!("acct:{}", account_key(&b.email)),
    )
    .await?;
    let engine = state.engine.clone();
    let ip = client.0.ip.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.forgot_password(&b.email, ip.as_deref()).await {
            tracing::warn!(error = %e, "password reset request failed");
        }
    });
    Ok(accepted("reset_requested"))
}

/// Sets a new password with a reset link's token; every session ends.
#[utoipa::path(
    post,
    path = "/auth/password/reset",
    tag = "account",
    request_body = PasswordReset,
    responses(
        (status = 204, description = "Password set; every session of the account ended; the address counts as verified."),
        (status = 400, description = "`link_invalid` (unknown, used or expired link) or `invalid_request` (the password; the link stays usable).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`overloaded` or `storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    client: Client,
    JsonBody(b): JsonBody<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    limit(&state, "reset", "ip", |l| l.verify_ip, &ip_key(client.ip())).await?;
    state
        .engine
        .reset_password(&b.token, b.password, client.0.ip.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A fresh credential check on the current session, for the changes that
/// need one within `max_auth_age`.
#[utoipa::path(
    post,
    path = "/auth/reauthenticate",
    tag = "account",
    request_body = Reauthenticate,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Recorded: sensitive changes are allowed for `max_auth_age`.", body = Reauthenticated),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`, `invalid_mfa_code`, or an access-token problem (`invalid_token`, `session_revoked`, `session_expired`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`overloaded` or `storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reauthenticate(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
    JsonBody(b): JsonBody<Reauthenticate>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if b.code.is_some() {
        mfa_limit(&state, "reauthenticate", claims.user_id()).await?;
    } else {
        let key = format!("user:{}", claims.user_id());
        limit(
            &state,
            "reauthenticate",
            "account",
            |l| l.login_account,
            &key,
        )
        .await?;
    }
    let s = state
        .engine
        .reauthenticate(
            &claims,
            b.password,
            b.code.as_deref(),
            client.0.ip.as_deref(),
        )
        .await?;
    Ok(Json(
        json!({ "auth_time": s.auth_time, "aal": s.aal.as_str() }),
    ))
}

/// Changes the account's address (needs a recent re-authentication). The
/// new address must be verified; the old one is told.
#[utoipa::path(
    post,
    path = "/auth/email",
    tag = "account",
    request_body = EmailBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Changed; a verification link went to the new address.", body = UserResponse),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An access-token problem.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication_required` or `csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_email(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = state
        .engine
        .change_email(&claims, &b.email, client.0.ip.as_deref())
        .await?;
    Ok(Json(json!({ "user": user_json(&user) })))
}

/// Starts a TOTP enrolment (needs a recent re-authentication): the secret,
/// its `otpauth://` URI and a QR code of it rendered here, never by a third
/// party. Login asks for codes only after `/auth/mfa/totp/confirm`.
#[utoipa::path(
    post,
    path = "/auth/mfa/totp",
    tag = "account",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "A pending factor.", body = TotpEnrolmentResponse),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An access-token problem.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication_required` or `csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`mfa_already_enabled`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn begin_totp(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let e = state.engine.begin_totp(&claims).await?;
    let qr = qrcode::QrCode::new(e.otpauth_uri.as_bytes())
        .map_err(|_| ApiError::from(Error::Internal("QR encoding failed".into())))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let qr = format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(qr)
    );
    Ok(Json(json!({
        "secret": e.secret,
        "otpauth_uri": e.otpauth_uri,
        "qr_svg": qr,
    })))
}

/// Confirms the pending TOTP factor with a code from the app; answers the
/// ten recovery codes, shown this once.
#[utoipa::path(
    post,
    path = "/auth/mfa/totp/confirm",
    tag = "account",
    request_body = CodeBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "Enabled; this session now carries `aal2`.", body = RecoveryCodes),
        (status = 400, description = P400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_mfa_code` or an access-token problem.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`mfa_not_pending`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
    JsonBody(b): JsonBody<CodeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    mfa_limit(&state, "mfa_confirm", claims.user_id()).await?;
    let codes = state
        .engine
        .confirm_totp(&claims, &b.code, client.0.ip.as_deref())
        .await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

/// Removes the TOTP factor and its recovery codes (needs a recent
/// re-authentication).
#[utoipa::path(
    delete,
    path = "/auth/mfa/totp",
    tag = "account",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An access-token problem.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication_required` or `csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no factor.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_totp(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .remove_totp(&claims, client.0.ip.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the caller's account (needs a recent re-authentication): every
/// session ends, the account and its personal data go; audit rows stay
/// pseudonymised.
#[utoipa::path(
    delete,
    path = "/auth/account",
    tag = "account",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Deleted; cookies expired."),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An access-token problem.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`reauthentication_required` or `csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_account(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Response, ApiError> {
    state.engine.delete_account(&claims).await?;
    Ok(ended(&state))
}
