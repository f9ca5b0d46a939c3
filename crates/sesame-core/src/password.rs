//! Passwords: the checked [`Password`] type, Argon2id hashing, and the
//! [`PasswordHasher`] trait through which the engine hashes off the async
//! executor.
//!
//! Argon2id costs ~20–40 ms of one core per call. The engine never calls it
//! directly: a host supplies a [`PasswordHasher`] that runs the work on a
//! bounded pool with a bounded queue and answers
//! [`HashError::Overloaded`] past it (the `sesame` server's pool does), so a
//! login flood cannot stall refreshes. Unknown emails are verified against a
//! dummy hash so they cost the same as a wrong password.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in characters (bounds hashing cost).
pub const MAX_LEN: usize = 1024;

/// A password as the user typed it. Never printed, wiped on drop.
#[derive(Clone)]
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Why a new password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Fewer than 8 characters.
    #[error("must be at least 8 characters")]
    TooShort,
    /// More than 1024 characters.
    #[error("must be at most 1024 characters")]
    TooLong,
    /// On the common-password list.
    #[error("is too common; choose another")]
    Common,
}

impl Password {
    /// Wraps a presented password for *verification*: no policy applies (an
    /// old password may predate the policy), but the length bound does, so a
    /// megabyte password cannot buy a megabyte of hashing.
    pub fn presented(s: String) -> Result<Self, PasswordError> {
        if s.chars().count() > MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(s)))
    }

    /// Wraps a *new* password: 8–1024 characters, compared exactly as typed
    /// (no trimming, no case folding), and not on the common list.
    pub fn new_checked(s: String) -> Result<Self, PasswordError> {
        let n = s.chars().count();
        if n < MIN_LEN {
            return Err(PasswordError::TooShort);
        }
        if n > MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        if is_common(&s) {
            return Err(PasswordError::Common);
        }
        Ok(Self(SecretString::from(s)))
    }

    /// The characters, for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The 10 000 most common passwords of 8–64 characters from SecLists'
/// "10 million password list" (MIT; danielmiessler/SecLists), lower-cased,
/// plus a few seasonal and product-name patterns; sorted, one per line.
/// Shorter ones need no list: the length rule refuses them.
const COMMON: &str = include_str!("common-passwords.txt");

/// Whether `s` (case-insensitively) is on the embedded common-password list.
pub fn is_common(s: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let list = LIST.get_or_init(|| COMMON.lines().collect());
    list.binary_search(&s.to_lowercase().as_str()).is_ok()
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl HashParams {
    /// OWASP's first recommendation: m = 19 MiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };

    /// Whether these meet one of OWASP's equivalent minimums.
    pub fn meets_owasp(&self) -> bool {
        const MIN: [(u32, u32); 5] = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)];
        self.p >= 1 && MIN.iter().any(|&(m, t)| self.m_kib >= m && self.t >= t)
    }
}

/// Why hashing did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The pool and its queue are full: 503 `overloaded`.
    #[error("password hashing is overloaded")]
    Overloaded,
    /// The hash could not be computed or parsed.
    #[error("password hashing failed")]
    Internal,
}

/// The result of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matched.
    pub ok: bool,
    /// The stored hash used other parameters than the configured ones.
    pub needs_rehash: bool,
}

/// Argon2id's working memory (its memory cost: 19 MiB by default), kept by
/// a hashing thread from one hash to the next.
///
/// Why: a fresh allocation per hash made the kernel map, zero and unmap
/// 4 864 pages every time — over a third of a login's CPU in a `perf`
/// profile (`bench/`), with the hash itself under half. Reused, the pages
/// stay mapped. The contents are not wiped between hashes (the next hash
/// overwrites every block before reading it); [`Scratch::release`] wipes
/// them when the thread goes idle.
#[derive(Default)]
pub struct Scratch(Vec<Block>);

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scratch({} KiB)", self.0.len())
    }
}

impl Scratch {
    /// `n` blocks, grown (never shrunk) as needed.
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.0.len() < n {
            // A new vector rather than `resize`: nothing worth copying.
            self.0 = vec![Block::new(); n];
        }
        &mut self.0[..n]
    }

    /// Wipes the memory and gives it back.
    pub fn release(&mut self) {
        use zeroize::Zeroize as _;
        self.0.iter_mut().for_each(Block::zeroize);
        self.0 = Vec::new();
    }

    /// Whether memory is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Hashes with `params` (blocking; call from a blocking pool).
pub fn hash_blocking(params: &HashParams, password: &Password) -> Result<String, HashError> {
    hash_with(params, password, &mut Scratch::default())
}

/// [`hash_blocking`] in `scratch`'s memory.
pub fn hash_with(
    params: &HashParams,
    password: &Password,
    scratch: &mut Scratch,
) -> Result<String, HashError> {
    let p = Params::new(params.m_kib, params.t, params.p, None).map_err(|_| HashError::Internal)?;
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p.clone())
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            &salt,
            &mut out,
            scratch.blocks(p.block_count()),
        )
        .map_err(|_| HashError::Internal)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&p).map_err(|_| HashError::Internal)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|_| HashError::Internal)?),
    };
    Ok(phc.to_string())
}

/// Verifies against a PHC string (blocking). A malformed stored hash counts
/// as a mismatch, never a panic.
pub fn verify_blocking(params: &HashParams, password: &Password, phc: &str) -> Verified {
    verify_with(params, password, phc, &mut Scratch::default())
}

/// [`verify_blocking`] in `scratch`'s memory.
pub fn verify_with(
    params: &HashParams,
    password: &Password,
    phc: &str,
    scratch: &mut Scratch,
) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified {
            ok: false,
            needs_rehash: false,
        };
    };
    let ok = matches(&parsed, password, scratch).unwrap_or(false);
    let needs_rehash = Params::try_from(&parsed)
        .map(|p| p.m_cost() != params.m_kib || p.t_cost() != params.t || p.p_cost() != params.p)
        .unwrap_or(true)
        || parsed.algorithm.as_str() != "argon2id";
    Verified { ok, needs_rehash }
}

/// Recomputes `parsed` (its algorithm, version, cost and output length) for
/// `password`; `None` when the stored hash cannot be recomputed.
fn matches(parsed: &PasswordHash, password: &Password, scratch: &mut Scratch) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let p = Params::try_from(parsed).ok()?;
    let (salt, expected) = (parsed.salt.as_ref()?, parsed.hash.as_ref()?);
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, p.clone())
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            salt,
            &mut out,
            scratch.blocks(p.block_count()),
        )
        .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(&out).ok()? == *expected)
}

/// Hashes and verifies passwords off the async executor.
#[async_trait::async_trait]
pub trait PasswordHasher: Send + Sync + fmt::Debug {
    /// Hashes a new password.
    async fn hash(&self, password: Password) -> Result<String, HashError>;
    /// Verifies `password` against a stored PHC string.
    async fn verify(&self, password: Password, phc: String) -> Result<Verified, HashError>;
    /// Whether a hash asked for now would be refused as overloaded. The
    /// engine asks before any store read, so that a login flood's excess
    /// costs a request parse, not a user lookup: under a flood, every
    /// request in the executor's queue is one the routes wait behind.
    /// Advisory (the hash itself is still refused when full).
    fn saturated(&self) -> bool {
        false
    }
}

/// A hasher that runs inline on the calling thread. For library users with
/// their own pool, and for tests; servers use a bounded pool instead.
#[derive(Debug, Clone, Copy)]
pub struct InlineHasher(pub HashParams);

#[async_trait::async_trait]
impl PasswordHasher for InlineHasher {
    async fn hash(&self, password: Password) -> Result<String, HashError> {
        hash_blocking(&self.0, &password)
    }
    async fn verify(&self, password: Password, phc: String) -> Result<Verified, HashError> {
        Ok(verify_blocking(&self.0, &password, &phc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(
            Password::new_checked("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            Password::new_checked("x".repeat(1025)).unwrap_err(),
            PasswordError::TooLong
        );
        assert_eq!(
            Password::new_checked("Password123".into()).unwrap_err(),
            PasswordError::Common
        );
        assert!(Password::new_checked("  correct horse battery  ".into()).is_ok());
        assert!(Password::new_checked("é".repeat(1024)).is_ok());
        assert_eq!(
            format!("{:?}", Password::presented("hunter22".into()).unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn hash_verify_and_rehash() {
        let weak = HashParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        let pw = Password::presented("correct horse".into()).unwrap();
        let phc = hash_blocking(&weak, &pw).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_eq!(
            verify_blocking(&weak, &pw, &phc),
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let strong = HashParams {
            m_kib: 2048,
            ..weak
        };
        assert_eq!(
            verify_blocking(&strong, &pw, &phc),
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        let wrong = Password::presented("Correct horse".into()).unwrap();
        assert!(!verify_blocking(&weak, &wrong, &phc).ok);
        assert!(!verify_blocking(&weak, &pw, "garbage").ok);
    }

    #[test]
    fn reused_scratch_agrees_with_the_crate() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let weak = HashParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        let bigger = HashParams {
            m_kib: 2048,
            ..weak
        };
        let pw = Password::presented("correct horse".into()).unwrap();
        let wrong = Password::presented("correct horsE".into()).unwrap();
        let mut scratch = Scratch::default();
        // Ours, in one scratch that grows and is reused (with old contents).
        let ours = hash_with(&bigger, &pw, &mut scratch).unwrap();
        let ours_small = hash_with(&weak, &pw, &mut scratch).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=2048,t=1,p=1$"));
        assert_ne!(
            ours,
            hash_with(&bigger, &pw, &mut scratch).unwrap(),
            "fresh salt"
        );
        // ... verified by the crate's own verifier,
        for phc in [&ours, &ours_small] {
            let parsed = PasswordHash::new(phc).unwrap();
            assert!(
                Argon2::default()
                    .verify_password(b"correct horse", &parsed)
                    .is_ok()
            );
            assert!(
                Argon2::default()
                    .verify_password(b"correct horsE", &parsed)
                    .is_err()
            );
        }
        // ... and the crate's hashes (any variant, another output length)
        // verified by ours, in the same scratch.
        for alg in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(1024, 2, 1, Some(40)).unwrap();
            let theirs = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"correct horse")
                .unwrap()
                .to_string();
            let v = verify_with(&weak, &pw, &theirs, &mut scratch);
            assert!(v.ok, "{theirs}");
            assert!(v.needs_rehash);
            assert!(!verify_with(&weak, &wrong, &theirs, &mut scratch).ok);
        }
        assert!(!scratch.is_empty());
        scratch.release();
        assert!(scratch.is_empty());
        assert!(verify_with(&weak, &pw, &ours_small, &mut scratch).ok);
    }

    #[test]
    fn owasp_minimums() {
        assert!(HashParams::OWASP.meets_owasp());
        assert!(
            HashParams {
                m_kib: 47104,
                t: 1,
                p: 1
            }
            .meets_owasp()
        );
        assert!(
            !HashParams {
                m_kib: 19456,
                t: 1,
                p: 1
            }
            .meets_owasp()
        );
    }
}
