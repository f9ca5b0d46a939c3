//! Sessions: one login on one device, and the vocabulary around them.

use crate::clock::UnixTime;
use crate::ids::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a session's tokens travel, fixed when the session is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Access token in the JSON body, refresh token in an `HttpOnly` cookie.
    Hybrid,
    /// Like hybrid, and the access token also in a cookie.
    Cookie,
    /// Both tokens in JSON bodies.
    Bearer,
}

impl Transport {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
        }
    }

    /// Parses the stored and wire spelling (exact, lower-case).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hybrid" => Some(Self::Hybrid),
            "cookie" => Some(Self::Cookie),
            "bearer" => Some(Self::Bearer),
            _ => None,
        }
    }

    /// Whether the refresh token travels in a cookie.
    pub fn refresh_in_cookie(self) -> bool {
        !matches!(self, Self::Bearer)
    }
}

/// Authenticator assurance level (NIST SP 800-63B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aal {
    /// Password only.
    Aal1,
    /// Password and a second factor.
    Aal2,
}

impl Aal {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aal1" => Some(Self::Aal1),
            "aal2" => Some(Self::Aal2),
            _ => None,
        }
    }
}

/// Why a session ended. Shown to users ("why did I get logged out?") and
/// returned with `session_revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevokeReason {
    /// The user logged out on this device, or logged out everywhere.
    Logout,
    /// The user revoked it from another device.
    RevokedByUser,
    /// An administrator (or the CLI) revoked it.
    RevokedByAdmin,
    /// A refresh token was replayed; the session was ended to stop a thief.
    ReuseDetected,
    /// The password changed on another session.
    PasswordChanged,
    /// A new login on the same browser replaced it.
    Replaced,
    /// Its idle or absolute lifetime ran out.
    Expired,
    /// The per-user session cap evicted it (least recently used).
    Evicted,
    /// The account was disabled.
    AccountDisabled,
    /// The account was deleted.
    AccountDeleted,
    /// Restored from a backup: every session was ended.
    Restored,
}

impl RevokeReason {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RevokedByUser => "revoked_by_user",
            Self::RevokedByAdmin => "revoked_by_admin",
            Self::ReuseDetected => "reuse_detected",
            Self::PasswordChanged => "password_changed",
            Self::Replaced => "replaced",
            Self::Expired => "expired",
            Self::Evicted => "evicted",
            Self::AccountDisabled => "account_disabled",
            Self::AccountDeleted => "account_deleted",
            Self::Restored => "restored",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Logout,
            Self::RevokedByUser,
            Self::RevokedByAdmin,
            Self::ReuseDetected,
            Self::PasswordChanged,
            Self::Replaced,
            Self::Expired,
            Self::Evicted,
            Self::AccountDisabled,
            Self::AccountDeleted,
            Self::Restored,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from, as far as the session list shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The client IP (already resolved through trusted proxies).
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

impl DeviceInfo {
    /// SHA-256 of the user agent: the grace rule compares it.
    pub fn ua_hash(&self) -> [u8; 32] {
        crate::crypto::sha256(self.user_agent.as_deref().unwrap_or("").as_bytes())
    }

    /// A short readable label such as "Firefox on Linux".
    pub fn label(&self) -> String {
        device_label(self.user_agent.as_deref().unwrap_or(""))
    }
}

/// A short readable device label parsed from a user agent.
pub fn device_label(ua: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .into_iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => o.to_string(),
        (None, None) if ua.is_empty() => "Unknown device".to_string(),
        (None, None) => ua.chars().take(40).collect(),
    }
}

/// A session as stored, without its refresh secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Its id (also inside its refresh tokens and access tokens' `sid`).
    pub id: SessionId,
    /// Whose session.
    pub user_id: UserId,
    /// Fixed at creation.
    pub transport: Transport,
    /// Current refresh generation.
    pub generation: u32,
    /// Refresh key version of the current generation.
    pub key_version: u8,
    /// Store time of creation.
    pub created_at: UnixTime,
    /// Store time of the last refresh (or creation).
    pub last_seen_at: UnixTime,
    /// Idle expiry (slides with each rotation); `None` when idle expiry is off.
    pub idle_expires_at: Option<UnixTime>,
    /// Absolute expiry.
    pub expires_at: UnixTime,
    /// When the user last proved a credential.
    pub auth_time: UnixTime,
    /// Assurance level of that proof.
    pub aal: Aal,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
    /// Why it was revoked.
    pub revoke_reason: Option<RevokeReason>,
    /// Client IP at the last login or refresh.
    pub ip: Option<String>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Application claims copied into every access token.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Session {
    /// Whether the session can still be used at `now`.
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none()
            && now < self.expires_at
            && self.idle_expires_at.is_none_or(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(device_label(ff), "Firefox on Linux");
        assert_eq!(device_label("curl/8.5.0"), "curl");
        assert_eq!(device_label(""), "Unknown device");
    }

    #[test]
    fn reasons_round_trip() {
        for r in ["logout", "replaced", "reuse_detected", "restored"] {
            assert_eq!(RevokeReason::parse(r).unwrap().as_str(), r);
        }
        assert_eq!(RevokeReason::parse("nope"), None);
    }
}
