//! The tower [`Layer`] and [`Service`]: decide each request with
//! [`SesameAuth`], then either answer the refusal (required mode, or a
//! refusal the route must not reach, such as CSRF) or pass the request on
//! with the decision in its extensions for the extractors.
//!
//! The decision is synchronous except after an unknown `kid` with a JWKS
//! source, where the request waits for the (single-flight, rate-limited)
//! refetch; only that path boxes a future.

use crate::auth::{Outcome, SesameAuth};
use crate::extract::AuthState;
use crate::problem::AuthRejection;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Verifies Sesame access tokens on the routes it wraps. Made by
/// [`SesameAuth::layer`].
#[derive(Debug, Clone)]
pub struct SesameLayer {
    auth: SesameAuth,
    required: bool,
}

impl SesameLayer {
    pub(crate) fn new(auth: SesameAuth) -> Self {
        Self {
            auth,
            required: false,
        }
    }

    /// Refuse every request without a valid token in the layer itself (401
    /// `invalid_token` when none was sent), so the wrapped routes need no
    /// extractor to be protected.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl<S> Layer<S> for SesameLayer {
    type Service = SesameService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SesameService {
            inner,
            auth: self.auth.clone(),
            required: self.required,
        }
    }
}

/// The service made by [`SesameLayer`].
#[derive(Debug, Clone)]
pub struct SesameService<S> {
    inner: S,
    auth: SesameAuth,
    required: bool,
}

/// Applies a decision: `Some(refusal)` to answer now, or `None` after
/// putting the decision into the request.
fn apply<B>(outcome: Outcome, required: bool, req: &mut Request<B>) -> Option<AuthRejection> {
    let state = match outcome {
        Outcome::Authenticated(a) => AuthState::Authenticated(a),
        Outcome::NoToken if required => return Some(AuthRejection::invalid_token()),
        Outcome::NoToken => AuthState::NoToken,
        // The second pass never yields UnknownKid; treat it as invalid anyway.
        Outcome::UnknownKid => return Some(AuthRejection::invalid_token()),
        Outcome::Rejected(r) if required || always_answered(&r) => return Some(r),
        Outcome::Rejected(r) => AuthState::Rejected(r),
    };
    req.extensions_mut().insert(state);
    None
}

/// Refusals answered even in optional mode: a duplicate Sesame cookie is
/// an attack on every route; the rest are left to the extractors, so a
/// public route that ignores authentication still works.
fn always_answered(r: &AuthRejection) -> bool {
    r.code() == "duplicate_cookie"
}

impl<S, B> Service<Request<B>> for SesameService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = self.auth.shared();
        match shared.authenticate(&req, true) {
            Outcome::UnknownKid => {
                let shared = shared.clone();
                let required = self.required;
                // Take the service that was polled ready; leave a clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::slow(Box::pin(async move {
                    shared.refetch_for_unknown_kid().await;
                    let outcome = shared.authenticate(&req, false);
                    match apply(outcome, required, &mut req) {
                        Some(r) => Ok(r.into_response()),
                        None => inner.call(req).await,
                    }
                }))
            }
            outcome => match apply(outcome, self.required, &mut req) {
                Some(r) => ResponseFuture::refused(r.into_response()),
                None => ResponseFuture::inner(self.inner.call(req)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SesameService`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = Proj]
    enum Kind<F, E> {
        // The wrapped service is answering.
        Inner { #[pin] fut: F },
        // The layer refused the request.
        Refused { res: Option<Response> },
        // Waiting for a JWKS refetch, then deciding again.
        Slow { fut: BoxFuture<'static, Result<Response, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn inner(fut: F) -> Self {
        Self {
            kind: Kind::Inner { fut },
        }
    }

    fn refused(res: Response) -> Self {
        Self {
            kind: Kind::Refused { res: Some(res) },
        }
    }

    fn slow(fut: BoxFuture<'static, Result<Response, E>>) -> Self {
        Self {
            kind: Kind::Slow { fut },
        }
    }
}

impl<F, E> std::fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Refused { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r)),
                // Polled again after completion: a caller bug; answer a 500
                // rather than panic.
                None => Poll::Ready(Ok(AuthRejection::layer_missing().into_response())),
            },
            Proj::Slow { fut } => fut.as_mut().poll(cx),
        }
    }
}
