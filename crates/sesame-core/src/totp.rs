//! TOTP second factor (RFC 6238 over RFC 4226 HOTP) and recovery codes.
//!
//! Parameters are the ones every authenticator app supports: HMAC-SHA-1,
//! six digits, 30-second steps; a code is accepted for the step before and
//! after the current one (clock drift). Single use is the store's job: the
//! engine records the step a code was accepted for and refuses any step not
//! newer than the last one ([`crate::store::AccountStore::use_totp_step`]).
//!
//! HOTP is a dozen lines over aws-lc-rs's HMAC (already the crate's crypto
//! provider); the RFC's own test vectors below pin it.

use crate::crypto;
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

/// Seconds per step.
pub const STEP: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const SKEW: i64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// How many recovery codes an enrolment issues.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP shared secret (zeroed on drop).
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self(Zeroizing::new(crypto::random::<SECRET_LEN>().to_vec()))
    }

    /// A secret from its bytes (opened from the store).
    pub fn from_bytes(b: Vec<u8>) -> Self {
        Self(Zeroizing::new(b))
    }

    /// A secret as an app shows it (base32, padding and case ignored).
    pub fn from_base32(s: &str) -> Option<Self> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '=' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        data_encoding::BASE32_NOPAD
            .decode(norm.as_bytes())
            .ok()
            .map(Self::from_bytes)
    }

    /// The raw bytes (to seal for storage).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// The `otpauth://` URI for a QR code (Key Uri Format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", uri_escape(issuer), uri_escape(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
            self.base32(),
            uri_escape(issuer)
        )
    }

    /// The code for `step` (RFC 4226 §5.3 dynamic truncation).
    pub fn code_at_step(&self, step: i64) -> u32 {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let tag = hmac::sign(&key, &step.to_be_bytes());
        let h = tag.as_ref();
        let off = usize::from(h[h.len() - 1] & 0x0f);
        let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
        bin % 10u32.pow(DIGITS)
    }

    /// The step a `code` is valid for at `now` (±[`SKEW`]), comparing in
    /// constant time against every candidate so timing does not say which
    /// step matched. `None` when it matches none.
    pub fn matching_step(&self, code: &str, now: i64) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = now.div_euclid(STEP);
        let mut found = None;
        for step in current - SKEW..=current + SKEW {
            let expected = format!(
                "{:0width$}",
                self.code_at_step(step),
                width = DIGITS as usize
            );
            if crypto::ct_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

/// Whether `code` looks like a TOTP code (digits only) rather than a
/// recovery code.
pub fn is_totp_code(code: &str) -> bool {
    let c = code.trim();
    c.len() == DIGITS as usize && c.bytes().all(|b| b.is_ascii_digit())
}

/// Ten fresh recovery codes of 80 bits each, shown to the user once as
/// `xxxx-xxxx-xxxx-xxxx` (lower-case base32), with the SHA-256 of each
/// normalised code for the store.
pub fn recovery_codes() -> Vec<(String, [u8; 32])> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = data_encoding::BASE32_NOPAD
                .encode(&crypto::random::<10>())
                .to_ascii_lowercase();
            let shown = raw
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-");
            (shown, crypto::sha256(raw.as_bytes()))
        })
        .collect()
}

/// The SHA-256 of a recovery code as typed (dashes, spaces and case
/// ignored); `None` if it cannot be one.
pub fn recovery_code_hash(typed: &str) -> Option<[u8; 32]> {
    let norm: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (norm.len() == 16 && norm.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')))
        .then(|| crypto::sha256(norm.as_bytes()))
}

fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (8-digit values; we keep the last 6).
    #[test]
    fn rfc6238_vectors() {
        let s = Secret::from_bytes(b"12345678901234567890".to_vec());
        for (t, expect) in [
            (59_i64, 94_287_082_u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(s.code_at_step(t / STEP), expect % 1_000_000, "t = {t}");
        }
    }

    /// RFC 4226 Appendix D.
    #[test]
    fn rfc4226_vectors() {
        let s = Secret::from_bytes(b"12345678901234567890".to_vec());
        let expect = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (i, e) in expect.into_iter().enumerate() {
            assert_eq!(s.code_at_step(i as i64), e);
        }
    }

    #[test]
    fn window_and_format() {
        let s = Secret::generate();
        let now = 1_800_000_000;
        let step = now / STEP;
        let code = |st| format!("{:06}", s.code_at_step(st));
        assert_eq!(s.matching_step(&code(step), now), Some(step));
        assert_eq!(s.matching_step(&code(step - 1), now), Some(step - 1));
        assert_eq!(s.matching_step(&code(step + 1), now), Some(step + 1));
        assert_eq!(s.matching_step(&code(step - 3), now), None);
        assert_eq!(s.matching_step("12345", now), None);
        assert_eq!(s.matching_step("abcdef", now), None);
        assert_eq!(s.matching_step("", now), None);
    }

    #[test]
    fn recovery_codes_are_80_bits_and_normalised() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        let (shown, hash) = &codes[0];
        assert_eq!(shown.len(), 19);
        assert_eq!(recovery_code_hash(shown), Some(*hash));
        assert_eq!(
            recovery_code_hash(&shown.to_uppercase().replace('-', " ")),
            Some(*hash)
        );
        assert_eq!(recovery_code_hash("short"), None);
        let distinct: std::collections::HashSet<_> = codes.iter().map(|c| c.1).collect();
        assert_eq!(distinct.len(), 10);
    }

    #[test]
    fn otpauth_uri_escapes_label() {
        let s = Secret::from_bytes(vec![0; 20]);
        let uri = s.otpauth_uri("Sesame Inc", "a@b.example");
        assert!(uri.starts_with("otpauth://totp/Sesame%20Inc:a@b.example?secret=AAAA"));
        assert!(uri.contains("&issuer=Sesame%20Inc&"));
    }
}
