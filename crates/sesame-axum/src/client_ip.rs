//! The client's IP: the socket peer, unless that peer is a trusted proxy, in
//! which case the forwarding headers are walked from the right.
//!
//! The design decision: everything a proxy forwards is only as trustworthy
//! as the proxy that wrote it. The walk starts at the socket peer; while the
//! address reached is a trusted proxy, the hop it reported (the next one to
//! the left) is believed. It stops at the first address that is *not* a
//! trusted proxy (that is the client), or where the chain is unknown — a
//! malformed hop, an obfuscated or `unknown` RFC 7239 node, or the start of
//! the list — and answers the last address it reached. So anything a client
//! prepends left of the real hop is never read, and headers from a peer that
//! is not a trusted proxy are ignored altogether.
//!
//! Headers: RFC 7239 `Forwarded` (`for=` of each element) is preferred when
//! present; otherwise `X-Forwarded-For`. Several lines of one header are read
//! in order, as one list.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// One hop of a forwarding list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Ip(IpAddr),
    /// Malformed, `unknown`, or an obfuscated identifier: the chain is
    /// unknown from here leftwards.
    Unknown,
}

/// Resolves the client IP from the socket peer and the request headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = if headers.contains_key("forwarded") {
        forwarded_hops(headers)
    } else {
        x_forwarded_for_hops(headers)
    };
    let mut current = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(&current) {
            break;
        }
        match *hop {
            Hop::Ip(ip) => current = ip,
            Hop::Unknown => break,
        }
    }
    current
}

fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else {
            hops.push(Hop::Unknown);
            continue;
        };
        for part in s.split(',') {
            hops.push(match part.trim().parse::<IpAddr>() {
                Ok(ip) => Hop::Ip(ip),
                Err(_) => Hop::Unknown,
            });
        }
    }
    hops
}

/// The `for=` node of each `Forwarded` element, left to right. An element
/// without `for=` is an unknown hop.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for v in headers.get_all("forwarded") {
        let Ok(s) = v.to_str() else {
            hops.push(Hop::Unknown);
            continue;
        };
        for element in split_unquoted(s, ',') {
            let mut node = None;
            let mut bad = false;
            for pair in split_unquoted(element, ';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let Some((k, v)) = pair.split_once('=') else {
                    bad = true;
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("for") {
                    if node.is_some() {
                        bad = true;
                    }
                    node = Some(v.trim());
                }
            }
            hops.push(match node {
                Some(n) if !bad => parse_node(n),
                _ => Hop::Unknown,
            });
        }
    }
    hops
}

/// Splits on `sep` outside double quotes (a quoted value may contain it).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// An RFC 7239 node: `192.0.2.60`, `"192.0.2.60:4711"`,
/// `"[2001:db8::1]"`, `"[2001:db8::1]:4711"`. `unknown` and obfuscated
/// identifiers (`_hidden`) name no address.
fn parse_node(raw: &str) -> Hop {
    let node = match raw.strip_prefix('"') {
        Some(rest) => match rest.strip_suffix('"') {
            Some(inner) => inner,
            None => return Hop::Unknown,
        },
        None => raw,
    };
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Hop::Unknown;
        };
        if !(after.is_empty() || valid_port(after.strip_prefix(':'))) {
            return Hop::Unknown;
        }
        match v6.parse::<std::net::Ipv6Addr>() {
            Ok(a) => IpAddr::V6(a),
            Err(_) => return Hop::Unknown,
        }
    } else {
        let (host, port) = match node.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (node, None),
        };
        if port.is_some() && !valid_port(port) {
            return Hop::Unknown;
        }
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(a) => IpAddr::V4(a),
            Err(_) => return Hop::Unknown,
        }
    };
    Hop::Ip(ip)
}

/// A numeric port, or an obfuscated one (`_abc`), which RFC 7239 allows.
fn valid_port(p: Option<&str>) -> bool {
    match p {
        Some(p) if p.starts_with('_') => {
            p.len() > 1
                && p[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        }
        Some(p) => !p.is_empty() && p.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn trusted() -> Vec<IpNet> {
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ]
    }

    #[test]
    fn x_forwarded_for_rightmost_untrusted_hop() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("1.2.3.4"));
        // No trusted proxies configured: always the socket.
        assert_eq!(resolve(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }

    #[test]
    fn spoofed_header_from_an_untrusted_peer_is_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=1.1.1.1")]);
        assert_eq!(resolve(ip("5.5.5.5"), &h, &trusted()), ip("5.5.5.5"));
    }

    #[test]
    fn client_prepended_garbage_left_of_the_real_hop_is_ignored() {
        // The client sent "X-Forwarded-For: 9.9.9.9, garbage"; the proxy
        // appended the address it saw.
        let h = headers(&[("x-forwarded-for", "9.9.9.9, garbage, 1.2.3.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("1.2.3.4"));
        let h = headers(&[("forwarded", "for=9.9.9.9, for=_hidden, for=1.2.3.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("1.2.3.4"));
    }

    #[test]
    fn a_malformed_hop_stops_the_walk() {
        // Right of the malformed hop everything is trusted: the walk stops
        // at the last address it reached, never reading 9.9.9.9.
        let h = headers(&[("x-forwarded-for", "9.9.9.9, nonsense, 10.0.0.3")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("10.0.0.3"));
        let h = headers(&[("forwarded", "for=9.9.9.9, for=unknown")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("10.0.0.1"));
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("10.1.1.1"));
    }

    #[test]
    fn several_header_lines_form_one_list() {
        let h = headers(&[
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("7.7.7.7"));
    }

    #[test]
    fn forwarded_node_forms() {
        let t = trusted();
        let p = ip("10.0.0.1");
        for (value, want) in [
            ("for=192.0.2.60", "192.0.2.60"),
            ("For=\"192.0.2.60:4711\"", "192.0.2.60"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=192.0.2.43;proto=https;by=10.0.0.1", "192.0.2.43"),
            ("proto=http;for=\"192.0.2.60:_port\"", "192.0.2.60"),
            ("for=192.0.2.43, for=\"[2001:db8:ffff::7]\"", "192.0.2.43"),
            // Not an address: the walk stops at the peer.
            ("for=unknown", "10.0.0.1"),
            ("for=_hidden", "10.0.0.1"),
            ("for=\"[2001:db8::1\"", "10.0.0.1"),
            ("for=\"192.0.2.60:99999\"", "10.0.0.1"),
            ("proto=https", "10.0.0.1"),
            ("for=2001:db8::1", "10.0.0.1"),
        ] {
            let mut h = HeaderMap::new();
            h.insert("forwarded", HeaderValue::from_str(value).unwrap());
            assert_eq!(resolve(p, &h, &t), ip(want), "{value}");
        }
    }

    #[test]
    fn forwarded_is_preferred_over_x_forwarded_for() {
        let h = headers(&[("x-forwarded-for", "3.3.3.3"), ("forwarded", "for=4.4.4.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("4.4.4.4"));
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let h = headers(&[("forwarded", "for=1.2.3.4;ext=\"a,b;c\"")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted()), ip("1.2.3.4"));
    }
}
