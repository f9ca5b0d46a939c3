//! `rotate.lua` re-implements `sesame_core::rotation::decide` in Lua; this
//! test writes thousands of session states straight into Redis (the hash
//! layout documented in the crate docs), presents tokens against them, and
//! checks that the script's outcome is exactly `decide`'s, and that it
//! applied it (generation, grace count, revocation).
//!
//! Needs `SESAME_TEST_REDIS_URL`; skipped (or failed under
//! `SESAME_REQUIRE_BACKENDS=1`) without it.

use sesame_core::clock::ManualClock;
use sesame_core::ids::{SessionId, UserId};
use sesame_core::rotation::{Channel, Decision, Presented, RefreshState, RotationPolicy, decide};
use sesame_core::session::{RevokeReason, Transport};
use sesame_core::store::{RotationOutcome, SessionStore};
use sesame_store_redis::{RedisClock, RedisSessionStore, RedisStoreOptions};
use std::sync::Arc;

const NOW: i64 = 1_800_000_000;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Deletes the test's keys when the test ends, passing or failing.
struct DropKeys {
    url: String,
    prefix: String,
}

impl Drop for DropKeys {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn h(x: u8) -> [u8; 32] {
    [x; 32]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_script_agrees_with_decide() {
    let Some(url) = std::env::var("SESAME_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        sesame_store_tests::unavailable(
            "rotate_script_agrees_with_decide",
            "SESAME_TEST_REDIS_URL not set",
        );
        return;
    };
    let clock = ManualClock::new(NOW);
    let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
    let prefix = format!("sesame-test-parity-{n:016x}:");
    let _cleanup = DropKeys {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let store = RedisSessionStore::connect(
        &url,
        RedisStoreOptions {
            key_prefix: prefix.clone(),
            clock: RedisClock::Fixed(Arc::new(clock.clone())),
            ..RedisStoreOptions::default()
        },
    )
    .await
    .expect("connect");
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let mut rng = Rng(0x5e5a_3e00_d1ce_0001);
    let mut seen = std::collections::HashMap::<String, u32>::new();
    for case in 0..2000 {
        let generation = rng.pick(&[0u32, 1, 2, 5]);
        let state = RefreshState {
            generation,
            cur: h(rng.pick(&[1, 2])),
            prev: if generation == 0 {
                None
            } else {
                rng.pick(&[None, Some(h(1)), Some(h(2)), Some(h(3))])
            },
            rotated_at: NOW - rng.pick(&[0, 1, 29, 30, 31, 59, 60, 61, 5000]),
            rotated_ua_hash: rng.pick(&[None, Some(h(7)), Some(h(7)), Some(h(8))]),
            grace_answers: rng.pick(&[0, 1, 4, 5, 6]),
            revoked: (rng.one_in(12)).then_some(RevokeReason::Logout),
            idle_expires_at: if rng.one_in(6) {
                rng.pick(&[Some(NOW - 1), Some(NOW), Some(NOW + 1)])
            } else {
                rng.pick(&[None, Some(NOW + 100)])
            },
            expires_at: if rng.one_in(6) {
                rng.pick(&[NOW - 1, NOW, NOW + 1])
            } else {
                NOW + 1000
            },
            transport: rng.pick(&[Transport::Hybrid, Transport::Cookie, Transport::Bearer]),
        };
        let pgen = generation
            .saturating_add(rng.pick(&[0, 0, 0, 0, 0, 1]))
            .saturating_sub(rng.pick(&[0, 0, 1, 1, 1, 1, 2, 3]));
        // Mostly the right secret for its generation, the right successor
        // and the session's channel, so every branch gets cases.
        let right = if pgen == generation {
            Some(state.cur)
        } else if pgen + 1 == generation {
            state.prev
        } else {
            None
        };
        let secret_hash = match right {
            Some(r) if !rng.one_in(4) => r,
            _ => h(rng.pick(&[1, 2, 3])),
        };
        let successor_hash = if !rng.one_in(5) {
            state.cur
        } else {
            h(rng.pick(&[1, 2]))
        };
        let own = if state.transport.refresh_in_cookie() {
            Channel::Cookie
        } else {
            Channel::Body
        };
        let presented = Presented {
            generation: pgen,
            secret_hash,
            successor_hash,
            ua_hash: h(rng.pick(&[7, 7, 7, 8])),
            channel: if rng.one_in(8) {
                rng.pick(&[Channel::Cookie, Channel::Body])
            } else {
                own
            },
        };
        let policy = RotationPolicy {
            grace: 30,
            late_retry: 60,
            grace_max_answers: 5,
            idle_ttl: rng.pick(&[None, Some(3600), Some(3600)]),
            reuse_revokes_user: rng.pick(&[false, true]),
        };
        let want = decide(&state, &presented, NOW, &policy, false);

        // Write the state as the store lays it out.
        let sid = SessionId::random();
        let uid = UserId::new();
        let key = format!("{prefix}s:{sid}");
        let mut fields: Vec<(&str, String)> = vec![
            ("id", sid.to_string()),
            ("user_id", uid.to_string()),
            ("transport", state.transport.as_str().into()),
            ("gen", state.generation.to_string()),
            ("cur", hex(&state.cur)),
            ("rotated_at", state.rotated_at.to_string()),
            ("grace_answers", state.grace_answers.to_string()),
            ("key_ver", "1".into()),
            ("created_at", (NOW - 10_000).to_string()),
            ("last_seen_at", (NOW - 10).to_string()),
            ("expires_at", state.expires_at.to_string()),
            ("auth_time", (NOW - 10_000).to_string()),
            ("aal", "aal1".into()),
            ("claims", "{}".into()),
        ];
        if let Some(p) = state.prev {
            fields.push(("prev", hex(&p)));
        }
        if let Some(u) = state.rotated_ua_hash {
            fields.push(("rotated_ua_hash", hex(&u)));
        }
        if let Some(r) = state.revoked {
            fields.push(("revoked_at", (NOW - 5).to_string()));
            fields.push(("revoke_reason", r.as_str().into()));
        }
        if let Some(i) = state.idle_expires_at {
            fields.push(("idle_expires_at", i.to_string()));
        }
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(&fields)
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: () = redis::cmd("ZADD")
            .arg(format!("{prefix}u:{uid}"))
            .arg(NOW - 10)
            .arg(sid.to_string())
            .query_async(&mut raw)
            .await
            .unwrap();

        let got = store.rotate(sid, &presented, &policy).await.unwrap();
        let ctx = format!("case {case}: {state:?} {presented:?} {policy:?}");
        let after = store.session(sid).await.unwrap().expect("still stored");
        let grace_after: u32 = redis::cmd("HGET")
            .arg(&key)
            .arg("grace_answers")
            .query_async(&mut raw)
            .await
            .unwrap();
        match (want, &got) {
            (Decision::Revoked(r), RotationOutcome::Revoked(g)) => assert_eq!(r, *g, "{ctx}"),
            (Decision::Expired, RotationOutcome::Expired)
            | (Decision::TransportMismatch, RotationOutcome::TransportMismatch)
            | (Decision::Stale, RotationOutcome::Stale)
            | (Decision::RollbackSuspected, RotationOutcome::RollbackSuspected) => {
                assert_eq!(after.generation, generation, "{ctx}: nothing changes");
                assert_eq!(grace_after, state.grace_answers, "{ctx}");
                assert_eq!(after.revoked_at.is_some(), state.revoked.is_some(), "{ctx}");
            }
            (Decision::Rotate, RotationOutcome::Rotated(s)) => {
                assert_eq!(s.generation, generation + 1, "{ctx}");
                assert_eq!(s.last_seen_at, NOW, "{ctx}");
                assert_eq!(
                    s.idle_expires_at,
                    policy.idle_ttl.map(|t| (NOW + t).min(state.expires_at)),
                    "{ctx}"
                );
                assert_eq!(grace_after, 0, "{ctx}");
                assert_eq!(*s, after, "{ctx}");
            }
            (Decision::Grace, RotationOutcome::Grace(s)) => {
                assert_eq!(s.generation, generation, "{ctx}");
                assert_eq!(grace_after, state.grace_answers + 1, "{ctx}");
            }
            (Decision::Reuse(c), RotationOutcome::Reused { class, revoked, .. }) => {
                assert_eq!(c, *class, "{ctx}");
                assert_eq!(revoked, &vec![sid], "{ctx}");
                assert_eq!(
                    after.revoke_reason,
                    Some(RevokeReason::ReuseDetected),
                    "{ctx}"
                );
            }
            (want, got) => panic!("{ctx}: decide says {want:?}, the script {got:?}"),
        }
        *seen.entry(format!("{want:?}")).or_default() += 1;
    }
    eprintln!("decisions checked: {seen:?}");
    // Every branch was exercised.
    for d in [
        "Rotate",
        "Grace",
        "Stale",
        "Expired",
        "TransportMismatch",
        "RollbackSuspected",
        "Reuse(LikelyTheft)",
        "Reuse(LikelySlowClient)",
        "Revoked(Logout)",
    ] {
        assert!(
            seen.get(d).is_some_and(|n| *n > 5),
            "{d} barely covered: {seen:?}"
        );
    }
}
