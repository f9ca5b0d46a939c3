//! Token binding (DESIGN §1, off by default): what ties an access token to the
//! client it was issued to, so a token copied out of one browser does not work
//! from another.
//!
//! - **cookie** (OWASP token sidejacking): the browser holds a value `fp` in
//!   an `HttpOnly; Secure; SameSite=Strict` `__Host-sesame_fp` cookie; the
//!   token carries `cnf.fph = b64url(SHA-256(fp))`. Checking needs no key, so
//!   any resource server on the same site checks it.
//! - **ip_ua**: the token carries `cnf.ipua`, a truncated HMAC of the client
//!   IP reduced to its network (/24 IPv4, /64 IPv6 by default) and the user
//!   agent, under a key derived from `binding_key`; whoever checks it needs
//!   that key.
//!
//! `fp` is not stored: it is `HMAC(K_fp, sid)` with `K_fp` derived from
//! `binding_key`, so every instance computes the same value for a session
//! and refresh can re-issue a bound token without a store column. It is as
//! unpredictable as a random value to anyone without `binding_key`; the
//! residual risk (documented in the operations guide) is that `binding_key`
//! plus a session id yields that session's `fp`.

use crate::crypto;
use crate::ids::SessionId;
use serde_json::{Value, json};
use std::net::IpAddr;
use zeroize::Zeroizing;

/// Name of the cookie that carries `fp`.
pub const FP_COOKIE: &str = "__Host-sesame_fp";

/// The binding mode (`binding` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingMode {
    /// No binding (default).
    #[default]
    None,
    /// The `__Host-sesame_fp` cookie.
    Cookie,
    /// Client IP network and user agent.
    IpUa,
}

impl BindingMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Cookie => "cookie",
            Self::IpUa => "ip_ua",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "cookie" => Some(Self::Cookie),
            "ip_ua" => Some(Self::IpUa),
            _ => None,
        }
    }
}

/// Prefix lengths `ip_ua` reduces addresses to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefixes {
    /// IPv4 prefix length (0–32), 24 by default.
    pub v4: u8,
    /// IPv6 prefix length (0–128), 64 by default.
    pub v6: u8,
}

impl Default for IpPrefixes {
    fn default() -> Self {
        Self { v4: 24, v6: 64 }
    }
}

/// Keys derived from `binding_key`, one per use.
#[derive(Clone)]
pub struct BindingKeys {
    fp: Zeroizing<[u8; 32]>,
    ip_ua: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for BindingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindingKeys(..)")
    }
}

impl BindingKeys {
    /// Derives both keys from the `binding_key` secret.
    pub fn derive(binding_key: &[u8]) -> Self {
        Self {
            fp: Zeroizing::new(crypto::hkdf32(binding_key, b"sesame/bind/fp")),
            ip_ua: Zeroizing::new(crypto::hkdf32(binding_key, b"sesame/bind/ip_ua")),
        }
    }

    /// The `__Host-sesame_fp` value of a session.
    pub fn fp_cookie(&self, sid: SessionId) -> String {
        crypto::b64(&crypto::hmac_sha256(
            &*self.fp,
            &[b"sesame/fp", sid.as_bytes()],
        ))
    }

    /// The `ip_ua` tag of a client.
    pub fn ip_ua_tag(&self, ip: Option<IpAddr>, user_agent: &str, prefixes: IpPrefixes) -> String {
        let net = ip.map(|ip| network(ip, prefixes));
        let net_bytes: Vec<u8> = match net {
            Some((IpAddr::V4(a), len)) => [&a.octets()[..], &[len]].concat(),
            Some((IpAddr::V6(a), len)) => [&a.octets()[..], &[len]].concat(),
            None => Vec::new(),
        };
        let mac = crypto::hmac_sha256(
            &*self.ip_ua,
            &[
                b"sesame/ip_ua",
                &(net_bytes.len() as u32).to_be_bytes(),
                &net_bytes,
                user_agent.as_bytes(),
            ],
        );
        crypto::b64(&mac[..16])
    }
}

/// `b64url(SHA-256(fp))`, the `cnf.fph` value for a cookie value.
pub fn fp_hash(fp: &str) -> String {
    crypto::b64(&crypto::sha256(fp.as_bytes()))
}

/// The `cnf` claim for a binding.
pub fn cnf_fp(fp: &str) -> Value {
    json!({ "fph": fp_hash(fp) })
}

/// The `cnf` claim for an `ip_ua` tag.
pub fn cnf_ip_ua(tag: &str) -> Value {
    json!({ "ipua": tag })
}

/// What a request must show for a token's `cnf`, checked by the server and by
/// the resource-server layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingFailure {
    /// The token is cookie-bound and the cookie is missing or different.
    #[error("fingerprint cookie missing or different")]
    Cookie,
    /// The token is `ip_ua`-bound and the client's network or user agent changed.
    #[error("client network or user agent changed")]
    IpUa,
    /// The token is `ip_ua`-bound and this checker has no binding key.
    #[error("ip_ua binding cannot be checked without the binding key")]
    NoKey,
    /// `cnf` has a shape Sesame does not issue.
    #[error("unknown cnf")]
    Unknown,
}

/// The facts of a request that binding looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// The `__Host-sesame_fp` cookie, if sent (exactly once).
    pub fp_cookie: Option<&'a str>,
    /// The client IP (after `trusted_proxies`).
    pub ip: Option<IpAddr>,
    /// The user agent.
    pub user_agent: &'a str,
}

/// Checks a token's `cnf` (if any) against a request. A token without `cnf`
/// was issued unbound (binding off, or a bearer-transport session under
/// cookie binding) and passes.
pub fn check(
    cnf: Option<&Value>,
    req: &RequestFacts<'_>,
    keys: Option<&BindingKeys>,
    prefixes: IpPrefixes,
) -> Result<(), BindingFailure> {
    let Some(cnf) = cnf else { return Ok(()) };
    let obj = cnf.as_object().ok_or(BindingFailure::Unknown)?;
    if let Some(fph) = obj.get("fph") {
        let fph = fph.as_str().ok_or(BindingFailure::Unknown)?;
        let cookie = req.fp_cookie.ok_or(BindingFailure::Cookie)?;
        if !crypto::ct_eq(fp_hash(cookie).as_bytes(), fph.as_bytes()) {
            return Err(BindingFailure::Cookie);
        }
        return Ok(());
    }
    if let Some(tag) = obj.get("ipua") {
        let tag = tag.as_str().ok_or(BindingFailure::Unknown)?;
        let keys = keys.ok_or(BindingFailure::NoKey)?;
        let expect = keys.ip_ua_tag(req.ip, req.user_agent, prefixes);
        if !crypto::ct_eq(expect.as_bytes(), tag.as_bytes()) {
            return Err(BindingFailure::IpUa);
        }
        return Ok(());
    }
    Err(BindingFailure::Unknown)
}

/// `ip` reduced to its network under `prefixes` (an IPv4-mapped IPv6
/// address counts as the IPv4 client it maps).
pub fn network(ip: IpAddr, prefixes: IpPrefixes) -> (IpAddr, u8) {
    match ip {
        IpAddr::V4(a) => {
            let len = prefixes.v4.min(32);
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            (IpAddr::V4((u32::from(a) & mask).into()), len)
        }
        IpAddr::V6(a) => {
            // An IPv4-mapped address is the IPv4 client it maps.
            if let Some(v4) = a.to_ipv4_mapped() {
                return network(IpAddr::V4(v4), prefixes);
            }
            let len = prefixes.v6.min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            (IpAddr::V6((u128::from(a) & mask).into()), len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn ip_ua_tag_follows_the_network_and_the_user_agent() {
        let k = BindingKeys::derive(&[7u8; 32]);
        let p = IpPrefixes::default();
        let a = k.ip_ua_tag(ip("192.0.2.10"), "UA", p);
        assert_eq!(a, k.ip_ua_tag(ip("192.0.2.200"), "UA", p));
        assert_ne!(a, k.ip_ua_tag(ip("192.0.3.10"), "UA", p));
        assert_ne!(a, k.ip_ua_tag(ip("192.0.2.10"), "UA2", p));
        assert_eq!(a, k.ip_ua_tag(ip("::ffff:192.0.2.99"), "UA", p));
        let b = k.ip_ua_tag(ip("2001:db8:1:2:aaaa::1"), "UA", p);
        assert_eq!(b, k.ip_ua_tag(ip("2001:db8:1:2:bbbb::9"), "UA", p));
        assert_ne!(b, k.ip_ua_tag(ip("2001:db8:1:3::1"), "UA", p));
        // Another key gives another tag.
        assert_ne!(
            a,
            BindingKeys::derive(&[8u8; 32]).ip_ua_tag(ip("192.0.2.10"), "UA", p)
        );
    }

    #[test]
    fn check_each_binding() {
        let k = BindingKeys::derive(&[7u8; 32]);
        let p = IpPrefixes::default();
        let sid = SessionId::random();
        let fp = k.fp_cookie(sid);
        assert_ne!(fp, k.fp_cookie(SessionId::random()));
        let cnf = cnf_fp(&fp);
        let good = RequestFacts {
            fp_cookie: Some(&fp),
            ..Default::default()
        };
        assert_eq!(check(Some(&cnf), &good, None, p), Ok(()));
        let none = RequestFacts::default();
        assert_eq!(
            check(Some(&cnf), &none, None, p),
            Err(BindingFailure::Cookie)
        );
        let other = RequestFacts {
            fp_cookie: Some("x"),
            ..Default::default()
        };
        assert_eq!(
            check(Some(&cnf), &other, None, p),
            Err(BindingFailure::Cookie)
        );

        let tag = k.ip_ua_tag(ip("198.51.100.7"), "Firefox", p);
        let cnf = cnf_ip_ua(&tag);
        let req = RequestFacts {
            ip: ip("198.51.100.8"),
            user_agent: "Firefox",
            ..Default::default()
        };
        assert_eq!(check(Some(&cnf), &req, Some(&k), p), Ok(()));
        assert_eq!(check(Some(&cnf), &req, None, p), Err(BindingFailure::NoKey));
        let moved = RequestFacts {
            user_agent: "Chrome",
            ..req
        };
        assert_eq!(
            check(Some(&cnf), &moved, Some(&k), p),
            Err(BindingFailure::IpUa)
        );
        assert_eq!(check(None, &moved, Some(&k), p), Ok(()));
        assert_eq!(
            check(Some(&json!({"x": 1})), &req, Some(&k), p),
            Err(BindingFailure::Unknown)
        );
    }
}
