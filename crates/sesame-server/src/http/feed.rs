//! `GET /auth/revocations`: the revocation feed resource servers consume
//! (DESIGN §5), as server-sent events.
//!
//! Wire format (the `sesame-axum` layer parses exactly this):
//! - `event: revoked`, `id: <seq>`, `data: {"seq", "sid", "reason", "not_after"}`
//!   — one per revocation row, in `seq` order;
//! - `event: ready`, `data: {"seq"}` — the snapshot or backlog is complete;
//! - `event: heartbeat`, `data: {"seq", "now"}` — every `heartbeat`, and only
//!   after a successful store read, so a feed that keeps beating is a feed
//!   whose store answers.
//!
//! Without `after` (or `Last-Event-ID`) the stream starts with a snapshot of
//! every row still relevant (`not_after` in the future); with it, with the
//! rows after it. Rows are only ever purged after `not_after`, when no token
//! they concern can still be valid, so a reader resuming from an old `seq`
//! loses nothing that matters. The stream then tails: each instance's
//! liveness sync (woken by PostgreSQL NOTIFY or Redis pub/sub where
//! available, else every 500 ms) bumps [`FeedHub`], and every open stream
//! reads the new rows. A store error ends the stream; the client reconnects.

use super::api_keys::ServiceKey;
use super::extract::AppState;
use crate::problem::ApiError;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use sesame_core::engine::Engine;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Rows read per store query.
const PAGE: u32 = 1000;

/// Wakes open feeds when revocations arrive, and ends them at shutdown.
#[derive(Debug)]
pub struct FeedHub {
    changed: watch::Sender<u64>,
    closing: watch::Sender<bool>,
    heartbeat: Duration,
}

impl FeedHub {
    /// A hub whose streams beat every `heartbeat`.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            changed: watch::channel(0).0,
            closing: watch::channel(false).0,
            heartbeat,
        }
    }

    /// New revocation rows may exist: every open stream reads the store.
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ends every open stream (graceful shutdown waits for open
    /// connections, and a feed would otherwise never finish).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Query of `GET /auth/revocations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// The last `seq` the client has; absent: start with a snapshot.
    after: Option<i64>,
}

/// The revocation feed (server-sent events).
#[utoipa::path(
    get,
    path = "/auth/revocations",
    tag = "resource servers",
    params(FeedQuery),
    security(("service_api_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `revoked`, `ready` and `heartbeat` events", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_request`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_api_key`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revocations(
    _key: ServiceKey,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Parsed here rather than by `Query`, whose rejection is plain text.
    let mut q = FeedQuery { after: None };
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("after", v)) => {
                q.after =
                    Some(v.parse::<i64>().map_err(|_| {
                        ApiError::invalid("after", "must be a sequence number ≥ 0")
                    })?);
            }
            _ => return Err(ApiError::invalid("query", "only `after` is accepted")),
        }
    }
    let after = match q.after {
        Some(a) => Some(a),
        None => match headers.get("last-event-id") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| {
                        ApiError::invalid("Last-Event-ID", "must be a sequence number")
                    })?,
            ),
        },
    };
    if after.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid("after", "must be a sequence number ≥ 0"));
    }
    let hub = state.feed.clone();
    let feed = Feed {
        engine: state.engine.clone(),
        changed: hub.changed.subscribe(),
        closing: hub.closing.subscribe(),
        heartbeat: tokio::time::interval_at(
            tokio::time::Instant::now() + hub.heartbeat,
            hub.heartbeat,
        ),
        snapshot: after.is_none(),
        after: after.unwrap_or(0),
        queue: VecDeque::new(),
        started: false,
    };
    let stream =
        futures_util::stream::unfold(
            feed,
            |mut f| async move { f.next().await.map(|ev| (Ok(ev), f)) },
        );
    Ok(Sse::new(stream))
}

struct Feed {
    engine: Arc<Engine>,
    changed: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    heartbeat: tokio::time::Interval,
    snapshot: bool,
    after: i64,
    queue: VecDeque<Event>,
    started: bool,
}

impl Feed {
    /// The next event, or `None` to end the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if !self.started {
                self.started = true;
                // Anything revoked before this read is in it; anything after
                // bumps `changed`, which was subscribed before it.
                self.changed.mark_unchanged();
                self.read_rows().await.ok()?;
                self.queue.push_back(
                    Event::default()
                        .event("ready")
                        .retry(Duration::from_secs(1))
                        .data(json!({ "seq": self.after }).to_string()),
                );
                continue;
            }
            tokio::select! {
                changed = self.changed.changed() => {
                    changed.ok()?;
                    self.read_rows().await.ok()?;
                }
                _ = self.heartbeat.tick() => {
                    // A heartbeat promises the store answered just now.
                    self.read_rows().await.ok()?;
                    self.queue.push_back(
                        Event::default().event("heartbeat").data(
                            json!({ "seq": self.after, "now": self.engine.now() }).to_string(),
                        ),
                    );
                }
                _ = self.closing.changed() => return None,
            }
        }
    }

    /// Queues every row after `self.after`.
    async fn read_rows(&mut self) -> Result<(), ()> {
        let now = self.engine.now();
        loop {
            let rows = self
                .engine
                .sessions()
                .revocations_after(self.after, PAGE)
                .await
                .map_err(|e| tracing::warn!(error = %e, "revocation feed: store read failed; ending the stream"))?;
            let full = rows.len() == PAGE as usize;
            for r in rows {
                self.after = r.seq;
                if self.snapshot && r.not_after <= now {
                    continue;
                }
                self.queue.push_back(
                    Event::default()
                        .event("revoked")
                        .id(r.seq.to_string())
                        .data(
                            json!({
                                "seq": r.seq,
                                "sid": r.session_id,
                                "reason": r.reason.as_str(),
                                "not_after": r.not_after,
                            })
                            .to_string(),
                        ),
                );
            }
            if !full {
                self.snapshot = false;
                return Ok(());
            }
        }
    }
}
