//! The account lifecycle through HTTP, with a real SMTP server (aiosmtpd,
//! `tests/smtp_sink.py`) receiving every mail: sign-up → mail → verify →
//! login; forgot → mail → reset → every old session dead; TOTP enrol →
//! login needs the code → replays fail → a recovery code works once;
//! re-authentication required, then satisfied; email change; account
//! delete; security notifications; a hanging mail server slows nothing;
//! the new rate limits.

mod common;

use common::smtp::{HangingSmtp, SmtpSink};
use common::*;
use serde_json::{Value, json};
use sesame_core::clock::Clock as _;
use sesame_core::totp::{STEP, Secret};
use std::time::{Duration, Instant};

const MAIL_WAIT: Duration = Duration::from_secs(15);

async fn server_with_sink(
    sink: &SmtpSink,
    f: impl Fn(&mut sesame_server::config::RawConfig) + Send + Sync + 'static,
) -> TestServer {
    let url = sink.url();
    TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        f(raw);
    })
    .await
}

/// The code an authenticator app shows at step `step`.
fn code(secret: &Secret, step: i64) -> String {
    format!("{:06}", secret.code_at_step(step))
}

fn step_now(srv: &TestServer) -> i64 {
    srv.clock.now().div_euclid(STEP)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_mail_verify_then_login() {
    let Some(sink) = SmtpSink::start("sign_up_mail_verify_then_login") else {
        return;
    };
    let srv = server_with_sink(&sink, |raw| raw.require_verified_email = Some(true)).await;
    let mut dev = srv.device();
    let r = dev.register("ver@example.com").await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r.body.get("access_token").is_none());
    let login = dev.login("ver@example.com", PASSWORD).await;
    assert_eq!(
        (login.status.as_u16(), login.code()),
        (403, "email_not_verified")
    );

    let mail = sink
        .wait_for_subject("ver@example.com", "Confirm your email", MAIL_WAIT)
        .await;
    let link = url::Url::parse(&mail.link().unwrap()).unwrap();
    assert!(
        link.path() == "/verify" && link.fragment().is_some_and(|f| f.starts_with("token=sev_")),
        "{link}"
    );
    let token = mail.link_token().unwrap();
    assert!(token.starts_with("sev_"));
    // A token of another kind, or garbage, is refused before the store.
    for bad in ["", "spr_x", &token.replace("sev_", "spr_")] {
        let a = dev
            .post("/auth/verify", Some(json!({ "token": bad })))
            .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (400, "link_invalid"),
            "{bad}"
        );
    }
    let ok = dev
        .post("/auth/verify", Some(json!({ "token": token })))
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let again = dev
        .post("/auth/verify", Some(json!({ "token": token })))
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (400, "link_invalid"));

    let login = dev.login("ver@example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["user"]["email_verified"], true);

    // Registering the address again: the same 202, and the owner is told.
    let mut other = srv.device_with_ua("curl/8.5.0");
    let dup = other.register("ver@example.com").await;
    assert_eq!((dup.status, &dup.body), (r.status, &r.body));
    sink.wait_for_subject("ver@example.com", "tried to sign up", MAIL_WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_resend_by_address_and_by_session() {
    let Some(sink) = SmtpSink::start("verification_resend_by_address_and_by_session") else {
        return;
    };
    let srv = server_with_sink(&sink, |_| {}).await;
    let mut dev = srv.device();
    assert_eq!(dev.register("resend@example.com").await.status, 201);
    sink.wait_for_subject("resend@example.com", "Confirm", MAIL_WAIT)
        .await;
    // By address (no session): the same answer for an unknown address.
    let anon = srv.device();
    let a = anon
        .post(
            "/auth/verify/resend",
            Some(json!({ "email": "resend@example.com" })),
        )
        .await;
    let b = anon
        .post(
            "/auth/verify/resend",
            Some(json!({ "email": "nobody@example.com" })),
        )
        .await;
    assert_eq!((a.status.as_u16(), &a.body), (202, &b.body));
    // By session (no body needed).
    let c = dev.post("/auth/verify/resend", None).await;
    assert_eq!(c.status, 202, "{}", c.text);
    let deadline = Instant::now() + MAIL_WAIT;
    while sink.count_to("resend@example.com") < 3 {
        assert!(Instant::now() < deadline, "three verification mails");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.count_to("nobody@example.com"), 0);
    // Every link works (each is its own token) until the address is verified.
    let tokens: Vec<String> = sink.mails().iter().filter_map(|m| m.link_token()).collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(
        dev.post("/auth/verify", Some(json!({ "token": tokens[2] })))
            .await
            .status,
        204
    );
    assert_eq!(dev.me().await.body["user"]["email_verified"], true);
    // Nothing left to verify: no new mail.
    assert_eq!(dev.post("/auth/verify/resend", None).await.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.count_to("resend@example.com"), 3);
    // Without a session, an address is required.
    let bad = anon.post("/auth/verify/resend", Some(json!({}))).await;
    assert_eq!((bad.status.as_u16(), bad.code()), (400, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_mail_reset_ends_every_session() {
    let Some(sink) = SmtpSink::start("forgot_mail_reset_ends_every_session") else {
        return;
    };
    let srv = server_with_sink(&sink, |_| {}).await;
    let mut laptop = srv.device();
    assert_eq!(laptop.register("reset@example.com").await.status, 201);
    let mut phone = srv.device_with_ua("curl/8.5.0");
    assert_eq!(phone.login("reset@example.com", PASSWORD).await.status, 200);

    let anon = srv.device();
    let known = anon
        .post(
            "/auth/password/forgot",
            Some(json!({ "email": "reset@example.com" })),
        )
        .await;
    let unknown = anon
        .post(
            "/auth/password/forgot",
            Some(json!({ "email": "ghost@example.com" })),
        )
        .await;
    assert_eq!(known.status, 202);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    let mail = sink
        .wait_for_subject("reset@example.com", "Reset your", MAIL_WAIT)
        .await;
    let link = url::Url::parse(&mail.link().unwrap()).unwrap();
    assert_eq!(link.path(), "/reset");
    assert!(link.fragment().unwrap().starts_with("token=spr_"));
    let token = mail.link_token().unwrap();
    assert!(
        !mail.raw.contains(&format!("?token={token}")),
        "fragment only"
    );

    // A weak password is refused and does not spend the link.
    let weak = anon
        .post(
            "/auth/password/reset",
            Some(json!({ "token": token, "password": "password" })),
        )
        .await;
    assert_eq!(
        (weak.status.as_u16(), weak.code()),
        (400, "invalid_request")
    );
    let new_pw = "a whole new passphrase 42";
    let ok = anon
        .post(
            "/auth/password/reset",
            Some(json!({ "token": token, "password": new_pw })),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    let again = anon
        .post(
            "/auth/password/reset",
            Some(json!({ "token": token, "password": new_pw })),
        )
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (400, "link_invalid"));

    // Every old session is dead: access tokens and refresh tokens.
    for d in [&laptop, &phone] {
        let me = d.me().await;
        assert_eq!((me.status.as_u16(), me.code()), (401, "session_revoked"));
        assert_eq!(me.body["reason"], "password_changed");
        assert_eq!(d.refresh_raw().await.code(), "session_revoked");
    }
    assert_eq!(
        laptop.login("reset@example.com", PASSWORD).await.code(),
        "invalid_credentials"
    );
    let fresh = laptop.login("reset@example.com", new_pw).await;
    assert_eq!(fresh.status, 200);
    // The reset proved the mailbox.
    assert_eq!(fresh.body["user"]["email_verified"], true);
    sink.wait_for_subject("reset@example.com", "password was changed", MAIL_WAIT)
        .await;
    assert_eq!(sink.count_to("ghost@example.com"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_link_expires() {
    let Some(sink) = SmtpSink::start("reset_link_expires") else {
        return;
    };
    let srv = server_with_sink(&sink, |raw| raw.password_reset_ttl = Some("10m".into())).await;
    let mut d = srv.device();
    assert_eq!(d.register("late@example.com").await.status, 201);
    d.post(
        "/auth/password/forgot",
        Some(json!({ "email": "late@example.com" })),
    )
    .await;
    let token = sink
        .wait_for_subject("late@example.com", "Reset", MAIL_WAIT)
        .await
        .link_token()
        .unwrap();
    srv.clock.advance(601);
    let a = d
        .post(
            "/auth/password/reset",
            Some(json!({ "token": token, "password": "another good passphrase" })),
        )
        .await;
    assert_eq!((a.status.as_u16(), a.code()), (400, "link_invalid"));
}

/// Enrols TOTP on `d` (fresh session) and returns the secret and codes.
async fn enrol(srv: &TestServer, d: &Device) -> (Secret, Vec<String>) {
    let e = d.post("/auth/mfa/totp", None).await;
    assert_eq!(e.status, 200, "{}", e.text);
    let uri = e.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(
        e.body["qr_svg"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    let secret = Secret::from_base32(e.body["secret"].as_str().unwrap()).unwrap();
    assert!(uri.contains(&format!("secret={}", secret.base32())));
    // Not enabled until confirmed: /me says so.
    assert_eq!(d.me().await.body["user"]["mfa_enabled"], false);
    let wrong = d
        .post("/auth/mfa/totp/confirm", Some(json!({ "code": "000000" })))
        .await;
    let wrong_ok = wrong.code() == "invalid_mfa_code" || code(&secret, step_now(srv)) == "000000";
    assert!(wrong_ok, "{}", wrong.text);
    let c = d
        .post(
            "/auth/mfa/totp/confirm",
            Some(json!({ "code": code(&secret, step_now(srv)) })),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    let codes: Vec<String> = c.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn post_mfa(d: &mut Device, challenge: &str, code: &str) -> Answer {
    let a = d
        .post(
            "/auth/login/mfa",
            Some(json!({ "challenge": challenge, "code": code })),
        )
        .await;
    d.absorb(&a);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrol_login_replay_and_recovery_codes() {
    let Some(sink) = SmtpSink::start("totp_enrol_login_replay_and_recovery_codes") else {
        return;
    };
    let srv = server_with_sink(&sink, |_| {}).await;
    let mut d = srv.device();
    assert_eq!(d.register("mfa@example.com").await.status, 201);
    let (secret, codes) = enrol(&srv, &d).await;
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3)
    );
    let me = d.me().await;
    assert_eq!(me.body["user"]["mfa_enabled"], true);
    assert_eq!(
        me.body["session"]["aal"], "aal2",
        "the confirming session proved the factor"
    );
    sink.wait_for_subject("mfa@example.com", "turned on", MAIL_WAIT)
        .await;
    // Enrolling again while enabled is refused.
    let twice = d.post("/auth/mfa/totp", None).await;
    assert_eq!(
        (twice.status.as_u16(), twice.code()),
        (409, "mfa_already_enabled")
    );

    assert_eq!(d.post("/auth/logout", None).await.status, 204);
    let mut d = srv.device();
    let l = d.login("mfa@example.com", PASSWORD).await;
    assert_eq!(
        (l.status.as_u16(), l.code()),
        (401, "mfa_required"),
        "{}",
        l.text
    );
    assert!(l.body.get("access_token").is_none() && l.cookie("__Host-sesame_rt").is_none());
    let challenge = l.body["challenge"].as_str().unwrap().to_owned();
    assert!(challenge.starts_with("smc_"));
    assert_eq!(l.body["methods"], json!(["totp", "recovery_code"]));
    // A wrong password never reaches the second step.
    let wrong = srv
        .device()
        .login("mfa@example.com", "not the password")
        .await;
    assert_eq!(wrong.code(), "invalid_credentials");

    // The code that confirmed the factor was spent on confirmation.
    let step = step_now(&srv);
    let replay = post_mfa(&mut d, &challenge, &code(&secret, step)).await;
    assert_eq!(
        (replay.status.as_u16(), replay.code()),
        (401, "invalid_mfa_code")
    );
    // The next step's code (within the ±1 window) works once.
    let ok = post_mfa(&mut d, &challenge, &code(&secret, step + 1)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.cookie("__Host-sesame_rt").is_some());
    assert_eq!(d.me().await.body["session"]["aal"], "aal2");
    let used = post_mfa(&mut srv.device(), &challenge, &code(&secret, step + 1)).await;
    assert_eq!(
        used.code(),
        "mfa_challenge_invalid",
        "a challenge works once"
    );

    // A replayed code on a new challenge fails; so does an older one.
    let mut e = srv.device();
    let c2 = e.login("mfa@example.com", PASSWORD).await.body["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    for stale in [step + 1, step, step - 1] {
        let a = post_mfa(&mut e, &c2, &code(&secret, stale)).await;
        assert_eq!(a.code(), "invalid_mfa_code", "step {stale}");
    }
    // A recovery code works once (typed in upper case without dashes, too).
    let typed = codes[0].replace('-', "").to_uppercase();
    let rc = post_mfa(&mut e, &c2, &typed).await;
    assert_eq!(rc.status, 200, "{}", rc.text);
    let mut f = srv.device();
    let c3 = f.login("mfa@example.com", PASSWORD).await.body["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let reused = post_mfa(&mut f, &c3, &codes[0]).await;
    assert_eq!(reused.code(), "invalid_mfa_code");
    // Five wrong codes use a challenge up.
    for _ in 0..4 {
        assert_eq!(
            post_mfa(&mut f, &c3, "not-a-code").await.code(),
            "invalid_mfa_code"
        );
    }
    assert_eq!(
        post_mfa(&mut f, &c3, &codes[1]).await.code(),
        "mfa_challenge_invalid"
    );
    // An expired challenge is refused.
    let mut g = srv.device();
    let c4 = g.login("mfa@example.com", PASSWORD).await.body["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    srv.clock.advance(301);
    assert_eq!(
        post_mfa(&mut g, &c4, &codes[2]).await.code(),
        "mfa_challenge_invalid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_required_then_satisfied() {
    let Some(sink) = SmtpSink::start("reauthentication_required_then_satisfied") else {
        return;
    };
    let srv = server_with_sink(&sink, |_| {}).await;
    let mut d = srv.device();
    assert_eq!(d.register("who@example.com").await.status, 201);
    srv.clock.advance(301);
    // Sensitive changes need a fresh check; revoking sessions never does.
    for (method, path, body) in [
        (
            "post",
            "/auth/email",
            Some(json!({ "email": "new@example.com" })),
        ),
        ("post", "/auth/mfa/totp", None),
        ("delete", "/auth/account", None),
    ] {
        let a = match method {
            "post" => d.post(path, body).await,
            _ => d.delete(path).await,
        };
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (403, "reauthentication_required"),
            "{path}"
        );
    }
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.post("/auth/logout-others", None).await.status, 204);

    let bad = d
        .post(
            "/auth/reauthenticate",
            Some(json!({ "password": "wrong password!" })),
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (401, "invalid_credentials")
    );
    let both = d
        .post(
            "/auth/reauthenticate",
            Some(json!({ "password": PASSWORD, "code": "123456" })),
        )
        .await;
    assert_eq!(both.code(), "invalid_request");
    let ok = d
        .post(
            "/auth/reauthenticate",
            Some(json!({ "password": PASSWORD })),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["auth_time"], srv.clock.now());
    assert_eq!(ok.body["aal"], "aal1");

    // Email change: the new address must be verified, the old one is told.
    let taken = srv.device().register("taken@example.com").await;
    assert_eq!(taken.status, 201);
    let clash = d
        .post("/auth/email", Some(json!({ "email": "TAKEN@example.com" })))
        .await;
    assert_eq!((clash.status.as_u16(), clash.code()), (409, "email_taken"));
    let ch = d
        .post("/auth/email", Some(json!({ "email": "new@example.com" })))
        .await;
    assert_eq!(ch.status, 200, "{}", ch.text);
    assert_eq!(ch.body["user"]["email"], "new@example.com");
    assert_eq!(ch.body["user"]["email_verified"], false);
    let told = sink
        .wait_for_subject("who@example.com", "address was changed", MAIL_WAIT)
        .await;
    assert!(told.text.contains("n***@example.com"), "{}", told.text);
    let v = sink
        .wait_for_subject("new@example.com", "Confirm", MAIL_WAIT)
        .await;
    // The old address's verification link no longer verifies anything.
    let old_link = sink
        .wait_for_subject("who@example.com", "Confirm", MAIL_WAIT)
        .await
        .link_token()
        .unwrap();
    let stale = d
        .post("/auth/verify", Some(json!({ "token": old_link })))
        .await;
    assert_eq!(stale.code(), "link_invalid");
    let fresh = d
        .post(
            "/auth/verify",
            Some(json!({ "token": v.link_token().unwrap() })),
        )
        .await;
    assert_eq!(fresh.status, 204);
    assert_eq!(
        srv.device().login("who@example.com", PASSWORD).await.code(),
        "invalid_credentials"
    );
    assert_eq!(
        srv.device().login("new@example.com", PASSWORD).await.status,
        200
    );

    // The window closes again.
    srv.clock.advance(301);
    let late = d.delete("/auth/mfa/totp").await;
    assert_eq!(late.code(), "reauthentication_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_with_a_code_and_factor_removal() {
    let Some(sink) = SmtpSink::start("reauthentication_with_a_code_and_factor_removal") else {
        return;
    };
    let srv = server_with_sink(&sink, |_| {}).await;
    let mut d = srv.device();
    assert_eq!(d.register("rm@example.com").await.status, 201);
    let (secret, _) = enrol(&srv, &d).await;
    srv.clock.advance(400);
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(
        d.delete("/auth/mfa/totp").await.code(),
        "reauthentication_required"
    );
    let r = d
        .post(
            "/auth/reauthenticate",
            Some(json!({ "code": code(&secret, step_now(&srv)) })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["aal"]),
        (200, &json!("aal2")),
        "{}",
        r.text
    );
    assert_eq!(d.delete("/auth/mfa/totp").await.status, 204);
    assert_eq!(d.delete("/auth/mfa/totp").await.code(), "not_found");
    sink.wait_for_subject("rm@example.com", "turned off", MAIL_WAIT)
        .await;
    let l = srv.device().login("rm@example.com", PASSWORD).await;
    assert_eq!(l.status, 200, "no second step any more: {}", l.text);
    assert_eq!(l.body["user"]["mfa_enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_delete_ends_sessions_and_removes_the_account() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    let reg = d.register("bye@example.com").await;
    let uid = reg.body["user"]["id"].as_str().unwrap().to_owned();
    let mut phone = srv.device_with_ua("curl/8.5.0");
    assert_eq!(phone.login("bye@example.com", PASSWORD).await.status, 200);
    let del = d.delete("/auth/account").await;
    assert_eq!(del.status, 204, "{}", del.text);
    // Cookies expired with the answer.
    assert_eq!(del.cookie("__Host-sesame_rt").as_deref(), Some(""));
    let me = phone.me().await;
    assert_eq!(
        (me.code(), &me.body["reason"]),
        ("session_revoked", &json!("account_deleted"))
    );
    // The session rows went with the account, so the refresh token names
    // nothing any more.
    assert_eq!(phone.refresh_raw().await.code(), "refresh_token_invalid");
    assert_eq!(
        srv.device().login("bye@example.com", PASSWORD).await.code(),
        "invalid_credentials"
    );
    let id = sesame_core::ids::UserId::parse(&uid).unwrap();
    assert!(
        srv.engine()
            .accounts()
            .user_by_id(id)
            .await
            .unwrap()
            .is_none()
    );
    // The address is free again.
    assert_eq!(srv.device().register("bye@example.com").await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_new_device_and_reuse_and_switches() {
    let Some(sink) = SmtpSink::start("notifications_new_device_and_reuse_and_switches") else {
        return;
    };
    let srv = server_with_sink(&sink, |raw| raw.notify_password_changed = Some(false)).await;
    let mut laptop = srv.device();
    assert_eq!(laptop.register("note@example.com").await.status, 201);
    // The same browser again: no news.
    assert_eq!(
        srv.device()
            .login("note@example.com", PASSWORD)
            .await
            .status,
        200
    );
    // Another browser: a new-device mail naming it.
    let mut phone = srv.device_with_ua("Mozilla/5.0 (Linux; Android 14) Chrome/126.0 Mobile");
    assert_eq!(phone.login("note@example.com", PASSWORD).await.status, 200);
    let m = sink
        .wait_for_subject("note@example.com", "New sign-in", MAIL_WAIT)
        .await;
    assert!(m.text.contains("Chrome on Android"), "{}", m.text);

    // Reuse of a rotated refresh token (after the grace window) → mail.
    let old = phone.clone();
    assert_eq!(phone.refresh().await.status, 200);
    srv.clock.advance(31);
    assert_eq!(phone.refresh().await.status, 200);
    let reuse = old.refresh_raw().await;
    assert_eq!(reuse.code(), "refresh_token_reused");
    sink.wait_for_subject("note@example.com", "ended a Sesame session", MAIL_WAIT)
        .await;

    // notify_password_changed = false: no mail for the change.
    let ch = laptop
        .post(
            "/auth/password",
            Some(json!({ "current_password": PASSWORD, "new_password": "fresh passphrase 77" })),
        )
        .await;
    assert_eq!(ch.status, 204, "{}", ch.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !sink
            .mails()
            .iter()
            .any(|m| m.subject.contains("password was changed")),
        "switched off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_mail_server_slows_no_request() {
    let smtp = HangingSmtp::start().await;
    let url = smtp.url();
    let srv = TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        raw.smtp_timeout = Some("10s".into());
    })
    .await;
    let mut d = srv.device();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let email = format!("slow{i}@example.com");
        let t = Instant::now();
        assert_eq!(d.register(&email).await.status, 201);
        let a = d
            .post("/auth/password/forgot", Some(json!({ "email": email })))
            .await;
        assert_eq!(a.status, 202);
        let r = d.post("/auth/verify/resend", None).await;
        assert_eq!(r.status, 202);
        slowest = slowest.max(t.elapsed());
    }
    // Each round is three requests with an Argon2 hash in a debug build; a
    // blocked mailer would cost the 10 s SMTP timeout.
    assert!(
        slowest < Duration::from_secs(3),
        "slowest round {slowest:?}"
    );
    assert!(smtp.connections() >= 1, "the mailer did try the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_verify_and_mfa_are_rate_limited() {
    let srv = TestServer::with(|raw| {
        raw.rate_limits = Some(true);
        raw.rate_limit_forgot_account = Some("2/1h".into());
        raw.rate_limit_verify_ip = Some("3/1h".into());
        raw.rate_limit_mfa_account = Some("3/1h".into());
    })
    .await;
    let mut d = srv.device();
    assert_eq!(d.register("limit@example.com").await.status, 201);
    let forgot = |d: &Device| {
        let d = d.clone();
        async move {
            d.post(
                "/auth/password/forgot",
                Some(json!({ "email": "limit@example.com" })),
            )
            .await
        }
    };
    assert_eq!(forgot(&d).await.status, 202);
    assert_eq!(forgot(&d).await.status, 202);
    let third = forgot(&d).await;
    assert_eq!((third.status.as_u16(), third.code()), (429, "rate_limited"));
    assert!(third.headers.contains_key("retry-after"));
    // Link redemptions per IP.
    for _ in 0..3 {
        assert_eq!(
            d.post("/auth/verify", Some(json!({ "token": "sev_nope" })))
                .await
                .code(),
            "link_invalid"
        );
    }
    assert_eq!(
        d.post("/auth/verify", Some(json!({ "token": "sev_nope" })))
            .await
            .code(),
        "rate_limited"
    );
    // Second-factor checks per account share one budget: enrolment's two
    // confirm attempts and one re-authentication spend it, and the next
    // attempt is refused before any code is compared.
    let (_secret, _) = enrol(&srv, &d).await;
    let r1 = d
        .post("/auth/reauthenticate", Some(json!({ "code": "000001" })))
        .await;
    let r2 = d
        .post("/auth/reauthenticate", Some(json!({ "code": "000002" })))
        .await;
    assert!(r1.status == 401 || r1.status == 200);
    assert_eq!(r2.code(), "rate_limited");
}

/// Development mode without SMTP: the flow's mail waits in the loopback
/// outbox, and its link works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_outbox_holds_the_flow_mails() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    assert_eq!(d.register("dev@example.com").await.status, 201);
    let deadline = Instant::now() + MAIL_WAIT;
    let mail: Value = loop {
        if let Some(m) = srv.outbox_mail_to("dev@example.com").await {
            break m;
        }
        assert!(Instant::now() < deadline, "no outbox mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = mail["text"].as_str().unwrap();
    let token = text
        .split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(
        d.post("/auth/verify", Some(json!({ "token": token })))
            .await
            .status,
        204
    );
}

/// `sesame user mfa-reset` (an operator, for a lost phone) on the server's
/// own database: the factor goes, the event is audited, login needs only
/// the password again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_mfa_reset_removes_the_factor() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    assert_eq!(d.register("lost@example.com").await.status, 201);
    enrol(&srv, &d).await;
    assert_eq!(
        srv.device()
            .login("lost@example.com", PASSWORD)
            .await
            .code(),
        "mfa_required"
    );
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "SESAME_DATABASE_URL",
                format!("sqlite://{}", srv.db.display()),
            )
            .env("SESAME_MASTER_KEY", MASTER_KEY)
            .env("SESAME_REFRESH_KEY", REFRESH_KEY)
            .env("SESAME_METRICS_BIND", "none")
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["user", "mfa-reset", "lost@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = cli(&["user", "mfa-reset", "lost@example.com"]);
    assert!(!again.status.success(), "nothing left to reset");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no second factor"));
    let l = srv.device().login("lost@example.com", PASSWORD).await;
    assert_eq!(l.status, 200, "{}", l.text);
    let audit = cli(&["audit", "--event", "mfa_reset"]);
    assert_eq!(String::from_utf8_lossy(&audit.stdout).lines().count(), 1);
}
