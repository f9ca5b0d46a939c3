//! The handlers of §4. Each one is a thin translation: extract, call the
//! engine, shape the answer (tokens in the body and/or cookies according to
//! the session's transport). Login and refresh also record their outcome as
//! metrics.

use super::cookies::{self, REFRESH};
use super::extract::{
    AppState, Authenticated, Client, JsonBody, OptionalJson, RequestedTransport, access_token,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "email_verified": u.email_verified,
        "created_at": u.created_at,
    })
}

fn session_json(s: &Session, current: Option<SessionId>, now: i64) -> serde_json::Value {
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
fn token_response(state: &AppState, status: StatusCode, grant: &Grant) -> Response {
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
        }
    }
    (status, headers, Json(body)).into_response()
}

fn login_ctx(
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

pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: RequestedTransport,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
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

pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: RequestedTransport,
    JsonBody(c): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let ctx = login_ctx(&state, &headers, client, transport)?;
    let result = state.engine.login(&c.email, c.password, &ctx).await;
    crate::telemetry::login(&result);
    Ok(token_response(&state, StatusCode::OK, &result?))
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    OptionalJson(body): OptionalJson<RefreshBody>,
) -> Result<Response, ApiError> {
    let cookie = cookies::get(&headers, REFRESH)?;
    let in_body = body.and_then(|b| b.refresh_token);
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
fn ended(state: &AppState) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    state.cookies.expire_all(res.headers_mut());
    res
}

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

pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let mut res = Json(state.engine.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300, must-revalidate"),
    );
    res
}

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let instance = state.engine.now();
    match state.engine.accounts().ping().await {
        Ok(store_now) if (store_now - instance).abs() <= 5 => Json(json!({ "status": "ready" })).into_response(),
        Ok(store_now) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": "clock_skew", "skew_seconds": store_now - instance })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready", "reason": "storage_unavailable" })))
                .into_response()
        }
    }
}
