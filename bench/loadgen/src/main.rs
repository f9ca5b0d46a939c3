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
//! - `revocations`: for each token, log out at Sesame and time until a
//!   resource server refuses the token.
//!
//! Each request is one GET on a raw HTTP/1.1 keep-alive connection (hyper's
//! connection API, no pool), with a bearer token taken round-robin from the
//! token file. With `--server-pid`, the server's CPU time (utime + stime
//! from /proc) over the run is divided by the requests answered.

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

/// What each request is.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Get,
    Refresh,
    Login,
}

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
    /// the `--tokens` file of refresh tokens) or `login` (POST
    /// `--email`/`--password`).
    #[arg(long, value_enum, default_value_t = Mode::Get)]
    mode: Mode,
    /// `Origin` for POSTs (Sesame's CSRF check).
    #[arg(long)]
    origin: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    password: Option<String>,
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

/// One connection and, in `refresh` mode, the head of its rotation chain.
#[derive(Default)]
struct Conn {
    sender: Option<Sender>,
    refresh: Option<String>,
}

struct Shared {
    host: String,
    path: String,
    mode: Mode,
    origin: String,
    login_body: Bytes,
    tokens: Vec<String>,
    next: AtomicUsize,
    ok: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn new(t: &Target) -> anyhow::Result<Self> {
        let (host, path) = split_url(&t.url)?;
        let origin = t.origin.clone().unwrap_or_else(|| format!("http://{host}"));
        let login_body = Bytes::from(
            json!({ "email": t.email.clone().unwrap_or_default(), "password": t.password.clone().unwrap_or_default() })
                .to_string(),
        );
        Ok(Self {
            host,
            path,
            mode: t.mode,
            origin,
            login_body,
            tokens: load_tokens(t.tokens.as_deref())?,
            next: AtomicUsize::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// A connection; in `refresh` mode it starts the chain of token `i`.
    fn conn(&self, i: usize) -> Conn {
        Conn {
            sender: None,
            refresh: (self.mode == Mode::Refresh && !self.tokens.is_empty())
                .then(|| self.tokens[i % self.tokens.len()].clone()),
        }
    }

    fn request(&self, conn: &Conn) -> Request<Full<Bytes>> {
        let b = Request::builder()
            .uri(&self.path)
            .header("host", &self.host);
        let r = match self.mode {
            Mode::Refresh => b
                .method("POST")
                .header("origin", &self.origin)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    json!({ "refresh_token": conn.refresh.as_deref().unwrap_or("") }).to_string(),
                ))),
            Mode::Login => b
                .method("POST")
                .header("origin", &self.origin)
                .header("sesame-transport", "bearer")
                .header("content-type", "application/json")
                .body(Full::new(self.login_body.clone())),
            Mode::Get => {
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

    /// Sends one request on `conn` (reconnecting if needed); counts the outcome.
    async fn send(&self, conn: &mut Conn) -> bool {
        if conn.sender.as_ref().is_none_or(|s| s.is_closed()) {
            conn.sender = connect(&self.host).await.ok();
        }
        let req = self.request(conn);
        let Some(sender) = conn.sender.as_mut() else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if sender.ready().await.is_err() {
            conn.sender = None;
            self.errors.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                if status == StatusCode::OK {
                    if self.mode == Mode::Refresh {
                        // Follow the chain: the next request presents the successor.
                        conn.refresh = body
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
                    }
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    true
                } else {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
            Err(_) => {
                conn.sender = None;
                self.errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

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

fn report(
    mode: &str,
    shared: &Shared,
    elapsed: f64,
    lat: &mut [Duration],
    cpu: Option<f64>,
    extra: serde_json::Value,
) {
    lat.sort_unstable();
    let ok = shared.ok.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let mut out = json!({
        "mode": mode,
        "url": format!("http://{}{}", shared.host, shared.path),
        "tokens": shared.tokens.len(),
        "seconds": (elapsed * 100.0).round() / 100.0,
        "ok": ok,
        "errors": errors,
        "rps": (ok as f64 / elapsed).round(),
        "p50_ms": ms(percentile(lat, 0.5)),
        "p90_ms": ms(percentile(lat, 0.9)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "max_ms": ms(percentile(lat, 1.0)),
    });
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
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t0 = Instant::now();
                sh.send(&mut s).await;
                if m.load(Ordering::Relaxed) {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    shared.ok.store(0, Ordering::Relaxed);
    shared.errors.store(0, Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let cpu0 = t.server_pid.and_then(cpu_secs);
    let started = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, errors) = (
        shared.ok.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
    );
    let cpu1 = t.server_pid.and_then(cpu_secs);
    let mut lat = Vec::new();
    for task in tasks {
        lat.extend(task.await?);
    }
    // Answers that arrived after `end` are not counted.
    shared.ok.store(ok, Ordering::Relaxed);
    shared.errors.store(errors, Ordering::Relaxed);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    report(
        "closed",
        &shared,
        elapsed,
        &mut lat,
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
            let mut lat = Vec::new();
            let mut service = Vec::new();
            let (mut ok, mut err) = (0u64, 0u64);
            let mut k = 0u32;
            loop {
                let scheduled = first + interval * k;
                k += 1;
                if scheduled >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                let good = sh.send(&mut s).await;
                if scheduled >= measure_from {
                    // From the scheduled time: a late start counts as latency.
                    lat.push(scheduled.elapsed());
                    service.push(sent.elapsed());
                    if good {
                        ok += 1;
                    } else {
                        err += 1;
                    }
                }
            }
            (lat, service, ok, err)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu0 = t.server_pid.and_then(cpu_secs);
    tokio::time::sleep_until(end.into()).await;
    let cpu1 = t.server_pid.and_then(cpu_secs);
    let mut lat = Vec::new();
    let mut service = Vec::new();
    let (mut ok, mut err) = (0, 0);
    for task in tasks {
        let (l, sv, o, e) = task.await?;
        lat.extend(l);
        service.extend(sv);
        ok += o;
        err += e;
    }
    // From the send instead of the schedule: what the server alone took
    // (the difference is this tool's timer lateness plus queueing).
    service.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    shared.ok.store(ok, Ordering::Relaxed);
    shared.errors.store(err, Ordering::Relaxed);
    let cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    report(
        "open",
        &shared,
        t.duration,
        &mut lat,
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
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
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
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
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
        Cmd::Revocations {
            sesame,
            api,
            tokens,
            count,
        } => revocations(sesame, api, tokens, count).await,
    }
}
