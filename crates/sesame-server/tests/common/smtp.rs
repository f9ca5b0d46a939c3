//! Real SMTP servers for the mail tests.
//!
//! - [`SmtpSink`]: `tests/smtp_sink.py` (aiosmtpd) on 127.0.0.1, writing
//!   each received message to a directory; [`SmtpSink::wait_for_mail`]
//!   reads them back. Without python3 or aiosmtpd the test is skipped by
//!   name, or fails under `SESAME_REQUIRE_BACKENDS=1`.
//! - [`HangingSmtp`]: a TCP listener that accepts and never answers (a mail
//!   server that hangs), which can later be told to pass connections on to
//!   a working server.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A message as the sink received it.
#[derive(Debug, Clone)]
pub struct ParsedMail {
    /// Envelope sender (MAIL FROM).
    pub envelope_from: String,
    /// Envelope recipients (RCPT TO).
    pub envelope_to: Vec<String>,
    /// The `From` header.
    pub from: String,
    /// The `To` header.
    pub to: String,
    /// The decoded `Subject`.
    pub subject: String,
    /// The decoded text/plain body, with `\n` line ends.
    pub text: String,
    /// The message as received (headers and encoded body).
    pub raw: String,
}

impl ParsedMail {
    fn from_json(v: &Value) -> Self {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Self {
            envelope_from: s("mail_from"),
            envelope_to: v["rcpt_tos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            from: s("from"),
            to: s("to"),
            subject: s("subject"),
            text: s("text").replace("\r\n", "\n"),
            raw: s("raw"),
        }
    }

    /// The first link in the text (up to whitespace).
    pub fn link(&self) -> Option<String> {
        let start = self.text.find("http://").or(self.text.find("https://"))?;
        let rest = &self.text[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }

    /// The one-time token of the first link, read from its fragment
    /// (`#token=…`); `None` when the link has no such fragment.
    pub fn link_token(&self) -> Option<String> {
        let link = self.link()?;
        let (_, fragment) = link.split_once('#')?;
        fragment
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_owned)
    }
}

/// Whether tests must fail instead of skipping when a backend is missing.
pub fn required() -> bool {
    std::env::var("SESAME_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}

/// A running `smtp_sink.py`; killed when dropped.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts a sink that accepts every message, or returns `None` after
    /// printing `SKIPPED <test>: …` when python3 or aiosmtpd is missing
    /// (panics instead under `SESAME_REQUIRE_BACKENDS=1`).
    pub fn start(test: &str) -> Option<Self> {
        Self::launch(test, false, 0)
    }

    /// A sink that refuses every recipient with a permanent 550.
    pub fn start_rejecting(test: &str) -> Option<Self> {
        Self::launch(test, true, 0)
    }

    /// A sink on a given port (0 = any free one).
    pub fn start_on(test: &str, port: u16) -> Option<Self> {
        Self::launch(test, false, port)
    }

    fn launch(test: &str, reject: bool, port: u16) -> Option<Self> {
        match Self::try_launch(reject, port) {
            Ok(s) => Some(s),
            Err(why) => {
                if required() {
                    panic!(
                        "{test}: the SMTP sink is required (SESAME_REQUIRE_BACKENDS=1) \
                         but unavailable: {why}"
                    );
                }
                eprintln!("SKIPPED {test}: {why}");
                None
            }
        }
    }

    fn try_launch(reject: bool, port: u16) -> Result<Self, String> {
        let python = std::env::var("SESAME_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{python} not runnable: {e}"))?;
        if !probe.success() {
            return Err(format!(
                "{python} lacks aiosmtpd (python3 -m pip install aiosmtpd==1.4.6)"
            ));
        }
        let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
        let dir = std::env::temp_dir().join(format!("sesame-smtp-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--dir")
            .arg(&dir)
            .arg("--port")
            .arg(port.to_string())
            // The sink exits when this pipe closes: it never outlives us.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if reject {
            cmd.arg("--reject");
        }
        let mut child = cmd.spawn().map_err(|e| format!("starting the sink: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        // Readiness: the sink prints its port once it accepts connections.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                return Err("the sink did not report readiness within 20 s".into());
            }
        };
        let Some(port) = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let _ = child.kill();
            return Err(format!("unexpected sink output {line:?}"));
        };
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child,
        })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message received so far, oldest first.
    pub fn mails(&self) -> Vec<ParsedMail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "json")
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| ParsedMail::from_json(&v))
            .collect()
    }

    /// The first message to `to` whose subject contains `needle`, waiting
    /// up to `timeout`; panics with what did arrive when none does.
    pub async fn wait_for_subject(&self, to: &str, needle: &str, timeout: Duration) -> ParsedMail {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.mails().into_iter().find(|m| {
                m.subject.contains(needle)
                    && m.envelope_to.iter().any(|r| r.eq_ignore_ascii_case(to))
            }) {
                return m;
            }
            if Instant::now() >= deadline {
                let got: Vec<_> = self
                    .mails()
                    .iter()
                    .map(|m| (m.envelope_to.clone(), m.subject.clone()))
                    .collect();
                panic!("no mail to {to} about {needle:?} within {timeout:?}; received: {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many messages went to `to`.
    pub fn count_to(&self, to: &str) -> usize {
        self.mails()
            .iter()
            .filter(|m| m.envelope_to.iter().any(|r| r.eq_ignore_ascii_case(to)))
            .count()
    }

    /// The first message to `to` (an envelope recipient), waiting up to
    /// `timeout`; panics with what did arrive when none does.
    pub async fn wait_for_mail(&self, to: &str, timeout: Duration) -> ParsedMail {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self
                .mails()
                .into_iter()
                .find(|m| m.envelope_to.iter().any(|r| r.eq_ignore_ascii_case(to)))
            {
                return m;
            }
            if Instant::now() >= deadline {
                let got: Vec<_> = self.mails().iter().map(|m| m.envelope_to.clone()).collect();
                panic!("no mail to {to} within {timeout:?}; received: {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A mail server that accepts connections and never says a word — until
/// [`HangingSmtp::forward_to`] makes it pass new connections on to a
/// working server. Stops (and drops held connections) when dropped.
pub struct HangingSmtp {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    accepted: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl HangingSmtp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let (t, a) = (target.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                *a.lock().unwrap() += 1;
                let forward = *t.lock().unwrap();
                match forward {
                    None => held.push(conn),
                    Some(to) => {
                        tokio::spawn(async move {
                            if let Ok(mut upstream) = TcpStream::connect(to).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                            }
                        });
                    }
                }
            }
        });
        Self {
            addr,
            target,
            accepted,
            task,
        }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Connections accepted so far (each a delivery attempt).
    pub fn connections(&self) -> usize {
        *self.accepted.lock().unwrap()
    }

    /// From now on, new connections are relayed to `to`.
    pub fn forward_to(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = Some(to);
    }
}

impl Drop for HangingSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
