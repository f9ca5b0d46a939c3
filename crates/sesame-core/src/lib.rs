//! Sesame's engine: signing keys and the algorithm allow-list, access tokens
//! and their verifier, the chained refresh-token format and its rotation state
//! machine, sessions, password hashing, and the store and clock traits.
//!
//! The key design decision: this crate does **no I/O** except through the
//! [`store::AccountStore`], [`store::SessionStore`], [`clock::Clock`] and
//! [`password::PasswordHasher`] traits. It knows nothing of HTTP or SQL and
//! starts no runtime, so the same engine runs inside the `sesame` server, in
//! a library user's program, and under tests driven by a manual clock.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod binding;
pub mod clock;
pub mod crypto;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod ids;
pub mod keys;
pub mod liveness;
pub mod notice;
#[cfg(feature = "engine")]
pub mod password;
pub mod refresh;
pub mod rotation;
pub mod session;
pub mod store;
#[cfg(feature = "engine")]
pub mod totp;

pub use access::{Aal, AccessClaims, VerifiedClaims, Verifier};
pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
#[cfg(feature = "engine")]
pub use engine::{Engine, EngineConfig, Grant};
pub use error::Error;
pub use ids::{Email, SessionId, UserId};
pub use keys::{KeyLookup, KeyRing, PublicKeys, SigningAlg, VerifyingKey};
pub use refresh::{RefreshKeys, RefreshToken};
pub use session::{RevokeReason, Session, Transport};
