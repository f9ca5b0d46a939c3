//! Identifier newtypes. A [`SessionId`] is not a [`UserId`], and an
//! [`Email`] is always normalised: each can only be built through a checked
//! constructor, so code holding one never re-validates it.

use crate::crypto;
use serde::{Deserialize, Serialize};
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// A user's identifier: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(uuid::Uuid);

impl UserId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Parses the hyphenated form.
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(Self)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// From 16 raw bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(uuid::Uuid::from_bytes(b))
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A session's identifier: 128 random bits, written as 22 base64url
/// characters. Nothing depends on its secrecy (refresh tokens carry it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh random id from the OS CSPRNG.
    pub fn random() -> Self {
        Self(crypto::random())
    }

    /// From 16 raw bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 22-character base64url form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 22 {
            return None;
        }
        let bytes = crypto::b64_decode(s)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crypto::b64(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

/// A normalised email address: trimmed, NFC, domain lower-cased. Two
/// addresses are the same account when their [`Email::key`]s are equal
/// (case-insensitive, as users expect).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Not of the form `local@domain`, or contains spaces or control characters.
    #[error("must be an address of the form name@example.com")]
    Malformed,
    /// Longer than 254 bytes (RFC 5321).
    #[error("must be at most 254 characters")]
    TooLong,
}

impl Email {
    /// Normalises and checks an address as a user typed it.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s: String = raw.trim().nfc().collect();
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == '@';
        if local.is_empty()
            || local.contains('@')
            || domain.is_empty()
            || local.len() > 64
            || local.chars().any(|c| c.is_whitespace() || c.is_control())
            || domain.chars().any(bad)
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(EmailError::Malformed);
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    /// The address as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: the whole address lower-cased.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// Rebuilds an address read back from a store (already normalised).
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    /// The address with its local part masked, for logs.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((l, d)) => format!("{}***@{d}", l.chars().next().unwrap_or('*')),
            None => "***".into(),
        }
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_normalisation() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice@example.com");
        assert_eq!(e.key(), "alice@example.com");
        // NFC: "e" + combining acute equals the precomposed form.
        assert_eq!(
            Email::parse("caf\u{65}\u{301}@x.org").unwrap(),
            Email::parse("caf\u{e9}@x.org").unwrap()
        );
        for bad in [
            "",
            "a",
            "@x.org",
            "a@",
            "a b@x.org",
            "a@x..org",
            "a@.x",
            "a@b@c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn session_id_round_trip_and_strict_parse() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse("!!!!!!!!!!!!!!!!!!!!!!"), None);
    }
}
