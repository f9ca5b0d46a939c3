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
    let peer_is_loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(addr)| addr.ip().to_canonical().is_loopback());
    if req.method() == Method::GET
        && req.uri().path() == OUTBOX_PATH
        && state.mailer.has_outbox()
        && peer_is_loopback
    {
        let mut res = Json(state.mailer.outbox()).into_response();
        // The outbox holds one-time tokens.
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    ApiError::not_found().into_response()
}
