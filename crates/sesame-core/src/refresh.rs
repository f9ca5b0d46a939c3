//! The refresh-token format: opaque, one-time, chained.
//!
//! ```text
//! token      = "srt_" base64url( ver:1 | sid:16 | gen:4 | secret:32 | tag:16 )
//! secret_0   = 32 random bytes (OS CSPRNG)
//! secret_g+1 = HMAC-SHA256(K_chain[ver], "sesame/rt/chain" | sid | gen+1 | secret_g)
//! tag        = HMAC-SHA256(K_tag[ver], "sesame/rt/tag" | ver | sid | gen | secret)[0..16]
//! ```
//!
//! The tag is checked, in constant time, before any store lookup, so a forged
//! or corrupted token never reaches the database and can never trigger a
//! revocation. The store keeps only SHA-256 of the current and previous
//! secrets: a dump of it mints nothing. A grace answer is *recomputed* from
//! the presented parent, so every instance answers the same successor.

use crate::crypto;
use crate::ids::SessionId;
use secrecy::{ExposeSecret, SecretBox};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroize;

const PREFIX: &str = "srt_";
const RAW_LEN: usize = 1 + 16 + 4 + 32 + 16;
/// Length of the encoded token, prefix included.
pub const ENCODED_LEN: usize = PREFIX.len() + (RAW_LEN * 4).div_ceil(3);

/// One version of the refresh key, split into its two derived keys.
struct KeyPair {
    chain: [u8; 32],
    tag: [u8; 32],
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.chain.zeroize();
        self.tag.zeroize();
    }
}

/// The refresh keys: the current version (used to mint) and older versions
/// (still accepted until their sessions end, so rotating the refresh key
/// logs nobody out).
pub struct RefreshKeys {
    current: u8,
    keys: BTreeMap<u8, KeyPair>,
}

impl fmt::Debug for RefreshKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshKeys")
            .field("current", &self.current)
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why refresh key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshKeyError {
    /// Fewer than 32 bytes of key material.
    #[error("refresh key must be at least 32 bytes")]
    TooShort,
    /// Version 0 is reserved, and each version may appear once.
    #[error("refresh key version {0} is invalid or repeated")]
    BadVersion(u8),
}

impl RefreshKeys {
    /// Keys from `(version, secret)` pairs; the highest version mints.
    pub fn new(versions: Vec<(u8, SecretBox<[u8]>)>) -> Result<Self, RefreshKeyError> {
        let mut keys = BTreeMap::new();
        for (ver, secret) in versions {
            let ikm = secret.expose_secret();
            if ikm.len() < 32 {
                return Err(RefreshKeyError::TooShort);
            }
            if ver == 0 || keys.contains_key(&ver) {
                return Err(RefreshKeyError::BadVersion(ver));
            }
            keys.insert(
                ver,
                KeyPair {
                    chain: crypto::hkdf32(ikm, b"sesame/rt/k_chain"),
                    tag: crypto::hkdf32(ikm, b"sesame/rt/k_tag"),
                },
            );
        }
        let current = *keys.keys().next_back().ok_or(RefreshKeyError::TooShort)?;
        Ok(Self { current, keys })
    }

    /// A single version-1 key.
    pub fn single(secret: &[u8]) -> Result<Self, RefreshKeyError> {
        Self::new(vec![(
            1,
            SecretBox::new(secret.to_vec().into_boxed_slice()),
        )])
    }

    /// The version that mints new tokens.
    pub fn current_version(&self) -> u8 {
        self.current
    }

    fn tag(&self, ver: u8, sid: &SessionId, gen_: u32, secret: &[u8; 32]) -> Option<[u8; 16]> {
        let k = self.keys.get(&ver)?;
        let full = crypto::hmac_sha256(
            &k.tag,
            &[
                b"sesame/rt/tag",
                &[ver],
                sid.as_bytes(),
                &gen_.to_be_bytes(),
                secret,
            ],
        );
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Some(out)
    }

    /// Mints generation 0 of a new session's chain under the current version.
    pub fn mint_first(&self, sid: SessionId) -> RefreshToken {
        self.assemble(self.current, sid, 0, crypto::random())
    }

    /// The token that follows `parent` in its chain (same key version).
    pub fn successor(&self, parent: &RefreshToken) -> Option<RefreshToken> {
        let k = self.keys.get(&parent.ver)?;
        let next_gen = parent.gen_.checked_add(1)?;
        let secret = crypto::hmac_sha256(
            &k.chain,
            &[
                b"sesame/rt/chain",
                parent.sid.as_bytes(),
                &next_gen.to_be_bytes(),
                &parent.secret,
            ],
        );
        Some(self.assemble(parent.ver, parent.sid, next_gen, secret))
    }

    fn assemble(&self, ver: u8, sid: SessionId, gen_: u32, secret: [u8; 32]) -> RefreshToken {
        // `ver` always names a key we hold: callers pass `current` or a parsed, verified token's.
        let tag = self.tag(ver, &sid, gen_, &secret).unwrap_or([0; 16]);
        RefreshToken {
            ver,
            sid,
            gen_,
            secret,
            tag,
        }
    }

    /// Strictly parses a presented token and checks its tag in constant time.
    /// Any failure is `None`: the caller answers `refresh_token_invalid`
    /// without touching the store.
    pub fn verify(&self, presented: &str) -> Option<RefreshToken> {
        let t = RefreshToken::decode(presented)?;
        let expected = self.tag(t.ver, &t.sid, t.gen_, &t.secret)?;
        crypto::ct_eq(&expected, &t.tag).then_some(t)
    }
}

/// A decoded refresh token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    ver: u8,
    sid: SessionId,
    gen_: u32,
    secret: [u8; 32],
    tag: [u8; 16],
}

impl Drop for RefreshToken {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("ver", &self.ver)
            .field("sid", &self.sid)
            .field("gen", &self.gen_)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    /// The session this token belongs to.
    pub fn session_id(&self) -> SessionId {
        self.sid
    }

    /// The generation in the session's chain.
    pub fn generation(&self) -> u32 {
        self.gen_
    }

    /// The key version that tagged it.
    pub fn key_version(&self) -> u8 {
        self.ver
    }

    /// SHA-256 of the secret: what the store keeps.
    pub fn secret_hash(&self) -> [u8; 32] {
        crypto::sha256(&self.secret)
    }

    /// The wire form, `srt_…`.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.push(self.ver);
        raw.extend_from_slice(self.sid.as_bytes());
        raw.extend_from_slice(&self.gen_.to_be_bytes());
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(&self.tag);
        let mut s = String::with_capacity(ENCODED_LEN);
        s.push_str(PREFIX);
        s.push_str(&crypto::b64(&raw));
        raw.zeroize();
        s
    }

    /// Parses the wire form without checking the tag (see
    /// [`RefreshKeys::verify`]). Exact length, exact alphabet, canonical
    /// base64url; anything else is `None`.
    pub fn decode(s: &str) -> Option<Self> {
        if s.len() != ENCODED_LEN {
            return None;
        }
        let body = s.strip_prefix(PREFIX)?;
        if !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let raw = crypto::b64_decode(body)?;
        if raw.len() != RAW_LEN {
            return None;
        }
        let mut sid = [0u8; 16];
        sid.copy_from_slice(&raw[1..17]);
        let mut gen_ = [0u8; 4];
        gen_.copy_from_slice(&raw[17..21]);
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&raw[21..53]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&raw[53..69]);
        Some(Self {
            ver: raw[0],
            sid: SessionId::from_bytes(sid),
            gen_: u32::from_be_bytes(gen_),
            secret,
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> RefreshKeys {
        RefreshKeys::single(&[7u8; 32]).unwrap()
    }

    #[test]
    fn mint_verify_and_chain() {
        let k = keys();
        let t0 = k.mint_first(SessionId::random());
        let s = t0.encode();
        assert_eq!(s.len(), ENCODED_LEN);
        assert!(s.starts_with("srt_"));
        let back = k.verify(&s).unwrap();
        assert_eq!(back, t0);
        let t1 = k.successor(&t0).unwrap();
        assert_eq!(t1.generation(), 1);
        assert_eq!(t1.session_id(), t0.session_id());
        assert_eq!(k.verify(&t1.encode()), Some(t1.clone()));
        // The chain is deterministic: every instance computes the same successor.
        assert_eq!(k.successor(&t0), Some(t1));
    }

    #[test]
    fn other_key_rejects_and_old_versions_still_verify() {
        let t = keys().mint_first(SessionId::random());
        assert!(
            RefreshKeys::single(&[8u8; 32])
                .unwrap()
                .verify(&t.encode())
                .is_none()
        );
        let both = RefreshKeys::new(vec![
            (1, SecretBox::new(vec![7u8; 32].into_boxed_slice())),
            (2, SecretBox::new(vec![9u8; 32].into_boxed_slice())),
        ])
        .unwrap();
        assert_eq!(both.current_version(), 2);
        assert!(both.verify(&t.encode()).is_some());
        assert_eq!(both.mint_first(SessionId::random()).key_version(), 2);
    }

    #[test]
    fn short_keys_refused() {
        assert_eq!(
            RefreshKeys::single(&[1u8; 31]).unwrap_err(),
            RefreshKeyError::TooShort
        );
    }

    proptest! {
        #[test]
        fn any_bit_flip_is_rejected(pos in 4usize..ENCODED_LEN, c in "[A-Za-z0-9_-]") {
            let k = keys();
            let good = k.mint_first(SessionId::random()).encode();
            let mut bytes = good.clone().into_bytes();
            bytes[pos] = c.as_bytes()[0];
            let forged = String::from_utf8(bytes).unwrap();
            if forged != good {
                prop_assert!(k.verify(&forged).is_none());
            }
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = keys().verify(&s);
        }

        #[test]
        fn encode_decode_round_trip(gen_ in any::<u32>(), sid in any::<[u8;16]>(), secret in any::<[u8;32]>()) {
            let k = keys();
            let t = k.assemble(1, SessionId::from_bytes(sid), gen_, secret);
            prop_assert_eq!(k.verify(&t.encode()), Some(t));
        }
    }
}
