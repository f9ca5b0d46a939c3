//! The integration-test harness: a real `sesame` server started in-process
//! on 127.0.0.1:0 with a manual clock and its own SQLite file, reached over
//! real sockets by reqwest. No test-only routes: everything goes through the
//! public HTTP API, plus the engine/store handles a CLI would also have.
#![allow(dead_code, unreachable_pub)]

pub mod faulty;
pub mod jwt;
pub mod smtp;
pub mod sse;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sesame_core::clock::ManualClock;
use sesame_server::config::{self, RawConfig};
use sesame_server::server::{self, Running};
use std::path::PathBuf;
use std::sync::Arc;

pub const T0: i64 = 1_800_000_000;
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
pub const REFRESH_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
pub const PASSWORD: &str = "correct horse battery staple";
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

type ConfigTweak = Box<dyn Fn(&mut RawConfig) + Send + Sync>;

pub struct TestServer {
    pub base: String,
    pub clock: ManualClock,
    pub db: PathBuf,
    tweak: Arc<ConfigTweak>,
    running: Option<Running>,
    /// When set, the server runs on a store wrapper that fails on command.
    pub faults: Option<Arc<faulty::Faults>>,
    /// Siblings share the first server's database and do not delete it.
    owns_db: bool,
    /// The networked stores' time (PostgreSQL, MariaDB, Redis); `None`:
    /// `server::start`, the production default.
    store_time: Option<server::StoreTime>,
    /// Bind here instead of a fresh port (a restart in place).
    fixed_addr: Option<std::net::SocketAddr>,
}

fn temp_db() -> PathBuf {
    let n: u64 = rand_u64();
    std::env::temp_dir().join(format!("sesame-test-{}-{n:x}.db", std::process::id()))
}

fn rand_u64() -> u64 {
    let b = sesame_core::crypto::random::<8>();
    u64::from_le_bytes(b)
}

fn base_raw(db: &std::path::Path) -> RawConfig {
    RawConfig {
        mode: Some("development".into()),
        database_url: Some(format!("sqlite://{}", db.display()).into()),
        master_key: Some(MASTER_KEY.to_string().into()),
        refresh_key: Some(REFRESH_KEY.to_string().into()),
        public_url: Some("http://127.0.0.1:8080".into()),
        dev_secrets_file: Some(db.with_extension("secrets").display().to_string()),
        // The default (127.0.0.1:9090) would collide between servers running
        // in parallel; tests that need metrics bind 127.0.0.1:0.
        metrics_bind: Some("none".into()),
        // Tests register and log in hundreds of users from 127.0.0.1; the
        // limits have their own tests (tests/rate_limits.rs).
        rate_limits: Some(false),
        ..Default::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl Fn(&mut RawConfig) + Send + Sync + 'static) -> Self {
        Self::try_with(f).await.expect("test server starts")
    }

    /// Like [`Self::with`], but a failing start is returned (as its full
    /// error chain) instead of panicking.
    pub async fn try_with(
        f: impl Fn(&mut RawConfig) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let mut s = Self {
            base: String::new(),
            clock: ManualClock::new(T0),
            db: temp_db(),
            tweak: Arc::new(Box::new(f)),
            running: None,
            faults: None,
            owns_db: true,
            store_time: None,
            fixed_addr: None,
        };
        s.try_boot().await?;
        Ok(s)
    }

    /// A server whose configuration `f` points at a networked store
    /// (PostgreSQL, MariaDB or Redis sessions), which takes its time from
    /// `store_clock`, or from the server's own manual clock when `None`.
    /// Accounts stay in this server's SQLite file unless `f` sets
    /// `database_url`.
    pub async fn try_on_backend(
        f: impl Fn(&mut RawConfig) + Send + Sync + 'static,
        store_clock: Option<ManualClock>,
    ) -> Result<Self, String> {
        let clock = ManualClock::new(T0);
        let store_clock = store_clock.unwrap_or_else(|| clock.clone());
        let mut s = Self {
            base: String::new(),
            clock,
            db: temp_db(),
            tweak: Arc::new(Box::new(f)),
            running: None,
            faults: None,
            owns_db: true,
            store_time: Some(server::StoreTime::Fixed(Arc::new(store_clock))),
            fixed_addr: None,
        };
        s.try_boot().await?;
        Ok(s)
    }

    /// A server whose store fails on command (see [`faulty::Faults`]).
    pub async fn with_faults(f: impl Fn(&mut RawConfig) + Send + Sync + 'static) -> Self {
        let mut s = Self {
            base: String::new(),
            clock: ManualClock::new(T0),
            db: temp_db(),
            tweak: Arc::new(Box::new(f)),
            running: None,
            faults: Some(faulty::Faults::new()),
            owns_db: true,
            store_time: None,
            fixed_addr: None,
        };
        s.boot().await;
        s
    }

    /// A second instance on the same database, configuration and clock: two
    /// `sesame` processes behind one load balancer.
    pub async fn sibling(&self) -> Self {
        let mut s = Self {
            base: String::new(),
            clock: self.clock.clone(),
            db: self.db.clone(),
            tweak: self.tweak.clone(),
            running: None,
            faults: None,
            owns_db: false,
            store_time: self.store_time.clone(),
            fixed_addr: None,
        };
        s.boot().await;
        s
    }

    fn config(&self) -> config::Config {
        let mut raw = base_raw(&self.db);
        (self.tweak)(&mut raw);
        config::validate(raw).expect("test config is valid")
    }

    async fn boot(&mut self) {
        self.try_boot().await.unwrap();
    }

    async fn try_boot(&mut self) -> Result<(), String> {
        let listener = match self.fixed_addr {
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            Some(addr) => tokio::net::TcpListener::bind(addr).await.unwrap(),
        };
        self.base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(self.clock.clone());
        let running = match &self.faults {
            None => match &self.store_time {
                None => server::start(listener, self.config(), clock).await,
                Some(time) => {
                    server::start_with_time(listener, self.config(), clock, time.clone()).await
                }
            },
            Some(faults) => {
                let opts = sesame_store_sqlx::SqliteStoreOptions::new(format!(
                    "sqlite://{}",
                    self.db.display()
                ));
                let store = sesame_store_sqlx::SqliteStore::open(&opts, clock.clone())
                    .await
                    .unwrap();
                let wrapped = Arc::new(faulty::FaultyStore {
                    inner: store,
                    faults: faults.clone(),
                });
                let stores = server::Stores::custom(wrapped.clone(), wrapped);
                server::start_with(listener, self.config(), clock, stores).await
            }
        }
        .map_err(|e| format!("{e:#}"))?;
        self.running = Some(running);
        Ok(())
    }

    /// Stops the server (in-flight requests finish) and starts a new one on
    /// the same database, secrets and clock: a process restart.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.boot().await;
    }

    /// Stops the server but keeps its address for [`Self::resume`].
    pub async fn halt(&mut self) {
        let addr = self.running.as_ref().unwrap().addr;
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.fixed_addr = Some(addr);
    }

    /// Starts a halted server again on its old address.
    pub async fn resume(&mut self) {
        self.boot().await;
    }

    /// [`Self::restart`] on the same address, so clients configured with
    /// the URL (a resource server's feed, say) find it again.
    pub async fn restart_in_place(&mut self) {
        let addr = self.running.as_ref().unwrap().addr;
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
        self.fixed_addr = Some(addr);
        self.boot().await;
    }

    pub fn engine(&self) -> &sesame_core::Engine {
        &self.running.as_ref().unwrap().engine
    }

    /// The server's mailer (what the routes send with). Point it at a real
    /// SMTP server with `raw.smtp_url = Some(sink.url().into())` in the
    /// config tweak; without one, development mode keeps an outbox.
    pub fn mailer(&self) -> &sesame_server::mail::Mailer {
        &self.running.as_ref().unwrap().mailer
    }

    /// `GET /dev/outbox` over HTTP from 127.0.0.1: the mails the development
    /// mailer kept (`[{to, subject, text, kind, sent_at}]`).
    pub async fn outbox(&self) -> Answer {
        answer(
            reqwest::Client::new()
                .get(format!("{}/dev/outbox", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The newest outbox mail to `to`, if any.
    pub async fn outbox_mail_to(&self, to: &str) -> Option<Value> {
        let a = self.outbox().await;
        a.body
            .as_array()?
            .iter()
            .rev()
            .find(|m| m["to"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(to)))
            .cloned()
    }

    /// `http://<metrics listener>/metrics`, when `metrics_bind` is set.
    pub fn metrics_url(&self) -> Option<String> {
        let addr = self.running.as_ref()?.metrics_addr?;
        Some(format!("http://{addr}/metrics"))
    }

    pub fn origin(&self) -> String {
        // CSRF checks compare against public_url's origin.
        "http://127.0.0.1:8080".to_string()
    }

    pub fn device(&self) -> Device {
        self.device_with_ua(UA)
    }

    pub fn device_with_ua(&self, ua: &str) -> Device {
        Device {
            base: self.base.clone(),
            origin: Some(self.origin()),
            ua: ua.to_string(),
            http: reqwest::Client::builder().build().unwrap(),
            refresh_cookie: None,
            access: None,
            refresh_body: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !self.owns_db {
            return;
        }
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.db.display()));
        }
    }
}

/// One browser or app: its own cookies, user agent and tokens.
#[derive(Clone)]
pub struct Device {
    pub base: String,
    pub origin: Option<String>,
    pub ua: String,
    pub http: reqwest::Client,
    pub refresh_cookie: Option<String>,
    pub access: Option<String>,
    pub refresh_body: Option<String>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value of a Set-Cookie for `name`, if one was sent.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    pub fn is_problem(&self) -> bool {
        self.headers
            .get("content-type")
            .map(|v| v == "application/problem+json")
            .unwrap_or(false)
            && self.body["code"].is_string()
            && self.body["status"].as_u64() == Some(u64::from(self.status.as_u16()))
    }
}

pub async fn answer(r: Response) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

impl Device {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", &self.ua);
        if let Some(o) = &self.origin {
            rb = rb.header("origin", o);
        }
        rb
    }

    fn with_cookie(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.refresh_cookie {
            Some(c) => rb.header("cookie", format!("__Host-sesame_rt={c}")),
            None => rb,
        }
    }

    fn with_bearer(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.access {
            Some(a) => rb.header("authorization", format!("Bearer {a}")),
            None => rb,
        }
    }

    /// Keeps what a browser would keep from an answer.
    pub fn absorb(&mut self, a: &Answer) {
        if let Some(c) = a.cookie("__Host-sesame_rt") {
            self.refresh_cookie = if c.is_empty() { None } else { Some(c) };
        }
        if let Some(t) = a.body["access_token"].as_str() {
            self.access = Some(t.to_string());
        }
        if let Some(t) = a.body["refresh_token"].as_str() {
            self.refresh_body = Some(t.to_string());
        }
    }

    pub async fn register(&mut self, email: &str) -> Answer {
        let a = answer(
            self.with_cookie(self.request(Method::POST, "/auth/register"))
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        self.absorb(&a);
        a
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Answer {
        self.login_as(email, password, None).await
    }

    pub async fn login_as(
        &mut self,
        email: &str,
        password: &str,
        transport: Option<&str>,
    ) -> Answer {
        let mut rb = self.with_cookie(self.request(Method::POST, "/auth/login"));
        if let Some(t) = transport {
            rb = rb.header("sesame-transport", t);
        }
        let a = answer(
            rb.json(&json!({ "email": email, "password": password }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        self.absorb(&a);
        a
    }

    /// Refresh with the cookie (hybrid/cookie) or the body token (bearer).
    pub async fn refresh(&mut self) -> Answer {
        let a = self.refresh_raw().await;
        self.absorb(&a);
        a
    }

    /// Refresh without keeping the answer.
    pub async fn refresh_raw(&self) -> Answer {
        let mut rb = self.with_cookie(self.request(Method::POST, "/auth/refresh"));
        if let Some(t) = &self.refresh_body {
            rb = rb.json(&json!({ "refresh_token": t }));
        }
        answer(rb.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(
            self.with_bearer(self.request(Method::GET, path))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Answer {
        let mut rb = self.with_bearer(self.with_cookie(self.request(Method::POST, path)));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        answer(rb.send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        answer(
            self.with_bearer(self.request(Method::DELETE, path))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn me(&self) -> Answer {
        self.get("/auth/me").await
    }
}

pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}
