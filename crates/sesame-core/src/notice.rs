//! Security notices: what the engine tells a user by mail (DESIGN §3). The
//! engine decides *when* a notice is due; the host decides *how* it travels
//! (the server renders a mail and queues it; a library user may do anything)
//! and which kinds are switched on. Notices that carry a one-time token keep
//! it out of `Debug`.

use crate::ids::{Email, UserId};
use std::fmt;
use std::sync::Arc;

/// One notice to one address.
#[derive(Clone)]
#[non_exhaustive]
pub enum Notice {
    /// Prove this address: a link with a one-time token.
    VerifyEmail {
        /// Whose address.
        user: UserId,
        /// The address to prove.
        to: Email,
        /// The one-time token for the link's fragment.
        token: String,
    },
    /// Someone registered with an address that already has an account
    /// (`require_verified_email`: the HTTP answer does not say so).
    AccountExists {
        /// The existing account's address.
        to: Email,
    },
    /// A password-reset link.
    PasswordReset {
        /// Whose account.
        user: UserId,
        /// Its address.
        to: Email,
        /// The one-time token for the link's fragment.
        token: String,
    },
    /// The address changed: told to the old address.
    EmailChanged {
        /// Whose account.
        user: UserId,
        /// The old address (recipient).
        to: Email,
        /// The new address.
        new: Email,
    },
    /// The password was changed or reset.
    PasswordChanged {
        /// Whose account.
        user: UserId,
        /// Its address.
        to: Email,
    },
    /// A second factor was added or removed.
    MfaChanged {
        /// Whose account.
        user: UserId,
        /// Its address.
        to: Email,
        /// Added (`true`) or removed.
        enabled: bool,
    },
    /// A login from a device none of the user's recent sessions used.
    NewDevice {
        /// Whose account.
        user: UserId,
        /// Its address.
        to: Email,
        /// Readable device label ("Firefox on Linux").
        device: String,
        /// Client IP, if known.
        ip: Option<String>,
    },
    /// A refresh token was replayed and the session ended.
    ReuseDetected {
        /// Whose account.
        user: UserId,
        /// Its address.
        to: Email,
        /// The device label of the ended session.
        device: String,
    },
}

impl Notice {
    /// A stable name for switches, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::AccountExists { .. } => "account_exists",
            Self::PasswordReset { .. } => "password_reset",
            Self::EmailChanged { .. } => "email_changed",
            Self::PasswordChanged { .. } => "password_changed",
            Self::MfaChanged { .. } => "mfa_changed",
            Self::NewDevice { .. } => "new_device",
            Self::ReuseDetected { .. } => "reuse_detected",
        }
    }

    /// The recipient.
    pub fn to(&self) -> &Email {
        match self {
            Self::VerifyEmail { to, .. }
            | Self::AccountExists { to }
            | Self::PasswordReset { to, .. }
            | Self::EmailChanged { to, .. }
            | Self::PasswordChanged { to, .. }
            | Self::MfaChanged { to, .. }
            | Self::NewDevice { to, .. }
            | Self::ReuseDetected { to, .. } => to,
        }
    }
}

impl fmt::Debug for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notice")
            .field("kind", &self.kind())
            .field("to", &self.to().masked())
            .finish_non_exhaustive()
    }
}

/// Where the engine sends notices. Called synchronously: implementations
/// queue and return at once.
#[derive(Clone)]
pub struct NoticeHook(pub Arc<dyn Fn(Notice) + Send + Sync>);

impl fmt::Debug for NoticeHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoticeHook")
    }
}
