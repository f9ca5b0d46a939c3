//! Sesame's cookies, read and written by hand.
//!
//! Reading: names match exactly (case-sensitive: `__host-sesame_rt` is not
//! ours, RFC 6265bis §5.4), and a cookie of ours that appears twice — cookie
//! tossing from a sibling subdomain — is a 400 `duplicate_cookie`, never a
//! guess about which one is real. Writing: `__Host-` cookies (Secure, Path=/,
//! no Domain), refresh `SameSite=Strict`, access `SameSite=Lax`.

use crate::problem::ApiError;
use axum::http::{HeaderMap, HeaderValue, header};

/// The refresh cookie.
pub const REFRESH: &str = "__Host-sesame_rt";
/// The access cookie (cookie transport, no `cookie_domain`).
pub const ACCESS: &str = "__Host-sesame_at";
/// The access cookie when `cookie_domain` is set.
pub const ACCESS_DOMAIN: &str = "__Secure-sesame_at";
/// The binding cookie (`binding = "cookie"`).
pub const FP: &str = sesame_core::binding::FP_COOKIE;

/// Marker on a response: the session is over, expire Sesame's cookies.
#[derive(Debug, Clone, Copy)]
pub struct EndSession;

/// Longest cookie header we read (name + value ≤ 4096 per cookie anyway).
const MAX_COOKIE_HEADER: usize = 8192;

/// The value of cookie `name`, if present exactly once.
pub fn get(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        if s.len() > MAX_COOKIE_HEADER {
            return Err(ApiError::invalid("cookie", "Cookie header too large"));
        }
        for pair in s.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                if found.is_some() {
                    return Err(ApiError::duplicate_cookie());
                }
                found = Some(v.trim_matches('"').to_string());
            }
        }
    }
    Ok(found)
}

/// How cookies are written for this deployment.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    /// `cookie_domain` for the access cookie.
    pub domain: Option<String>,
    /// Send `Clear-Site-Data: "cookies"` on logout.
    pub clear_site_data: bool,
}

impl CookiePolicy {
    fn access_name(&self) -> &'static str {
        if self.domain.is_some() {
            ACCESS_DOMAIN
        } else {
            ACCESS
        }
    }

    /// The access cookie's name for reading.
    pub fn access_cookie(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        get(headers, self.access_name())
    }

    /// `Set-Cookie` for a refresh token living `max_age` seconds.
    pub fn refresh(&self, token: &str, max_age: i64) -> HeaderValue {
        hv(format!(
            "{REFRESH}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        ))
    }

    /// `Set-Cookie` for an access token (cookie transport).
    pub fn access(&self, token: &str, max_age: i64) -> HeaderValue {
        match &self.domain {
            Some(d) => hv(format!(
                "{ACCESS_DOMAIN}={token}; Path=/; Domain={d}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
            )),
            None => hv(format!(
                "{ACCESS}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
            )),
        }
    }

    /// `Set-Cookie` for the binding value `__Host-sesame_fp` (cookie binding):
    /// `SameSite=Strict` like the refresh cookie it lives beside.
    pub fn fingerprint(&self, fp: &str, max_age: i64) -> HeaderValue {
        hv(format!(
            "{FP}={fp}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
        ))
    }

    /// Appends headers that expire every Sesame cookie.
    pub fn expire_all(&self, headers: &mut HeaderMap) {
        headers.append(
            header::SET_COOKIE,
            hv(format!(
                "{REFRESH}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
            )),
        );
        headers.append(header::SET_COOKIE, self.access("", 0));
        headers.append(header::SET_COOKIE, self.fingerprint("", 0));
        if self.clear_site_data {
            headers.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
        }
    }
}

fn hv(s: String) -> HeaderValue {
    // Tokens are base64url/JWT characters and the domain was validated at
    // start-up, so the value is always a valid header; fall back to a harmless one.
    HeaderValue::from_str(&s)
        .unwrap_or_else(|_| HeaderValue::from_static("sesame_invalid=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn exact_names_and_duplicates() {
        assert_eq!(
            get(&headers(&["a=1; __Host-sesame_rt=x"]), REFRESH)
                .unwrap()
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            get(&headers(&["__host-sesame_rt=x"]), REFRESH).unwrap(),
            None
        );
        assert_eq!(
            get(
                &headers(&["__Host-sesame_rt=x; __Host-sesame_rt=y"]),
                REFRESH
            )
            .unwrap_err()
            .code(),
            "duplicate_cookie"
        );
        assert_eq!(
            get(
                &headers(&["__Host-sesame_rt=x", "__Host-sesame_rt=y"]),
                REFRESH
            )
            .unwrap_err()
            .code(),
            "duplicate_cookie"
        );
        assert_eq!(get(&headers(&["garbage;;;=;"]), REFRESH).unwrap(), None);
    }
}
