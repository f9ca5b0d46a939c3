//! The mail texts: short plain text, product name "Sesame", links built
//! from `public_url`.
//!
//! A one-time token travels only in a link's URL *fragment*
//! (`/reset#token=…`): browsers never send fragments to servers, so the token
//! stays out of access logs and `Referer` headers, and a mail scanner that
//! prefetches the link consumes nothing — the page's script reads the
//! fragment and POSTs it. No other secret ever goes into a mail.

use super::{Mail, MailKind};
use sesame_core::Email;
use url::Url;

/// Builds every mail Sesame sends.
#[derive(Debug, Clone)]
pub struct Templates {
    base: Url,
}

impl Templates {
    /// Templates whose links start at `public_url`.
    pub fn new(public_url: Url) -> Self {
        Self { base: public_url }
    }

    /// `public_url` + `path` (no fragment).
    pub fn link(&self, path: &str) -> String {
        self.base
            .join(path)
            .map_or_else(|_| format!("{}{path}", self.base), String::from)
    }

    /// `public_url` + `path` + `#token=<token>`.
    fn token_link(&self, path: &str, token: &str) -> String {
        match self.base.join(path) {
            Ok(mut url) => {
                url.set_fragment(Some(&format!("token={token}")));
                url.into()
            }
            Err(_) => format!("{}{path}#token={token}", self.base),
        }
    }

    /// "Confirm your email address", with `{public_url}verify#token=…`.
    pub fn verify_email(&self, to: &Email, token: &str) -> Mail {
        let link = self.token_link("verify", token);
        Mail {
            kind: MailKind::VerifyEmail,
            to: to.clone(),
            subject: "Confirm your email address for Sesame".to_owned(),
            text: format!(
                "Hello,\n\n\
                 please confirm that {to} is your address by opening this link:\n\n\
                 {link}\n\n\
                 The link works once and expires soon. If you did not sign up for Sesame, \
                 ignore this mail.\n\n— Sesame\n"
            ),
        }
    }

    /// Someone tried to register with an address that has an account
    /// (`require_verified_email`: registration answers the same either way,
    /// and only the owner of the address learns which case it was).
    pub fn account_exists(&self, to: &Email) -> Mail {
        let login = self.link("login");
        let forgot = self.link("forgot");
        Mail {
            kind: MailKind::AccountExists,
            to: to.clone(),
            subject: "Someone tried to sign up to Sesame with your address".to_owned(),
            text: format!(
                "Hello,\n\n\
                 someone tried to create a Sesame account with {to}, but you already have one.\n\n\
                 If it was you, log in at {login}\n\
                 or, if you forgot your password, reset it at {forgot}\n\n\
                 If it was not you, ignore this mail: nothing was changed.\n\n— Sesame\n"
            ),
        }
    }

    /// "Reset your password", with `{public_url}reset#token=…`.
    pub fn password_reset(&self, to: &Email, token: &str) -> Mail {
        let link = self.token_link("reset", token);
        Mail {
            kind: MailKind::PasswordReset,
            to: to.clone(),
            subject: "Reset your Sesame password".to_owned(),
            text: format!(
                "Hello,\n\n\
                 to choose a new password, open this link:\n\n\
                 {link}\n\n\
                 The link works once and expires soon. Setting a new password signs out \
                 every device.\n\n\
                 If you did not ask for this, ignore this mail: your password stays as it is.\n\n\
                 — Sesame\n"
            ),
        }
    }

    /// To the *old* address after the account's address changed.
    /// `new_address_masked` is shown as given (mask it: the old address may
    /// no longer belong to the account owner).
    pub fn email_changed(&self, old_address: &Email, new_address_masked: &str) -> Mail {
        let forgot = self.link("forgot");
        Mail {
            kind: MailKind::EmailChanged,
            to: old_address.clone(),
            subject: "Your Sesame email address was changed".to_owned(),
            text: format!(
                "Hello,\n\n\
                 the email address of your Sesame account was changed from {old_address} \
                 to {new_address_masked}. Mail about the account now goes there.\n\n\
                 If you did not do this, your account may be in someone else's hands: \
                 reset your password at {forgot} and contact your administrator.\n\n— Sesame\n"
            ),
        }
    }

    /// The password was changed or reset.
    pub fn password_changed(&self, to: &Email) -> Mail {
        let forgot = self.link("forgot");
        Mail {
            kind: MailKind::PasswordChanged,
            to: to.clone(),
            subject: "Your Sesame password was changed".to_owned(),
            text: format!(
                "Hello,\n\n\
                 the password of your Sesame account ({to}) was just changed.\n\n\
                 If you did not do this, reset your password at once at {forgot}\n\n— Sesame\n"
            ),
        }
    }

    /// A second factor was turned on (`enabled`) or off.
    pub fn mfa_changed(&self, to: &Email, enabled: bool) -> Mail {
        let forgot = self.link("forgot");
        let (subject, what) = if enabled {
            (
                "Two-step sign-in was turned on for your Sesame account",
                "turned on: signing in now also asks for a code from your authenticator app",
            )
        } else {
            (
                "Two-step sign-in was turned off for your Sesame account",
                "turned off: signing in now needs only your password",
            )
        };
        Mail {
            kind: MailKind::MfaChanged,
            to: to.clone(),
            subject: subject.to_owned(),
            text: format!(
                "Hello,\n\n\
                 two-step sign-in for your Sesame account ({to}) was just {what}.\n\n\
                 If you did not do this, reset your password at once at {forgot}\n\n— Sesame\n"
            ),
        }
    }

    /// A device signed in for the first time. `when` is Unix seconds.
    pub fn new_device(&self, to: &Email, device_label: &str, ip: &str, when: i64) -> Mail {
        let forgot = self.link("forgot");
        let when = format_utc(when);
        Mail {
            kind: MailKind::NewDevice,
            to: to.clone(),
            subject: "New sign-in to your Sesame account".to_owned(),
            text: format!(
                "Hello,\n\n\
                 your Sesame account ({to}) was just used to sign in on a new device:\n\n\
                 \x20 Device: {device_label}\n\
                 \x20 IP address: {ip}\n\
                 \x20 Time: {when}\n\n\
                 If this was you, there is nothing to do. If not, reset your password at {forgot}\n\
                 and sign out the device from your account's session list.\n\n— Sesame\n"
            ),
        }
    }

    /// A rotated-away refresh token was presented again: the session it
    /// belonged to was ended.
    pub fn reuse_detected(&self, to: &Email, device_label: &str) -> Mail {
        let forgot = self.link("forgot");
        Mail {
            kind: MailKind::ReuseDetected,
            to: to.clone(),
            subject: "We ended a Sesame session to protect your account".to_owned(),
            text: format!(
                "Hello,\n\n\
                 a stolen sign-in token may have been used for your Sesame account ({to}) \
                 on the device \"{device_label}\"; we ended that session. You may need to \
                 sign in again on that device.\n\n\
                 If this keeps happening, reset your password at {forgot}\n\n— Sesame\n"
            ),
        }
    }
}

/// `2026-11-23 03:40 UTC`.
fn format_utc(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> Templates {
        Templates::new(Url::parse("https://auth.example.com").unwrap())
    }

    fn alice() -> Email {
        Email::parse("alice@example.com").unwrap()
    }

    #[test]
    fn tokens_travel_only_in_the_fragment() {
        let t = templates();
        let token = "tok_ABCdef-123_xyz";
        for (mail, path) in [
            (t.verify_email(&alice(), token), "verify"),
            (t.password_reset(&alice(), token), "reset"),
        ] {
            let link = format!("https://auth.example.com/{path}#token={token}");
            assert!(mail.text.contains(&link), "{}", mail.text);
            // Exactly once, and only after a '#'.
            assert_eq!(mail.text.matches(token).count(), 1);
            assert!(!mail.subject.contains(token));
            assert!(!mail.text.contains(&format!("?token={token}")));
        }
    }

    #[test]
    fn every_template_names_sesame_and_its_recipient() {
        let t = templates();
        let a = alice();
        let mails = [
            t.verify_email(&a, "t"),
            t.account_exists(&a),
            t.password_reset(&a, "t"),
            t.email_changed(&a, "b***@example.org"),
            t.password_changed(&a),
            t.mfa_changed(&a, true),
            t.mfa_changed(&a, false),
            t.new_device(&a, "Firefox on Linux", "192.0.2.1", 1_800_000_000),
            t.reuse_detected(&a, "Firefox on Linux"),
        ];
        for m in &mails {
            assert_eq!(m.to, a);
            assert!(m.subject.contains("Sesame"), "{}", m.subject);
            assert!(m.text.ends_with("— Sesame\n"), "{}", m.text);
        }
        assert!(mails[1].text.contains("https://auth.example.com/login"));
        assert!(mails[1].text.contains("https://auth.example.com/forgot"));
        assert!(mails[3].text.contains("b***@example.org"));
        assert!(mails[7].text.contains("2027-01-15 08:00 UTC"));
        assert!(mails[7].text.contains("192.0.2.1"));
        assert!(mails[8].text.contains("ended that session"));
    }
}
