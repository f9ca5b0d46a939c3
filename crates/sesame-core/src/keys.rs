//! Signing keys and the key ring.
//!
//! Each key is used with exactly one algorithm, fixed when it is generated;
//! a token's header `alg` is never consulted to choose how to verify — the
//! `kid` selects a key from the ring and the key decides. The ring holds one
//! *active* key that signs, an optional *next* key already published in the
//! JWKS so that caches learn it before it signs, and *retired* keys that stay
//! published until every token they signed has expired.
//!
//! Private material is stored sealed with the master key (AES-256-GCM, the
//! `kid` as associated data), so a database dump alone yields no signing key.

use crate::clock::UnixTime;
use crate::crypto;
use aws_lc_rs::signature::{self, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::json;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The algorithms Sesame signs with. Nothing else is ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// Ed25519 (default): other services verify with the public JWKS.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// HMAC-SHA256 with a 32-byte random secret; never published.
    HS256,
}

impl SigningAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    /// Parses the JOSE name, exactly (no case folding: `"none"`, `"NONE"`,
    /// `"eddsa"` and everything else are refused).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "HS256" => Some(Self::HS256),
            _ => None,
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signing (exactly one).
    Active,
    /// Published until its last token expires, no longer signing.
    Retired,
}

impl KeyState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(Self::Next),
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A key as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key id (22 base64url characters).
    pub kid: String,
    /// Its one algorithm.
    pub alg: SigningAlg,
    /// Its state.
    pub state: KeyState,
    /// Private key (PKCS#8 v1, or the HMAC secret) sealed with the master key.
    pub sealed_private: Vec<u8>,
    /// Public key: raw Ed25519 key, uncompressed P-256 point, or empty for HS256.
    pub public: Vec<u8>,
    /// When it was generated.
    pub created_at: UnixTime,
    /// When it retired (retired keys only).
    pub retired_at: Option<UnixTime>,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Why key material was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The master key does not open a stored key (wrong `master_key`?).
    #[error("key {0} cannot be opened with the configured master_key")]
    Unseal(String),
    /// Stored or generated material is not a valid key for its algorithm.
    #[error("key {0} is not a valid {1} key")]
    Invalid(String, &'static str),
    /// The ring has no active key.
    #[error("the key ring has no active signing key")]
    NoActiveKey,
    /// Key generation failed in the crypto library.
    #[error("key generation failed")]
    Generate,
}

impl KeyRecord {
    /// Generates a new key of `alg` in `state`, sealed with `master_key`.
    pub fn generate(
        alg: SigningAlg,
        state: KeyState,
        now: UnixTime,
        master_key: &[u8; 32],
    ) -> Result<Self, KeyError> {
        let kid = crypto::b64(&crypto::random::<16>());
        let (private, public): (Zeroizing<Vec<u8>>, Vec<u8>) = match alg {
            SigningAlg::EdDSA => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let doc = signature::Ed25519KeyPair::generate_pkcs8v1(&rng)
                    .map_err(|_| KeyError::Generate)?;
                let pair = signature::Ed25519KeyPair::from_pkcs8(doc.as_ref())
                    .map_err(|_| KeyError::Generate)?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    pair.public_key().as_ref().to_vec(),
                )
            }
            SigningAlg::ES256 => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let doc = signature::EcdsaKeyPair::generate_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .map_err(|_| KeyError::Generate)?;
                let pair = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    doc.as_ref(),
                )
                .map_err(|_| KeyError::Generate)?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    pair.public_key().as_ref().to_vec(),
                )
            }
            SigningAlg::HS256 => (Zeroizing::new(crypto::random::<32>().to_vec()), Vec::new()),
        };
        Ok(Self {
            sealed_private: crypto::seal(master_key, kid.as_bytes(), &private),
            kid,
            alg,
            state,
            public,
            created_at: now,
            retired_at: None,
        })
    }

    /// Re-seals the private key under a new master key (`keys rewrap`).
    pub fn rewrap(&self, old: &[u8; 32], new: &[u8; 32]) -> Result<Self, KeyError> {
        let private = Zeroizing::new(
            crypto::open(old, self.kid.as_bytes(), &self.sealed_private)
                .ok_or_else(|| KeyError::Unseal(self.kid.clone()))?,
        );
        Ok(Self {
            sealed_private: crypto::seal(new, self.kid.as_bytes(), &private),
            ..self.clone()
        })
    }
}

/// A usable key: the record opened into encoding and decoding keys.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    state: KeyState,
    retired_at: Option<UnixTime>,
    encoding: EncodingKey,
    verifying: VerifyingKey,
    jwk: Option<serde_json::Value>,
}

/// A key that only verifies: what a resource server holds, from a JWKS or
/// given directly. Like [`SigningKey`], it has exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: SigningAlg,
    decoding: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An Ed25519 public key (32 raw bytes).
    pub fn ed25519(public: &[u8]) -> Result<Self, KeyError> {
        if public.len() != 32 {
            return Err(KeyError::Invalid("ed25519".into(), "EdDSA"));
        }
        Ok(Self {
            alg: SigningAlg::EdDSA,
            decoding: DecodingKey::from_ed_der(public),
        })
    }

    /// A P-256 public key as an uncompressed point (65 bytes, `04 | x | y`).
    /// The point is checked to lie on the curve.
    pub fn es256(point: &[u8]) -> Result<Self, KeyError> {
        let invalid = || KeyError::Invalid("p256".into(), "ES256");
        if point.len() != 65 || point[0] != 4 {
            return Err(invalid());
        }
        // Parsing through aws-lc validates the point; an off-curve key could
        // otherwise make verification behave unexpectedly.
        signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .map_err(|_| invalid())?;
        Ok(Self {
            alg: SigningAlg::ES256,
            decoding: DecodingKey::from_ec_der(point),
        })
    }

    /// An HS256 shared secret (at least 32 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 32 {
            return Err(KeyError::Invalid("hs256".into(), "HS256"));
        }
        Ok(Self {
            alg: SigningAlg::HS256,
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// One JWK of a JWKS. Only the allow-listed shapes are accepted: `OKP`
    /// `Ed25519` with `alg: EdDSA`, `EC` `P-256` with `alg: ES256`; the JWK
    /// must name its `alg` (the key, not a token header, fixes it) and, when
    /// it has `use`, it must be `sig`.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<(String, Self), KeyError> {
        let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        let kid = field("kid").unwrap_or_default().to_owned();
        let invalid = |alg| KeyError::Invalid(kid.clone(), alg);
        if kid.is_empty() || field("use").is_some_and(|u| u != "sig") {
            return Err(invalid("?"));
        }
        let bytes = |name: &str| field(name).and_then(crypto::b64_decode);
        let key = match (field("alg"), field("kty"), field("crv")) {
            (Some("EdDSA"), Some("OKP"), Some("Ed25519")) => {
                Self::ed25519(&bytes("x").ok_or_else(|| invalid("EdDSA"))?)?
            }
            (Some("ES256"), Some("EC"), Some("P-256")) => {
                let (x, y) = (bytes("x"), bytes("y"));
                let (Some(x), Some(y)) = (x, y) else {
                    return Err(invalid("ES256"));
                };
                if x.len() != 32 || y.len() != 32 {
                    return Err(invalid("ES256"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Self::es256(&point)?
            }
            _ => return Err(invalid("?")),
        };
        Ok((kid, key))
    }

    /// Its one algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// Where a verifier finds the key named by a token's `kid`.
pub trait KeyLookup {
    /// The key for `kid`, if known.
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey>;
}

/// Public keys by `kid`: a resource server's view of the ring.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    by_kid: HashMap<String, VerifyingKey>,
}

impl PublicKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every usable key of a JWKS document (`{"keys": [...]}`). Keys of a
    /// shape outside the allow-list are skipped, not fatal, so a JWKS that
    /// also carries other keys still works; the count skipped is returned.
    pub fn from_jwks(jwks: &serde_json::Value) -> (Self, usize) {
        let mut keys = Self::new();
        let mut skipped = 0;
        for jwk in jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            match VerifyingKey::from_jwk(jwk) {
                Ok((kid, key)) => keys.insert(kid, key),
                Err(_) => skipped += 1,
            }
        }
        (keys, skipped)
    }

    /// Adds or replaces one key.
    pub fn insert(&mut self, kid: impl Into<String>, key: VerifyingKey) {
        self.by_kid.insert(kid.into(), key);
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// Whether `kid` is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

impl<T: KeyLookup + ?Sized> KeyLookup for Arc<T> {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        (**self).verifying_key(kid)
    }
}

impl KeyLookup for PublicKeys {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.by_kid.get(kid)
    }
}

impl KeyLookup for KeyRing {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.get(kid).map(|k| &k.verifying)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Opens a stored record with the master key.
    pub fn open(rec: &KeyRecord, master_key: &[u8; 32]) -> Result<Self, KeyError> {
        let private = Zeroizing::new(
            crypto::open(master_key, rec.kid.as_bytes(), &rec.sealed_private)
                .ok_or_else(|| KeyError::Unseal(rec.kid.clone()))?,
        );
        let invalid = || KeyError::Invalid(rec.kid.clone(), rec.alg.as_str());
        let (encoding, verifying, jwk) = match rec.alg {
            SigningAlg::EdDSA => {
                let pair =
                    signature::Ed25519KeyPair::from_pkcs8(&private).map_err(|_| invalid())?;
                if pair.public_key().as_ref() != rec.public.as_slice() {
                    return Err(invalid());
                }
                let jwk = json!({
                    "kty": "OKP", "crv": "Ed25519", "x": crypto::b64(&rec.public),
                    "kid": rec.kid, "alg": "EdDSA", "use": "sig",
                });
                (
                    EncodingKey::from_ed_der(&private),
                    VerifyingKey::ed25519(&rec.public)?,
                    Some(jwk),
                )
            }
            SigningAlg::ES256 => {
                let pair = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &private,
                )
                .map_err(|_| invalid())?;
                let point = pair.public_key().as_ref();
                if point != rec.public.as_slice() || point.len() != 65 || point[0] != 4 {
                    return Err(invalid());
                }
                let jwk = json!({
                    "kty": "EC", "crv": "P-256",
                    "x": crypto::b64(&point[1..33]), "y": crypto::b64(&point[33..65]),
                    "kid": rec.kid, "alg": "ES256", "use": "sig",
                });
                (
                    EncodingKey::from_ec_der(&private),
                    VerifyingKey::es256(point)?,
                    Some(jwk),
                )
            }
            SigningAlg::HS256 => {
                if private.len() < 32 {
                    return Err(invalid());
                }
                (
                    EncodingKey::from_secret(&private),
                    VerifyingKey::hs256(&private)?,
                    None,
                )
            }
        };
        Ok(Self {
            kid: rec.kid.clone(),
            alg: rec.alg,
            state: rec.state,
            retired_at: rec.retired_at,
            encoding,
            verifying,
            jwk,
        })
    }

    /// Its key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its one algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// Its state in the ring.
    pub fn state(&self) -> KeyState {
        self.state
    }

    /// When it retired, for retired keys.
    pub fn retired_at(&self) -> Option<UnixTime> {
        self.retired_at
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// The opened key ring: the active key signs; every key in it verifies.
#[derive(Debug, Clone)]
pub struct KeyRing {
    active: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
}

impl KeyRing {
    /// Opens every record; exactly one must be active.
    pub fn open(records: &[KeyRecord], master_key: &[u8; 32]) -> Result<Self, KeyError> {
        let mut by_kid = HashMap::new();
        let mut active = None;
        for rec in records {
            let key = Arc::new(SigningKey::open(rec, master_key)?);
            if rec.state == KeyState::Active {
                active = Some(key.clone());
            }
            by_kid.insert(rec.kid.clone(), key);
        }
        Ok(Self {
            active: active.ok_or(KeyError::NoActiveKey)?,
            by_kid,
        })
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The key named by a token's `kid`, if the ring has it.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid).map(|k| &**k)
    }

    /// Every key, for `keys list`.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.by_kid.values().map(|k| &**k)
    }

    /// The public JWKS: every asymmetric key (next, active, retired). HS256
    /// keys are never published.
    pub fn jwks(&self) -> serde_json::Value {
        let mut keys: Vec<_> = self.by_kid.values().filter_map(|k| k.jwk.clone()).collect();
        keys.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
        json!({ "keys": keys })
    }
}

/// Computes the ring after a rotation: the next key (or a fresh one) becomes
/// active, the active key retires (or, with `revoke_old`, is dropped at once
/// so its tokens die), retired keys whose tokens have all expired are dropped,
/// and a new next key is generated.
pub fn rotate_records(
    current: &[KeyRecord],
    alg: SigningAlg,
    now: UnixTime,
    retire_after: i64,
    revoke_old: bool,
    master_key: &[u8; 32],
) -> Result<Vec<KeyRecord>, KeyError> {
    let mut out = Vec::new();
    let mut promoted = false;
    for rec in current {
        match rec.state {
            KeyState::Next if rec.alg == alg && !promoted => {
                out.push(KeyRecord {
                    state: KeyState::Active,
                    ..rec.clone()
                });
                promoted = true;
            }
            KeyState::Next => {}
            KeyState::Active if !revoke_old => out.push(KeyRecord {
                state: KeyState::Retired,
                retired_at: Some(now),
                ..rec.clone()
            }),
            KeyState::Active => {}
            KeyState::Retired => {
                if !revoke_old && rec.retired_at.is_some_and(|t| now - t < retire_after) {
                    out.push(rec.clone());
                }
            }
        }
    }
    if !promoted {
        out.push(KeyRecord::generate(alg, KeyState::Active, now, master_key)?);
    }
    out.push(KeyRecord::generate(alg, KeyState::Next, now, master_key)?);
    Ok(out)
}

/// The ring a brand-new deployment starts with: an active key and a next key.
pub fn initial_records(
    alg: SigningAlg,
    now: UnixTime,
    master_key: &[u8; 32],
) -> Result<Vec<KeyRecord>, KeyError> {
    rotate_records(&[], alg, now, 0, false, master_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_promotes_next_and_retires_active() {
        let mk = [3u8; 32];
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::HS256] {
            let r0 = initial_records(alg, 100, &mk).unwrap();
            let ring0 = KeyRing::open(&r0, &mk).unwrap();
            let next_kid = r0
                .iter()
                .find(|r| r.state == KeyState::Next)
                .unwrap()
                .kid
                .clone();
            let r1 = rotate_records(&r0, alg, 200, 700, false, &mk).unwrap();
            let ring1 = KeyRing::open(&r1, &mk).unwrap();
            assert_eq!(ring1.active().kid(), next_kid);
            assert_eq!(
                ring1.get(ring0.active().kid()).unwrap().state(),
                KeyState::Retired
            );
            assert_eq!(r1.len(), 3);
            // Past the retirement window the old key is dropped.
            let r2 = rotate_records(&r1, alg, 1000, 700, false, &mk).unwrap();
            assert!(r2.iter().all(|r| r.kid != ring0.active().kid()));
            // revoke_old drops the active key at once.
            let r3 = rotate_records(&r2, alg, 1001, 700, true, &mk).unwrap();
            assert_eq!(r3.len(), 2);
            let jwks = KeyRing::open(&r3, &mk).unwrap().jwks();
            let published = jwks["keys"].as_array().unwrap().len();
            assert_eq!(published, if alg == SigningAlg::HS256 { 0 } else { 2 });
        }
    }

    #[test]
    fn wrong_master_key_is_refused() {
        let r = initial_records(SigningAlg::EdDSA, 1, &[1u8; 32]).unwrap();
        assert!(matches!(
            KeyRing::open(&r, &[2u8; 32]),
            Err(KeyError::Unseal(_))
        ));
        let rewrapped: Vec<_> = r
            .iter()
            .map(|k| k.rewrap(&[1u8; 32], &[2u8; 32]).unwrap())
            .collect();
        assert!(KeyRing::open(&rewrapped, &[2u8; 32]).is_ok());
    }

    #[test]
    fn alg_names_are_exact() {
        for bad in [
            "none", "None", "NONE", "nOnE", "eddsa", "HS512", "RS256", "",
        ] {
            assert_eq!(SigningAlg::parse(bad), None);
        }
    }
}

#[cfg(test)]
mod public_key_tests {
    use super::*;
    use crate::access::{Aal, AccessClaims, Verifier};
    use crate::ids::{SessionId, UserId};

    #[test]
    fn a_jwks_verifies_what_the_ring_signs_and_refuses_other_shapes() {
        let mk = [3u8; 32];
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let ring = KeyRing::open(&initial_records(alg, 0, &mk).unwrap(), &mk).unwrap();
            let (public, skipped) = PublicKeys::from_jwks(&ring.jwks());
            assert_eq!(skipped, 0);
            assert_eq!(public.len(), ring.keys().count());
            let v = Verifier::new("i", "a", 0);
            let claims = AccessClaims {
                iss: "i".into(),
                aud: "a".into(),
                sub: UserId::new(),
                sid: SessionId::random(),
                iat: 10,
                exp: 20,
                jti: "j".into(),
                auth_time: 10,
                aal: Aal::Aal1,
                cnf: None,
                ext: Default::default(),
            };
            let t = v.sign(&ring, &claims).unwrap();
            assert_eq!(v.verify(&public, &t, 15).unwrap().claims(), &claims);
        }
        let bad = [
            json!({"kid": "k", "kty": "OKP", "crv": "Ed25519", "x": crypto::b64(&[1; 32])}),
            json!({"kid": "k", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": "AA"}),
            json!({"kid": "k", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "use": "enc", "x": crypto::b64(&[1; 32])}),
            json!({"kid": "k", "alg": "ES256", "kty": "EC", "crv": "P-256", "x": crypto::b64(&[1; 32]), "y": crypto::b64(&[2; 32])}),
            json!({"kid": "k", "alg": "HS256", "kty": "oct", "k": crypto::b64(&[1; 32])}),
            json!({"kid": "k", "alg": "RS256", "kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            json!({"alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": crypto::b64(&[1; 32])}),
        ];
        for jwk in bad {
            assert!(VerifyingKey::from_jwk(&jwk).is_err(), "{jwk}");
        }
        let (keys, skipped) = PublicKeys::from_jwks(&json!({"keys": [
            {"kid": "k", "alg": "HS256", "kty": "oct", "k": "AAAA"},
            {"kid": "e", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": crypto::b64(&[9; 32])}
        ]}));
        assert_eq!((keys.len(), skipped), (1, 1));
        assert!(keys.contains("e"));
    }
}
