//! The admin API (`/admin/…`, an admin API key) and the handoff exchange
//! (`POST /auth/session/exchange`): sessions for users authenticated
//! elsewhere (DESIGN §3), and the operations `sesame user …`, `sesame
//! sessions …` and `sesame keys rotate` offer on the command line.
//!
//! `{id}` in a path is Sesame's user id (a UUID, as `POST /admin/sessions`
//! returns it for an external user).

use super::api_keys::AdminKey;
use super::extract::{AppState, Client, JsonBody, RequestedTransport};
use super::openapi::{Problem, TokenResponse, TransportHeader};
use super::routes::{login_ctx, session_json, token_response, user_json};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sesame_core::engine::HANDOFF_TTL;
use sesame_core::ids::{SessionId, UserId};
use sesame_core::session::RevokeReason;
use sesame_core::store::{AuditFilter, AuditRecord};

type Claims = serde_json::Map<String, serde_json::Value>;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| ApiError::invalid("id", "must be a user id (UUID)"))
}

/// A session to prepare for an externally authenticated user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewExternalSession {
    /// Your id for the user (1–200 characters, no control characters). A
    /// shadow user is created on first use.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    user_id: String,
    /// Application claims for the session's access tokens (≤ 1 KiB; the
    /// registered claim names are refused).
    #[serde(default)]
    #[schema(value_type = Object)]
    claims: Claims,
}

/// Prepares a session for an external user; returns a one-time handoff code.
#[utoipa::path(
    post,
    path = "/admin/sessions",
    tag = "admin",
    request_body = NewExternalSession,
    security(("admin_api_key" = [])),
    responses(
        (status = 201, description = "`{user, handoff_code, expires_in}`: give the code to the browser, which redeems it at `POST /auth/session/exchange` within `expires_in` seconds.", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`account_disabled`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_session(
    _key: AdminKey,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewExternalSession>,
) -> Result<Response, ApiError> {
    let (user, code) = state
        .engine
        .create_handoff(&body.user_id, body.claims)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user": user_json(&user),
            "handoff_code": code,
            "expires_in": HANDOFF_TTL,
        })),
    )
        .into_response())
}

/// A handoff code from the admin API.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Exchange {
    /// The `handoff_code` (`shc_…`).
    handoff_code: String,
}

/// Redeems a handoff code: opens the prepared session for this browser.
#[utoipa::path(
    post,
    path = "/auth/session/exchange",
    tag = "auth",
    params(TransportHeader),
    request_body = Exchange,
    responses(
        (status = 200, description = "Signed in.", body = TokenResponse),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`handoff_code_invalid`: unknown, used or expired.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_rejected` or `account_disabled`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Client,
    transport: RequestedTransport,
    JsonBody(body): JsonBody<Exchange>,
) -> Result<Response, ApiError> {
    let ctx = login_ctx(&state, &headers, client, transport)?;
    let grant = state
        .engine
        .exchange_handoff(&body.handoff_code, &ctx)
        .await?;
    Ok(token_response(&state, StatusCode::OK, &grant))
}

/// A user's live and recently ended sessions.
#[utoipa::path(
    get,
    path = "/admin/users/{id}/sessions",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    security(("admin_api_key" = [])),
    responses(
        (status = 200, description = "`{sessions: [...]}`.", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn user_sessions(
    _key: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = user_id(&id)?;
    if state
        .engine
        .accounts()
        .user_by_id(id)
        .await
        .map_err(sesame_core::Error::from)?
        .is_none()
    {
        return Err(ApiError::not_found());
    }
    let now = state.engine.now();
    let list = state.engine.list_sessions(id).await?;
    let sessions: Vec<_> = list.iter().map(|s| session_json(s, None, now)).collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// Ends every session of a user.
#[utoipa::path(
    delete,
    path = "/admin/users/{id}/sessions",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    security(("admin_api_key" = [])),
    responses(
        (status = 200, description = "`{revoked: n}`.", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_user_sessions(
    _key: AdminKey,
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = user_id(&id)?;
    let n = state
        .engine
        .revoke_user_sessions(
            id,
            None,
            RevokeReason::RevokedByAdmin,
            client.0.ip.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "revoked": n })))
}

/// Ends one session.
#[utoipa::path(
    delete,
    path = "/admin/sessions/{sid}",
    tag = "admin",
    params(("sid" = String, Path, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", description = "The session id (22 base64url characters).")),
    security(("admin_api_key" = [])),
    responses(
        (status = 204, description = "Ended (or already ended)."),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_session(
    _key: AdminKey,
    State(state): State<AppState>,
    client: Client,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sid = SessionId::parse(&sid).ok_or_else(ApiError::not_found)?;
    if state
        .engine
        .sessions()
        .session(sid)
        .await
        .map_err(sesame_core::Error::from)?
        .is_none()
    {
        return Err(ApiError::not_found());
    }
    state
        .engine
        .logout(sid, RevokeReason::RevokedByAdmin, client.0.ip.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New claims for a user's sessions.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimsChange {
    /// The application claims (≤ 1 KiB; registered claim names refused).
    #[schema(value_type = Object)]
    claims: Claims,
    /// End every session now instead of waiting for the next refresh.
    #[serde(default)]
    revoke: bool,
}

/// Replaces the application claims of a user's live sessions.
#[utoipa::path(
    put,
    path = "/admin/users/{id}/claims",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    request_body = ClaimsChange,
    security(("admin_api_key" = [])),
    responses(
        (status = 200, description = "`{sessions: n, revoked: bool}`: the claims reach access tokens at each session's next refresh, or every session ended (`revoke`).", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_claims(
    _key: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClaimsChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = user_id(&id)?;
    let n = state
        .engine
        .set_user_claims(id, body.claims, body.revoke)
        .await?;
    Ok(Json(json!({ "sessions": n, "revoked": body.revoke })))
}

async fn set_disabled(state: &AppState, id: &str, disabled: bool) -> Result<StatusCode, ApiError> {
    state
        .engine
        .set_user_disabled(user_id(id)?, disabled)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a user; every session ends.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/disable",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    security(("admin_api_key" = [])),
    responses(
        (status = 204, description = "Disabled."),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable_user(
    _key: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, &id, true).await
}

/// Enables a disabled user.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/enable",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    security(("admin_api_key" = [])),
    responses(
        (status = 204, description = "Enabled."),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable_user(
    _key: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(&state, &id, false).await
}

/// Deletes a user; every session ends (reason `account_deleted`).
#[utoipa::path(
    delete,
    path = "/admin/users/{id}",
    tag = "admin",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Sesame's user id.")),
    security(("admin_api_key" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_user(
    _key: AdminKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_user(user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Key rotation options.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rotate {
    /// Compromise response: unpublish the old key at once (its tokens die).
    #[serde(default)]
    revoke_old: bool,
}

/// Rotates the signing keys (as `sesame keys rotate`).
#[utoipa::path(
    post,
    path = "/admin/keys/rotate",
    tag = "admin",
    request_body(content = Rotate, description = "Optional."),
    security(("admin_api_key" = [])),
    responses(
        (status = 200, description = "`{keys: [{kid, alg, state}]}` after the rotation.", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: send `application/json`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rotate_keys(
    _key: AdminKey,
    State(state): State<AppState>,
    super::extract::OptionalJson(body): super::extract::OptionalJson<Rotate>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let revoke_old = body.unwrap_or_default().revoke_old;
    state.engine.rotate_keys(revoke_old).await.map_err(|e| {
        tracing::error!(error = %e, "key rotation failed");
        ApiError::storage_unavailable()
    })?;
    let ring = state.engine.key_ring();
    let mut keys: Vec<_> = ring
        .keys()
        .map(|k| json!({ "kid": k.kid(), "alg": k.alg().as_str(), "state": k.state().as_str() }))
        .collect();
    keys.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
    Ok(Json(json!({ "keys": keys })))
}

/// Parses the audit filter of `GET /admin/audit` (and `sesame audit`):
/// `user`, `session`, `event`, `since`, `until` (Unix seconds), `before`
/// (an id: the next page), `limit` (1–1000, default 100).
pub fn audit_filter(query: &str) -> Result<AuditFilter, ApiError> {
    let mut f = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| ApiError::invalid(k, what.to_string());
        let int = |v: &str| v.parse::<i64>().map_err(|_| bad("must be an integer"));
        match k {
            "user" => f.user = Some(UserId::parse(v).ok_or_else(|| bad("must be a user id"))?),
            "session" => {
                f.session = Some(SessionId::parse(v).ok_or_else(|| bad("must be a session id"))?);
            }
            "event" => {
                if v.is_empty()
                    || v.len() > 64
                    || !v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                {
                    return Err(bad("must be an event name like login_failed"));
                }
                f.kind = Some(v.to_owned());
            }
            "since" => f.since = Some(int(v)?),
            "until" => f.until = Some(int(v)?),
            "before" => f.before_id = Some(int(v)?),
            "limit" => {
                f.limit = u32::try_from(int(v)?)
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("must be between 1 and 1000"))?;
            }
            _ => {
                return Err(ApiError::invalid(
                    "query",
                    format!("unknown parameter `{k}`"),
                ));
            }
        }
    }
    Ok(f)
}

/// The audit log, newest first, with filters.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    params(
        ("user" = Option<String>, Query, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Only this user's events."),
        ("session" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{21}[AQgw]$", description = "Only this session's events."),
        ("event" = Option<String>, Query, pattern = "^[a-z_]{1,64}$", description = "Only this event, e.g. `login_failed`."),
        ("since" = Option<i64>, Query, description = "At or after this Unix time."),
        ("until" = Option<i64>, Query, description = "Before this Unix time."),
        ("before" = Option<i64>, Query, description = "Rows with a smaller id (the next page)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100."),
    ),
    security(("admin_api_key" = [])),
    responses(
        (status = 200, description = "`{events: [{id, at, event, user_id, session_id, ip, detail}], next_before}`.", body = serde_json::Value),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`.", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn audit(
    _key: AdminKey,
    State(state): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = audit_filter(query.as_deref().unwrap_or(""))?;
    let rows = state.engine.read_audit(&filter).await?;
    let next = (rows.len() == filter.limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "events": rows.iter().map(audit_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// One audit row as the admin API and `sesame audit` show it.
pub fn audit_json(r: &AuditRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "at": r.at,
        "event": r.kind,
        "user_id": r.user_id,
        "session_id": r.session_id,
        "ip": r.ip,
        "detail": r.detail,
    })
}
