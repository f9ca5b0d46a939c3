//! Reading Sesame's cookies and the Origin rule for cookie-authenticated
//! unsafe requests, the same way the server does.
//!
//! Names match exactly (case-sensitive), and a cookie of ours that appears
//! twice — cookie tossing from a sibling subdomain — is a 400
//! `duplicate_cookie`, never a guess about which one is real.

use crate::problem::AuthRejection;
use http::{HeaderMap, Method, header};

/// Longest `Cookie` header line read; longer lines are skipped.
const MAX_COOKIE_HEADER: usize = 8192;

/// The value of cookie `name` if present exactly once, borrowed from the
/// headers (no allocation).
pub(crate) fn get<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, AuthRejection> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        if s.len() > MAX_COOKIE_HEADER {
            continue;
        }
        for pair in s.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() {
                    return Err(AuthRejection::duplicate_cookie());
                }
                found = Some(v.trim_matches('"'));
            }
        }
    }
    Ok(found)
}

/// Whether `method` needs the Origin check (anything but GET, HEAD, OPTIONS).
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The Origin rule: `Origin` must be an allowed origin; without `Origin`,
/// the origin of `Referer` must be; `Origin: null` and neither are refused.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let ok = |o: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(o));
    match headers.get(header::ORIGIN) {
        Some(o) => o.to_str().is_ok_and(|o| o != "null" && ok(o)),
        None => headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(referer_origin)
            .is_some_and(ok),
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL.
fn referer_origin(r: &str) -> Option<&str> {
    let rest = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(&r[..r.len() - rest.len() + end])
}

/// Normalises a configured origin: scheme and host lower-cased, no trailing
/// slash, no path. `None` when it is not an http(s) origin.
pub(crate) fn normalise_origin(o: &str) -> Option<String> {
    let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn cookie_exactly_once() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-x=v; b=2"),
        );
        assert_eq!(get(&h, "__Host-x"), Ok(Some("v")));
        assert_eq!(get(&h, "__host-x"), Ok(None));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-x=w"));
        assert_eq!(get(&h, "__Host-x"), Err(AuthRejection::duplicate_cookie()));
    }

    #[test]
    fn origin_rule() {
        let allowed = vec!["https://app.example".to_string()];
        let check = |pairs: &[(&str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_static(v),
                );
            }
            origin_allowed(&h, &allowed)
        };
        assert!(check(&[("origin", "https://app.example")]));
        assert!(!check(&[("origin", "https://evil.example")]));
        assert!(!check(&[("origin", "null")]));
        assert!(!check(&[]));
        assert!(check(&[("referer", "https://app.example/page?x=1")]));
        assert!(!check(&[("referer", "https://app.example.evil/page")]));
        assert!(!check(&[("referer", "https://app.example@evil/")]));
        // Origin wins over Referer.
        assert!(!check(&[
            ("origin", "https://evil.example"),
            ("referer", "https://app.example/")
        ]));
        assert_eq!(
            normalise_origin("HTTPS://App.Example/").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(normalise_origin("https://app.example/path"), None);
    }
}
