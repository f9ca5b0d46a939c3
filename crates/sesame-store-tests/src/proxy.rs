//! A TCP proxy for injecting network faults between Sesame and a networked
//! store (PostgreSQL, MariaDB, Redis) in tests: pass traffic, **cut** (close
//! every connection and refuse new ones), **blackhole** (accept and hold
//! connections but forward nothing, like a dead network path), and restore.
//! It listens on 127.0.0.1 only and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const CUT: u8 = 1;
const BLACKHOLE: u8 = 2;

/// A running fault proxy.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(PASS));
        let (changed, _) = watch::channel(PASS);
        let upstream = upstream.to_string();
        let (m, tx) = (mode.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (m, rx, upstream) = (m.clone(), tx.subscribe(), upstream.clone());
                tokio::spawn(async move { serve(client, &upstream, m, rx).await });
            }
        });
        Ok(Self {
            addr,
            mode,
            changed,
            task,
        })
    }

    /// The address to give the store instead of the real server's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forward traffic normally (new connections go through).
    pub fn restore(&self) {
        self.set(PASS);
    }

    /// Close every connection and refuse new ones (connection refused/reset).
    pub fn cut(&self) {
        self.set(CUT);
    }

    /// Hold connections open but forward nothing (timeouts, not errors).
    pub fn blackhole(&self) {
        self.set(BLACKHOLE);
    }

    fn set(&self, m: u8) {
        self.mode.store(m, Ordering::SeqCst);
        let _ = self.changed.send(m);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.set(CUT);
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    mode: Arc<AtomicU8>,
    mut rx: watch::Receiver<u8>,
) {
    match mode.load(Ordering::SeqCst) {
        CUT => {
            let _ = client.shutdown().await;
            return;
        }
        BLACKHOLE => {
            // Hold the socket until the mode changes, then drop it.
            let _ = rx.changed().await;
            return;
        }
        _ => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let pump = async {
        tokio::select! {
            _ = tokio::io::copy(&mut cr, &mut sw) => {}
            _ = tokio::io::copy(&mut sr, &mut cw) => {}
        }
    };
    let fault = async {
        loop {
            if rx.changed().await.is_err() {
                return;
            }
            if *rx.borrow() != PASS {
                return;
            }
        }
    };
    tokio::select! {
        () = pump => {}
        () = fault => {
            // A cut closes the connection; a blackhole stops forwarding but
            // keeps the socket open until restored.
            if mode.load(Ordering::SeqCst) == BLACKHOLE {
                let _ = rx.changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> Result<Vec<u8>, String> {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_millis(300),
            s.read_exact(&mut buf),
        )
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn pass_cut_blackhole_restore() {
        let upstream = echo_server().await;
        let p = FaultProxy::start(&upstream.to_string()).await.unwrap();
        assert_eq!(round_trip(p.addr()).await.unwrap(), b"ping");
        p.cut();
        assert!(round_trip(p.addr()).await.is_err());
        p.blackhole();
        assert_eq!(round_trip(p.addr()).await.unwrap_err(), "timeout");
        p.restore();
        assert_eq!(round_trip(p.addr()).await.unwrap(), b"ping");
    }
}
