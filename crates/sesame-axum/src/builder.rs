//! Configuration: [`SesameAuth::builder`](crate::SesameAuth::builder). The
//! required choices (issuer, audience, and where the keys come from) have no
//! defaults; `build` refuses to start without them and names the missing
//! setting.

use crate::auth::{CookieConfig, SesameAuth, Shared};
use crate::cookies;
use crate::error::Error;
use crate::feed::{FeedConfig, FeedState};
use crate::keys::{Jwks, KeySource};
use ipnet::IpNet;
use sesame_core::binding::{BindingKeys, IpPrefixes};
use sesame_core::{Clock, PublicKeys, SystemClock, Verifier};
use std::sync::Arc;
use std::time::Duration;

/// What to do with authenticated requests while the revocation feed is stale
/// (no contact for longer than `revocation_max_staleness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStale {
    /// Allow them (default), logging at warn (rate-limited) and counting
    /// them in [`Stats::stale_open`](crate::Stats::stale_open): a revoked
    /// session may keep working until its token expires.
    #[default]
    Open,
    /// Refuse them with 503 `revocation_feed_stale`.
    Closed,
}

/// Which access-token cookie to read when cookie extraction is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessCookie {
    /// `__Host-sesame_at` (default; the server's name without `cookie_domain`).
    #[default]
    Host,
    /// `__Secure-sesame_at` (the server's name with `cookie_domain` set).
    Secure,
}

impl AccessCookie {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Host => "__Host-sesame_at",
            Self::Secure => "__Secure-sesame_at",
        }
    }
}

/// Default bound of the verified-token cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// Default `revocation_max_staleness`.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(30);
/// Default least interval between JWKS fetches caused by unknown `kid`s.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// How long `build` waits for the revocation feed's first `ready` event, so
/// a freshly started service does not answer before it knows the revoked
/// sessions. If the feed is not ready by then `build` returns anyway; the
/// feed keeps connecting in the background and staleness rules apply.
pub const FEED_STARTUP_WAIT: Duration = Duration::from_secs(2);

enum Keys {
    Jwks(String),
    Given(PublicKeys),
}

/// Builds a [`SesameAuth`]. Start with [`SesameAuth::builder`].
pub struct SesameAuthBuilder {
    issuer: Option<String>,
    audience: Option<String>,
    keys: Option<Keys>,
    feed: Option<(String, String)>,
    max_staleness: Duration,
    on_stale: OnStale,
    cookies: Option<Vec<String>>,
    access_cookie: AccessCookie,
    binding: Option<(BindingKeys, IpPrefixes)>,
    trusted_proxies: Vec<IpNet>,
    cache_capacity: usize,
    leeway: i64,
    jwks_refetch_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SesameAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesameAuthBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("feed", &self.feed.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl SesameAuthBuilder {
    pub(crate) fn new() -> Self {
        Self {
            issuer: None,
            audience: None,
            keys: None,
            feed: None,
            max_staleness: DEFAULT_MAX_STALENESS,
            on_stale: OnStale::Open,
            cookies: None,
            access_cookie: AccessCookie::Host,
            binding: None,
            trusted_proxies: Vec::new(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            leeway: 60,
            jwks_refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer tokens must name (`iss`), e.g. `http://127.0.0.1:8080`.
    /// Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The audience tokens must name (`aud`), e.g. `sesame`. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Fetch public keys from this JWKS URL (Sesame serves
    /// `/.well-known/jwks.json`). The first fetch happens in `build` and must
    /// succeed; afterwards the keys are refreshed in the background at 80 %
    /// of the answer's `Cache-Control: max-age` (300 s when absent), clamped
    /// to between 10 s and one hour, and refetched on an unknown `kid` at
    /// most once per [`jwks_refetch_interval`](Self::jwks_refetch_interval).
    /// A failed fetch keeps the keys already held (retrying every 30 s).
    /// Either this or [`keys`](Self::keys) is required.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = Some(Keys::Jwks(url.into()));
        self
    }

    /// Verify with these keys only (e.g. an HS256 secret shared with a
    /// single Sesame server, or pinned public keys). Either this or
    /// [`jwks_url`](Self::jwks_url) is required.
    pub fn keys(mut self, keys: PublicKeys) -> Self {
        self.keys = Some(Keys::Given(keys));
        self
    }

    /// Least interval between JWKS fetches caused by unknown `kid`s (5 s by
    /// default). A burst of tokens with made-up `kid`s causes one fetch.
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch_interval = interval;
        self
    }

    /// Follow Sesame's revocation feed (`{sesame_url}/auth/revocations`) with
    /// this service API key, so a revoked session is refused within about a
    /// second rather than at its token's expiry. Without it no revocation is
    /// known to the layer and staleness never applies.
    pub fn revocation_feed(
        mut self,
        url: impl Into<String>,
        service_api_key: impl Into<String>,
    ) -> Self {
        self.feed = Some((url.into(), service_api_key.into()));
        self
    }

    /// How long the feed may go without contact (an event, a comment, or a
    /// heartbeat) before the layer counts as stale. 30 s by default.
    pub fn revocation_max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// What to do while stale; [`OnStale::Open`] by default.
    pub fn on_stale(mut self, on_stale: OnStale) -> Self {
        self.on_stale = on_stale;
        self
    }

    /// Also read the access token from the `__Host-sesame_at` cookie (when
    /// no `Authorization` header is sent). Cookie-authenticated requests
    /// with an unsafe method must then come from one of `allowed_origins`
    /// (`Origin`, else the origin of `Referer`), else 403 `csrf_rejected`.
    pub fn cookies<I, S>(mut self, allowed_origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cookies = Some(allowed_origins.into_iter().map(Into::into).collect());
        self
    }

    /// Which access cookie to read ([`AccessCookie::Host`] by default).
    pub fn access_cookie(mut self, which: AccessCookie) -> Self {
        self.access_cookie = which;
        self
    }

    /// Check `ip_ua`-bound tokens with Sesame's `binding_key` and its prefix
    /// lengths. Without it such tokens are refused (they cannot be
    /// checked). Cookie-bound tokens need no key and are always checked.
    pub fn binding_ip_ua(mut self, binding_key: &[u8], prefixes: IpPrefixes) -> Self {
        self.binding = Some((BindingKeys::derive(binding_key), prefixes));
        self
    }

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// when finding the client IP (see [`client_ip`](crate::client_ip)).
    /// None by default: the socket address is the client.
    pub fn trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Bound of the verified-token cache (100 000 by default).
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Clock leeway in seconds for `exp`/`iat` (60 by default, the Sesame
    /// server's default; at most 60).
    pub fn leeway(mut self, secs: i64) -> Self {
        self.leeway = secs;
        self
    }

    /// The clock tokens are checked against (the system clock by default);
    /// tests pass a [`sesame_core::ManualClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates the settings, fetches the JWKS (when configured), starts
    /// the background tasks (JWKS refresh, revocation feed) and waits up to
    /// [`FEED_STARTUP_WAIT`] for the feed's first `ready`. The tasks stop
    /// when the last clone of the returned [`SesameAuth`] is dropped.
    pub async fn build(self) -> Result<SesameAuth, Error> {
        let issuer = self
            .issuer
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::config("issuer", "required"))?;
        let audience = self
            .audience
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::config("audience", "required"))?;
        if !(0..=sesame_core::access::MAX_LEEWAY).contains(&self.leeway) {
            return Err(Error::config("leeway", "must be between 0 and 60 seconds"));
        }
        if self.cache_capacity == 0 {
            return Err(Error::config("cache_capacity", "must be at least 1"));
        }
        if self.max_staleness.is_zero() {
            return Err(Error::config(
                "revocation_max_staleness",
                "must be more than zero",
            ));
        }
        let cookies = match self.cookies {
            None => None,
            Some(list) => {
                let mut allowed = Vec::new();
                for o in list {
                    allowed.push(cookies::normalise_origin(&o).ok_or_else(|| {
                        Error::config("cookies", format!("{o:?} is not an http(s) origin"))
                    })?);
                }
                Some(CookieConfig {
                    allowed_origins: allowed,
                    name: self.access_cookie.name(),
                })
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::Http)?;
        let keys = match self.keys {
            None => {
                return Err(Error::config(
                    "jwks_url",
                    "either jwks_url or keys is required",
                ));
            }
            Some(Keys::Given(k)) => {
                if k.is_empty() {
                    return Err(Error::config("keys", "no keys given"));
                }
                KeySource::Given(Arc::new(k))
            }
            Some(Keys::Jwks(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Error::config("jwks_url", "must be an http(s) URL"));
                }
                KeySource::Jwks(Jwks::new(url, client.clone(), self.jwks_refetch_interval))
            }
        };
        let feed = match &self.feed {
            None => None,
            Some((url, key)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(Error::config("revocation_feed", "must be an http(s) URL"));
                }
                if key.is_empty() {
                    return Err(Error::config(
                        "revocation_feed",
                        "the service API key is empty",
                    ));
                }
                Some(FeedConfig {
                    url: url.clone(),
                    api_key: key.clone(),
                })
            }
        };
        let shared = Arc::new(Shared {
            verifier: Verifier::new(issuer, audience, self.leeway),
            leeway: self.leeway,
            keys,
            cache: quick_cache::sync::Cache::new(self.cache_capacity),
            feed: FeedState::new(feed.is_some(), self.max_staleness),
            on_stale: self.on_stale,
            cookies,
            binding: self.binding,
            trusted_proxies: self.trusted_proxies,
            clock: self.clock,
            counters: Default::default(),
        });
        let first_refresh = match &shared.keys {
            KeySource::Jwks(jwks) => Some(jwks.fetch_initial(&shared).await?),
            KeySource::Given(_) => None,
        };
        let auth = SesameAuth::start(shared, feed, client, first_refresh);
        auth.wait_for_feed(FEED_STARTUP_WAIT).await;
        Ok(auth)
    }
}
