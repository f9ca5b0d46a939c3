//! Development-only answers, served from the router's fallback so that they
//! are not routes at all: `GET /dev/outbox` lists the mails the development
//! mailer kept (no `smtp_url`, development mode), and only to a client on
//! the loopback. Anything else — production, SMTP configured, another peer,
//! another path — gets the same problem+json 404 as any unknown path, so
//! the outbox cannot even be detected from outside.

use crate::http::extract::AppState;
use crate::problem::ApiError;
use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The path of the development outbox.
pub const OUTBOX_PATH: &str = "/dev/outbox";

/// The router's fallback: the outbox when allowed, else 404 `not_found`.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    if outbox_allowed(
        req.method(),
        req.uri().path(),
        state.mailer.has_outbox(),
        peer,
    ) {
        let mut res = Json(state.mailer.outbox()).into_response();
        // The outbox holds one-time tokens.
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    ApiError::not_found().into_response()
}

/// Whether a request may read the outbox: `GET /dev/outbox`, the outbox is
/// kept (development mode without SMTP), and the peer is on the loopback
/// (an IPv4-mapped `::ffff:127.0.0.1` counts; an unknown peer does not).
fn outbox_allowed(method: &Method, path: &str, has_outbox: bool, peer: Option<SocketAddr>) -> bool {
    *method == Method::GET
        && path == OUTBOX_PATH
        && has_outbox
        && peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_gets_the_outbox() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let get = &Method::GET;
        for p in [
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(outbox_allowed(get, OUTBOX_PATH, true, peer(p)), "{p}");
        }
        for p in [
            "192.0.2.1:5000",
            "10.0.0.1:1",
            "[2001:db8::1]:5000",
            "[::ffff:192.0.2.1]:1",
        ] {
            assert!(!outbox_allowed(get, OUTBOX_PATH, true, peer(p)), "{p}");
        }
        let local = peer("127.0.0.1:5000");
        assert!(!outbox_allowed(get, OUTBOX_PATH, true, None));
        assert!(!outbox_allowed(get, OUTBOX_PATH, false, local));
        assert!(!outbox_allowed(&Method::POST, OUTBOX_PATH, true, local));
        assert!(!outbox_allowed(get, "/dev/outbox/", true, local));
    }
}
