//! Small wrappers over aws-lc-rs and the OS CSPRNG: the only primitives the
//! engine uses, kept in one place so each has one spelling.

use aws_lc_rs::{digest, hkdf, hmac};
use subtle::ConstantTimeEq;

/// Fills `N` bytes from the operating system's CSPRNG.
///
/// A failing OS random source is not something to carry on from: every
/// secret Sesame mints would be predictable.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)] // Invariant: no secret may be minted without OS randomness.
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// HKDF-SHA256 expanding `ikm` to 32 bytes under `label` (no salt: the input
/// is already a uniformly random key).
pub fn hkdf32(ikm: &[u8], label: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]);
    let prk = salt.extract(ikm);
    let info = [label];
    let mut out = [0u8; 32];
    // Both calls fail only for an output longer than 255 hash blocks; 32 bytes is one.
    #[allow(clippy::expect_used)]
    prk.expand(&info, Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF of 32 bytes cannot fail");
    out
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// base64url without padding, the only encoding Sesame puts on the wire.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url (no padding, canonical trailing bits) decoding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// AES-256-GCM sealing for key material at rest. The output is
/// `nonce(12) | ciphertext | tag(16)`; `aad` binds the ciphertext to its row.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let nonce_bytes = random::<12>();
    #[allow(clippy::expect_used)] // Invariant: a 32-byte key is always a valid AES-256 key.
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    let mut buf = plaintext.to_vec();
    #[allow(clippy::expect_used)] // Sealing fails only past the GCM length limit (64 GiB).
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad),
        &mut buf,
    )
    .expect("AES-GCM seal of a small buffer");
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Opens what [`seal`] produced; `None` if the key, `aad` or data are wrong.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let pt = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(pt.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_aad() {
        let key = random::<32>();
        let sealed = seal(&key, b"kid-1", b"secret material");
        assert_eq!(
            open(&key, b"kid-1", &sealed).as_deref(),
            Some(&b"secret material"[..])
        );
        assert_eq!(open(&key, b"kid-2", &sealed), None);
        assert_eq!(open(&random::<32>(), b"kid-1", &sealed), None);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let out = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            b64(&out),
            b64(&[
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ])
        );
    }
}
