//! The router: routes of §4, the web UI of §7, and the middleware around
//! them — CSRF on every unsafe `/auth/` request, `Cache-Control: no-store`,
//! cookie expiry when a session ends, body limit, problem+json for 404/405,
//! request metrics by route template, request tracing with secrets redacted.

use crate::http::extract::{AppState, MAX_BODY};
use crate::http::{account, admin, dev, feed, openapi, routes, ui};
use crate::problem::ApiError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use std::time::{Duration, Instant};
use tower_http::set_header::SetResponseHeaderLayer;

/// Builds the whole application router.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let auth = Router::new()
        .route(
            "/auth/register",
            post(routes::register).layer(middleware::from_fn_with_state(
                state.clone(),
                shed_when_hashing_full,
            )),
        )
        .route(
            "/auth/login",
            post(routes::login).layer(middleware::from_fn_with_state(
                state.clone(),
                shed_when_hashing_full,
            )),
        )
        .route("/auth/refresh", post(routes::refresh))
        .route("/auth/logout", post(routes::logout))
        .route("/auth/logout-all", post(routes::logout_all))
        .route("/auth/logout-others", post(routes::logout_others))
        .route("/auth/me", get(routes::me))
        .route("/auth/sessions", get(routes::sessions))
        .route("/auth/sessions/{id}", delete(routes::revoke_session))
        .route("/auth/password", post(routes::change_password))
        .route("/auth/login/mfa", post(account::login_mfa))
        .route("/auth/verify", post(account::verify))
        .route("/auth/verify/resend", post(account::resend_verification))
        .route("/auth/password/forgot", post(account::forgot_password))
        .route("/auth/password/reset", post(account::reset_password))
        .route("/auth/reauthenticate", post(account::reauthenticate))
        .route("/auth/email", post(account::change_email))
        .route(
            "/auth/mfa/totp",
            post(account::begin_totp).delete(account::remove_totp),
        )
        .route("/auth/mfa/totp/confirm", post(account::confirm_totp))
        .route("/auth/account", delete(account::delete_account))
        .route("/auth/session/exchange", post(admin::exchange))
        .route("/auth/revocations", get(feed::revocations))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            end_session_cookies,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), csrf))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    // API-key routes: no cookies, so no CSRF check; answers carry handoff
    // codes and session lists, so never cached.
    let admin = Router::new()
        .route("/admin/sessions", post(admin::create_session))
        .route("/admin/sessions/{sid}", delete(admin::revoke_session))
        .route(
            "/admin/users/{id}/sessions",
            get(admin::user_sessions).delete(admin::revoke_user_sessions),
        )
        .route("/admin/users/{id}/claims", put(admin::set_claims))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/users/{id}/enable", post(admin::enable_user))
        .route("/admin/users/{id}", delete(admin::delete_user))
        .route("/admin/keys/rotate", post(admin::rotate_keys))
        .route("/admin/audit", get(admin::audit))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    // The web UI's pages and assets carry their own security headers (§7).
    let pages = ui::router(&state.http.allowed_origins);

    let mut app = Router::new()
        .merge(auth)
        .merge(admin)
        .merge(pages)
        .route("/.well-known/jwks.json", get(routes::jwks))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        // 404 for unknown paths, and the development outbox (see http::dev).
        .fallback(dev::fallback)
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            deadline(request_timeout, req, next)
        }))
        .layer(middleware::from_fn(header_limit))
        // Outside the timeout, so requests that time out are counted as 503s.
        .layer(middleware::from_fn(track_metrics))
        .layer(
            tower_http::sensitive_headers::SetSensitiveResponseHeadersLayer::new([
                header::SET_COOKIE,
            ]),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(
            tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]),
        );
    if !state.http.allowed_origins.is_empty() {
        app = app.layer(cors(&state.http.allowed_origins));
    }
    app.with_state(state)
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(list)
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::PUT])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("sesame-transport"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Largest total size of a request's headers (names and values).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// 431 for requests whose headers exceed [`MAX_HEADER_BYTES`] (hyper's own
/// limit is far larger).
async fn header_limit(req: Request, next: Next) -> Response {
    let total: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if total > MAX_HEADER_BYTES {
        return ApiError::headers_too_large().into_response();
    }
    next.run(req).await
}

/// Bounds every request. The only awaits that can hang are store calls (the
/// hashing pool is bounded and answers `overloaded`), so a request that runs
/// out of time answers 503 `storage_unavailable` as problem+json.
async fn deadline(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            ApiError::storage_unavailable()
                .detail("The request timed out")
                .into_response()
        }
    }
}

/// Routes that hash (login, register) answer 503 `overloaded` before
/// reading the body while the hashing pool is full. Why: under a login
/// flood every request the executor handles is one `/auth/me` and refresh
/// wait behind, so the refused ones must cost as little as possible (with
/// the check after the body and a user lookup, `/auth/me`'s p99 during a
/// 64-connection flood was 30–47 ms; see BENCHMARKS.md).
async fn shed_when_hashing_full(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.engine.hashing_saturated() {
        return ApiError::from(sesame_core::Error::Overloaded).into_response();
    }
    next.run(req).await
}

/// CSRF (§4): unsafe requests need an allowed `Origin`, or without one an
/// allowed `Referer` origin; `Origin: null` and neither are refused.
async fn csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let ok = match h.get(header::ORIGIN) {
        Some(o) => o
            .to_str()
            .is_ok_and(|o| o != "null" && state.http.origin_allowed(o)),
        None => h
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .is_some_and(|u| state.http.origin_allowed(&u.origin().ascii_serialization())),
    };
    if !ok {
        return ApiError::csrf().into_response();
    }
    next.run(req).await
}

/// Counts and times every request. The route label is the matched route
/// *template* (`/auth/sessions/{id}`), never the raw path: raw paths carry
/// session ids and let any client create new series at will. `Router::layer`
/// wraps each route after matching, so `MatchedPath` is present here for
/// every routed request and absent only for the 404 fallback.
async fn track_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = crate::telemetry::method_label(req.method());
    let res = next.run(req).await;
    crate::telemetry::http_request(route, method, res.status(), started.elapsed());
    res
}

/// Expires Sesame's cookies on answers that end the session.
async fn end_session_cookies(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if res
        .extensions()
        .get::<crate::http::cookies::EndSession>()
        .is_some()
    {
        state.cookies.expire_all(res.headers_mut());
    }
    res
}
