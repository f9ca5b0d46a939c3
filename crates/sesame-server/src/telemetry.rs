//! Prometheus metrics (§8): the process-wide recorder, the `/metrics`
//! router served on its own listener (`metrics_bind`), and one function per
//! event so every metric name and label value is spelled in this file only.
//!
//! Key decisions:
//! - The `metrics` facade has exactly one global recorder per process, and
//!   tests start many servers in one process, so the Prometheus recorder is
//!   installed once ([`install`]) and shared; each server only spawns the
//!   upkeep task that `install_recorder()` requires (without it histogram
//!   buckets grow without bound).
//! - Labels come from closed sets only: the route *template* from axum's
//!   `MatchedPath` (never the raw path, which would carry session ids and
//!   let any client mint new series), a known method or `other`, the status
//!   code, and fixed result words. Never a user, email, token or IP.
//! - The engine stays free of any metrics dependency: handlers record what
//!   the engine's answer says (`Grant::grace`, the reuse class carried by
//!   `Error::RefreshTokenReused`).

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sesame_core::Error;
use sesame_core::engine::Grant;
use sesame_core::session::RevokeReason;
use std::sync::OnceLock;
use std::time::Duration;

const HTTP_REQUESTS: &str = "sesame_http_requests_total";
const HTTP_DURATION: &str = "sesame_http_request_duration_seconds";
const LOGINS: &str = "sesame_logins_total";
const REFRESHES: &str = "sesame_refreshes_total";
const GRACE_ANSWERS: &str = "sesame_grace_answers_total";
const REFRESH_REUSE: &str = "sesame_refresh_reuse_total";
const OVERLOADED: &str = "sesame_overloaded_total";
const RATE_LIMITED: &str = "sesame_rate_limited_total";
const LIVE_SESSIONS: &str = "sesame_live_sessions";
const REVOCATION_SYNC_AGE: &str = "sesame_revocation_sync_age_seconds";
const MAIL_SENT: &str = "sesame_mail_sent_total";
const MAIL_FAILED: &str = "sesame_mail_failed_total";
const MAIL_DROPPED: &str = "sesame_mail_dropped_total";
const MAIL_QUEUE_DEPTH: &str = "sesame_mail_queue_depth";

/// Latency buckets in seconds: a refresh is a few milliseconds, a login
/// with Argon2id about 50 ms per hash on one core, the request timeout 10 s
/// by default.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram buckets are drained (see the module doc).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

const REFRESH_RESULTS: &[&str] = &[
    "rotated", "grace", "stale", "reused", "invalid", "revoked", "expired", "mismatch",
];

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder on first call and returns
/// a handle to it on every call. Fails when another global recorder was
/// installed first (e.g. by a program embedding this crate); that failure
/// is remembered, since the global slot cannot be retried.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the Prometheus recorder: {e}"))
}

/// HELP lines, and zeroed series for the fixed label sets so that
/// `rate()` and alerts see 0 rather than "no data" before the first event.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (until the response head), by route template and method."
    );
    describe_counter!(
        LOGINS,
        "Password logins, by result (ok or failed; server-side failures are not counted)."
    );
    describe_counter!(REFRESHES, "Refresh-token presentations, by outcome.");
    describe_counter!(
        GRACE_ANSWERS,
        "Refreshes answered from the grace window (a parent token retried)."
    );
    describe_counter!(
        REFRESH_REUSE,
        "Refresh-token reuse detections (each revokes its session), by class."
    );
    describe_counter!(
        OVERLOADED,
        "Password hashes refused because the hashing pool and its queue were full."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused with 429 rate_limited, by route and limit (ip, account, session, delay)."
    );
    describe_gauge!(
        LIVE_SESSIONS,
        "Sessions live now (not revoked, not expired), counted in the store every 30 s."
    );
    describe_gauge!(
        REVOCATION_SYNC_AGE,
        Unit::Seconds,
        "Seconds since this instance last read the revocation list from the store."
    );
    for result in ["ok", "failed"] {
        counter!(LOGINS, "result" => result).absolute(0);
    }
    for result in REFRESH_RESULTS {
        counter!(REFRESHES, "result" => *result).absolute(0);
    }
    for class in ["likely_slow_client", "likely_theft"] {
        counter!(REFRESH_REUSE, "class" => class).absolute(0);
    }
    counter!(GRACE_ANSWERS).absolute(0);
    counter!(OVERLOADED).absolute(0);
    describe_mail();
}

/// The router of the metrics listener: `GET /metrics` and nothing else.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { exposition(&handle) }
            }),
        )
        .fallback(|| async { crate::problem::ApiError::not_found() })
}

/// Prometheus text exposition of every metric.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Served **only on the separate metrics listener** (`metrics_bind`, \
        127.0.0.1:9090 by default, `none` disables it), never on the API listener. \
        Labels never carry users, emails, tokens or raw paths.",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
            body = String, content_type = "text/plain; version=0.0.4")
    )
)]
pub(crate) fn exposition(handle: &PrometheusHandle) -> Response {
    let mut res = (StatusCode::OK, handle.render()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Drains histogram buckets; the server calls this every [`UPKEEP_EVERY`].
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}

/// The `method` label: request methods are client-chosen strings, so
/// anything outside the standard set collapses into `other`.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One answered HTTP request. `route` is the matched route template, or
/// `None` when no route matched (404 fallback).
pub fn http_request(
    route: Option<String>,
    method: &'static str,
    status: StatusCode,
    took: Duration,
) {
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    counter!(
        HTTP_REQUESTS,
        "route" => route.clone(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(took.as_secs_f64());
}

/// A password login answered by the engine. Server-side failures
/// (overloaded, store down, internal) are not a login result: they show in
/// `sesame_http_requests_total` as 5xx and in `sesame_overloaded_total`.
pub fn login(result: &Result<Grant, Error>) {
    let label = match result {
        Ok(_) => "ok",
        Err(Error::MfaRequired { .. }) => "mfa_required",
        Err(Error::Overloaded | Error::StorageUnavailable(_) | Error::Internal(_)) => return,
        Err(_) => "failed",
    };
    counter!(LOGINS, "result" => label).increment(1);
}

/// A refresh attempt, by what it came to. Server-side failures are left
/// out for the same reason as in [`login`].
pub fn refresh(result: &Result<Grant, Error>) {
    let label = match result {
        Ok(g) if g.grace => {
            counter!(GRACE_ANSWERS).increment(1);
            "grace"
        }
        Ok(_) => "rotated",
        Err(Error::RefreshTokenStale) => "stale",
        Err(Error::RefreshTokenReused(class)) => {
            counter!(REFRESH_REUSE, "class" => class.as_str()).increment(1);
            "reused"
        }
        Err(Error::RefreshTokenInvalid) => "invalid",
        Err(Error::SessionExpired | Error::SessionRevoked(RevokeReason::Expired)) => "expired",
        Err(Error::SessionRevoked(_)) => "revoked",
        Err(Error::TransportMismatch) => "mismatch",
        Err(_) => return,
    };
    counter!(REFRESHES, "result" => label).increment(1);
}

/// The hashing pool refused a job (answered 503 `overloaded`).
pub fn overloaded() {
    counter!(OVERLOADED).increment(1);
}

/// A request refused by a rate limit.
pub fn rate_limited(route: &'static str, limit: &'static str) {
    counter!(RATE_LIMITED, "route" => route, "limit" => limit).increment(1);
}

/// Sessions live now, as last counted.
pub fn live_sessions(n: u64) {
    gauge!(LIVE_SESSIONS).set(n as f64);
}

/// Time since the last successful revocation sync of this instance.
pub fn revocation_sync_age(age: Duration) {
    gauge!(REVOCATION_SYNC_AGE).set(age.as_secs_f64());
}

// ---------------------------------------------------------------------------
// Mail

fn describe_mail() {
    describe_counter!(
        MAIL_SENT,
        "Mails delivered to the mail server (or, in development without SMTP, logged), by kind."
    );
    describe_counter!(
        MAIL_FAILED,
        "Mails given up on (refused by the mail server, or every attempt failed), by kind."
    );
    describe_counter!(
        MAIL_DROPPED,
        "Mails refused because the mail queue (mail_queue_size) was full."
    );
    describe_gauge!(
        MAIL_QUEUE_DEPTH,
        "Mails accepted and not yet delivered or given up (queued, sending, or waiting to retry)."
    );
    for kind in crate::mail::MailKind::ALL {
        counter!(MAIL_SENT, "kind" => kind.as_str()).absolute(0);
        counter!(MAIL_FAILED, "kind" => kind.as_str()).absolute(0);
    }
    counter!(MAIL_DROPPED).absolute(0);
}

/// A mail delivered (or logged, in development without SMTP).
pub fn mail_sent(kind: &'static str) {
    counter!(MAIL_SENT, "kind" => kind).increment(1);
}

/// A mail given up on.
pub fn mail_failed(kind: &'static str) {
    counter!(MAIL_FAILED, "kind" => kind).increment(1);
}

/// A mail refused because the queue was full.
pub fn mail_dropped() {
    counter!(MAIL_DROPPED).increment(1);
}

/// Mails accepted and not finished.
pub fn mail_queue_depth(n: usize) {
    gauge!(MAIL_QUEUE_DEPTH).set(n as f64);
}
