//! The HTTP API: router, middleware (CSRF, no-store, cookie expiry), the
//! extractors that turn requests into engine calls, and the handlers.

pub mod client_ip;
pub mod cookies;
pub mod extract;
pub mod routes;
