//! Rate limits (DESIGN §3): per client IP and per account on login,
//! register and refresh, answered with 429 `rate_limited` and `Retry-After`;
//! and a progressive delay per account after failed logins.
//!
//! Each limit is `N` requests per period, enforced as GCRA (the
//! "generic cell rate algorithm": a burst of `N`, refilled one request every
//! period / N), which needs one number of state per key — the theoretical
//! arrival time — so the same few lines run in memory on one instance and as
//! one Lua script in Redis when instances share it (the session store's
//! Redis, under the session prefix). Both are written here, side by side, so
//! their semantics cannot drift; the in-memory state is pruned on a timer
//! (a key whose arrival time has passed carries no information).
//!
//! **Progressive delay**, keyed by account *and* client network (/24 IPv4,
//! /64 IPv6): after `login_delay_after` consecutive failures, each further
//! attempt from that network on that account must wait 1 s, 2 s, 4 s, …
//! capped at `login_delay_max`; a success clears it and it expires after
//! 15 minutes without failures. Because it is keyed by network, an attacker
//! elsewhere cannot delay the account's owner; because it is capped and
//! expires, it is never a lockout. The per-account limit (all networks)
//! bounds distributed guessing; under a sustained distributed attack it
//! delays the owner by at most one period per attempt, never permanently.

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// One limit: `burst` requests, refilled one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed at once (`N`).
    pub burst: u32,
    /// Time for one request to be refilled (period / N).
    pub interval: Duration,
}

impl Limit {
    /// `N` requests per `period`.
    pub fn per(n: u32, period: Duration) -> Self {
        let n = n.max(1);
        Self {
            burst: n,
            interval: period / n,
        }
    }

    /// Parses `"N/period"` (`"30/1m"`, `"10/1h"`, `"5/30s"`); `None` if malformed.
    pub fn parse(s: &str, duration: impl Fn(&str) -> Option<i64>) -> Option<Self> {
        let (n, period) = s.trim().split_once('/')?;
        let n: u32 = n.trim().parse().ok().filter(|n| *n >= 1)?;
        let secs = duration(period.trim()).filter(|s| *s >= 1)?;
        Some(Self::per(n, Duration::from_secs(secs.unsigned_abs())))
    }
}

/// The configured limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Login attempts per client IP.
    pub login_ip: Limit,
    /// Login attempts per account (email), from all networks.
    pub login_account: Limit,
    /// Registrations per client IP.
    pub register_ip: Limit,
    /// Refreshes per client IP.
    pub refresh_ip: Limit,
    /// Refreshes per session.
    pub refresh_session: Limit,
    /// Password-reset requests (and verification resends by address) per
    /// client IP.
    pub forgot_ip: Limit,
    /// Password-reset requests (and verification resends) per account: a
    /// bound on the mail anyone can make an address receive.
    pub forgot_account: Limit,
    /// Redemptions of mailed links and MFA challenges per client IP
    /// (`/auth/verify`, `/auth/password/reset`, `/auth/login/mfa`).
    pub verify_ip: Limit,
    /// Second-factor code checks per account (login step,
    /// re-authentication, enrolment): with six digits, the guess budget.
    pub mfa_account: Limit,
    /// Failures before the progressive delay starts.
    pub delay_after: u32,
    /// The longest progressive delay.
    pub delay_max: Duration,
}

/// How long a progressive-delay record lives without a new failure.
const DELAY_IDLE: Duration = Duration::from_secs(15 * 60);

/// Where limit state lives.
#[derive(Clone)]
enum Backend {
    Memory(std::sync::Arc<Memory>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        timeout: Duration,
    },
}

#[derive(Default)]
struct Memory {
    /// Key → theoretical arrival time (ms since the limiter's epoch).
    tat: Mutex<HashMap<String, u64>>,
    /// Key → (failures, last failure ms).
    failures: Mutex<HashMap<String, (u32, u64)>>,
}

/// The limiter of one server.
#[derive(Clone)]
pub struct RateLimiter {
    limits: Limits,
    backend: Backend,
    epoch: Instant,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .field(
                "backend",
                &match self.backend {
                    Backend::Memory(_) => "memory",
                    Backend::Redis { .. } => "redis",
                },
            )
            .finish()
    }
}

/// A refused request: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header (at least 1).
    pub fn secs(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

/// GCRA: given the stored arrival time `tat` (ms), `now` (ms) and a limit,
/// the new arrival time to store, or how long to wait.
fn gcra(tat: Option<u64>, now: u64, limit: Limit) -> Result<u64, u64> {
    let interval = u64::try_from(limit.interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let tat = tat.unwrap_or(now).max(now);
    let allow_at = tat.saturating_sub(interval * u64::from(limit.burst - 1));
    if now < allow_at {
        return Err(allow_at - now);
    }
    Ok(tat + interval)
}

/// The progressive delay after `failures` failures, the last at `last` ms.
fn delay_until(failures: u32, last: u64, after: u32, max: Duration) -> Option<u64> {
    if failures < after {
        return None;
    }
    let exp = (failures - after).min(20);
    let d = Duration::from_secs(1u64 << exp).min(max);
    Some(last + u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// GCRA in Redis: the same arithmetic as [`gcra`], on Redis's clock, in one
/// script (atomic across instances). Returns 0 (allowed) or ms to wait.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * (burst - 1)
if now < allow_at then return allow_at - now end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', new - now + 1000)
return 0
";

/// The scripts, hashed once (`Script::new` computes the SHA-1 that EVALSHA
/// sends; not work for every request).
static GCRA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));
static DELAY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(DELAY_LUA));

/// What a progressive-delay call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DelayOp {
    /// How long the key must still wait.
    Check,
    /// Count one more failure.
    Fail,
    /// Forget the failures (a success).
    Clear,
}

impl DelayOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Fail => "fail",
            Self::Clear => "clear",
        }
    }
}

/// Runs a limit script in Redis, bounded by `timeout`: the milliseconds to
/// wait it answers (0: allowed). Limits protect the service; they must not
/// take it down with Redis, so an error or timeout allows the request
/// (fail open) and says so.
async fn redis_wait(
    conn: &ConnectionManager,
    timeout: Duration,
    inv: redis::ScriptInvocation<'_>,
    what: &str,
) -> Option<Duration> {
    let mut conn = conn.clone();
    match tokio::time::timeout(timeout, inv.invoke_async::<u64>(&mut conn)).await {
        Ok(Ok(0)) => None,
        Ok(Ok(wait)) => Some(Duration::from_millis(wait)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{what} failed; allowing the request");
            None
        }
        Err(_) => {
            tracing::warn!("{what} timed out; allowing the request");
            None
        }
    }
}

/// Progressive delay in Redis. ARGV[1] op (`check`, `fail`, `clear`),
/// [2] delay_after, [3] delay_max ms, [4] idle ms. Returns ms to wait (0: none).
const DELAY_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, after, max, idle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if op == 'clear' then redis.call('DEL', KEYS[1]) return 0 end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if op == 'fail' then
  n = n + 1
  last = now
  redis.call('HSET', KEYS[1], 'n', n, 'last', string.format('%d', last))
  redis.call('PEXPIRE', KEYS[1], idle)
  return 0
end
if n < after then return 0 end
local d = math.min(1000 * 2 ^ math.min(n - after, 20), max)
local until_ms = last + d
if now < until_ms then return until_ms - now end
return 0
";

impl RateLimiter {
    /// Limits kept in this process.
    pub fn in_memory(limits: Limits) -> Self {
        let epoch = Instant::now();
        Self {
            limits,
            backend: Backend::Memory(std::sync::Arc::default()),
            epoch,
        }
    }

    /// Limits shared by every instance through Redis (keys under `prefix`).
    pub fn redis(
        limits: Limits,
        conn: ConnectionManager,
        prefix: String,
        timeout: Duration,
    ) -> Self {
        Self {
            limits,
            backend: Backend::Redis {
                conn,
                prefix,
                timeout,
            },
            epoch: Instant::now(),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes one request of `limit` for `key`.
    pub async fn check(&self, key: &str, limit: Limit) -> Result<(), RetryAfter> {
        match &self.backend {
            Backend::Memory(m) => {
                let now = self.now_ms();
                let Ok(mut map) = m.tat.lock() else {
                    return Ok(());
                };
                match gcra(map.get(key).copied(), now, limit) {
                    Ok(new) => {
                        map.insert(key.to_owned(), new);
                        Ok(())
                    }
                    Err(wait) => Err(RetryAfter(Duration::from_millis(wait))),
                }
            }
            Backend::Redis {
                conn,
                prefix,
                timeout,
            } => {
                let mut inv = GCRA_SCRIPT.key(format!("{prefix}rl:{key}"));
                inv.arg(
                    u64::try_from(limit.interval.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                )
                .arg(limit.burst);
                match redis_wait(conn, *timeout, inv, "rate limit check").await {
                    Some(wait) => Err(RetryAfter(wait)),
                    None => Ok(()),
                }
            }
        }
    }

    async fn delay_op(&self, key: &str, op: DelayOp) -> Option<RetryAfter> {
        let (after, max) = (self.limits.delay_after, self.limits.delay_max);
        match &self.backend {
            Backend::Memory(m) => {
                let now = self.now_ms();
                let Ok(mut map) = m.failures.lock() else {
                    return None;
                };
                let idle = u64::try_from(DELAY_IDLE.as_millis()).unwrap_or(u64::MAX);
                if map
                    .get(key)
                    .is_some_and(|(_, last)| now.saturating_sub(*last) > idle)
                {
                    map.remove(key);
                }
                match op {
                    DelayOp::Clear => {
                        map.remove(key);
                        None
                    }
                    DelayOp::Fail => {
                        let e = map.entry(key.to_owned()).or_insert((0, now));
                        *e = (e.0.saturating_add(1), now);
                        None
                    }
                    DelayOp::Check => {
                        let (n, last) = map.get(key).copied()?;
                        let until = delay_until(n, last, after, max)?;
                        (now < until).then(|| RetryAfter(Duration::from_millis(until - now)))
                    }
                }
            }
            Backend::Redis {
                conn,
                prefix,
                timeout,
            } => {
                let mut inv = DELAY_SCRIPT.key(format!("{prefix}rd:{key}"));
                inv.arg(op.as_str())
                    .arg(after)
                    .arg(u64::try_from(max.as_millis()).unwrap_or(u64::MAX))
                    .arg(u64::try_from(DELAY_IDLE.as_millis()).unwrap_or(u64::MAX));
                redis_wait(conn, *timeout, inv, "login delay check")
                    .await
                    .map(RetryAfter)
            }
        }
    }

    /// Whether `account` from `ip`'s network must still wait after failures.
    pub async fn login_delay(&self, account: &str, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        match self.delay_op(&delay_key(account, ip), DelayOp::Check).await {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Records a failed login of `account` from `ip`'s network.
    pub async fn login_failed(&self, account: &str, ip: Option<IpAddr>) {
        self.delay_op(&delay_key(account, ip), DelayOp::Fail).await;
    }

    /// A successful login clears the delay of `account` from `ip`'s network.
    pub async fn login_succeeded(&self, account: &str, ip: Option<IpAddr>) {
        self.delay_op(&delay_key(account, ip), DelayOp::Clear).await;
    }

    /// Drops in-memory state that carries no information any more (arrival
    /// times in the past, delay records idle for 15 minutes), so keyed state
    /// cannot grow without bound. Returns how many keys remain.
    pub fn prune(&self) -> usize {
        let Backend::Memory(m) = &self.backend else {
            return 0;
        };
        let now = self.now_ms();
        let idle = u64::try_from(DELAY_IDLE.as_millis()).unwrap_or(u64::MAX);
        let mut left = 0;
        if let Ok(mut map) = m.tat.lock() {
            map.retain(|_, tat| *tat > now);
            left += map.len();
        }
        if let Ok(mut map) = m.failures.lock() {
            map.retain(|_, (_, last)| now.saturating_sub(*last) <= idle);
            left += map.len();
        }
        left
    }
}

/// The progressive-delay key: the account and the client's network.
/// The network is the one `ip_ua` binding uses (/24 IPv4, /64 IPv6).
fn delay_key(account: &str, ip: Option<IpAddr>) -> String {
    let net = ip.map_or_else(
        || "-".to_owned(),
        |ip| {
            let (net, len) =
                sesame_core::binding::network(ip, sesame_core::binding::IpPrefixes::default());
            format!("{net}/{len}")
        },
    );
    format!("{account}|{net}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let l = Limit::per(3, Duration::from_secs(3)); // 1 per second, burst 3
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0, l).unwrap());
        }
        assert_eq!(gcra(tat, 0, l), Err(1000));
        assert_eq!(gcra(tat, 999, l), Err(1));
        let t = gcra(tat, 1000, l).unwrap();
        assert_eq!(gcra(Some(t), 1000, l), Err(1000));
        // Idle long enough refills the whole burst.
        let mut tat = Some(t);
        for _ in 0..3 {
            tat = Some(gcra(tat, 60_000, l).unwrap());
        }
        assert!(gcra(tat, 60_000, l).is_err());
    }

    #[test]
    fn progressive_delay_doubles_and_is_capped() {
        let max = Duration::from_secs(60);
        assert_eq!(delay_until(4, 0, 5, max), None);
        assert_eq!(delay_until(5, 0, 5, max), Some(1000));
        assert_eq!(delay_until(6, 0, 5, max), Some(2000));
        assert_eq!(delay_until(8, 0, 5, max), Some(8000));
        assert_eq!(delay_until(50, 0, 5, max), Some(60_000));
    }

    #[test]
    fn parse_limits() {
        let d = |s: &str| match s {
            "1m" => Some(60),
            "1h" => Some(3600),
            "30s" => Some(30),
            _ => None,
        };
        assert_eq!(
            Limit::parse("30/1m", d),
            Some(Limit::per(30, Duration::from_secs(60)))
        );
        assert_eq!(
            Limit::parse("5/30s", d).unwrap().interval,
            Duration::from_secs(6)
        );
        for bad in ["", "30", "0/1m", "x/1m", "30/x", "-1/1m"] {
            assert_eq!(Limit::parse(bad, d), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn memory_state_is_pruned_and_delay_is_per_network() {
        let r = RateLimiter::in_memory(Limits {
            login_ip: Limit::per(1, Duration::from_millis(50)),
            login_account: Limit::per(1, Duration::from_millis(50)),
            register_ip: Limit::per(1, Duration::from_millis(50)),
            refresh_ip: Limit::per(1, Duration::from_millis(50)),
            refresh_session: Limit::per(1, Duration::from_millis(50)),
            forgot_ip: Limit::per(1, Duration::from_millis(50)),
            forgot_account: Limit::per(1, Duration::from_millis(50)),
            verify_ip: Limit::per(1, Duration::from_millis(50)),
            mfa_account: Limit::per(1, Duration::from_millis(50)),
            delay_after: 2,
            delay_max: Duration::from_secs(60),
        });
        for i in 0..100 {
            assert!(r.check(&format!("k{i}"), r.limits.login_ip).await.is_ok());
        }
        assert!(r.check("k0", r.limits.login_ip).await.is_err());
        assert_eq!(r.prune(), 100);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(r.prune(), 0, "past arrival times are dropped");

        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let same_net: IpAddr = "192.0.2.99".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        r.login_failed("ann", Some(a)).await;
        r.login_failed("ann", Some(a)).await;
        assert!(r.login_delay("ann", Some(same_net)).await.is_err());
        assert!(
            r.login_delay("ann", Some(other)).await.is_ok(),
            "another network is not delayed"
        );
        assert!(
            r.login_delay("bob", Some(a)).await.is_ok(),
            "another account is not delayed"
        );
        r.login_succeeded("ann", Some(a)).await;
        assert!(r.login_delay("ann", Some(a)).await.is_ok());
    }
}
