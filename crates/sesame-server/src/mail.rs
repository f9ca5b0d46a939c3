//! Mail (DESIGN §3): account mails (verification, reset) and security
//! notifications, submitted over SMTP with `lettre`.
//!
//! Key decision: **sending never waits for the network.** [`Mailer::send`]
//! is synchronous; it builds the message and puts it on a bounded queue
//! (`mail_queue_size`), or refuses at once when the queue is full. A worker
//! task started with the server ([`Mailer::start`]) delivers each mail with
//! a per-attempt timeout (`smtp_timeout`) and retries transient failures
//! with exponential back-off and jitter (1 s, 2 s, 4 s … at most 60 s;
//! `mail_max_attempts` in all). Permanent refusals (SMTP 5xx) are not
//! retried. Each mail is delivered by its own task, and at most
//! [`DELIVERY_CONCURRENCY`] attempts talk to the mail server at once; a mail
//! waiting for its retry holds no delivery slot, so a hanging server delays
//! later mails by at most one timeout and never slows an HTTP request.
//!
//! Without `smtp_url`, development mode writes each mail to the log
//! (recipient masked unless `log_pii`, subject and kind — never the body,
//! which carries one-time tokens) and keeps the last [`OUTBOX_SIZE`] in an
//! in-memory outbox that `GET /dev/outbox` serves to loopback clients.
//! Production mode without `smtp_url` has mail disabled: `send` answers
//! [`MailError::Disabled`].

pub mod templates;

pub use templates::Templates;

use crate::config::{Config, SmtpUrl};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;
use sesame_core::Email;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Delivery attempts talking to the mail server at the same time.
pub const DELIVERY_CONCURRENCY: usize = 4;

/// Mails the development outbox keeps (the oldest go first).
pub const OUTBOX_SIZE: usize = 100;

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long shutdown waits for queued mails before giving up on them.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// What a mail is about: a metrics label and a log field, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MailKind {
    /// A link to confirm an address.
    VerifyEmail,
    /// Someone registered with an address that already has an account.
    AccountExists,
    /// A link to set a new password.
    PasswordReset,
    /// To the old address, after the account's address changed.
    EmailChanged,
    /// The password was changed or reset.
    PasswordChanged,
    /// A second factor was added or removed.
    MfaChanged,
    /// A device signed in for the first time.
    NewDevice,
    /// A rotated-away refresh token came back.
    ReuseDetected,
}

impl MailKind {
    /// Every kind, for zeroed metric series.
    pub const ALL: [Self; 8] = [
        Self::VerifyEmail,
        Self::AccountExists,
        Self::PasswordReset,
        Self::EmailChanged,
        Self::PasswordChanged,
        Self::MfaChanged,
        Self::NewDevice,
        Self::ReuseDetected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::AccountExists => "account_exists",
            Self::PasswordReset => "password_reset",
            Self::EmailChanged => "email_changed",
            Self::PasswordChanged => "password_changed",
            Self::MfaChanged => "mfa_changed",
            Self::NewDevice => "new_device",
            Self::ReuseDetected => "reuse_detected",
        }
    }
}

/// One mail: plain text to one recipient. Built by [`Templates`].
/// `Debug` leaves out the body, which may carry a one-time token.
#[derive(Clone)]
pub struct Mail {
    /// What it is about.
    pub kind: MailKind,
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("to", &self.to.masked())
            .field("subject", &self.subject)
            .field("text", &"[redacted]")
            .finish()
    }
}

/// Why a mail was not accepted for delivery. The caller logs it and carries
/// on: no request fails because a mail could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// `mail_queue_size` mails are already waiting (counted in
    /// `sesame_mail_dropped_total`).
    #[error("the mail queue is full; the mail was dropped")]
    QueueFull,
    /// Production mode without `smtp_url`.
    #[error("mail is disabled (no smtp_url)")]
    Disabled,
    /// The server is shutting down.
    #[error("the mailer has shut down")]
    Closed,
    /// The recipient or the message could not be encoded for SMTP.
    #[error("the mail could not be built for this recipient")]
    Unencodable,
}

/// A mail as the development outbox shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMail {
    /// The recipient.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body (tokens included: the outbox exists to read them).
    pub text: String,
    /// What it is about.
    pub kind: MailKind,
    /// Unix seconds.
    pub sent_at: i64,
}

/// Counts since start, for tests and diagnostics (the same events as the
/// metrics, per mailer rather than per process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailStats {
    /// Mails accepted by [`Mailer::send`].
    pub queued: u64,
    /// Delivery attempts started (first tries and retries).
    pub attempts: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
    /// Mails delivered (or, without SMTP, logged).
    pub sent: u64,
    /// Mails given up on (permanent refusal, or attempts exhausted).
    pub failed: u64,
    /// Mails refused because the queue was full.
    pub dropped: u64,
}

/// What the mailer needs from the configuration.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp_url`; `None`: the log and outbox (development) or disabled.
    pub smtp: Option<SmtpUrl>,
    /// `mail_from`.
    pub from: Mailbox,
    /// `public_url`, the base of every link.
    pub public_url: url::Url,
    /// `smtp_timeout`: one whole attempt.
    pub timeout: Duration,
    /// `mail_queue_size`.
    pub queue_size: usize,
    /// `mail_max_attempts`.
    pub max_attempts: u32,
    /// Development mode (the outbox exists only there).
    pub development: bool,
    /// `log_pii`: log recipients unmasked.
    pub log_pii: bool,
    /// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF`].
    pub retry_base: Duration,
}

impl MailSettings {
    /// The settings `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        Self {
            smtp: config.smtp_url.clone(),
            from: config.mail_from.clone(),
            public_url: config.public_url.clone(),
            timeout: config.smtp_timeout_duration(),
            queue_size: config.mail_queue_size,
            max_attempts: config.mail_max_attempts,
            development: !config.is_production(),
            log_pii: config.log_pii,
            retry_base: Duration::from_secs(1),
        }
    }
}

/// Queues mails for delivery. Cheap to clone; every clone feeds one worker.
#[derive(Clone)]
pub struct Mailer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("route", &self.shared.route)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Where accepted mails go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Smtp,
    LogAndOutbox,
    Disabled,
}

struct Shared {
    route: Route,
    from: Mailbox,
    log_pii: bool,
    templates: Templates,
    queue: mpsc::Sender<Job>,
    /// One permit per mail accepted and not yet finished (queued, being
    /// delivered or waiting for a retry): this is the queue's bound.
    capacity: Arc<Semaphore>,
    queue_size: usize,
    outbox: Mutex<VecDeque<OutboxMail>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    attempts: AtomicU64,
    timeouts: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A mail on its way, with its place in the queue.
struct Job {
    kind: MailKind,
    to_masked: String,
    message: Message,
    _slot: OwnedSemaphorePermit,
}

/// The delivery task; [`MailWorker::shutdown`] ends it.
#[derive(Debug)]
pub struct MailWorker {
    stop: Option<oneshot::Sender<Duration>>,
    task: Option<JoinHandle<()>>,
}

impl MailWorker {
    /// Stops taking mail, waits up to `drain` for the mails already
    /// accepted, then abandons the rest (logged with their number).
    pub async fn shutdown(mut self, drain: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(drain);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MailWorker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Mailer {
    /// Builds the mailer and, when mail goes over SMTP, spawns its worker.
    /// Must run inside the Tokio runtime.
    pub fn start(settings: MailSettings) -> (Self, MailWorker) {
        let route = match (&settings.smtp, settings.development) {
            (Some(_), _) => Route::Smtp,
            (None, true) => Route::LogAndOutbox,
            (None, false) => Route::Disabled,
        };
        let (tx, rx) = mpsc::channel(settings.queue_size);
        let shared = Arc::new(Shared {
            route,
            from: settings.from.clone(),
            log_pii: settings.log_pii,
            templates: Templates::new(settings.public_url.clone()),
            queue: tx,
            capacity: Arc::new(Semaphore::new(settings.queue_size)),
            queue_size: settings.queue_size,
            outbox: Mutex::new(VecDeque::new()),
            stats: Counters::default(),
        });
        let mailer = Self { shared };
        crate::telemetry::mail_queue_depth(0);
        let mut worker = MailWorker {
            stop: None,
            task: None,
        };
        match (&settings.smtp, route) {
            (Some(url), Route::Smtp) => {
                if url.is_plain_remote() {
                    tracing::warn!(
                        host = %url.host,
                        "smtp_url is plain smtp:// to a host other than the loopback: mail, \
                         one-time links and SMTP credentials cross the network in clear text; \
                         use ?tls=required or smtps://"
                    );
                }
                // Checked by config validation; cannot fail here.
                match AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.url) {
                    Ok(builder) => {
                        let transport = builder.timeout(Some(settings.timeout)).build();
                        let (stop_tx, stop_rx) = oneshot::channel();
                        let ctx = Arc::new(DeliveryContext {
                            transport,
                            timeout: settings.timeout,
                            max_attempts: settings.max_attempts.max(1),
                            retry_base: settings.retry_base,
                            slots: Arc::new(Semaphore::new(DELIVERY_CONCURRENCY)),
                            mailer: mailer.clone(),
                        });
                        worker.stop = Some(stop_tx);
                        worker.task = Some(tokio::spawn(run_worker(rx, ctx, stop_rx)));
                        tracing::info!(smtp = %url.masked(), "mail goes over SMTP");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "smtp_url refused by lettre; mail is disabled");
                    }
                }
            }
            (_, Route::LogAndOutbox) => tracing::info!(
                "no smtp_url: mail goes to the log, and its full text to GET /dev/outbox \
                 (development mode, loopback clients only)"
            ),
            _ => tracing::warn!(
                "no smtp_url: mail is disabled, so no verification, reset or security mail \
                 will be sent; set smtp_url to enable it"
            ),
        }
        (mailer, worker)
    }

    /// Queues `mail` for delivery and returns at once: it never waits for
    /// the network or for room in the queue. Without SMTP in development
    /// mode the mail is logged and kept in the outbox before this returns.
    pub fn send(&self, mail: Mail) -> Result<(), MailError> {
        let s = &self.shared;
        let to_masked = if s.log_pii {
            mail.to.as_str().to_owned()
        } else {
            mail.to.masked()
        };
        match s.route {
            Route::Disabled => Err(MailError::Disabled),
            Route::LogAndOutbox => {
                // The body is not logged: it may carry a one-time token, and
                // logs must never hold tokens. It is in the outbox.
                tracing::info!(
                    kind = mail.kind.as_str(),
                    to = %to_masked,
                    subject = %mail.subject,
                    "mail (development mode: not sent; the text is in GET /dev/outbox)"
                );
                let entry = OutboxMail {
                    to: mail.to.as_str().to_owned(),
                    subject: mail.subject,
                    text: mail.text,
                    kind: mail.kind,
                    sent_at: unix_now(),
                };
                let mut outbox = s.outbox.lock().unwrap_or_else(|p| p.into_inner());
                if outbox.len() == OUTBOX_SIZE {
                    outbox.pop_front();
                }
                outbox.push_back(entry);
                Counters::bump(&s.stats.queued);
                Counters::bump(&s.stats.sent);
                crate::telemetry::mail_sent(mail.kind.as_str());
                Ok(())
            }
            Route::Smtp => {
                let kind = mail.kind;
                let message = self.build(mail)?;
                let Ok(slot) = s.capacity.clone().try_acquire_owned() else {
                    Counters::bump(&s.stats.dropped);
                    crate::telemetry::mail_dropped();
                    tracing::warn!(
                        kind = kind.as_str(),
                        to = %to_masked,
                        queue = s.queue_size,
                        "mail queue full; mail dropped"
                    );
                    return Err(MailError::QueueFull);
                };
                let job = Job {
                    kind,
                    to_masked,
                    message,
                    _slot: slot,
                };
                // Never full: the capacity permits bound what it holds.
                match s.queue.try_send(job) {
                    Ok(()) => {
                        Counters::bump(&s.stats.queued);
                        self.report_depth();
                        Ok(())
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        Counters::bump(&s.stats.dropped);
                        crate::telemetry::mail_dropped();
                        Err(MailError::QueueFull)
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(MailError::Closed),
                }
            }
        }
    }

    /// The mail texts, with links built from `public_url`.
    pub fn templates(&self) -> &Templates {
        &self.shared.templates
    }

    /// Whether mail goes anywhere (SMTP, or the development log).
    pub fn is_enabled(&self) -> bool {
        self.shared.route != Route::Disabled
    }

    /// Whether the development outbox is kept (development mode, no SMTP).
    pub fn has_outbox(&self) -> bool {
        self.shared.route == Route::LogAndOutbox
    }

    /// The development outbox, oldest first (empty when not kept).
    pub fn outbox(&self) -> Vec<OutboxMail> {
        let outbox = self.shared.outbox.lock().unwrap_or_else(|p| p.into_inner());
        outbox.iter().cloned().collect()
    }

    /// Mails accepted and not finished yet (queued, being delivered, or
    /// waiting for a retry).
    pub fn pending(&self) -> usize {
        self.shared.queue_size - self.shared.capacity.available_permits()
    }

    /// Counts since start.
    pub fn stats(&self) -> MailStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MailStats {
            queued: get(&c.queued),
            attempts: get(&c.attempts),
            timeouts: get(&c.timeouts),
            sent: get(&c.sent),
            failed: get(&c.failed),
            dropped: get(&c.dropped),
        }
    }

    fn report_depth(&self) {
        crate::telemetry::mail_queue_depth(self.pending());
    }

    fn build(&self, mail: Mail) -> Result<Message, MailError> {
        let to: Address = mail
            .to
            .as_str()
            .parse()
            .map_err(|_| MailError::Unencodable)?;
        Message::builder()
            .from(self.shared.from.clone())
            .to(Mailbox::new(None, to))
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text)
            .map_err(|_| MailError::Unencodable)
    }
}

struct DeliveryContext {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    max_attempts: u32,
    retry_base: Duration,
    /// Bounds the attempts in flight ([`DELIVERY_CONCURRENCY`]).
    slots: Arc<Semaphore>,
    mailer: Mailer,
}

async fn run_worker(
    mut rx: mpsc::Receiver<Job>,
    ctx: Arc<DeliveryContext>,
    mut stop: oneshot::Receiver<Duration>,
) {
    let mut deliveries = JoinSet::new();
    let drain = loop {
        tokio::select! {
            drain = &mut stop => break drain.unwrap_or(SHUTDOWN_DRAIN),
            job = rx.recv() => match job {
                Some(job) => {
                    deliveries.spawn(deliver(job, ctx.clone()));
                }
                None => break SHUTDOWN_DRAIN,
            },
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    };
    // Refuse new mail; deliver what was accepted, within the drain time.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        deliveries.spawn(deliver(job, ctx.clone()));
    }
    let drained = tokio::time::timeout(drain, async {
        while deliveries.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            undelivered = deliveries.len(),
            "shutdown: mails still queued or retrying were abandoned"
        );
        deliveries.abort_all();
    }
}

/// Delivers one mail: up to `max_attempts` attempts, each bounded by the
/// timeout and holding a delivery slot only while it talks to the server.
async fn deliver(job: Job, ctx: Arc<DeliveryContext>) {
    let stats = &ctx.mailer.shared.stats;
    let kind = job.kind.as_str();
    let mut attempt = 1;
    loop {
        let result = {
            // The semaphore lives as long as the context: never closed.
            let Ok(_slot) = ctx.slots.acquire().await else {
                return;
            };
            Counters::bump(&stats.attempts);
            tokio::time::timeout(ctx.timeout, ctx.transport.send(job.message.clone())).await
        };
        let error = match result {
            Ok(Ok(_)) => {
                Counters::bump(&stats.sent);
                crate::telemetry::mail_sent(kind);
                tracing::info!(kind, to = %job.to_masked, attempt, "mail delivered");
                break;
            }
            Ok(Err(e)) if e.is_permanent() => {
                Counters::bump(&stats.failed);
                crate::telemetry::mail_failed(kind);
                tracing::warn!(kind, to = %job.to_masked, error = %e, "mail refused by the mail server; not retried");
                break;
            }
            Ok(Err(e)) => {
                if e.is_timeout() {
                    Counters::bump(&stats.timeouts);
                }
                e.to_string()
            }
            Err(_) => {
                Counters::bump(&stats.timeouts);
                format!("no answer within {:?}", ctx.timeout)
            }
        };
        if attempt >= ctx.max_attempts {
            Counters::bump(&stats.failed);
            crate::telemetry::mail_failed(kind);
            tracing::warn!(kind, to = %job.to_masked, attempts = attempt, %error, "mail undeliverable; giving up");
            break;
        }
        let wait = backoff(ctx.retry_base, attempt);
        tracing::info!(kind, to = %job.to_masked, attempt, %error, retry_in = ?wait, "mail delivery failed; will retry");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
    // The job's queue slot is released when `job` drops, just after this.
    let mailer = ctx.mailer.clone();
    drop(job);
    mailer.report_depth();
}

/// The wait before attempt `attempt + 1`: `base · 2^(attempt-1)`, capped at
/// [`MAX_BACKOFF`], then spread by ±25 % so that mails failing together do
/// not retry together (never beyond the cap).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let r = u16::from_le_bytes(sesame_core::crypto::random::<2>());
    // 0.75 .. 1.25
    let factor = 0.75 + f64::from(r) / f64::from(u16::MAX) / 2.0;
    exp.mul_f64(factor).min(MAX_BACKOFF)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        for (attempt, nominal) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0)] {
            for _ in 0..50 {
                let d = backoff(base, attempt).as_secs_f64();
                assert!(
                    d >= nominal * 0.75 - 1e-9 && d <= nominal * 1.25 + 1e-9,
                    "attempt {attempt}: {d}"
                );
            }
        }
        for attempt in [7, 8, 20, 100] {
            let d = backoff(base, attempt);
            assert!(d <= MAX_BACKOFF && d >= MAX_BACKOFF.mul_f64(0.75));
        }
    }

    #[test]
    fn mail_debug_hides_the_body() {
        let mail = Mail {
            kind: MailKind::PasswordReset,
            to: Email::parse("alice@example.com").unwrap(),
            subject: "Reset".into(),
            text: "token=SECRET".into(),
        };
        let debug = format!("{mail:?}");
        assert!(!debug.contains("SECRET"));
        assert!(!debug.contains("alice@"));
    }
}
