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
}
