//! Extractors: [`Authenticated`] (401 without a valid token),
//! `Option<Authenticated>` and [`MaybeAuthenticated`] (`None` when no token
//! was sent, still 401 when one was sent and failed).
//!
//! They only read what the layer left in the request extensions; they never
//! verify anything themselves, so a route without the layer gets a 500 (and
//! an error log), never an unchecked pass.

use crate::problem::AuthRejection;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use sesame_core::{Aal, AccessClaims, SessionId, UserId};
use std::sync::Arc;

/// A request with a valid Sesame access token. Only the layer makes one
/// (the struct is `#[non_exhaustive]`, so other crates cannot build it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated {
    /// The user (`sub`).
    pub user_id: UserId,
    /// The session (`sid`).
    pub session_id: SessionId,
    /// The assurance level (`aal`).
    pub aal: Aal,
    /// Every claim, including the application claims (`claims.ext`).
    pub claims: Arc<AccessClaims>,
}

/// Like `Option<Authenticated>`: `None` when no token was sent; a sent but
/// invalid, revoked or refused token still answers its problem.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<Authenticated>);

/// What the layer decided, left in the request extensions.
#[derive(Debug, Clone)]
pub(crate) enum AuthState {
    Authenticated(Authenticated),
    NoToken,
    Rejected(AuthRejection),
}

fn state(parts: &Parts) -> Result<Option<Authenticated>, AuthRejection> {
    match parts.extensions.get::<AuthState>() {
        Some(AuthState::Authenticated(a)) => Ok(Some(a.clone())),
        Some(AuthState::NoToken) => Ok(None),
        Some(AuthState::Rejected(r)) => Err(*r),
        None => {
            tracing::error!(
                "a Sesame extractor was used on a route without SesameAuth::layer(); refusing"
            );
            Err(AuthRejection::layer_missing())
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        state(parts)?.ok_or(AuthRejection::invalid_token())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        state(parts)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticated {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        state(parts).map(MaybeAuthenticated)
    }
}
