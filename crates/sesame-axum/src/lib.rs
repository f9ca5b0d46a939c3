//! Protect axum / tower services with Sesame access tokens.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use sesame_axum::{Authenticated, SesameAuth};
//!
//! let auth = SesameAuth::builder()
//!     .issuer("http://127.0.0.1:8080")
//!     .audience("sesame")
//!     .jwks_url("http://127.0.0.1:8080/.well-known/jwks.json")
//!     .build()
//!     .await?;
//! let app: Router = Router::new()
//!     .route("/me", get(|a: Authenticated| async move { a.user_id.to_string() }))
//!     .layer(auth.layer());
//! # Ok(()) }
//! ```
//!
//! The key design decision: tokens are verified **locally** (keys from a
//! JWKS URL or given directly) and the result is cached per exact token
//! string, so a request with a token seen before costs a hash lookup plus
//! the checks that can change while a token lives — expiry, binding, and
//! the revocation set fed by Sesame's revocation feed. The layer never talks
//! to a database; its dependency tree has no database driver and no password
//! hashing (`sesame-core` is used without its `engine` feature).
//!
//! - [`SesameAuth`]: configuration ([`SesameAuth::builder`]), shared state,
//!   [`stats`](SesameAuth::stats).
//! - [`SesameLayer`]: the tower layer; [`SesameLayer::required`] makes it
//!   refuse unauthenticated requests by itself.
//! - [`Authenticated`], [`MaybeAuthenticated`] (and
//!   `Option<Authenticated>`): the extractors.
//! - [`AuthRejection`]: every refusal, as the server's problem+json.
//! - [`client_ip`]: the client address behind trusted proxies.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod auth;
mod builder;
pub mod client_ip;
mod cookies;
mod error;
mod extract;
mod feed;
mod keys;
mod layer;
mod problem;
mod sse;

pub use auth::{SesameAuth, Stats};
pub use builder::{
    AccessCookie, DEFAULT_CACHE_CAPACITY, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_MAX_STALENESS,
    FEED_STARTUP_WAIT, OnStale, SesameAuthBuilder,
};
pub use error::Error;
pub use extract::{Authenticated, MaybeAuthenticated};
pub use layer::{ResponseFuture, SesameLayer, SesameService};
pub use problem::AuthRejection;
pub use sesame_core::binding::IpPrefixes;
pub use sesame_core::{Aal, AccessClaims, PublicKeys, SessionId, UserId, VerifyingKey};
