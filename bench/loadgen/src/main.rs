//! Sesame's load generator.
//!
//! Run with: `cargo run --release -p sesame-loadgen -- <command> …` (the
//! scripts in `bench/` do).
//!
//! - `closed`: N connections, each sending its next request as soon as the
//!   last answered — the maximum rate.
//! - `open`: requests *scheduled* at a fixed rate, spread over N connections;
//!   latency is measured from the scheduled time, not the send time, so a
//!   stalled server is charged for every request it delayed (no coordinated
//!   omission, as in wrk2).
//! - `mint`: N bearer-transport sessions through the admin API and the
//!   handoff exchange (no password hashing), access tokens to a file.
//! - `users`: registers and logs in users on any server of the peers'
//!   common contract (the peers in `../shared/peers/`, Sesame too).
//! - `raw`: a backend's own read / single-row update rate (see `raw.rs`).
//! - `revocations`: for each token, log out at Sesame and time until a
//!   resource server refuses the token.
//!
//! Each request is one GET on a raw HTTP/1.1 keep-alive connection (hyper's
//! connection API, no pool), with a bearer token taken round-robin from the
//! token file. With `--server-pid`, the server's CPU time (utime + stime
//! from /proc) over the run is divided by the requests answered.

mod raw;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Maximum rate: every connection sends as fast as answers come.
    Closed {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// A fixed offered rate; latency from each request's scheduled time.
    Open {
        #[command(flatten)]
        target: Target,
        /// Requests per second offered.
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Mints sessions through the admin API; writes one access token per line.
    Mint {
        /// Sesame's base URL.
        #[arg(long)]
        sesame: String,
        /// An admin API key.
        #[arg(long)]
        admin_key: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: String,
        /// Also write each session's refresh token here (bearer transport).
        #[arg(long)]
        refresh_out: Option<String>,
    },
    /// Registers and logs in `--count` users on any server of the peers'
    /// common contract (Sesame included): access tokens to `--out`, refresh
    /// tokens (from the body, else the `--refresh-cookie`) to `--refresh-out`.
    Users(UsersArgs),
    /// A backend's own primary-key read or single-row update rate.
    Raw(raw::RawArgs),
    /// This core's Argon2id rate at Sesame's default cost (m = 19 MiB,
    /// t = 2, p = 1), with the same crate and features as the server: the
    /// ceiling W3 (login) is a ratio of.
    Argon2 {
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Logs out each token at Sesame and times until `--api` refuses it.
    Revocations {
        #[arg(long)]
        sesame: String,
        /// A protected URL on the resource server.
        #[arg(long)]
        api: String,
        #[arg(long)]
        tokens: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
}

#[derive(clap::Args, Debug, Clone)]
struct UsersArgs {
    /// The server's base URL.
    #[arg(long)]
    base: String,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    out: String,
    #[arg(long)]
    refresh_out: String,
    #[arg(long)]
    refresh_cookie: Option<String>,
    /// Email addresses are `<prefix><i>@example.com`.
    #[arg(long, default_value = "bench-user-")]
    prefix: String,
    #[arg(long, default_value = "correct horse battery staple")]
    password: String,
}

/// What each request is.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Get,
    Refresh,
    Login,
    /// `--mix` of the three (W4): protected GETs, refreshes, logins.
    Mixed,
}

/// What one request is, in `mixed` mode chosen per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get = 0,
    Refresh = 1,
    Login = 2,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Get, "get"),
    (Kind::Refresh, "refresh"),
    (Kind::Login, "login"),
];

#[derive(clap::Args, Debug, Clone)]
struct Target {
    /// `http://host:port/path`.
    #[arg(long)]
    url: String,
    /// A file of bearer tokens, one per line (none: no Authorization).
    #[arg(long)]
    tokens: Option<String>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// The server process, for CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `get` (bearer GET, tokens round-robin), `refresh` (POST the body's
    /// refresh token; each connection follows its own rotation chain from
    /// the `--tokens` file of refresh tokens), `login` (POST
    /// `--email`/`--password`) or `mixed` (`--mix` of the three; GETs use
    /// `--tokens`, chains start from `--refresh-tokens`, a login starts a
    /// new chain).
    #[arg(long, value_enum, default_value_t = Mode::Get)]
    mode: Mode,
    /// `Origin` for POSTs (Sesame's CSRF check).
    #[arg(long)]
    origin: Option<String>,
    /// The login address; with `--users N`, a `{i}` in it becomes 0..N-1
    /// and logins go round-robin over those accounts.
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// Refresh through this cookie (`Cookie: NAME=…`, successor from
    /// `Set-Cookie`) instead of a JSON body, as the peers do.
    #[arg(long)]
    refresh_cookie: Option<String>,
    /// `mixed`: where refreshes go (same host as `--url`).
    #[arg(long)]
    refresh_url: Option<String>,
    /// `mixed`: where logins go (same host as `--url`).
    #[arg(long)]
    login_url: Option<String>,
    /// `mixed`: refresh tokens, one rotation chain per connection.
    #[arg(long)]
    refresh_tokens: Option<String>,
    /// `mixed`: percentages of GET, refresh and login, e.g. `90,9,1`.
    #[arg(long, default_value = "90,9,1")]
    mix: String,
}

/// `host:port` and path of an `http://` URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(host: &str) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection, its rotation chain's head (`refresh` and `mixed`) and
/// how many requests it sent (which picks the next kind in `mixed`).
#[derive(Default)]
struct Conn {
    sender: Option<Sender>,
    refresh: Option<String>,
    sent: u64,
    /// Spreads the connections' logins over the cycle of 100.
    offset: u64,
}

struct Shared {
    host: String,
    /// Path per [`Kind`].
    paths: [String; 3],
    mode: Mode,
    origin: String,
    /// One login body per account (`--users`), used round-robin.
    login_bodies: Vec<Bytes>,
    next_login: AtomicUsize,
    tokens: Vec<String>,
    refresh_tokens: Vec<String>,
    refresh_cookie: Option<String>,
    /// `mixed`: cumulative thresholds (GET below the first, refresh below
    /// the second, login below 100) over a cycle of 100 requests.
    mix: (u64, u64),
    next: AtomicUsize,
    ok: [AtomicU64; 3],
    errors: [AtomicU64; 3],
}

impl Shared {
    fn new(t: &Target) -> anyhow::Result<Self> {
        let (host, path) = split_url(&t.url)?;
        let other = |url: &Option<String>| -> anyhow::Result<String> {
            let Some(url) = url else {
                return Ok(path.clone());
            };
            let (h, p) = split_url(url)?;
            if h != host {
                bail!("{url}: every URL must be on {host}");
            }
            Ok(p)
        };
        let paths = [path.clone(), other(&t.refresh_url)?, other(&t.login_url)?];
        let origin = t.origin.clone().unwrap_or_else(|| format!("http://{host}"));
        let email = t.email.clone().unwrap_or_default();
        let login_bodies = (0..t.users.max(1))
            .map(|i| {
                Bytes::from(
                    json!({ "email": email.replace("{i}", &i.to_string()), "password": t.password.clone().unwrap_or_default() })
                        .to_string(),
                )
            })
            .collect();
        let mix: Vec<u64> = t
            .mix
            .split(',')
            .map(|p| p.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .context("--mix: three integers such as 90,9,1")?;
        if mix.len() != 3 || mix.iter().sum::<u64>() != 100 {
            bail!("--mix: three percentages adding up to 100");
        }
        let tokens = load_tokens(t.tokens.as_deref())?;
        let refresh_tokens = match t.mode {
            // In `refresh` mode `--tokens` holds the chains' first tokens.
            Mode::Refresh => tokens.clone(),
            _ => load_tokens(t.refresh_tokens.as_deref())?,
        };
        Ok(Self {
            host,
            paths,
            mode: t.mode,
            origin,
            login_bodies,
            next_login: AtomicUsize::new(0),
            tokens,
            refresh_tokens,
            refresh_cookie: t.refresh_cookie.clone(),
            mix: (mix[0], mix[0] + mix[1]),
            next: AtomicUsize::new(0),
            ok: Default::default(),
            errors: Default::default(),
        })
    }

    /// A connection; it starts the rotation chain of refresh token `i`.
    fn conn(&self, i: usize) -> Conn {
        Conn {
            sender: None,
            refresh: (!self.refresh_tokens.is_empty())
                .then(|| self.refresh_tokens[i % self.refresh_tokens.len()].clone()),
            sent: 0,
            offset: (i as u64).wrapping_mul(37),
        }
    }

    /// What `conn`'s next request is.
    fn kind(&self, conn: &Conn) -> Kind {
        match self.mode {
            Mode::Get => Kind::Get,
            Mode::Refresh => Kind::Refresh,
            Mode::Login => Kind::Login,
            Mode::Mixed => {
                let x = (conn.sent + conn.offset) % 100;
                if x < self.mix.0 {
                    Kind::Get
                } else if x < self.mix.1 {
                    Kind::Refresh
                } else {
                    Kind::Login
                }
            }
        }
    }

    fn request(&self, kind: Kind, conn: &Conn) -> Request<Full<Bytes>> {
        let b = Request::builder()
            .uri(&self.paths[kind as usize])
            .header("host", &self.host);
        let r =
            match kind {
                Kind::Refresh => {
                    let token = conn.refresh.as_deref().unwrap_or("");
                    let b = b.method("POST").header("origin", &self.origin);
                    match &self.refresh_cookie {
                        Some(name) => b
                            .header("cookie", format!("{name}={token}"))
                            .body(Full::new(Bytes::new())),
                        None => b.header("content-type", "application/json").body(Full::new(
                            Bytes::from(json!({ "refresh_token": token }).to_string()),
                        )),
                    }
                }
                Kind::Login => b
                    .method("POST")
                    .header("origin", &self.origin)
                    .header("sesame-transport", "bearer")
                    .header("content-type", "application/json")
                    .body(Full::new({
                        let i = self.next_login.fetch_add(1, Ordering::Relaxed);
                        self.login_bodies[i % self.login_bodies.len()].clone()
                    })),
                Kind::Get => {
                    let mut b = b.method("GET");
                    if !self.tokens.is_empty() {
                        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.tokens.len();
                        b = b.header("authorization", format!("Bearer {}", self.tokens[i]));
                    }
                    b.body(Full::new(Bytes::new()))
                }
            };
        r.unwrap_or_default()
    }

    /// Sends one request on `conn` (reconnecting if needed); counts the
    /// outcome by kind.
    async fn send(&self, conn: &mut Conn) -> (Kind, bool) {
        let kind = self.kind(conn);
        conn.sent += 1;
        let good = self.send_kind(kind, conn).await;
        let counter = if good { &self.ok } else { &self.errors };
        counter[kind as usize].fetch_add(1, Ordering::Relaxed);
        (kind, good)
    }

    async fn send_kind(&self, kind: Kind, conn: &mut Conn) -> bool {
        if conn.sender.as_ref().is_none_or(|s| s.is_closed()) {
            conn.sender = connect(&self.host).await.ok();
        }
        let req = self.request(kind, conn);
        let Some(sender) = conn.sender.as_mut() else {
            return false;
        };
        if sender.ready().await.is_err() {
            conn.sender = None;
            return false;
        }
        let Ok(resp) = sender.send_request(req).await else {
            conn.sender = None;
            return false;
        };
        let status = resp.status();
        let cookie = self
            .refresh_cookie
            .as_deref()
            .and_then(|name| set_cookie(resp.headers(), name));
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        if status != StatusCode::OK {
            return false;
        }
        if kind != Kind::Get {
            // Follow the chain: the next refresh presents the successor (a
            // login starts a new chain). A peer that does not rotate sends
            // no new cookie: the chain keeps its token.
            let from_body = body
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
            if let Some(next) = from_body.or(cookie) {
                conn.refresh = Some(next);
            }
        }
        true
    }

    fn ok_total(&self) -> u64 {
        self.ok.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn errors_total(&self) -> u64 {
        self.errors.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn reset_counts(&self) {
        for c in self.ok.iter().chain(&self.errors) {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> [(u64, u64); 3] {
        std::array::from_fn(|k| {
            (
                self.ok[k].load(Ordering::Relaxed),
                self.errors[k].load(Ordering::Relaxed),
            )
        })
    }

    fn restore(&self, snap: [(u64, u64); 3]) {
        for (k, (o, e)) in snap.into_iter().enumerate() {
            self.ok[k].store(o, Ordering::Relaxed);
            self.errors[k].store(e, Ordering::Relaxed);
        }
    }
}

/// The value of cookie `name` in a response's `Set-Cookie` headers.
fn set_cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?.trim();
            let (n, value) = pair.split_once('=')?;
            (n == name && !value.is_empty()).then(|| value.to_string())
        })
}

/// Latencies per [`Kind`].
type Lat = [Vec<Duration>; 3];

fn load_tokens(path: Option<&str>) -> anyhow::Result<Vec<String>> {
    match path {
        None => Ok(Vec::new()),
        Some(p) => Ok(std::fs::read_to_string(p)
            .with_context(|| format!("reading {p}"))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()),
    }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn report(
    mode: &str,
    shared: &Shared,
    elapsed: f64,
    mut lat: Lat,
    cpu: Option<f64>,
    extra: serde_json::Value,
) {
    let ok = shared.ok_total();
    let errors = shared.errors_total();
    let mut all: Vec<Duration> = lat.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut out = json!({
        "mode": mode,
        "url": format!("http://{}{}", shared.host, shared.paths[0]),
        "tokens": shared.tokens.len(),
        "seconds": (elapsed * 100.0).round() / 100.0,
        "ok": ok,
        "errors": errors,
        "rps": (ok as f64 / elapsed).round(),
        "p50_ms": ms(percentile(&all, 0.5)),
        "p90_ms": ms(percentile(&all, 0.9)),
        "p99_ms": ms(percentile(&all, 0.99)),
        "max_ms": ms(percentile(&all, 1.0)),
    });
    if shared.mode == Mode::Mixed {
        let counts = shared.snapshot();
        let by_kind: serde_json::Map<String, serde_json::Value> = KINDS
            .iter()
            .map(|&(k, name)| {
                let l = &mut lat[k as usize];
                l.sort_unstable();
                let (o, e) = counts[k as usize];
                (
                    name.to_string(),
                    json!({ "ok": o, "errors": e, "p50_ms": ms(percentile(l, 0.5)), "p99_ms": ms(percentile(l, 0.99)) }),
                )
            })
            .collect();
        out["mix"] = json!(shared.mix);
        out["by_kind"] = by_kind.into();
    }
    if let Some(c) = cpu
        && ok > 0
    {
        out["server_cpu_us_per_req"] = json!((c * 1e6 / ok as f64 * 100.0).round() / 100.0);
        out["server_cpu_util"] = json!((c / elapsed * 1000.0).round() / 1000.0);
    }
    if let (Some(o), Some(e)) = (out.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    println!("{out}");
}

async fn closed(t: Target, connections: usize) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(&t)?);
    let warm_until = Instant::now() + Duration::from_secs_f64(t.warmup);
    let end = warm_until + Duration::from_secs_f64(t.duration);
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (sh, m) = (shared.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = sh.conn(c);
            let mut lat = Lat::default();
            while Instant::now() < end {
                let t0 = Instant::now();
                let (kind, _) = sh.send(&mut s).await;
                if m.load(Ordering::Relaxed) {
                    lat[kind as usize].push(t0.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    shared.reset_counts();
    measuring.store(true, Ordering::Relaxed);
    let cpu0 = t.server_pid.and_then(cpu_secs);
    let started = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let counts = shared.snapshot();
    let cpu1 = t.server_pid.and_then(cpu_secs);
    let mut lat = Lat::default();
    for task in tasks {
        for (all, l) in lat.iter_mut().zip(task.await?) {
            all.extend(l);
        }
    }
    // Answers that arrived after `end` are not counted.
    shared.restore(counts);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    report(
        "closed",
        &shared,
        elapsed,
        lat,
        cpu,
        json!({ "connections": connections }),
    );
    Ok(())
}

async fn open(t: Target, rate: f64, connections: usize) -> anyhow::Result<()> {
    if rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let shared = Arc::new(Shared::new(&t)?);
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(t.warmup);
    let end = measure_from + Duration::from_secs_f64(t.duration);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let sh = shared.clone();
        // Connections are staggered so the schedule is even overall.
        let first = start + interval.mul_f64(c as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let mut s = sh.conn(c);
            let mut lat = Lat::default();
            let mut service = Vec::new();
            let mut counts = [(0u64, 0u64); 3];
            let mut k = 0u32;
            loop {
                let scheduled = first + interval * k;
                k += 1;
                if scheduled >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                let (kind, good) = sh.send(&mut s).await;
                if scheduled >= measure_from {
                    // From the scheduled time: a late start counts as latency.
                    lat[kind as usize].push(scheduled.elapsed());
                    service.push(sent.elapsed());
                    let c = &mut counts[kind as usize];
                    if good {
                        c.0 += 1;
                    } else {
                        c.1 += 1;
                    }
                }
            }
            (lat, service, counts)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = t.server_pid.and_then(cpu_secs);
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = t.server_pid.and_then(cpu_secs);
    let mut lat = Lat::default();
    let mut service = Vec::new();
    let mut counts = [(0u64, 0u64); 3];
    for task in tasks {
        let (l, sv, c) = task.await?;
        for (all, l) in lat.iter_mut().zip(l) {
            all.extend(l);
        }
        service.extend(sv);
        for (all, c) in counts.iter_mut().zip(c) {
            all.0 += c.0;
            all.1 += c.1;
        }
    }
    // From the send instead of the schedule: what the server alone took
    // (the difference is this tool's timer lateness plus queueing).
    service.sort_unstable();
    shared.restore(counts);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    report(
        "open",
        &shared,
        t.duration,
        lat,
        cpu,
        json!({
            "offered_rps": rate,
            "connections": connections,
            "service_p50_ms": ms(percentile(&service, 0.5)),
            "service_p99_ms": ms(percentile(&service, 0.99)),
        }),
    );
    Ok(())
}

/// One HTTP/1.1 request with a JSON body on a fresh connection.
async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> anyhow::Result<(StatusCode, serde_json::Value)> {
    post_json_headers(url, headers, body)
        .await
        .map(|(s, v, _)| (s, v))
}

/// [`post_json`] that also answers the response's headers.
async fn post_json_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> anyhow::Result<(StatusCode, serde_json::Value, hyper::HeaderMap)> {
    let (host, path) = split_url(url)?;
    let stream = TcpStream::connect(&host).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = Request::post(&path)
        .header("host", &host)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(Bytes::from(body.to_string())))?)
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers,
    ))
}

/// Registers (201, or 409 when a previous run made the account) and logs in
/// `count` users, four at a time (logins are hash-bound).
async fn users(a: UsersArgs) -> anyhow::Result<()> {
    let UsersArgs {
        base,
        count,
        out,
        refresh_out,
        refresh_cookie,
        prefix,
        password,
    } = a;
    let base = Arc::new(base.trim_end_matches('/').to_string());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (base, next, cookie, prefix, password) = (
            base.clone(),
            next.clone(),
            refresh_cookie.clone(),
            prefix.clone(),
            password.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(got);
                }
                let body =
                    json!({ "email": format!("{prefix}{i}@example.com"), "password": password });
                let h = [("origin", base.as_str()), ("sesame-transport", "bearer")];
                let (s, v) = post_json(&format!("{base}/auth/register"), &h, &body).await?;
                if !(s.is_success() || s == StatusCode::CONFLICT) {
                    bail!("register: {s} {v}");
                }
                let (s, v, headers) =
                    post_json_headers(&format!("{base}/auth/login"), &h, &body).await?;
                if s != StatusCode::OK {
                    bail!("login: {s} {v}");
                }
                let access = v["access_token"].as_str().unwrap_or_default().to_string();
                let refresh = v["refresh_token"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| cookie.as_deref().and_then(|c| set_cookie(&headers, c)))
                    .context("login answered no refresh token (body or --refresh-cookie)")?;
                got.push((access, refresh));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let access: Vec<&str> = all.iter().map(|(a, _)| a.as_str()).collect();
    std::fs::write(&out, access.join("\n") + "\n")?;
    let refresh: Vec<&str> = all.iter().map(|(_, r)| r.as_str()).collect();
    std::fs::write(&refresh_out, refresh.join("\n") + "\n")?;
    println!("{}", json!({ "users": all.len(), "out": out }));
    Ok(())
}

async fn mint(
    sesame: String,
    admin_key: String,
    count: usize,
    out: String,
    refresh_out: Option<String>,
) -> anyhow::Result<()> {
    let origin = sesame.trim_end_matches('/').to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (next, origin, key) = (next.clone(), origin.clone(), admin_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(tokens);
                }
                let auth = format!("Bearer {key}");
                let (s, created) = post_json(
                    &format!("{origin}/admin/sessions"),
                    &[("authorization", &auth)],
                    &json!({ "user_id": format!("bench-{i}"), "claims": { "bench": true } }),
                )
                .await?;
                if s != StatusCode::CREATED {
                    bail!("admin/sessions: {s} {created}");
                }
                let code = created["handoff_code"].as_str().unwrap_or_default();
                let (s, grant) = post_json(
                    &format!("{origin}/auth/session/exchange"),
                    &[("origin", &origin), ("sesame-transport", "bearer")],
                    &json!({ "handoff_code": code }),
                )
                .await?;
                if s != StatusCode::OK {
                    bail!("exchange: {s} {grant}");
                }
                tokens.push((
                    grant["access_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    grant["refresh_token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let access: Vec<&str> = all.iter().map(|(a, _)| a.as_str()).collect();
    std::fs::write(&out, access.join("\n") + "\n")?;
    if let Some(r) = &refresh_out {
        let refresh: Vec<&str> = all.iter().map(|(_, r)| r.as_str()).collect();
        std::fs::write(r, refresh.join("\n") + "\n")?;
    }
    println!("{}", json!({ "minted": all.len(), "out": out }));
    Ok(())
}

async fn revocations(
    sesame: String,
    api: String,
    tokens: String,
    count: usize,
) -> anyhow::Result<()> {
    let tokens = load_tokens(Some(&tokens))?;
    if tokens.len() < count {
        bail!("need {count} tokens, have {}", tokens.len());
    }
    let origin = sesame.trim_end_matches('/').to_string();
    let (host, path) = split_url(&api)?;
    let mut s = connect(&host).await?;
    let mut lat = Vec::new();
    for token in tokens.iter().rev().take(count) {
        let auth = format!("Bearer {token}");
        let t = Instant::now();
        let (st, body) = post_json(
            &format!("{origin}/auth/logout"),
            &[("authorization", &auth), ("origin", &origin)],
            &json!({}),
        )
        .await?;
        if st != StatusCode::NO_CONTENT {
            bail!("logout: {st} {body}");
        }
        loop {
            if s.is_closed() {
                s = connect(&host).await?;
            }
            s.ready().await?;
            let req = Request::get(&path)
                .header("host", &host)
                .header("authorization", &auth)
                .body(Full::new(Bytes::new()))?;
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("token still accepted 10 s after logout");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    println!(
        "{}",
        json!({
            "mode": "revocations",
            "count": lat.len(),
            "p50_ms": ms(percentile(&lat, 0.5)),
            "p99_ms": ms(percentile(&lat, 0.99)),
            "max_ms": ms(percentile(&lat, 1.0)),
        })
    );
    Ok(())
}

/// Hashes one password over and over for `seconds` on this thread.
fn argon2_rate(seconds: f64) -> anyhow::Result<()> {
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = [0u8; 32];
    let mut each = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        a.hash_password_into(
            b"correct horse battery staple",
            b"sixteen byte sal",
            &mut out,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        each.push(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    each.sort_unstable();
    println!(
        "{}",
        json!({
            "mode": "argon2id",
            "m_kib": 19 * 1024, "t": 2, "p": 1,
            "hashes": each.len(),
            "per_second": (each.len() as f64 / elapsed * 10.0).round() / 10.0,
            "median_ms": ms(percentile(&each, 0.5)),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Closed {
            target,
            connections,
        } => closed(target, connections).await,
        Cmd::Open {
            target,
            rate,
            connections,
        } => open(target, rate, connections).await,
        Cmd::Mint {
            sesame,
            admin_key,
            count,
            out,
            refresh_out,
        } => mint(sesame, admin_key, count, out, refresh_out).await,
        Cmd::Users(a) => users(a).await,
        Cmd::Raw(a) => raw::raw(a).await,
        Cmd::Argon2 { seconds } => {
            tokio::task::spawn_blocking(move || argon2_rate(seconds)).await?
        }
        Cmd::Revocations {
            sesame,
            api,
            tokens,
            count,
        } => revocations(sesame, api, tokens, count).await,
    }
}
