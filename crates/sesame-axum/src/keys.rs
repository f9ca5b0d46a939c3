//! Where verifying keys come from: given once, or a JWKS URL that is cached,
//! refreshed in the background before its `max-age` runs out, and refetched
//! on an unknown `kid` — at most once per interval and single-flight, so a
//! burst of tokens with made-up `kid`s costs one fetch, not one each.
//!
//! A failed fetch never empties the key set: the keys already held keep
//! working until a fetch succeeds.

use crate::auth::Shared;
use crate::error::Error;
use sesame_core::PublicKeys;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Timeout of one JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// `max-age` assumed when the answer has none.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Bounds of the background refresh period (80 % of `max-age`).
const MIN_REFRESH: Duration = Duration::from_secs(10);
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// Retry period after a failed background refresh.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

pub(crate) enum KeySource {
    Given(Arc<PublicKeys>),
    Jwks(Jwks),
}

impl KeySource {
    pub(crate) fn current(&self) -> Arc<PublicKeys> {
        match self {
            Self::Given(k) => k.clone(),
            Self::Jwks(j) => j.current(),
        }
    }
}

pub(crate) struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<PublicKeys>>,
    /// Held while fetching (single flight); holds when the last fetch for
    /// an unknown `kid` started.
    refetch: Mutex<Option<Instant>>,
    min_interval: Duration,
    /// The `kid`s of the keys installed last (`PublicKeys` does not list
    /// them), to notice a withdrawn key.
    kids: std::sync::Mutex<Vec<String>>,
    pub(crate) fetches: AtomicU64,
}

impl Jwks {
    pub(crate) fn new(url: String, client: reqwest::Client, min_interval: Duration) -> Self {
        Self {
            url,
            client,
            keys: RwLock::new(Arc::new(PublicKeys::new())),
            refetch: Mutex::new(None),
            min_interval,
            kids: std::sync::Mutex::new(Vec::new()),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) fn current(&self) -> Arc<PublicKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The first fetch, in `build`: it must succeed. Returns when to
    /// refresh.
    pub(crate) async fn fetch_initial(&self, shared: &Shared) -> Result<Duration, Error> {
        let _guard = self.refetch.lock().await;
        self.fetch(shared).await.map(refresh_period)
    }

    /// Refetches after an unknown `kid`, unless a fetch for that reason
    /// started less than the interval ago. Concurrent callers wait for the
    /// one fetch in flight instead of starting their own.
    pub(crate) async fn refetch_for_unknown_kid(&self, shared: &Shared) {
        let mut last = self.refetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch(shared).await {
            tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed; keeping the old keys");
        }
    }

    /// One background refresh; returns when to refresh next.
    pub(crate) async fn refresh(&self, shared: &Shared) -> Duration {
        let _guard = self.refetch.lock().await;
        match self.fetch(shared).await {
            Ok(max_age) => refresh_period(max_age),
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the old keys");
                RETRY_AFTER_FAILURE
            }
        }
    }

    /// Fetches and installs the JWKS; returns its `max-age`. If a `kid`
    /// disappeared (a `--revoke-old` rotation), the verified-token cache is
    /// cleared so tokens of the withdrawn key stop working at once.
    async fn fetch(&self, shared: &Shared) -> Result<Duration, Error> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let err = |message: String, source| Error::Jwks {
            url: self.url.clone(),
            message,
            source,
        };
        let mut res = self
            .client
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| err("request failed".into(), Some(e)))?;
        if !res.status().is_success() {
            return Err(err(format!("status {}", res.status()), None));
        }
        let max_age = res
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE);
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| err("reading the body failed".into(), Some(e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(err("document too large".into(), None));
            }
        }
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| err(format!("not JSON: {e}"), None))?;
        let (keys, skipped) = PublicKeys::from_jwks(&json);
        if skipped > 0 {
            tracing::debug!(skipped, "JWKS keys of unsupported shapes skipped");
        }
        if keys.is_empty() {
            return Err(err("no usable key".into(), None));
        }
        let new_kids: Vec<String> = json
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| k.get("kid").and_then(serde_json::Value::as_str))
            .filter(|kid| keys.contains(kid))
            .map(str::to_owned)
            .collect();
        let removed = match self.kids.lock() {
            Ok(mut old) => {
                let removed = old.iter().any(|kid| !keys.contains(kid));
                *old = new_kids;
                removed
            }
            Err(_) => true,
        };
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        if removed {
            shared.cache.clear();
        }
        Ok(max_age)
    }
}

/// 80 % of `max_age`, within the refresh bounds.
fn refresh_period(max_age: Duration) -> Duration {
    max_age.mul_f64(0.8).clamp(MIN_REFRESH, MAX_REFRESH)
}

/// The `max-age` directive of a `Cache-Control` value.
fn max_age(cc: &str) -> Option<Duration> {
    cc.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_and_period() {
        assert_eq!(
            max_age("public, max-age=300, must-revalidate"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(
            refresh_period(Duration::from_secs(300)),
            Duration::from_secs(240)
        );
        assert_eq!(refresh_period(Duration::ZERO), MIN_REFRESH);
        assert_eq!(refresh_period(Duration::from_secs(1 << 40)), MAX_REFRESH);
    }
}
