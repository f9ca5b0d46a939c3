//! The HTTP API: router, middleware (CSRF, no-store, cookie expiry), the
//! extractors that turn requests into engine calls, the handlers, the
//! OpenAPI document generated from them, and the web UI's pages.

pub mod account;
pub mod admin;
pub mod api_keys;
pub mod client_ip;
pub mod cookies;
pub mod dev;
pub mod extract;
pub mod feed;
pub mod openapi;
pub mod routes;
pub mod ui;
