//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API, generated
//! at compile time by utoipa from the `#[utoipa::path]` attributes on the
//! handlers (routes.rs) and the schema types below.
//!
//! The handlers build their JSON with `json!` (the wire shape is theirs and
//! must not change), so the response types here describe that shape rather
//! than produce it. `tests/openapi.rs` compares them against real answers, so
//! a field added to a handler without its schema fails a test. Only `Problem`
//! is shared by every route: the `code` member is the stable contract.

use super::routes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The whole document. Paths are listed by hand: utoipa cannot see axum's
/// router, so `tests/openapi.rs` checks this list against every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sesame",
        description = "JWT session authentication. Errors are RFC 9457 `application/problem+json` \
            with a stable `code` (see the `Problem` schema). Every unsafe request under `/auth/` \
            needs an allowed `Origin` (or `Referer`), else 403 `csrf_rejected`. Unknown paths \
            answer 404 `not_found` and wrong methods 405 `method_not_allowed`, both as problems.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        routes::register,
        routes::login,
        routes::refresh,
        routes::logout,
        routes::logout_all,
        routes::logout_others,
        routes::me,
        routes::sessions,
        routes::revoke_session,
        routes::change_password,
        super::account::login_mfa,
        super::account::verify,
        super::account::resend_verification,
        super::account::forgot_password,
        super::account::reset_password,
        super::account::reauthenticate,
        super::account::change_email,
        super::account::begin_totp,
        super::account::confirm_totp,
        super::account::remove_totp,
        super::account::delete_account,
        super::admin::exchange,
        super::feed::revocations,
        super::admin::create_session,
        super::admin::user_sessions,
        super::admin::revoke_user_sessions,
        super::admin::revoke_session,
        super::admin::set_claims,
        super::admin::disable_user,
        super::admin::enable_user,
        super::admin::delete_user,
        super::admin::rotate_keys,
        super::admin::audit,
        routes::jwks,
        routes::healthz,
        routes::readyz,
        openapi_json,
        crate::telemetry::exposition,
    ),
    components(schemas(Problem, FieldError, TokenResponse, User, Session, Jwks, Jwk)),
    modifiers(&SecuritySchemes, &MetricsListener, &OptionalRefreshBody),
    tags(
        (name = "auth", description = "Accounts, sign-in, token refresh and sessions."),
        (name = "account", description = "Email verification, password reset, re-authentication, email change, the TOTP second factor and account delete."),
        (name = "keys", description = "Public keys for verifying access tokens."),
        (name = "resource servers", description = "The revocation feed (a service API key)."),
        (name = "admin", description = "Sessions for externally authenticated users, users and keys (an admin API key)."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct ApiDoc;

/// The serialized document, built once: it only changes with the binary.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = serde_json::Value,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    )
)]
pub(crate) async fn openapi_json() -> Response {
    match &*DOCUMENT {
        Ok(doc) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            doc.clone(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serializing the OpenAPI document failed");
            crate::problem::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            )
            .into_response()
        }
    }
}

/// `bearer`: the access token in `Authorization`; `access_cookie`: the same
/// token in the cookie-transport access cookie (ignored when an
/// `Authorization` header is present).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The access token from a token response (`Authorization: Bearer …`).",
                    ))
                    .build(),
            ),
        );
        for (name, what) in [
            ("admin_api_key", "An admin API key (`admin_api_keys`)."),
            ("service_api_key", "A service API key (`service_api_keys`)."),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(format!(
                            "{what} `sesame api-key new` makes one; configure its hash."
                        )))
                        .build(),
                ),
            );
        }
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-sesame_at",
                "Cookie transport: the access token as a cookie (`__Secure-sesame_at` when \
                 `cookie_domain` is set); ignored when `Authorization` is present.",
            ))),
        );
    }
}

/// `/metrics` is answered by a second listener, so its path item names that
/// listener as its server instead of the API's.
struct MetricsListener;

impl Modify for MetricsListener {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(item) = doc.paths.paths.get_mut("/metrics") {
            item.servers = Some(vec![
                ServerBuilder::new()
                    .url("http://127.0.0.1:9090")
                    .description(Some(
                        "The metrics listener (`metrics_bind`; loopback by default, `none` disables it).",
                    ))
                    .build(),
            ]);
        }
    }
}

/// The refresh body is optional (cookie sessions send none), but utoipa
/// can only say so with an `Option` type, which would also document a JSON
/// `null` body as valid. It is not: say "optional" here instead.
struct OptionalRefreshBody;

impl Modify for OptionalRefreshBody {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // Also the admin key rotation, whose options body may be left out.
        for path in ["/auth/refresh", "/admin/keys/rotate"] {
            let body = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|op| op.request_body.as_mut());
            if let Some(RefOr::T(body)) = body {
                body.required = Some(Required::False);
            }
        }
    }
}

/// `Sesame-Transport` on register and login. (Parameter structs rather
/// than `params((…))` tuples, because a tuple parameter can only be made
/// optional with `Option`, which would also document it as nullable.)
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes a header for the OpenAPI document")]
pub(crate) struct TransportHeader {
    /// How tokens travel for the new session: `hybrid` (when absent),
    /// `cookie` or `bearer`, within `allowed_transports`; else 400
    /// `invalid_request`.
    #[param(rename = "Sesame-Transport", required = false)]
    transport: TransportName,
}

/// The refresh cookie as read by register and login.
#[derive(IntoParams)]
#[into_params(parameter_in = Cookie)]
#[allow(dead_code, reason = "describes a cookie for the OpenAPI document")]
pub(crate) struct ReplacedSessionCookie {
    /// A refresh cookie this browser already holds: its session is replaced
    /// by the new one. Sent twice: 400 `duplicate_cookie`.
    #[param(rename = "__Host-sesame_rt", required = false)]
    refresh: String,
}

/// The refresh cookie as read by refresh and logout.
#[derive(IntoParams)]
#[into_params(parameter_in = Cookie)]
#[allow(dead_code, reason = "describes a cookie for the OpenAPI document")]
pub(crate) struct RefreshCookie {
    /// The refresh token of a hybrid or cookie session (`HttpOnly; Secure;
    /// SameSite=Strict`). Refresh: together with a body token it is 400
    /// `transport_mismatch`. Logout: used when no valid access token is
    /// presented. Sent twice: 400 `duplicate_cookie`.
    #[param(rename = "__Host-sesame_rt", required = false)]
    refresh: String,
}

/// An RFC 9457 problem. `type` and `code` are stable; `title` and `detail`
/// are for humans.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes problem.rs's JSON for the OpenAPI document"
)]
pub(crate) struct Problem {
    /// `https://sesame.dev/problems/{code}`.
    #[serde(rename = "type")]
    #[schema(
        format = "uri",
        example = "https://sesame.dev/problems/invalid_credentials"
    )]
    kind: String,
    /// A short human summary.
    #[schema(example = "Invalid email or password")]
    title: String,
    /// The HTTP status, repeated.
    #[schema(example = 401)]
    status: u16,
    /// The stable machine-readable code: `invalid_request`,
    /// `transport_mismatch`, `duplicate_cookie`, `invalid_credentials`,
    /// `invalid_token`, `session_revoked`, `session_expired`,
    /// `refresh_token_invalid`, `refresh_token_stale`, `refresh_token_reused`,
    /// `csrf_rejected`, `email_not_verified`, `account_disabled`, `not_found`,
    /// `method_not_allowed`, `email_taken`, `session_limit_reached`,
    /// `payload_too_large`, `unsupported_media_type`, `storage_unavailable`,
    /// `overloaded`, `internal_error`, `rate_limited`, `handoff_code_invalid`,
    /// `mfa_required`, `invalid_mfa_code`, `mfa_challenge_invalid`,
    /// `reauthentication_required`, `link_invalid`, `mfa_already_enabled`,
    /// `mfa_not_pending`.
    #[schema(example = "invalid_credentials")]
    code: String,
    /// More human detail, when there is any.
    #[serde(default)]
    detail: String,
    /// `invalid_request` only: what is wrong with which field.
    #[serde(default)]
    errors: Vec<FieldError>,
    /// `session_revoked` only: why the session ended.
    #[serde(default)]
    reason: RevokeReasonName,
    /// `mfa_required` only: the one-time challenge for `POST /auth/login/mfa`.
    #[serde(default)]
    challenge: String,
    /// `mfa_required` only: the accepted methods (`totp`, `recovery_code`).
    #[serde(default)]
    methods: Vec<String>,
}

/// One invalid field of an `invalid_request` problem.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes problem.rs's JSON for the OpenAPI document"
)]
pub(crate) struct FieldError {
    /// The JSON member (or `body`, or a header name).
    #[schema(example = "email")]
    field: String,
    /// What is wrong with it.
    message: String,
}

/// A token answer (`Cache-Control: no-store`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct TokenResponse {
    /// The access token: a signed JWT (RFC 9068 shape).
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: String,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// The session's id.
    session_id: String,
    /// The signed-in user.
    user: User,
    /// Bearer transport only: the refresh token (`srt_…`); hybrid and cookie
    /// transports get it as the `__Host-sesame_rt` cookie instead.
    #[serde(default)]
    refresh_token: String,
    /// Bearer transport only: seconds until the refresh token stops working
    /// at the latest.
    #[serde(default)]
    refresh_expires_in: i64,
}

/// A user.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct User {
    /// The user id (UUID v7).
    #[schema(format = "uuid")]
    id: String,
    /// The normalised email address.
    #[schema(format = Email)]
    email: String,
    /// Whether the address was proven.
    email_verified: bool,
    /// Whether a confirmed TOTP factor guards sign-in.
    mfa_enabled: bool,
    /// Unix seconds.
    created_at: i64,
}

/// A session, live or recently ended.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct Session {
    /// The session id (22 base64url characters).
    id: String,
    /// Whether this is the session of the calling access token.
    current: bool,
    /// A short label derived from the user agent ("Firefox on Linux").
    device: String,
    /// The user agent at login.
    user_agent: Option<String>,
    /// The client IP at the last login or refresh.
    ip: Option<String>,
    /// How its tokens travel.
    transport: TransportName,
    /// Unix seconds.
    created_at: i64,
    /// Unix seconds of the last refresh (or creation).
    last_seen_at: i64,
    /// Unix seconds: the earlier of the idle and absolute expiry.
    expires_at: i64,
    /// Assurance level of the last credential proof.
    aal: AalName,
    /// Unix seconds, when it was revoked.
    revoked_at: Option<i64>,
    /// Why it ended (`expired` also for a session that simply ran out).
    revoke_reason: Option<RevokeReasonName>,
    /// Whether it can still be used.
    active: bool,
}

/// `GET /auth/me`.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct MeResponse {
    /// The user.
    user: User,
    /// The current session.
    session: Session,
    /// The verified access-token claims.
    claims: AccessClaims,
}

/// The claims of a verified access token; application claims set at
/// session creation appear as further members.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes sesame-core's claims for the OpenAPI document"
)]
pub(crate) struct AccessClaims {
    /// Issuer.
    iss: String,
    /// Audience.
    aud: String,
    /// The user id.
    sub: String,
    /// The session id.
    sid: String,
    /// Issued at (Unix seconds).
    iat: i64,
    /// Expiry (Unix seconds).
    exp: i64,
    /// Unique token id.
    jti: String,
    /// When the user last proved a credential (Unix seconds).
    auth_time: i64,
    /// Assurance level.
    aal: AalName,
    /// Binding confirmation, when binding is configured.
    #[serde(default)]
    cnf: serde_json::Value,
}

/// `GET /auth/sessions`.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct SessionList {
    /// Live sessions and those ended within `revoked_session_visibility`
    /// (told apart by `active`).
    sessions: Vec<Session>,
}

/// `202` from register when email verification is required.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct VerificationSent {
    /// Always `verification_sent`.
    #[schema(example = "verification_sent")]
    status: String,
    /// A human explanation.
    detail: String,
}

/// A JWK set (RFC 7517).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes sesame-core's JWKS for the OpenAPI document"
)]
pub(crate) struct Jwks {
    /// The published keys, by `kid`.
    keys: Vec<Jwk>,
}

/// One public signing key.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes sesame-core's JWKS for the OpenAPI document"
)]
pub(crate) struct Jwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    #[schema(example = "OKP")]
    kty: String,
    /// `Ed25519` or `P-256`.
    #[schema(example = "Ed25519")]
    crv: String,
    /// Public key (base64url).
    x: String,
    /// EC only: the y coordinate (base64url).
    #[serde(default)]
    y: String,
    /// Key id, as in access tokens' `kid` header.
    kid: String,
    /// `EdDSA` or `ES256`.
    #[schema(example = "EdDSA")]
    alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    usage: String,
}

/// `GET /healthz`.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct HealthStatus {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// `GET /readyz`.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes routes.rs's JSON for the OpenAPI document"
)]
pub(crate) struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    status: String,
    /// Not ready only: `clock_skew` or `storage_unavailable`.
    #[serde(default)]
    reason: String,
    /// `clock_skew` only: store time minus this instance's time.
    #[serde(default)]
    skew_seconds: i64,
}

/// A session transport (`Sesame-Transport`).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(
    dead_code,
    reason = "describes sesame-core's spelling for the OpenAPI document"
)]
pub(crate) enum TransportName {
    /// Browser SPA: access token in the body, refresh token in a cookie.
    Hybrid,
    /// Server-rendered apps: the access token also in a cookie.
    Cookie,
    /// Mobile, CLI, services: both tokens in the body.
    Bearer,
}

/// An assurance level.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(
    dead_code,
    reason = "describes sesame-core's spelling for the OpenAPI document"
)]
pub(crate) enum AalName {
    /// Password.
    Aal1,
    /// Password and a second factor.
    Aal2,
}

/// Why a session ended.
#[derive(ToSchema, Default)]
#[serde(rename_all = "snake_case")]
#[allow(
    dead_code,
    reason = "describes sesame-core's spelling for the OpenAPI document"
)]
pub(crate) enum RevokeReasonName {
    /// Signed out.
    #[default]
    Logout,
    /// Ended by the user from another session.
    RevokedByUser,
    /// Ended by an administrator.
    RevokedByAdmin,
    /// A refresh token was used twice.
    ReuseDetected,
    /// The password changed.
    PasswordChanged,
    /// Replaced by a new login in the same browser.
    Replaced,
    /// Ran out.
    Expired,
    /// Evicted by the session limit.
    Evicted,
    /// The account was disabled.
    AccountDisabled,
    /// Ended after a restore from backup.
    Restored,
}

/// A request accepted for work that happens after the answer (`202`).
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes account.rs's JSON for the OpenAPI document"
)]
pub(crate) struct Accepted {
    /// `verification_sent` or `reset_requested`.
    #[schema(example = "reset_requested")]
    status: String,
    /// A human explanation.
    detail: String,
}

/// A recorded re-authentication.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes account.rs's JSON for the OpenAPI document"
)]
pub(crate) struct Reauthenticated {
    /// Unix seconds of this check (the session's new `auth_time`).
    auth_time: i64,
    /// `aal1` or `aal2`.
    #[schema(example = "aal2")]
    aal: String,
}

/// The recovery codes of a new factor, shown once.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes account.rs's JSON for the OpenAPI document"
)]
pub(crate) struct RecoveryCodes {
    /// Ten single-use codes of 80 bits (`xxxx-xxxx-xxxx-xxxx`).
    recovery_codes: Vec<String>,
}

/// A pending TOTP factor.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes account.rs's JSON for the OpenAPI document"
)]
pub(crate) struct TotpEnrolmentResponse {
    /// The secret in base32, for typing into an app.
    secret: String,
    /// The `otpauth://totp/…` URI.
    otpauth_uri: String,
    /// A QR code of the URI: a `data:image/svg+xml;base64,…` URI.
    qr_svg: String,
}

/// A user, wrapped.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "describes account.rs's JSON for the OpenAPI document"
)]
pub(crate) struct UserResponse {
    /// The user.
    user: User,
}
