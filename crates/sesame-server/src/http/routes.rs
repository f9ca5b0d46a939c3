//! The handlers of §4. Each one is a thin translation: extract, call the
//! engine, shape the answer (tokens in the body and/or cookies according to
//! the session's transport).
//!
//! Each handler carries its `#[utoipa::path]` description — body, header and
//! cookie parameters, security and every problem code it can answer — so the
//! OpenAPI document ([`super::openapi`]) is written next to the code it
//! describes. Login and refresh also record their outcome as metrics.

use super::cookies::{self, REFRESH};
use super::extract::{
    AppState, Authenticated, Client, JsonBody, OptionalJson, RequestedTransport, access_token,
};
// Named only inside the `#[utoipa::path]` attributes below.
use super::openapi::{
    HealthStatus, Jwks, MeResponse, Problem, Readiness, RefreshCookie, ReplacedSessionCookie,
    SessionList, TokenResponse, TransportHeader, VerificationSent,
};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sesame_core::engine::{Grant, LoginContext, Registered};
use sesame_core::ids::SessionId;
use sesame_core::rotation::Channel;
use sesame_core::session::{RevokeReason, Session, Transport, device_label};
use sesame_core::store::User;

/// An email address and password (register and login).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// The account's email address.
    #[schema(format = Email, example = "ada@example.com")]
    email: String,
    /// The password: 8–1024 characters (register also refuses common
    /// passwords).
    #[schema(format = Password, min_length = 8, max_length = 1024, example = "correct horse battery staple")]
    password: String,
}

/// The refresh token, for bearer-transport sessions only; hybrid and cookie
/// sessions send it as the `__Host-sesame_rt` cookie and no body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    /// The refresh token (`srt_…`) from the last token response.
    refresh_token: Option<String>,
}

/// A password change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    /// The current password (re-authentication).
    #[schema(format = Password)]
    current_password: String,
    /// The new password.
    #[schema(format = Password)]
    new_password: String,
}

pub(crate) fn user_json(u: &User) -> serde_json::Value {
    let mut v = json!({
        "id": u.id,
        "email": u.email(),
        "email_verified": u.email_verified,
        "mfa_enabled": u.mfa_enabled,
        "created_at": u.created_at,
    });
    // Shadow users of external ids have no email; they show the caller's id.
    if let Some(x) = u.external_id() {
        v["external_id"] = json!(x);
    }
    v
}

pub(crate) fn session_json(s: &Session, current: Option<SessionId>, now: i64) -> serde_json::Value {
    let ended = if s.revoked_at.is_some() {
        s.revoke_reason.map(|r| r.as_str())
    } else if !s.is_live(now) {
        Some(RevokeReason::Expired.as_str())
    } else {
        None
    };
    json!({
        "id": s.id,
        "current": Some(s.id) == current,
        "device": device_label(s.user_agent.as_deref().unwrap_or("")),
        "user_agent": s.user_agent,
        "ip": s.ip,
        "transport": s.transport.as_str(),
        "created_at": s.created_at,
        "last_seen_at": s.last_seen_at,
        "expires_at": s.idle_expires_at.map_or(s.expires_at, |i| i.min(s.expires_at)),
        "aal": s.aal.as_str(),
        "revoked_at": s.revoked_at,
        "revoke_reason": ended,
        "active": ended.is_none(),
    })
}

/// The token answer for `grant`, shaped by its session's transport.
pub(crate) fn token_response(state: &AppState, status: StatusCode, grant: &Grant) -> Response {
    let mut body = json!({
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "session_id": grant.session.id,
        "user": user_json(&grant.user),
    });
    let mut headers = HeaderMap::new();
    match grant.session.transport {
        Transport::Bearer => {
            body["refresh_token"] = json!(grant.refresh_token);
            body["refresh_expires_in"] = json!(grant.refresh_expires_in);
        }
        Transport::Hybrid | Transport::Cookie => {
            let max_age = (grant.session.expires_at - state.engine.now()).max(0);
            headers.append(
                header::SET_COOKIE,
                state.cookies.refresh(&grant.refresh_token, max_age),
            );
            if grant.session.transport == Transport::Cookie {
                headers.append(
                    header::SET_COOKIE,
                    state.cookies.access(&grant.access_token, grant.expires_in),
                );
            }
            if let Some(fp) = state.engine.fp_cookie(&grant.session) {
                headers.append(header::SET_COOKIE, state.cookies.fingerprint(&fp, max_age));
            }
        }
    }
    (status, headers, Json(body)).into_response()
}

pub(crate) fn login_ctx(
    state: &AppState,
    headers: &HeaderMap,
    client: Client,
    t: RequestedTransport,
) -> Result<LoginContext, ApiError> {
    let _ = state;
    Ok(LoginContext {
        device: client.0,
        transport: t.0,
        replaces: cookies::get(headers, REFRESH)?,
    })
}

/// Creates an account and, unless email verification is required, signs in.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    params(TransportHeader, ReplacedSessionCookie),
    request_body = Credentials,
    responses(
        (status = 201, description = "Account created and signed in.", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "`__Host-sesame_rt` (hybrid, cookie) and `__Host-sesame_at` (cookie) transports."))),
        (status = 202, description = "Email verification required: a message is on its way (also answered for an address already registered, so accounts cannot be discovered).", body = VerificationSent),
        (status = 400, description = "`invalid_request` (with `errors[]`) or `duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` (only when email verification is not required).", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): too many attempts from this address or for this account (see the `rate_limit_*` settings).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`overloaded` or `storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: RequestedTransport,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let ip = client.ip();
    limit(&state, "register", "ip", |l| l.register_ip, &ip_key(ip)).await?;
    // Per address too: `email_taken` is a documented enumeration, and this
    // bounds how fast one address can be probed from many IPs.
    let account = account_key(&c.email);
    limit(
        &state,
        "register",
        "account",
        |l| l.login_account,
        &format!("acct:{account}"),
    )
    .await?;
    let ctx = login_ctx(&state, &headers, client, transport)?;
    match state.engine.register(&c.email, c.password, &ctx).await? {
        Registered::SignedIn(grant) => Ok(token_response(&state, StatusCode::CREATED, &grant)),
        Registered::VerificationSent => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "verification_sent", "detail": "If the address can be used, a message is on its way." })),
        )
            .into_response()),
    }
}

/// Signs in with an email and password.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    params(TransportHeader, ReplacedSessionCookie),
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in.", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "`__Host-sesame_rt` (hybrid, cookie) and `__Host-sesame_at` (cookie) transports."))),
        (status = 400, description = "`invalid_request` (with `errors[]`) or `duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials`: the same answer for an unknown email and a wrong password.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`; `account_disabled` or `email_not_verified` (both only after a correct password).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`session_limit_reached`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): too many attempts from this address or for this account (see the `rate_limit_*` settings).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`overloaded` or `storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: RequestedTransport,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let ip = client.ip();
    let account = account_key(&c.email);
    limit(&state, "login", "ip", |l| l.login_ip, &ip_key(ip)).await?;
    limit(
        &state,
        "login",
        "account",
        |l| l.login_account,
        &format!("acct:{account}"),
    )
    .await?;
    if let Some(l) = &state.limiter
        && let Err(wait) = l.login_delay(&account, ip).await
    {
        crate::telemetry::rate_limited("login", "delay");
        return Err(ApiError::rate_limited(wait.secs()));
    }
    let ctx = login_ctx(&state, &headers, client, transport)?;
    let result = state.engine.login(&c.email, c.password, &ctx).await;
    crate::telemetry::login(&result);
    if let Some(l) = &state.limiter {
        match &result {
            // The password was right: the second step has its own budget.
            Ok(_) | Err(sesame_core::Error::MfaRequired { .. }) => {
                l.login_succeeded(&account, ip).await;
            }
            Err(sesame_core::Error::InvalidCredentials) => l.login_failed(&account, ip).await,
            Err(_) => {}
        }
    }
    Ok(token_response(&state, StatusCode::OK, &result?))
}

/// The per-account key of a limit: the email's uniqueness key, or (for
/// input that is not an address) the trimmed, lower-cased text.
pub(crate) fn account_key(email: &str) -> String {
    sesame_core::ids::Email::parse(email).map_or_else(|_| email.trim().to_lowercase(), |e| e.key())
}

/// The per-IP key of a limit.
pub(crate) fn ip_key(ip: Option<std::net::IpAddr>) -> String {
    ip.map_or_else(|| "ip:-".to_owned(), |ip| format!("ip:{ip}"))
}

/// Takes one request of the limit `pick` chooses, for `key`; 429 past it.
pub(crate) async fn limit(
    state: &AppState,
    route: &'static str,
    which: &'static str,
    pick: impl Fn(&crate::rate_limit::Limits) -> crate::rate_limit::Limit,
    key: &str,
) -> Result<(), ApiError> {
    let Some(l) = &state.limiter else {
        return Ok(());
    };
    l.check(&format!("{route}:{key}"), pick(l.limits()))
        .await
        .map_err(|wait| {
            crate::telemetry::rate_limited(route, which);
            ApiError::rate_limited(wait.secs())
        })
}

/// Rotates the refresh token (§2) and issues a new access token.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    params(RefreshCookie),
    request_body(content = RefreshBody, description = "Bearer sessions only; hybrid and cookie sessions send no body (the document marks it optional)."),
    responses(
        (status = 200, description = "Rotated (or, inside the grace window, the successor re-sent).", body = TokenResponse,
            headers(("Set-Cookie" = String, description = "The next `__Host-sesame_rt` (hybrid, cookie) and `__Host-sesame_at` (cookie)."))),
        (status = 400, description = "`transport_mismatch` (token on the wrong channel, or on both; nothing rotates), `duplicate_cookie` or `invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`refresh_token_invalid`, `refresh_token_stale`, `refresh_token_reused` (the session is ended), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: a body without `Content-Type: application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): too many attempts from this address or for this account (see the `rate_limit_*` settings).", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    OptionalJson(body): OptionalJson<RefreshBody>,
) -> Result<Response, ApiError> {
    let cookie = cookies::get(&headers, REFRESH)?;
    let in_body = body.and_then(|b| b.refresh_token);
    limit(
        &state,
        "refresh",
        "ip",
        |l| l.refresh_ip,
        &ip_key(client.ip()),
    )
    .await?;
    // Per session only for a token whose tag verifies: a session id a
    // client merely writes must not let it spend someone else's budget.
    // (The tag check is skipped when there are no limits to key.)
    if let Some(sid) = state
        .limiter
        .as_ref()
        .and(cookie.as_deref().or(in_body.as_deref()))
        .and_then(|t| state.engine.refresh_session_id(t))
    {
        limit(
            &state,
            "refresh",
            "session",
            |l| l.refresh_session,
            &format!("sid:{sid}"),
        )
        .await?;
    }
    // Every outcome, including the ones decided here, is one refresh attempt
    // for the metrics.
    let result = match (cookie, in_body) {
        (Some(_), Some(_)) => Err(sesame_core::Error::TransportMismatch),
        (Some(c), None) => state.engine.refresh(&c, Channel::Cookie, &client.0).await,
        (None, Some(b)) => state.engine.refresh(&b, Channel::Body, &client.0).await,
        (None, None) => Err(sesame_core::Error::RefreshTokenInvalid),
    };
    crate::telemetry::refresh(&result);
    Ok(token_response(&state, StatusCode::OK, &result?))
}

/// Ends this session and expires Sesame's cookies.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    params(RefreshCookie),
    security((), ("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Signed out; cookies expired.",
            headers(("Set-Cookie" = String, description = "Expires `__Host-sesame_rt` and the access cookie."))),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (no usable access token and no refresh cookie) or `refresh_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
) -> Result<Response, ApiError> {
    let ip = client.0.ip.as_deref();
    // The access token if one is presented (and valid); else the refresh cookie.
    match access_token(&headers, &state.cookies)? {
        Some(t) => match state.engine.authenticate(&t).await {
            Ok(claims) => {
                state
                    .engine
                    .logout(claims.session_id(), RevokeReason::Logout, ip)
                    .await?
            }
            Err(sesame_core::Error::SessionRevoked(_)) => {}
            Err(e) => match cookies::get(&headers, REFRESH)? {
                Some(rt) => state.engine.logout_with_refresh(&rt, ip).await?,
                None => return Err(e.into()),
            },
        },
        None => match cookies::get(&headers, REFRESH)? {
            Some(rt) => state.engine.logout_with_refresh(&rt, ip).await?,
            None => return Err(ApiError::invalid_token()),
        },
    }
    Ok(ended(&state))
}

/// 204 that expires Sesame's cookies.
pub(crate) fn ended(state: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    state.cookies.expire_all(res.headers_mut());
    res
}

/// Ends every session of the user, this one included.
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = "auth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Every session ended; cookies expired."),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (with `WWW-Authenticate`; deliberately not saying why), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"` on `invalid_token`."))),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout_all(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
) -> Result<Response, ApiError> {
    state
        .engine
        .revoke_user_sessions(
            claims.user_id(),
            None,
            RevokeReason::Logout,
            client.0.ip.as_deref(),
        )
        .await?;
    Ok(ended(&state))
}

/// Ends every session of the user except this one.
#[utoipa::path(
    post,
    path = "/auth/logout-others",
    tag = "auth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "The other sessions ended."),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (with `WWW-Authenticate`; deliberately not saying why), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"` on `invalid_token`."))),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout_others(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .revoke_user_sessions(
            claims.user_id(),
            Some(claims.session_id()),
            RevokeReason::RevokedByUser,
            client.0.ip.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user, the current session and the verified access-token claims.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The caller.", body = MeResponse),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (with `WWW-Authenticate`; deliberately not saying why), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"` on `invalid_token`."))),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user, session) = state.engine.me(&claims).await?;
    let now = state.engine.now();
    Ok(Json(json!({
        "user": user_json(&user),
        "session": session_json(&session, Some(claims.session_id()), now),
        "claims": claims.claims(),
    })))
}

/// Live sessions, plus sessions ended within `revoked_session_visibility`.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "auth",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The user's sessions.", body = SessionList),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (with `WWW-Authenticate`; deliberately not saying why), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"` on `invalid_token`."))),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn sessions(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = state.engine.list_sessions(claims.user_id()).await?;
    let now = state.engine.now();
    let current = Some(claims.session_id());
    let sessions: Vec<_> = list.iter().map(|s| session_json(s, current, now)).collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// Ends one of the caller's own sessions.
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The session id (22 base64url characters).")),
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Ended (cookies are expired too when it is the current session)."),
        (status = 400, description = "`duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_token` (with `WWW-Authenticate`; deliberately not saying why), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"` on `invalid_token`."))),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such session, or someone else's.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let target = SessionId::parse(&id).ok_or_else(ApiError::not_found)?;
    state
        .engine
        .revoke_own(&claims, target, client.0.ip.as_deref())
        .await?;
    if target == claims.session_id() {
        return Ok(ended(&state));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Changes the password and ends every other session.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    request_body = PasswordChange,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Changed; the other sessions ended."),
        (status = 400, description = "`invalid_request` (with `errors[]`) or `duplicate_cookie`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_credentials` (wrong current password), `invalid_token` (with `WWW-Authenticate`), `session_revoked` (with `reason`) or `session_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`overloaded` or `storage_unavailable` (with `Retry-After`).", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    client: Client,
    JsonBody(b): JsonBody<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .change_password(
            &claims,
            b.current_password,
            b.new_password,
            client.0.ip.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "keys",
    responses(
        (status = 200, description = "The JWK set: the active key, the next one and retired keys whose tokens may still be live.", body = Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=300, must-revalidate`"))),
    )
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = Json(state.engine.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300, must-revalidate"),
    );
    res
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = HealthStatus))
)]
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the stores are reachable and their clocks within 5 s of ours
/// (the account store, and the session store too when it is a separate one,
/// such as Redis).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready: `reason` is `clock_skew` (with `skew_seconds`) or `storage_unavailable`.", body = Readiness),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let instance = state.engine.now();
    let accounts = state.engine.accounts();
    let sessions = state.engine.sessions();
    let separate = !std::ptr::addr_eq(
        std::sync::Arc::as_ptr(accounts),
        std::sync::Arc::as_ptr(sessions),
    );
    let (account_time, session_time) = tokio::join!(accounts.ping(), async {
        if separate {
            Some(sessions.now().await)
        } else {
            None
        }
    });
    let mut skew: i64 = 0;
    for (store, time) in [("accounts", Some(account_time)), ("sessions", session_time)] {
        match time {
            Some(Ok(t)) if (t - instance).abs() > skew.abs() => skew = t - instance,
            None | Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(store, error = %e, "readiness: store unreachable");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "status": "not_ready", "reason": "storage_unavailable" })),
                )
                    .into_response();
            }
        }
    }
    if skew.abs() <= 5 {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": "clock_skew", "skew_seconds": skew })),
        )
            .into_response()
    }
}
