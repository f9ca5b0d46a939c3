//! The refresh rotation state machine (DESIGN §2), as one pure function.
//!
//! Every store calls [`decide`] on the row it read and then applies the
//! decision with one atomic conditional write (for a rotation:
//! `UPDATE … WHERE id = sid AND gen = t AND cur = hash(s) AND not revoked`).
//! A store whose conditional write lost a race re-reads the row and calls
//! [`decide`] again with `lost_race = true`: finding the row exactly one
//! generation ahead it answers the grace successor even if the window passed
//! while it waited. Keeping the rules here means every backend classifies
//! identically, and the rules are unit-tested without a database.

use crate::clock::UnixTime;
use crate::crypto::ct_eq;
use crate::session::{RevokeReason, Transport};

/// What the store knows about a session's refresh chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// Current generation.
    pub generation: u32,
    /// SHA-256 of the current generation's secret.
    pub cur: [u8; 32],
    /// SHA-256 of the previous generation's secret (none at generation 0).
    pub prev: Option<[u8; 32]>,
    /// Store time of the rotation that made the current generation.
    pub rotated_at: UnixTime,
    /// SHA-256 of the user agent that made that rotation.
    pub rotated_ua_hash: Option<[u8; 32]>,
    /// Grace answers given for the current generation.
    pub grace_answers: u32,
    /// Revocation, if any.
    pub revoked: Option<RevokeReason>,
    /// Idle expiry, if enabled.
    pub idle_expires_at: Option<UnixTime>,
    /// Absolute expiry.
    pub expires_at: UnixTime,
    /// The session's transport.
    pub transport: Transport,
}

/// Which channel a refresh token arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The `__Host-sesame_rt` cookie.
    Cookie,
    /// The JSON body.
    Body,
}

/// What the engine computed from a presented, tag-checked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Its generation.
    pub generation: u32,
    /// SHA-256 of its secret.
    pub secret_hash: [u8; 32],
    /// SHA-256 of its successor's secret (recomputed from it).
    pub successor_hash: [u8; 32],
    /// SHA-256 of the request's user agent.
    pub ua_hash: [u8; 32],
    /// The channel it came on.
    pub channel: Channel,
}

/// The knobs of §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// `refresh_grace`, seconds (30 by default).
    pub grace: i64,
    /// `late_retry_window`, seconds (2 × grace by default).
    pub late_retry: i64,
    /// `grace_max_answers` (5 by default).
    pub grace_max_answers: u32,
    /// `refresh_ttl`, the sliding idle lifetime; `None` = no idle expiry.
    pub idle_ttl: Option<i64>,
    /// Whether reuse revokes the session or every session of the user.
    pub reuse_revokes_user: bool,
}

impl Default for RotationPolicy {
    /// DESIGN §1–§2 defaults: 30 s grace, 60 s late retry, 5 grace answers,
    /// 7 days idle, reuse revokes the session.
    fn default() -> Self {
        Self {
            grace: 30,
            late_retry: 60,
            grace_max_answers: 5,
            idle_ttl: Some(7 * 86_400),
            reuse_revokes_user: false,
        }
    }
}

/// How a replay looks to operators and users. Both classes revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReuseClass {
    /// The parent, from the same user agent, past the late-retry window or
    /// the answer cap: most likely a slow or buggy client.
    LikelySlowClient,
    /// An older ancestor, or the parent from another user agent: most
    /// likely a stolen token.
    LikelyTheft,
}

impl ReuseClass {
    /// Spelling for logs, metrics and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LikelySlowClient => "likely_slow_client",
            Self::LikelyTheft => "likely_theft",
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Already revoked: 401 `session_revoked` with the reason.
    Revoked(RevokeReason),
    /// Past its idle or absolute lifetime: 401 `session_expired`.
    Expired,
    /// Token on the wrong channel for the session's transport: 400, nothing changes.
    TransportMismatch,
    /// Current token: commit generation + 1.
    Rotate,
    /// Parent inside the grace window: answer the existing successor.
    Grace,
    /// Parent after the window but inside the late-retry window: 401
    /// `refresh_token_stale`, nothing minted, nothing revoked.
    Stale,
    /// Replay: revoke and answer `refresh_token_reused`.
    Reuse(ReuseClass),
    /// Ahead of the store, or a valid tag with the wrong secret: the store
    /// was probably restored from a backup. 401 `refresh_token_invalid`.
    RollbackSuspected,
}

/// Classifies a presented token against the stored state at store time `now`.
pub fn decide(
    state: &RefreshState,
    p: &Presented,
    now: UnixTime,
    policy: &RotationPolicy,
    lost_race: bool,
) -> Decision {
    // Revocation and expiry come first, on every path.
    if let Some(reason) = state.revoked {
        return Decision::Revoked(reason);
    }
    if now >= state.expires_at || state.idle_expires_at.is_some_and(|t| now >= t) {
        return Decision::Expired;
    }
    let channel_ok = match p.channel {
        Channel::Cookie => state.transport.refresh_in_cookie(),
        Channel::Body => !state.transport.refresh_in_cookie(),
    };
    if !channel_ok {
        return Decision::TransportMismatch;
    }

    if p.generation == state.generation {
        return if ct_eq(&p.secret_hash, &state.cur) {
            Decision::Rotate
        } else {
            Decision::RollbackSuspected
        };
    }
    if p.generation > state.generation {
        return Decision::RollbackSuspected;
    }
    if p.generation + 1 < state.generation {
        return Decision::Reuse(ReuseClass::LikelyTheft);
    }

    // The parent of the current generation.
    let parent_ok = state.prev.is_some_and(|prev| ct_eq(&p.secret_hash, &prev));
    if !parent_ok || !ct_eq(&p.successor_hash, &state.cur) {
        return Decision::RollbackSuspected;
    }
    let same_ua = state.rotated_ua_hash.is_some_and(|h| ct_eq(&h, &p.ua_hash));
    if !same_ua {
        return Decision::Reuse(ReuseClass::LikelyTheft);
    }
    let age = now - state.rotated_at;
    let in_grace = lost_race || age < policy.grace;
    if in_grace && state.grace_answers < policy.grace_max_answers {
        return Decision::Grace;
    }
    if !in_grace && age < policy.late_retry {
        return Decision::Stale;
    }
    Decision::Reuse(ReuseClass::LikelySlowClient)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy {
        grace: 30,
        late_retry: 60,
        grace_max_answers: 5,
        idle_ttl: Some(3600),
        reuse_revokes_user: false,
    };

    fn state() -> RefreshState {
        RefreshState {
            generation: 5,
            cur: [5; 32],
            prev: Some([4; 32]),
            rotated_at: 1000,
            rotated_ua_hash: Some([9; 32]),
            grace_answers: 0,
            revoked: None,
            idle_expires_at: Some(5000),
            expires_at: 10_000,
            transport: Transport::Hybrid,
        }
    }

    fn parent() -> Presented {
        Presented {
            generation: 4,
            secret_hash: [4; 32],
            successor_hash: [5; 32],
            ua_hash: [9; 32],
            channel: Channel::Cookie,
        }
    }

    fn check(s: &RefreshState, p: &Presented, now: i64, lost: bool, want: Decision) {
        assert_eq!(
            decide(s, p, now, &POLICY, lost),
            want,
            "state {s:?} presented {p:?} at {now}"
        );
    }

    #[test]
    fn table() {
        let s = state();
        let cur = Presented {
            generation: 5,
            secret_hash: [5; 32],
            successor_hash: [6; 32],
            ..parent()
        };
        check(&s, &cur, 1001, false, Decision::Rotate);
        check(&s, &parent(), 1010, false, Decision::Grace);
        check(&s, &parent(), 1029, false, Decision::Grace);
        check(&s, &parent(), 1030, false, Decision::Stale);
        check(&s, &parent(), 1059, false, Decision::Stale);
        check(
            &s,
            &parent(),
            1060,
            false,
            Decision::Reuse(ReuseClass::LikelySlowClient),
        );
        // The race loser keeps the grace answer even past the window.
        check(&s, &parent(), 1045, true, Decision::Grace);
        // Another user agent is theft, even inside the window.
        let other = Presented {
            ua_hash: [1; 32],
            ..parent()
        };
        check(
            &s,
            &other,
            1001,
            false,
            Decision::Reuse(ReuseClass::LikelyTheft),
        );
        // Grandparents are never grace-eligible.
        let grand = Presented {
            generation: 3,
            secret_hash: [3; 32],
            successor_hash: [4; 32],
            ..parent()
        };
        check(
            &s,
            &grand,
            1001,
            false,
            Decision::Reuse(ReuseClass::LikelyTheft),
        );
        // Answer cap.
        let capped = RefreshState {
            grace_answers: 5,
            ..state()
        };
        check(
            &capped,
            &parent(),
            1001,
            false,
            Decision::Reuse(ReuseClass::LikelySlowClient),
        );
        // Rollback: ahead of the store, or a right generation with the wrong secret.
        let ahead = Presented {
            generation: 6,
            ..cur.clone()
        };
        check(&s, &ahead, 1001, false, Decision::RollbackSuspected);
        let wrong = Presented {
            secret_hash: [0; 32],
            ..cur.clone()
        };
        check(&s, &wrong, 1001, false, Decision::RollbackSuspected);
        // Revoked and expired win over everything.
        let revoked = RefreshState {
            revoked: Some(RevokeReason::Logout),
            ..state()
        };
        check(
            &revoked,
            &cur,
            1001,
            false,
            Decision::Revoked(RevokeReason::Logout),
        );
        check(&s, &cur, 5000, false, Decision::Expired);
        check(&s, &cur, 10_000, false, Decision::Expired);
        // A hybrid session's token in the body changes nothing.
        let body = Presented {
            channel: Channel::Body,
            ..cur
        };
        check(&s, &body, 1001, false, Decision::TransportMismatch);
    }
}
