//! The `sesame` binary itself: start-up refusals that name the setting, the
//! first printed lines of `serve`, and the operations commands.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const MASTER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const REFRESH: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
        let p = std::env::temp_dir().join(format!("sesame-cli-{n:x}"));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sesame(dir: &Dir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sesame"));
    c.current_dir(&dir.0)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "SESAME_DATABASE_URL",
            format!("sqlite://{}/sesame.db", dir.0.display()),
        )
        .env("SESAME_METRICS_BIND", "none")
        // Many sign-ins from 127.0.0.1 (F8); limits are tested in rate_limits.rs.
        .env("SESAME_RATE_LIMITS", "false")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn production_refuses_missing_and_weak_secrets_naming_the_setting() {
    let dir = Dir::new();
    let (ok, _, err) = run(sesame(&dir)
        .args(["config", "check"])
        .env("SESAME_MODE", "production")
        .env("SESAME_PUBLIC_URL", "https://auth.example.com"));
    assert!(!ok);
    assert!(
        err.contains("master_key") && err.contains("SESAME_MASTER_KEY"),
        "{err}"
    );
    let (ok, _, err) = run(sesame(&dir)
        .args(["config", "check"])
        .env("SESAME_MODE", "production")
        .env("SESAME_PUBLIC_URL", "https://auth.example.com")
        .env("SESAME_MASTER_KEY", "c2hvcnQ")
        .env("SESAME_REFRESH_KEY", REFRESH));
    assert!(!ok);
    assert!(err.contains("master_key"), "{err}");
    let (ok, _, err) = run(sesame(&dir)
        .args(["config", "check"])
        .env("SESAME_BIND", "0.0.0.0:8080"));
    assert!(!ok, "development mode refuses a public bind");
    assert!(err.contains("bind"), "{err}");
    // Secrets never appear in the effective configuration it prints.
    let (ok, out, _) = run(sesame(&dir)
        .args(["config", "check"])
        .env("SESAME_MASTER_KEY", MASTER)
        .env("SESAME_REFRESH_KEY", REFRESH));
    assert!(ok);
    assert!(!out.contains(MASTER) && !out.contains(REFRESH), "{out}");
}

#[test]
fn production_start_needs_keys_created_by_keys_rotate() {
    let dir = Dir::new();
    let prod = |c: &mut Command| {
        c.env("SESAME_MODE", "production")
            .env("SESAME_PUBLIC_URL", "https://auth.example.com")
            .env("SESAME_MASTER_KEY", MASTER)
            .env("SESAME_REFRESH_KEY", REFRESH)
            .env("SESAME_BIND", "127.0.0.1:0");
    };
    let mut c = sesame(&dir);
    prod(c.arg("serve"));
    let (ok, _, err) = run(&mut c);
    assert!(!ok, "no keys: refuse to start");
    assert!(err.contains("keys rotate"), "{err}");
    let mut c = sesame(&dir);
    prod(c.args(["keys", "rotate"]));
    let (ok, out, err) = run(&mut c);
    assert!(ok, "{err}");
    assert!(out.contains("active") && out.contains("next"), "{out}");
    let mut c = sesame(&dir);
    prod(c.args(["keys", "rotate"]));
    let (ok, out, _) = run(&mut c);
    assert!(ok);
    assert_eq!(
        out.lines().filter(|l| l.contains("EdDSA")).count(),
        3,
        "active, next and retired: {out}"
    );
}

#[test]
fn serve_prints_mode_and_url_and_cli_manages_users_and_sessions() {
    let dir = Dir::new();
    // Development mode with nothing configured: generates and keeps its secrets.
    let mut child = sesame(&dir)
        .arg("serve")
        .env("SESAME_BIND", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("mode: development"), "{first}");
    let second = lines.next().unwrap().unwrap();
    let url = second
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::get(format!("{url}/healthz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    // SIGTERM shuts down gracefully and exits 0.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?} {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    assert!(
        dir.0.join("sesame-dev.secrets").exists(),
        "development secrets are kept"
    );

    // user add reads the password from stdin.
    let mut add = sesame(&dir)
        .args(["user", "add", "Op@Example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out, _) = run(sesame(&dir).args(["user", "list"]));
    assert!(
        ok && out.contains("Op@example.com") && out.contains("verified"),
        "{out}"
    );
    let (ok, _, err) = run(sesame(&dir)
        .args(["user", "add", "op@example.com"])
        .stdin(Stdio::null()));
    assert!(!ok, "empty password refused: {err}");
    let (ok, out, _) =
        run(sesame(&dir).args(["sessions", "revoke", "--all", "--reason", "restored"]));
    assert!(ok && out.contains("revoked 0 sessions"), "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["migrate", "--check"]));
    assert!(ok && out.contains("up to date"), "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "disable", "op@example.com"]));
    assert!(ok, "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "list"]));
    assert!(ok && out.contains("disabled"), "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "enable", "op@example.com"]));
    assert!(ok, "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "list"]));
    assert!(ok && out.contains("active"), "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "delete", "op@example.com"]));
    assert!(ok && out.contains("deleted"), "{out}");
    let (ok, out, _) = run(sesame(&dir).args(["user", "list"]));
    assert!(ok && !out.contains("op@example.com"), "{out}");
    // The audit log, filtered, as JSON lines; then a retention purge.
    let (ok, out, err) = run(sesame(&dir).args(["audit", "--event", "user_disabled"]));
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["event"], "user_disabled");
    let (ok, _, err) = run(sesame(&dir).args(["audit", "--event", "Bad Name"]));
    assert!(!ok && err.contains("event"), "{err}");
    let (ok, out, err) = run(sesame(&dir).args(["purge"]));
    assert!(ok && out.starts_with("purged "), "{out} {err}");
}

/// `api-key new` needs no configuration and prints a key and the hash to
/// configure; two runs give different keys.
#[test]
fn api_key_new_prints_a_key_and_its_hash() {
    let dir = Dir::new();
    let (ok, a, err) = run(sesame(&dir)
        .args(["api-key", "new"])
        .env("SESAME_MODE", "production"));
    assert!(ok, "{err}");
    let field = |out: &str, name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let (key, hash) = (field(&a, "key:"), field(&a, "hash:"));
    assert!(key.starts_with("sk_") && key.len() > 40, "{a}");
    let digest = sesame_core::crypto::sha256(key.as_bytes());
    assert_eq!(
        hash,
        format!("sha256:{}", sesame_core::crypto::b64(&digest))
    );
    let (_, b, _) = run(sesame(&dir).args(["api-key", "new"]));
    assert_ne!(field(&b, "key:"), key);
    assert!(!dir.0.join("sesame.db").exists(), "nothing stored");
}

/// F8: SIGKILL the server while 50 refreshes are in flight, restart it on the
/// same database. For every session exactly one of these holds: the
/// rotation never committed (the old token rotates now), or it committed
/// (the old token gets the committed successor as a grace answer). Never
/// both usable beyond grace, never neither, nothing revoked, no 5xx.
#[test]
fn f8_sigkill_during_refreshes_leaves_no_half_written_family() {
    let dir = Dir::new();
    // A fixed free port, so `public_url` (the CSRF origin) is known and the
    // restarted server has the same one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = |dir: &Dir| {
        let mut child = sesame(dir)
            .arg("serve")
            .env("SESAME_BIND", format!("127.0.0.1:{port}"))
            // Cheap hashing keeps 25 logins quick; rotation is what is tested.
            .env("SESAME_ARGON2_MEMORY_KIB", "1024")
            .env("SESAME_ARGON2_ITERATIONS", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        lines.next();
        lines.next();
        (Reaper(child), format!("http://127.0.0.1:{port}"))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut child, url) = start(&dir);
    let origin = url.clone();
    let http = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| {
        let (http, origin) = (http.clone(), origin.clone());
        async move {
            let r = http
                .post(url)
                .header("origin", origin)
                .header("sesame-transport", "bearer")
                .json(&body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        }
    };
    let creds =
        serde_json::json!({ "email": "f8@example.com", "password": "a long enough password" });
    let tokens: Vec<String> = rt.block_on(async {
        let (s, _) = post(format!("{url}/auth/register"), creds.clone())
            .await
            .unwrap();
        assert_eq!(s, 201);
        let mut out = Vec::new();
        for _ in 0..25 {
            let (s, b) = post(format!("{url}/auth/login"), creds.clone())
                .await
                .unwrap();
            assert_eq!(s, 200);
            out.push(b["refresh_token"].as_str().unwrap().to_string());
        }
        out
    });

    // 50 refreshes in flight (two per session), then SIGKILL mid-stream.
    let pid = child.0.id();
    let answered = rt.block_on(async {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for t in tokens.iter().chain(tokens.iter()) {
            let fut = post(
                format!("{url}/auth/refresh"),
                serde_json::json!({ "refresh_token": t }),
            );
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let r = fut.await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            }));
        }
        // Kill as soon as the first rotation has been answered (so some are
        // committed) while the rest are still in flight (bounded wait).
        for _ in 0..20_000 {
            if done.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_micros(500)).await;
        }
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut answered = 0;
        for t in tasks {
            if let Ok(Ok((status, _))) = t.await {
                assert!(
                    status == 200,
                    "before the kill every answer is a success, got {status}"
                );
                answered += 1;
            }
        }
        answered
    });
    assert!(answered >= 1, "some rotations committed before the kill");
    child.0.wait().unwrap();

    let (_child, url) = start(&dir);
    rt.block_on(async {
        for t in &tokens {
            // The old token: rotates (not committed) or is answered as grace (committed).
            let (s, b) = post(
                format!("{url}/auth/refresh"),
                serde_json::json!({ "refresh_token": t }),
            )
            .await
            .unwrap();
            assert_eq!(s, 200, "old token after restart: {b}");
            let next = b["refresh_token"].as_str().unwrap().to_string();
            // Exactly one chain continues from there.
            let (s, b) = post(
                format!("{url}/auth/refresh"),
                serde_json::json!({ "refresh_token": next }),
            )
            .await
            .unwrap();
            assert_eq!(s, 200, "successor after restart: {b}");
        }
    });
    eprintln!("{answered} of 50 refreshes were answered before the SIGKILL");
}

/// Kills the server when the test ends, whether it passed or not.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The logs of a full flow at `debug` level contain none of the secrets the
/// flow handled — access and refresh tokens, passwords, handoff codes, API
/// keys, the configured secrets — and show the email and client IP masked
/// (`log_pii` off). A second run with `log_pii = true` shows them, so the
/// check can fail.
#[test]
fn logs_of_a_full_flow_hold_no_secret_and_mask_pii() {
    let (logs, secrets) = full_flow_logs(false);
    assert!(
        logs.contains("refresh_token_reuse_detected"),
        "the flow was logged: {logs}"
    );
    for s in &secrets.never {
        assert!(
            !logs.contains(s.as_str()),
            "a secret ({}…) is in the logs",
            &s[..s.len().min(12)]
        );
    }
    for s in &secrets.pii {
        assert!(!logs.contains(s.as_str()), "{s} is in the logs unmasked");
    }
    assert!(logs.contains("203.0.113.0/24"), "the IP appears masked");

    let (logs, secrets) = full_flow_logs(true);
    assert!(
        secrets.pii.iter().any(|s| logs.contains(s.as_str())),
        "with log_pii the address is logged"
    );
    for s in &secrets.never {
        assert!(!logs.contains(s.as_str()), "log_pii never logs secrets");
    }
}

struct Seen {
    never: Vec<String>,
    pii: Vec<String>,
}

fn full_flow_logs(log_pii: bool) -> (String, Seen) {
    let dir = Dir::new();
    let admin = sesame_server::server::new_api_key();
    let service = sesame_server::server::new_api_key();
    let mut child = sesame(&dir)
        .arg("serve")
        .env("SESAME_BIND", "127.0.0.1:0")
        .env("SESAME_LOG_LEVEL", "debug")
        .env("SESAME_PUBLIC_URL", "http://127.0.0.1:8080")
        .env("SESAME_LOG_PII", if log_pii { "true" } else { "false" })
        .env("SESAME_MASTER_KEY", MASTER)
        .env("SESAME_REFRESH_KEY", REFRESH)
        .env("SESAME_TRUSTED_PROXIES", "127.0.0.1/32")
        .env("SESAME_ADMIN_API_KEYS", &admin.hash)
        .env("SESAME_SERVICE_API_KEYS", &service.hash)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let collector = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s).unwrap();
        s
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
        {
            break u.to_string();
        }
    };
    let email = "Secret.Person@Example.com";
    let password = "my very secret password 42";
    let ip = "203.0.113.77";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut never: Vec<String> = vec![
        password.into(),
        MASTER.into(),
        REFRESH.into(),
        admin.key.clone(),
        service.key.clone(),
    ];
    rt.block_on(async {
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{url}{path}"))
                .header("origin", "http://127.0.0.1:8080")
                .header("x-forwarded-for", ip)
                .header("sesame-transport", "bearer")
                .json(&body)
        };
        let reg: serde_json::Value = post(
            "/auth/register",
            serde_json::json!({"email": email, "password": password}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let (at, rt0) = (
            reg["access_token"].as_str().unwrap().to_string(),
            reg["refresh_token"].as_str().unwrap().to_string(),
        );
        // A wrong password (not the real one) and the real one.
        let _ = post(
            "/auth/login",
            serde_json::json!({"email": email, "password": "wrong guess 1234"}),
        )
        .send()
        .await
        .unwrap();
        never.push("wrong guess 1234".into());
        let login: serde_json::Value = post(
            "/auth/login",
            serde_json::json!({"email": email, "password": password}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        never.push(login["access_token"].as_str().unwrap().into());
        never.push(login["refresh_token"].as_str().unwrap().into());
        let me = http
            .get(format!("{url}/auth/me"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        let r1: serde_json::Value =
            post("/auth/refresh", serde_json::json!({"refresh_token": rt0}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        never.push(r1["access_token"].as_str().unwrap().into());
        never.push(r1["refresh_token"].as_str().unwrap().into());
        // Replay from "another client": reuse detected, logged as an event.
        let _ = http
            .post(format!("{url}/auth/refresh"))
            .header("origin", "http://127.0.0.1:8080")
            .header("user-agent", "thief/1.0")
            .json(&serde_json::json!({"refresh_token": rt0}))
            .send()
            .await
            .unwrap();
        never.push(at.clone());
        never.push(rt0.clone());
        // Admin handoff and exchange.
        let h: serde_json::Value = http
            .post(format!("{url}/admin/sessions"))
            .bearer_auth(&admin.key)
            .json(&serde_json::json!({"user_id": "ext-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let code = h["handoff_code"].as_str().unwrap().to_string();
        let ex: serde_json::Value = post(
            "/auth/session/exchange",
            serde_json::json!({"handoff_code": code}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        never.push(code);
        never.push(ex["access_token"].as_str().unwrap().into());
        // The feed, briefly.
        let feed = http
            .get(format!("{url}/auth/revocations"))
            .bearer_auth(&service.key)
            .send()
            .await
            .unwrap();
        assert_eq!(feed.status(), 200);
        drop(feed);
        let _ = http
            .post(format!("{url}/auth/logout"))
            .header("origin", "http://127.0.0.1:8080")
            .bearer_auth(ex["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
    });
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    let logs = collector.join().unwrap();
    // Secrets in their other spellings too: the signature part of each JWT
    // and the secret part of each refresh token.
    let mut extra = Vec::new();
    for s in &never {
        if s.matches('.').count() == 2 {
            extra.push(s.rsplit('.').next().unwrap().to_string());
        }
    }
    never.extend(extra);
    let pii = vec![email.to_string(), email.to_lowercase(), ip.to_string()];
    (logs, Seen { never, pii })
}

/// Graceful shutdown: SIGTERM while logins (each an Argon2id hash, one
/// worker) are in flight — every one of them is answered, a connection
/// attempted during the drain is refused, and the process exits 0.
#[test]
fn sigterm_finishes_in_flight_requests_and_refuses_new_ones() {
    let dir = Dir::new();
    let mut child = sesame(&dir)
        .arg("serve")
        .env("SESAME_BIND", "127.0.0.1:0")
        .env("SESAME_PUBLIC_URL", "http://127.0.0.1:8080")
        .env("SESAME_HASH_WORKERS", "1")
        .env("SESAME_HASH_QUEUE", "64")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(u) = l
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
        {
            break u.to_string();
        }
    };
    let addr = url.trim_start_matches("http://").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pid = child.id();
    let (answers, refused) = rt.block_on(async move {
        let http = reqwest::Client::new();
        let body =
            serde_json::json!({"email": "drain@example.com", "password": "a long enough password"});
        let reg = http
            .post(format!("{url}/auth/register"))
            .header("origin", "http://127.0.0.1:8080")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reg.status(), 201);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (http, url, body) = (reqwest::Client::new(), url.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                http.post(format!("{url}/auth/login"))
                    .header("origin", "http://127.0.0.1:8080")
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        // Let them all arrive (they queue for the one hashing worker), then TERM.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let t = tokio::time::Instant::now();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        // During the drain, new connections are refused: poll until the
        // signal has been handled (a loaded machine may take a while), and
        // note how many logins were still in flight at that moment.
        let mut refused = false;
        for _ in 0..200 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                let in_flight = tasks.iter().filter(|t| !t.is_finished()).count();
                refused = in_flight > 0;
                eprintln!("listener closed with {in_flight} logins in flight");
                break;
            }
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        eprintln!(
            "drained {} logins in {:?} after SIGTERM",
            answers.len(),
            t.elapsed()
        );
        (answers, refused)
    });
    assert!(refused, "a new connection during the drain was accepted");
    for a in &answers {
        assert_eq!(
            a.as_ref().ok(),
            Some(&200),
            "an in-flight login was cut off: {answers:?}"
        );
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}
