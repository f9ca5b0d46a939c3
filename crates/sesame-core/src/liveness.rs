//! The in-memory set of revoked sessions behind every access-authenticated
//! route: fed from the store's revocation rows (polled at least every second
//! by the host) and by this instance's own revocations at once. While the set
//! is stale (polling failing), callers fall back to a primary-key read.

use crate::clock::UnixTime;
use crate::ids::SessionId;
use crate::session::RevokeReason;
use crate::store::{SessionStore, StoreError};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Revoked session ids with their reasons.
#[derive(Debug)]
pub struct RevokedSet {
    entries: RwLock<HashMap<SessionId, (RevokeReason, UnixTime)>>,
    last_seq: AtomicI64,
    synced_at: RwLock<Option<Instant>>,
    max_staleness: Duration,
}

impl RevokedSet {
    /// An empty set that counts as stale until its first sync.
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            entries: RwLock::default(),
            last_seq: AtomicI64::new(0),
            synced_at: RwLock::new(None),
            max_staleness,
        }
    }

    /// The reason `sid` was revoked, if the set knows it.
    pub fn lookup(&self, sid: &SessionId) -> Option<RevokeReason> {
        self.entries.read().ok()?.get(sid).map(|(r, _)| *r)
    }

    /// Records a revocation made by this instance.
    pub fn insert(&self, sid: SessionId, reason: RevokeReason, not_after: UnixTime) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(sid, (reason, not_after));
        }
    }

    /// Whether the set was synced recently enough to be trusted alone.
    pub fn is_fresh(&self) -> bool {
        self.synced_at
            .read()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() <= self.max_staleness)
    }

    /// The highest revocation sequence number seen.
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::SeqCst)
    }

    /// Pulls new revocation rows and prunes entries whose tokens have all
    /// expired by `now`. Returns how many rows were read.
    pub async fn sync(&self, store: &dyn SessionStore, now: UnixTime) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let rows = store.revocations_after(self.last_seq(), 1000).await?;
            let n = rows.len();
            if let Ok(mut m) = self.entries.write() {
                for r in &rows {
                    if r.not_after > now {
                        m.insert(r.session_id, (r.reason, r.not_after));
                    }
                    self.last_seq.fetch_max(r.seq, Ordering::SeqCst);
                }
                m.retain(|_, (_, not_after)| *not_after > now);
            }
            total += n;
            if n < 1000 {
                break;
            }
        }
        if let Ok(mut t) = self.synced_at.write() {
            *t = Some(Instant::now());
        }
        Ok(total)
    }
}
