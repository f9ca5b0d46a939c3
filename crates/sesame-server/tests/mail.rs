//! Mail through real sockets: the server's mailer delivering to a real SMTP
//! server (aiosmtpd, `tests/smtp_sink.py`), a mail server that hangs (no
//! request slows down; the worker times out, retries, and delivers once the
//! server answers), permanent refusals, a full queue, the development
//! outbox over HTTP, and the production rule that `require_verified_email`
//! needs SMTP.
//!
//! The tests drive the mailer the server built at start-up
//! (`TestServer::mailer`) — the same one the routes use; `tests/account.rs`
//! covers the mail the flows send.

mod common;

use common::smtp::{HangingSmtp, SmtpSink};
use common::{MASTER_KEY, REFRESH_KEY, T0, TestServer};
use sesame_core::Email;
use sesame_server::config::{self, RawConfig};
use sesame_server::mail::{MailError, MailKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
async fn eventually(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailer_delivers_to_a_real_smtp_server() {
    let Some(sink) = SmtpSink::start("the_mailer_delivers_to_a_real_smtp_server") else {
        return;
    };
    let url = sink.url();
    let srv = TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        raw.mail_from = Some("Sesame <noreply@auth.test>".into());
        raw.metrics_bind = Some("127.0.0.1:0".into());
    })
    .await;
    let mailer = srv.mailer();
    assert!(mailer.is_enabled());
    assert!(!mailer.has_outbox(), "no outbox when SMTP is configured");

    let token = "Zm9vYmFyLXRva2VuLXZhbHVlLXRoYXQtaXMtNDMtY2hh";
    let to = email("Alice@Example.com");
    let started = Instant::now();
    mailer
        .send(mailer.templates().password_reset(&to, token))
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(50));

    let got = sink
        .wait_for_mail("Alice@example.com", Duration::from_secs(10))
        .await;
    assert_eq!(got.subject, "Reset your Sesame password");
    assert!(got.from.contains("noreply@auth.test"), "{}", got.from);
    assert_eq!(got.envelope_from, "noreply@auth.test");
    assert!(got.text.contains("Setting a new password signs out"));
    // The link is public_url + /reset, and the token is only in its fragment.
    assert_eq!(
        got.link().as_deref(),
        Some(format!("http://127.0.0.1:8080/reset#token={token}").as_str())
    );
    assert_eq!(got.link_token().as_deref(), Some(token));
    assert_eq!(got.text.matches(token).count(), 1);
    assert!(!got.subject.contains(token));

    // A second kind, to check the verification link as well.
    mailer
        .send(
            mailer
                .templates()
                .verify_email(&email("bob@example.com"), "tok2"),
        )
        .unwrap();
    let got = sink
        .wait_for_mail("bob@example.com", Duration::from_secs(10))
        .await;
    assert_eq!(
        got.link().as_deref(),
        Some("http://127.0.0.1:8080/verify#token=tok2")
    );

    eventually(Duration::from_secs(5), "the sent counter", || {
        mailer.stats().sent == 2
    })
    .await;
    let stats = mailer.stats();
    assert_eq!((stats.attempts, stats.failed, stats.dropped), (2, 0, 0));
    assert_eq!(mailer.pending(), 0);

    // The same events as Prometheus metrics (the recorder is per process,
    // so only lower bounds hold).
    let metrics = reqwest::get(srv.metrics_url().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert!(value("sesame_mail_sent_total{kind=\"password_reset\"}") >= 1.0);
    assert!(value("sesame_mail_sent_total{kind=\"verify_email\"}") >= 1.0);
    assert!(value("sesame_mail_failed_total{kind=\"verify_email\"}") >= 0.0);
    assert!(value("sesame_mail_dropped_total") >= 0.0);
    assert!(value("sesame_mail_queue_depth") >= 0.0);
    srv.stop().await;
}

/// The mail server accepts the connection and never answers. Sending
/// returns at once; HTTP requests made meanwhile are not slowed; the worker
/// gives the attempt up after `smtp_timeout`, retries, and delivers once the
/// server works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_mail_server_slows_no_request_and_is_retried() {
    let name = "a_hanging_mail_server_slows_no_request_and_is_retried";
    let Some(sink) = SmtpSink::start(name) else {
        return;
    };
    let hang = HangingSmtp::start().await;
    let url = hang.url();
    let srv = TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        raw.smtp_timeout = Some("2s".into());
        raw.mail_max_attempts = Some(4);
    })
    .await;
    let mailer = srv.mailer().clone();

    let started = Instant::now();
    for i in 0..3 {
        mailer
            .send(
                mailer
                    .templates()
                    .verify_email(&email(&format!("hang{i}@example.com")), "t"),
            )
            .unwrap();
    }
    let send_took = started.elapsed();
    assert!(
        send_took < Duration::from_millis(50),
        "send took {send_took:?}"
    );

    // While the first attempts hang: HTTP requests, including a register
    // (store writes and Argon2), answer as fast as ever.
    eventually(Duration::from_secs(5), "the hanging connections", || {
        hang.connections() >= 3
    })
    .await;
    let mut d = srv.device();
    let mut slowest = Duration::ZERO;
    let t = Instant::now();
    let reg = d.register("during-hang@example.com").await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let register_took = t.elapsed();
    let window = Instant::now();
    let mut requests = 0;
    while window.elapsed() < Duration::from_millis(1200) {
        let t = Instant::now();
        assert_eq!(d.get("/healthz").await.status, 200);
        assert_eq!(d.me().await.status, 200);
        slowest = slowest.max(t.elapsed());
        requests += 2;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "while the mail server hung: register took {register_took:?}; \
         {requests} requests, slowest pair {slowest:?}; send() x3 took {send_took:?}"
    );
    assert!(
        register_took < Duration::from_millis(1000),
        "register took {register_took:?}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}"
    );

    // The attempts time out (2 s) and are retried after a back-off.
    eventually(Duration::from_secs(10), "attempt timeouts", || {
        mailer.stats().timeouts >= 3
    })
    .await;
    assert_eq!(mailer.stats().sent, 0);
    // The three, and the verification mail of the registration above.
    assert_eq!(mailer.pending(), 4, "all four wait for a retry");
    hang.forward_to(sink.addr);
    for i in 0..3 {
        let got = sink
            .wait_for_mail(&format!("hang{i}@example.com"), Duration::from_secs(20))
            .await;
        assert_eq!(got.subject, "Confirm your email address for Sesame");
    }
    sink.wait_for_mail("during-hang@example.com", Duration::from_secs(20))
        .await;
    eventually(Duration::from_secs(5), "the sent counter", || {
        mailer.stats().sent == 4
    })
    .await;
    let stats = mailer.stats();
    assert!(stats.attempts >= 7, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(mailer.pending(), 0);
    eprintln!("hanging server: {stats:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_counted_and_not_retried() {
    let Some(sink) = SmtpSink::start_rejecting("a_permanent_refusal_is_counted_and_not_retried")
    else {
        return;
    };
    let url = sink.url();
    let srv = TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        raw.mail_max_attempts = Some(5);
    })
    .await;
    let mailer = srv.mailer();
    mailer
        .send(
            mailer
                .templates()
                .password_changed(&email("nobody@example.com")),
        )
        .unwrap();
    eventually(Duration::from_secs(10), "the failure", || {
        mailer.stats().failed == 1
    })
    .await;
    // Give a wrong retry the time to show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = mailer.stats();
    assert_eq!((stats.attempts, stats.sent, stats.failed), (1, 0, 1));
    assert!(sink.mails().is_empty());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let hang = HangingSmtp::start().await;
    let url = hang.url();
    let srv = TestServer::with(move |raw| {
        raw.smtp_url = Some(url.clone().into());
        raw.mail_queue_size = Some(2);
        raw.smtp_timeout = Some("30s".into());
    })
    .await;
    let mailer = srv.mailer();
    let t = mailer.templates();
    let to = email("q@example.com");
    mailer.send(t.password_changed(&to)).unwrap();
    mailer.send(t.mfa_changed(&to, true)).unwrap();
    let started = Instant::now();
    let third = mailer.send(t.mfa_changed(&to, false));
    let took = started.elapsed();
    assert_eq!(third.unwrap_err(), MailError::QueueFull);
    assert!(took < Duration::from_millis(20), "refusal took {took:?}");
    let stats = mailer.stats();
    assert_eq!((stats.queued, stats.dropped), (2, 1));
    assert_eq!(mailer.pending(), 2);
    // Shutdown does not wait for the hanging mails beyond its drain time.
    let started = Instant::now();
    srv.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_outbox_answers_loopback_in_development_only() {
    let srv = TestServer::start().await;
    let mailer = srv.mailer();
    assert!(mailer.has_outbox());
    let empty = srv.outbox().await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body, serde_json::json!([]));

    mailer
        .send(
            mailer
                .templates()
                .verify_email(&email("dev@example.com"), "devtoken"),
        )
        .unwrap();
    mailer
        .send(mailer.templates().new_device(
            &email("dev@example.com"),
            "Firefox on Linux",
            "127.0.0.1",
            T0,
        ))
        .unwrap();
    let a = srv.outbox().await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["cache-control"], "no-store");
    let list = a.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["to"], "dev@example.com");
    assert_eq!(list[0]["kind"], "verify_email");
    assert_eq!(list[0]["subject"], "Confirm your email address for Sesame");
    assert!(
        list[0]["text"]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:8080/verify#token=devtoken")
    );
    assert!(list[0]["sent_at"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(list[1]["kind"], MailKind::NewDevice.as_str());
    let newest = srv.outbox_mail_to("dev@example.com").await.unwrap();
    assert_eq!(newest["kind"], "new_device");

    // Only GET, only that path.
    let post = common::answer(
        reqwest::Client::new()
            .post(format!("{}/dev/outbox", srv.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 404);
    assert!(post.is_problem());

    // Production mode, same database (its keys were made by the dev
    // server): no outbox, the usual 404.
    let prod_raw = RawConfig {
        mode: Some("production".into()),
        public_url: Some("https://auth.example.com".into()),
        database_url: Some(format!("sqlite://{}", srv.db.display()).into()),
        master_key: Some(MASTER_KEY.to_string().into()),
        refresh_key: Some(REFRESH_KEY.to_string().into()),
        metrics_bind: Some("none".into()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prod = sesame_server::server::start(
        listener,
        config::validate(prod_raw).unwrap(),
        Arc::new(srv.clock.clone()),
    )
    .await
    .unwrap();
    assert!(!prod.mailer.is_enabled());
    assert_eq!(
        prod.mailer.send(
            prod.mailer
                .templates()
                .password_changed(&email("p@example.com"))
        ),
        Err(MailError::Disabled)
    );
    let unknown = common::answer(
        reqwest::get(format!("http://{}/no/such/path", prod.addr))
            .await
            .unwrap(),
    )
    .await;
    let outbox = common::answer(
        reqwest::get(format!("http://{}/dev/outbox", prod.addr))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(outbox.status, 404);
    assert!(outbox.is_problem());
    assert_eq!(outbox.body["code"], unknown.body["code"]);
    assert_eq!(outbox.body["title"], unknown.body["title"]);
    prod.stop().await.unwrap();

    // Development mode with SMTP configured keeps no outbox either.
    let smtp = TestServer::with(|raw| raw.smtp_url = Some("smtp://127.0.0.1:9".into())).await;
    assert_eq!(smtp.outbox().await.status, 404);
    smtp.stop().await;
    srv.stop().await;
}

#[test]
fn production_refuses_require_verified_email_without_smtp() {
    let prod = |smtp: Option<&str>| RawConfig {
        mode: Some("production".into()),
        public_url: Some("https://auth.example.com".into()),
        master_key: Some(MASTER_KEY.to_string().into()),
        refresh_key: Some(REFRESH_KEY.to_string().into()),
        require_verified_email: Some(true),
        smtp_url: smtp.map(|s| s.to_string().into()),
        ..Default::default()
    };
    let e = config::validate(prod(None)).unwrap_err();
    assert_eq!(e.setting, "smtp_url");
    let msg = e.to_string();
    assert!(
        msg.contains("SESAME_SMTP_URL") && msg.contains("require_verified_email"),
        "{msg}"
    );
    assert!(config::validate(prod(Some("smtps://u:p@mail.example.com"))).is_ok());

    // The same through the binary, as an operator meets it.
    let dir = std::env::temp_dir().join(format!(
        "sesame-mail-cli-{:x}",
        u64::from_le_bytes(sesame_core::crypto::random::<8>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sesame"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["config", "check"])
        .env("SESAME_MODE", "production")
        .env("SESAME_PUBLIC_URL", "https://auth.example.com")
        .env("SESAME_MASTER_KEY", MASTER_KEY)
        .env("SESAME_REFRESH_KEY", REFRESH_KEY)
        .env("SESAME_REQUIRE_VERIFIED_EMAIL", "true")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("smtp_url") && stderr.contains("require_verified_email"),
        "{stderr}"
    );
}
