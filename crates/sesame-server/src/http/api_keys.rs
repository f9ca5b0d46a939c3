//! API keys for the admin API and the revocation feed.
//!
//! A key is `sk_` + 32 random bytes (base64url). The configuration holds
//! only `sha256:` + base64url(SHA-256(key)), so a leaked configuration opens
//! nothing; two entries let an old and a new key work side by side during a
//! rotation. Presented keys are hashed and compared in constant time against
//! every configured hash (no early exit).

use super::extract::AppState;
use crate::problem::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sesame_core::crypto;

/// A freshly generated key and the hash to configure.
#[derive(Debug)]
pub struct NewApiKey {
    /// Give this to the caller; it is shown once.
    pub key: String,
    /// Put this in `admin_api_keys` or `service_api_keys`.
    pub hash: String,
}

/// Generates a key (`sesame api-key new`).
pub fn new_api_key() -> NewApiKey {
    let key = format!("sk_{}", crypto::b64(&crypto::random::<32>()));
    let hash = format!("sha256:{}", crypto::b64(&crypto::sha256(key.as_bytes())));
    NewApiKey { key, hash }
}

/// Whether the request's `Authorization: Bearer` key is one of `allowed`.
pub fn check(headers: &HeaderMap, allowed: &[[u8; 32]]) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim())
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(ApiError::invalid_api_key)?;
    let hash = crypto::sha256(presented.as_bytes());
    let mut ok = false;
    for h in allowed {
        ok |= crypto::ct_eq(&hash, h);
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_api_key())
    }
}

/// A request carrying an admin API key (`admin_api_keys`).
#[derive(Debug, Clone, Copy)]
pub struct AdminKey;

impl FromRequestParts<AppState> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(&parts.headers, &state.http.admin_api_keys).map(|()| Self)
    }
}

/// A request carrying a service API key (`service_api_keys`): the
/// revocation feed.
#[derive(Debug, Clone, Copy)]
pub struct ServiceKey;

impl FromRequestParts<AppState> for ServiceKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        check(&parts.headers, &state.http.service_api_keys).map(|()| Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_configured_key_passes() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.key.starts_with("sk_") && a.hash.starts_with("sha256:"));
        let hash = |k: &NewApiKey| -> [u8; 32] {
            crypto::b64_decode(k.hash.strip_prefix("sha256:").unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        };
        let allowed = [hash(&a), hash(&b)];
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(check(&with(&format!("Bearer {}", a.key)), &allowed).is_ok());
        assert!(check(&with(&format!("bearer {}", b.key)), &allowed).is_ok());
        assert!(check(&with(&format!("Bearer {}", new_api_key().key)), &allowed).is_err());
        assert!(check(&with(&format!("Basic {}", a.key)), &allowed).is_err());
        assert!(check(&HeaderMap::new(), &allowed).is_err());
        assert!(check(&with(&format!("Bearer {}", a.key)), &[]).is_err());
    }
}
