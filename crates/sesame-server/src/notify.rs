//! Security notices (from the engine) as mail: which template each notice
//! uses, and the `notify_*` switches. Verification, reset and
//! "account exists" mails are part of their flows and always go out; the
//! four notifications can each be turned off.

use crate::config::Config;
use crate::mail::Mailer;
use sesame_core::notice::{Notice, NoticeHook};
use std::sync::Arc;

/// Which optional notifications are on.
#[derive(Debug, Clone, Copy)]
pub struct Switches {
    /// `notify_password_changed`.
    pub password_changed: bool,
    /// `notify_mfa_changed`.
    pub mfa_changed: bool,
    /// `notify_new_device`.
    pub new_device: bool,
    /// `notify_reuse_detected`.
    pub reuse_detected: bool,
}

impl Switches {
    /// From the configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            password_changed: c.notify_password_changed,
            mfa_changed: c.notify_mfa_changed,
            new_device: c.notify_new_device,
            reuse_detected: c.notify_reuse_detected,
        }
    }
}

/// The engine's notice hook: renders each notice and queues it (never waits).
pub fn hook(mailer: Mailer, on: Switches) -> NoticeHook {
    NoticeHook(Arc::new(move |n: Notice| {
        let t = mailer.templates();
        let mail = match &n {
            Notice::VerifyEmail { to, token, .. } => t.verify_email(to, token),
            Notice::AccountExists { to } => t.account_exists(to),
            Notice::PasswordReset { to, token, .. } => t.password_reset(to, token),
            // The old address hears of the change: that is its point.
            Notice::EmailChanged { to, new, .. } => t.email_changed(to, &new.masked()),
            Notice::PasswordChanged { to, .. } if on.password_changed => t.password_changed(to),
            Notice::MfaChanged { to, enabled, .. } if on.mfa_changed => t.mfa_changed(to, *enabled),
            Notice::NewDevice { to, device, ip, .. } if on.new_device => {
                let when = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                t.new_device(to, device, ip.as_deref().unwrap_or("unknown"), when)
            }
            Notice::ReuseDetected { to, device, .. } if on.reuse_detected => {
                t.reuse_detected(to, device)
            }
            _ => return,
        };
        if let Err(e) = mailer.send(mail) {
            tracing::warn!(kind = n.kind(), to = %n.to().masked(), error = %e, "mail not queued");
        }
    }))
}
