//! The client's IP: the socket peer, unless that peer is a trusted proxy, in
//! which case the rightmost `X-Forwarded-For` hop that is not itself trusted
//! (everything left of it could have been written by the client).

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Resolves the client IP from the peer address and headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        for part in s.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A malformed hop: nothing to its left can be trusted either.
                Err(_) => hops.clear(),
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.2"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            resolve(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        // Not from a trusted proxy: the header is ignored.
        let direct: IpAddr = "5.5.5.5".parse().unwrap();
        assert_eq!(resolve(direct, &h, &trusted), direct);
        // No trusted proxies configured: always the socket.
        assert_eq!(resolve(proxy, &h, &[]), proxy);
    }
}
