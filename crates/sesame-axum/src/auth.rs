//! [`SesameAuth`]: the shared state behind the layer, and the one function
//! that decides a request.
//!
//! The hot path is a cache hit: the token string is looked up (borrowed, no
//! allocation) in a bounded concurrent cache of verified claims, then
//! expiry, binding (only for bound tokens), the revocation set and feed
//! staleness are checked. No JSON is parsed and no lock is held across an
//! await; a miss verifies the signature and fills the cache.

use crate::builder::{OnStale, SesameAuthBuilder};
use crate::cookies;
use crate::extract::Authenticated;
use crate::feed::{self, FeedConfig, FeedState};
use crate::keys::KeySource;
use crate::problem::AuthRejection;
use axum::extract::ConnectInfo;
use http::{Request, header};
use ipnet::IpNet;
use serde::Serialize;
use sesame_core::access::Rejection;
use sesame_core::binding::{self, BindingKeys, IpPrefixes, RequestFacts};
use sesame_core::{AccessClaims, Clock, Verifier};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Verifies Sesame access tokens for a resource server. Cheap to clone (one
/// `Arc`); the background tasks (JWKS refresh, revocation feed) stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct SesameAuth {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Dropped with the last `SesameAuth`, which tells the tasks to stop.
    _stop: watch::Sender<()>,
}

impl std::fmt::Debug for SesameAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesameAuth")
            .field("issuer", &self.inner.shared.verifier.issuer())
            .field("audience", &self.inner.shared.verifier.audience())
            .finish_non_exhaustive()
    }
}

pub(crate) struct CookieConfig {
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) name: &'static str,
}

#[derive(Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the background tasks share with the request path.
pub(crate) struct Shared {
    pub(crate) verifier: Verifier,
    pub(crate) leeway: i64,
    pub(crate) keys: KeySource,
    pub(crate) cache: quick_cache::sync::Cache<Box<str>, Arc<AccessClaims>>,
    pub(crate) feed: FeedState,
    pub(crate) on_stale: OnStale,
    pub(crate) cookies: Option<CookieConfig>,
    pub(crate) binding: Option<(BindingKeys, IpPrefixes)>,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Counters,
}

/// Counters and feed health, for a stats endpoint or metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Requests whose token was found in the verified-token cache.
    pub cache_hits: u64,
    /// Requests whose token had to be verified.
    pub cache_misses: u64,
    /// Tokens in the cache now (approximate).
    pub cached_tokens: usize,
    /// Whether a revocation feed is configured.
    pub feed_enabled: bool,
    /// Whether the feed is connected and past its `ready` event.
    pub feed_connected: bool,
    /// Whether the feed is stale now.
    pub feed_stale: bool,
    /// The highest revocation seq received.
    pub last_seq: Option<i64>,
    /// Seconds since the last contact with the feed (or since start).
    pub secs_since_feed_contact: Option<f64>,
    /// Sessions in the revocation set.
    pub revoked_sessions: usize,
    /// Requests allowed while the feed was stale (`on_stale = open`).
    pub stale_open: u64,
    /// JWKS fetches made (first, background and unknown-`kid`).
    pub jwks_fetches: u64,
}

/// The layer's decision about one request.
pub(crate) enum Outcome {
    /// No token was sent.
    NoToken,
    /// A valid token.
    Authenticated(Authenticated),
    /// A refusal.
    Rejected(AuthRejection),
    /// The token names a `kid` the JWKS does not have (yet): refetch, then
    /// decide again.
    UnknownKid,
}

impl SesameAuth {
    /// Starts configuring. Issuer, audience and keys are required.
    pub fn builder() -> SesameAuthBuilder {
        SesameAuthBuilder::new()
    }

    pub(crate) fn start(
        shared: Arc<Shared>,
        feed: Option<FeedConfig>,
        client: reqwest::Client,
        first_refresh: Option<Duration>,
    ) -> Self {
        let (stop, _) = watch::channel(());
        if let Some(after) = first_refresh {
            tokio::spawn(refresh_keys(shared.clone(), after, stop.subscribe()));
        }
        if let Some(config) = feed {
            tokio::spawn(feed::run(shared.clone(), config, client, stop.subscribe()));
        }
        Self {
            inner: Arc::new(Inner {
                shared,
                _stop: stop,
            }),
        }
    }

    pub(crate) async fn wait_for_feed(&self, max: Duration) {
        let feed = &self.inner.shared.feed;
        if !feed.enabled() {
            return;
        }
        let deadline = tokio::time::Instant::now() + max;
        while !feed.connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The tower layer that verifies tokens on the routes it wraps and
    /// leaves the result to the extractors. Call
    /// [`required`](crate::SesameLayer::required) on it to have the layer
    /// itself refuse every request without a valid token.
    pub fn layer(&self) -> crate::SesameLayer {
        crate::SesameLayer::new(self.clone())
    }

    /// Counters and feed health.
    pub fn stats(&self) -> Stats {
        let s = &self.inner.shared;
        let feed = &s.feed;
        Stats {
            cache_hits: s.counters.hits.load(Ordering::Relaxed),
            cache_misses: s.counters.misses.load(Ordering::Relaxed),
            cached_tokens: s.cache.len(),
            feed_enabled: feed.enabled(),
            feed_connected: feed.connected(),
            feed_stale: feed.is_stale(),
            last_seq: feed.last_seq(),
            secs_since_feed_contact: feed.enabled().then(|| feed.secs_since_contact()),
            revoked_sessions: feed.revoked_count(),
            stale_open: feed.stale_open.load(Ordering::Relaxed),
            jwks_fetches: match &s.keys {
                KeySource::Jwks(j) => j.fetches.load(Ordering::Relaxed),
                KeySource::Given(_) => 0,
            },
        }
    }
}

/// Refreshes the JWKS in the background until told to stop.
async fn refresh_keys(shared: Arc<Shared>, mut next: Duration, mut stop: watch::Receiver<()>) {
    let KeySource::Jwks(jwks) = &shared.keys else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(next) => {}
        }
        next = jwks.refresh(&shared).await;
    }
}

/// `Bearer <token>` (scheme case-insensitive), borrowed.
fn bearer(v: &http::HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let (scheme, token) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

impl Shared {
    /// Refetches the JWKS after an unknown `kid` (rate-limited, single
    /// flight).
    pub(crate) async fn refetch_for_unknown_kid(&self) {
        if let KeySource::Jwks(jwks) = &self.keys {
            jwks.refetch_for_unknown_kid(self).await;
        }
    }

    /// Decides a request. `may_refetch` is false on the second pass after a
    /// refetch, so an unknown `kid` then is simply invalid.
    pub(crate) fn authenticate<B>(&self, req: &Request<B>, may_refetch: bool) -> Outcome {
        match self.decide(req, may_refetch) {
            Ok(Some(a)) => Outcome::Authenticated(a),
            Ok(None) => Outcome::NoToken,
            Err(Decision::Reject(r)) => Outcome::Rejected(r),
            Err(Decision::UnknownKid) => Outcome::UnknownKid,
        }
    }

    fn decide<B>(
        &self,
        req: &Request<B>,
        may_refetch: bool,
    ) -> Result<Option<Authenticated>, Decision> {
        let headers = req.headers();
        let token = match headers.get(header::AUTHORIZATION) {
            Some(v) => bearer(v).ok_or_else(|| {
                tracing::debug!("Authorization header is not a bearer token");
                Decision::invalid()
            })?,
            None => {
                let Some(c) = &self.cookies else {
                    return Ok(None);
                };
                let Some(t) = cookies::get(headers, c.name)? else {
                    return Ok(None);
                };
                if cookies::is_unsafe(req.method())
                    && !cookies::origin_allowed(headers, &c.allowed_origins)
                {
                    tracing::debug!("cookie-authenticated unsafe request from a foreign origin");
                    return Err(Decision::Reject(AuthRejection::csrf()));
                }
                t
            }
        };

        let now = self.clock.now();
        let claims = match self.cache.get(token) {
            Some(claims) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                if now >= claims.exp + self.leeway {
                    tracing::debug!(reason = %Rejection::Expired, "access token refused");
                    return Err(Decision::invalid());
                }
                claims
            }
            None => {
                // The second pass after a JWKS refetch is the same request.
                if may_refetch {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
                let keys = self.keys.current();
                match self.verifier.verify(&*keys, token, now) {
                    Ok(v) => {
                        let claims = Arc::new(v.claims().clone());
                        self.cache.insert(token.into(), claims.clone());
                        claims
                    }
                    Err(Rejection::UnknownKid)
                        if may_refetch && matches!(self.keys, KeySource::Jwks(_)) =>
                    {
                        return Err(Decision::UnknownKid);
                    }
                    Err(reason) => {
                        tracing::debug!(%reason, "access token refused");
                        return Err(Decision::invalid());
                    }
                }
            }
        };

        if let Some(cnf) = &claims.cnf {
            let fp_cookie = if cnf.get("fph").is_some() {
                cookies::get(headers, binding::FP_COOKIE)?
            } else {
                None
            };
            let ip = if cnf.get("ipua").is_some() {
                req.extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(peer)| {
                        crate::client_ip::resolve(peer.ip(), headers, &self.trusted_proxies)
                    })
            } else {
                None
            };
            let facts = RequestFacts {
                fp_cookie,
                ip,
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            };
            let (keys, prefixes) = match &self.binding {
                Some((k, p)) => (Some(k), *p),
                None => (None, IpPrefixes::default()),
            };
            if let Err(reason) = binding::check(Some(cnf), &facts, keys, prefixes) {
                tracing::debug!(%reason, "access token binding refused");
                return Err(Decision::invalid());
            }
        }

        if let Some(reason) = self.feed.lookup(&claims.sid) {
            tracing::debug!(sid = %claims.sid, "access token of a revoked session");
            return Err(Decision::Reject(AuthRejection::session_revoked(reason)));
        }
        if self.feed.is_stale() {
            match self.on_stale {
                OnStale::Closed => return Err(Decision::Reject(AuthRejection::feed_stale())),
                OnStale::Open => self.feed.allowed_while_stale(),
            }
        }
        Ok(Some(Authenticated {
            user_id: claims.sub,
            session_id: claims.sid,
            aal: claims.aal,
            claims,
        }))
    }
}

enum Decision {
    Reject(AuthRejection),
    UnknownKid,
}

impl Decision {
    fn invalid() -> Self {
        Self::Reject(AuthRejection::invalid_token())
    }
}

impl From<AuthRejection> for Decision {
    fn from(r: AuthRejection) -> Self {
        Self::Reject(r)
    }
}
