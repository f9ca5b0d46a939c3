//! The revocation set and the consumer of Sesame's revocation feed.
//!
//! Wire format (`GET {url}?after=<seq>`, `Authorization: Bearer <service
//! API key>`, answered `200 text/event-stream`):
//!
//! - `event: revoked`, `data: {"seq", "sid", "reason", "not_after"}`: the
//!   session `sid` is revoked until `not_after` (after which every token it
//!   could hold has expired). An unknown `reason` is still a revocation.
//! - `event: ready`, `data: {"seq"}`: the snapshot (first connect) or the
//!   backlog after `after` is complete; only from here is the feed fresh.
//! - `event: heartbeat`, `data: {"seq", "now"}`: sent every few seconds, so
//!   silence means trouble. Entries past their `not_after` are pruned here.
//! - anything else is ignored; any event or comment after `ready` counts as
//!   contact.
//!
//! The set is keyed by session id, never by a token hash (signatures can be
//! malleable, so one session can have many token strings). On a dropped
//! connection the consumer reconnects with exponential back-off and
//! `?after=<last seq>`, where the last seq is the highest `seq` of a
//! `revoked` event or a `ready` event received — not of a heartbeat, which
//! might run ahead of rows not yet delivered — so nothing is lost across a
//! server restart.

use crate::auth::Shared;
use crate::sse;
use futures_util::StreamExt;
use serde::Deserialize;
use sesame_core::session::RevokeReason;
use sesame_core::{SessionId, UnixTime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Retry period after the feed refused the service API key.
const AUTH_RETRY: Duration = Duration::from_secs(30);
/// A connection that reached `ready` and lasted at least this long resets
/// the back-off; a server that accepts and drops at once still backs off.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);
/// A connection with no bytes for this long is dropped and reopened (the
/// server heartbeats every 5 s by default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Least interval between two "feed stale, allowing" warnings.
const STALE_WARN_EVERY_MS: u64 = 10_000;

pub(crate) struct FeedConfig {
    pub(crate) url: String,
    pub(crate) api_key: String,
}

/// A revoked session: its reason (`None`: a reason this version does not
/// know) and when the entry may be dropped.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    reason: Option<RevokeReason>,
    not_after: UnixTime,
}

/// The revocation set and the feed's health.
pub(crate) struct FeedState {
    enabled: bool,
    revoked: RwLock<HashMap<SessionId, Revoked>>,
    /// Highest seq received (`-1`: none yet, connect without `after`).
    last_seq: AtomicI64,
    connected: AtomicBool,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last contact (starts at 0: the
    /// build counts as contact, so a fresh service has the full staleness
    /// allowance to connect).
    last_contact_ms: AtomicU64,
    max_staleness_ms: u64,
    last_warn_ms: AtomicU64,
    pub(crate) stale_open: AtomicU64,
}

impl FeedState {
    pub(crate) fn new(enabled: bool, max_staleness: Duration) -> Self {
        Self {
            enabled,
            revoked: RwLock::default(),
            last_seq: AtomicI64::new(-1),
            connected: AtomicBool::new(false),
            epoch: Instant::now(),
            last_contact_ms: AtomicU64::new(0),
            max_staleness_ms: u64::try_from(max_staleness.as_millis()).unwrap_or(u64::MAX),
            last_warn_ms: AtomicU64::new(0),
            stale_open: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Why `sid` is revoked, if it is: `Some(None)` for an unknown reason.
    pub(crate) fn lookup(&self, sid: &SessionId) -> Option<Option<RevokeReason>> {
        let map = match self.revoked.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(sid).map(|r| r.reason)
    }

    /// Whether the feed is configured and has had no contact for longer
    /// than the allowed staleness.
    pub(crate) fn is_stale(&self) -> bool {
        self.enabled
            && self
                .now_ms()
                .saturating_sub(self.last_contact_ms.load(Ordering::Relaxed))
                > self.max_staleness_ms
    }

    /// Counts a request allowed while stale, warning at most every 10 s.
    pub(crate) fn allowed_while_stale(&self) {
        let n = self.stale_open.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= STALE_WARN_EVERY_MS)
            && self
                .last_warn_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                allowed_while_stale = n,
                secs_since_contact = self.secs_since_contact(),
                "revocation feed is stale; allowing authenticated requests (on_stale = open)"
            );
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub(crate) fn last_seq(&self) -> Option<i64> {
        let s = self.last_seq.load(Ordering::Relaxed);
        (s >= 0).then_some(s)
    }

    pub(crate) fn secs_since_contact(&self) -> f64 {
        let ms = self
            .now_ms()
            .saturating_sub(self.last_contact_ms.load(Ordering::Relaxed));
        ms as f64 / 1000.0
    }

    pub(crate) fn revoked_count(&self) -> usize {
        self.revoked.read().map(|m| m.len()).unwrap_or(0)
    }

    fn touch(&self) {
        self.last_contact_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn insert(
        &self,
        sid: SessionId,
        reason: Option<RevokeReason>,
        not_after: UnixTime,
        now: UnixTime,
    ) {
        if not_after <= now {
            return;
        }
        let mut map = match self.revoked.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(sid, Revoked { reason, not_after });
    }

    fn prune(&self, now: UnixTime) {
        let mut map = match self.revoked.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|_, r| r.not_after > now);
    }

    fn saw_seq(&self, seq: i64) {
        self.last_seq.fetch_max(seq, Ordering::Relaxed);
    }
}

#[derive(Deserialize)]
struct RevokedEvent {
    seq: i64,
    sid: String,
    reason: String,
    not_after: i64,
}

#[derive(Deserialize)]
struct SeqEvent {
    seq: i64,
}

/// How one connection ended.
enum Ended {
    /// It had reached `ready`: reconnect promptly.
    AfterReady(String),
    /// 401/403: the service API key is wrong.
    Unauthorized(reqwest::StatusCode),
    /// Anything else before `ready`.
    Failed(String),
}

/// Runs the consumer until `stop` fires (the last `SesameAuth` dropped).
pub(crate) async fn run(
    shared: Arc<Shared>,
    config: FeedConfig,
    client: reqwest::Client,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let started = Instant::now();
        let ended = tokio::select! {
            _ = stop.changed() => return,
            ended = connect_once(&shared, &config, &client) => ended,
        };
        shared.feed.connected.store(false, Ordering::Relaxed);
        let wait = match ended {
            Ended::AfterReady(why) => {
                tracing::warn!(reason = %why, "revocation feed disconnected; reconnecting");
                if started.elapsed() >= HEALTHY_CONNECTION {
                    backoff = INITIAL_BACKOFF;
                }
                let w = jitter(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
            Ended::Unauthorized(status) => {
                tracing::error!(%status, url = %config.url, "revocation feed refused the service API key");
                AUTH_RETRY
            }
            Ended::Failed(why) => {
                tracing::warn!(reason = %why, url = %config.url, "revocation feed unavailable");
                let w = jitter(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// `d` plus up to 25 % (from the clock's sub-second nanoseconds: only
/// needs to differ between instances, not to be unpredictable).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

async fn connect_once(shared: &Shared, config: &FeedConfig, client: &reqwest::Client) -> Ended {
    let mut req = client
        .get(&config.url)
        .bearer_auth(&config.api_key)
        .header(http::header::ACCEPT, "text/event-stream");
    if let Some(seq) = shared.feed.last_seq() {
        req = req.query(&[("after", seq)]);
    }
    let res = match tokio::time::timeout(IDLE_TIMEOUT, req.send()).await {
        Err(_) => return Ended::Failed("no answer".into()),
        Ok(Err(e)) => return Ended::Failed(format!("request failed: {e}")),
        Ok(Ok(r)) => r,
    };
    let status = res.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Ended::Unauthorized(status);
    }
    if !status.is_success() {
        return Ended::Failed(format!("status {status}"));
    }
    let mut stream = res.bytes_stream();
    let mut parser = sse::Parser::default();
    let mut items = Vec::new();
    let mut ready = false;
    let end = |ready: bool, why: String| {
        if ready {
            Ended::AfterReady(why)
        } else {
            Ended::Failed(why)
        }
    };
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Err(_) => return end(ready, "no data within the idle timeout".into()),
            Ok(None) => return end(ready, "stream ended".into()),
            Ok(Some(Err(e))) => return end(ready, format!("read failed: {e}")),
            Ok(Some(Ok(c))) => c,
        };
        if parser.feed(&chunk, &mut items).is_err() {
            return end(ready, "line too long".into());
        }
        for item in items.drain(..) {
            handle(shared, item, &mut ready);
        }
    }
}

fn handle(shared: &Shared, item: sse::Item, ready: &mut bool) {
    let feed = &shared.feed;
    let now = shared.clock.now();
    let sse::Item::Event { event, data, .. } = item else {
        if *ready {
            feed.touch();
        }
        return;
    };
    match event.as_str() {
        "revoked" => match serde_json::from_str::<RevokedEvent>(&data) {
            Ok(ev) => match SessionId::parse(&ev.sid) {
                Some(sid) => {
                    let reason = RevokeReason::parse(&ev.reason);
                    if reason.is_none() {
                        tracing::warn!(reason = %ev.reason, "unknown revocation reason; revoking anyway");
                    }
                    feed.insert(sid, reason, ev.not_after, now);
                    feed.saw_seq(ev.seq);
                    // A revocation for a token already in the cache takes
                    // effect at its next request: the cache is checked
                    // against this set on every hit.
                }
                None => tracing::error!(seq = ev.seq, "revocation with an unreadable session id"),
            },
            Err(e) => tracing::error!(error = %e, "unreadable revocation event"),
        },
        "ready" => {
            if let Ok(ev) = serde_json::from_str::<SeqEvent>(&data) {
                feed.saw_seq(ev.seq);
            }
            *ready = true;
            feed.connected.store(true, Ordering::Relaxed);
            tracing::info!(last_seq = ?feed.last_seq(), revoked = feed.revoked_count(), "revocation feed ready");
        }
        "heartbeat" => feed.prune(now),
        _ => {}
    }
    if *ready {
        feed.touch();
    }
}
