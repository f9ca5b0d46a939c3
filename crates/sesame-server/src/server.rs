//! Wiring: open the store, start the engine, build the router, run the
//! background tasks (liveness sync ≤ 1 s, key-ring reload, metrics upkeep)
//! and serve with graceful shutdown — the API on the given listener and
//! `/metrics` on a second one bound to `metrics_bind`. Tests call [`start`]
//! with a listener on 127.0.0.1:0 and a manual clock; `sesame serve` calls
//! [`serve`].

use crate::app;
use crate::config::Config;
use crate::hash_pool::PooledHasher;
use crate::http::cookies::CookiePolicy;
use crate::http::extract::{AppState, HttpSettings};
use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretBox};
use sesame_core::clock::Clock;
use sesame_core::engine::{Engine, EngineParts};
use sesame_core::refresh::RefreshKeys;
use sesame_core::store::{AccountStore, SessionStore};
use sesame_store_sqlx::{SqliteStore, SqliteStoreOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

fn store_options(config: &Config) -> SqliteStoreOptions {
    let mut opts = SqliteStoreOptions::new(config.database_url.clone());
    opts.revocation_margin = config.access_ttl + config.leeway + 1;
    opts
}

/// Opens the configured store and applies pending migrations.
pub async fn open_store(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(&store_options(config), clock)
        .await
        .with_context(|| {
            format!(
                "opening the database (`database_url` = {})",
                config.database_url
            )
        })
}

/// Opens the configured store without migrating (`migrate --check`).
pub async fn connect_store(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<SqliteStore> {
    SqliteStore::connect(&store_options(config), clock)
        .await
        .with_context(|| {
            format!(
                "opening the database (`database_url` = {})",
                config.database_url
            )
        })
}

/// The stores a server runs on.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Users, credentials, keys, audit.
    pub accounts: Arc<dyn AccountStore>,
    /// Sessions, rotation, revocation.
    pub sessions: Arc<dyn SessionStore>,
    /// The pool to close on shutdown, when the server opened it.
    closer: Option<SqliteStore>,
}

impl Stores {
    /// One SQLite store serving both traits.
    pub fn sqlite(store: SqliteStore) -> Self {
        let arc = Arc::new(store.clone());
        Self {
            accounts: arc.clone(),
            sessions: arc,
            closer: Some(store),
        }
    }

    /// Stores supplied by the caller (a library user, or tests wrapping a
    /// store to inject faults); the caller closes them.
    pub fn custom(accounts: Arc<dyn AccountStore>, sessions: Arc<dyn SessionStore>) -> Self {
        Self {
            accounts,
            sessions,
            closer: None,
        }
    }

    async fn close(&self) {
        if let Some(s) = &self.closer {
            s.close().await;
        }
    }
}

/// The engine over `stores`, with the server's bounded hashing pool.
pub async fn open_engine(
    config: &Config,
    stores: &Stores,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Engine>> {
    let refresh_keys = RefreshKeys::new(
        config
            .secrets
            .refresh_keys
            .iter()
            .map(|(v, k)| {
                (
                    *v,
                    SecretBox::new(k.expose_secret().to_vec().into_boxed_slice()),
                )
            })
            .collect(),
    )
    .context("`refresh_key`")?;
    let parts = EngineParts {
        accounts: stores.accounts.clone(),
        sessions: stores.sessions.clone(),
        clock,
        hasher: Arc::new(PooledHasher::new(
            config.hash_params,
            config.hash_workers,
            config.hash_queue,
        )),
        refresh_keys,
        master_key: Zeroizing::new(*config.secrets.master_key),
        generate_missing_keys: !config.is_production(),
    };
    let engine = Engine::start(parts, config.engine_config()).await.map_err(|e| match e {
        sesame_core::engine::StartError::Keys(sesame_core::keys::KeyError::NoActiveKey) => anyhow::anyhow!(
            "the key ring is empty: run `sesame keys rotate` once to create signing keys (production mode never generates them at start)"
        ),
        other => anyhow::Error::new(other).context("starting the engine (check `master_key`)"),
    })?;
    Ok(Arc::new(engine))
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The metrics listener's bound address (`None` when `metrics_bind` is
    /// `"none"`).
    pub metrics_addr: Option<SocketAddr>,
    /// The engine (for CLI-like operations in tests).
    pub engine: Arc<Engine>,
    stores: Stores,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    metrics: Option<MetricsServer>,
    background: Vec<JoinHandle<()>>,
}

/// The metrics listener's server, with its own graceful shutdown.
#[derive(Debug)]
struct MetricsServer {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    fn spawn(listener: TcpListener, router: axum::Router) -> Self {
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        Self { shutdown, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .context("metrics server task panicked")?
            .context("metrics server error")
    }
}

impl Running {
    /// Finishes in-flight requests, stops background tasks, closes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let res = (&mut self.server).await;
        let metrics = match self.metrics.take() {
            Some(m) => m.stop().await,
            None => Ok(()),
        };
        for t in &self.background {
            t.abort();
        }
        self.stores.close().await;
        res.context("server task panicked")?
            .context("server error")?;
        metrics
    }

    /// Waits until the server stops (ctrl-c handling is the caller's).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let res = (&mut self.server).await;
        // The API is gone, so the metrics listener has nothing left to report.
        if let Some(m) = self.metrics.take() {
            let _ = m.stop().await;
        }
        self.stores.close().await;
        res.context("server task panicked")?.context("server error")
    }

    /// Serves until `signal` completes, then shuts down gracefully
    /// ([`Running::stop`]); returns early if the server fails by itself.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            res = &mut self.server => {
                if let Some(m) = self.metrics.take() {
                    let _ = m.stop().await;
                }
                self.stores.close().await;
                return res.context("server task panicked")?.context("server error");
            }
            () = signal => {}
        }
        self.stop().await
    }
}

/// Starts serving on `listener` with `config`, reading time from `clock`.
pub async fn start(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    // Bound first, so a taken port fails the start before anything opens.
    let metrics = bind_metrics(&config).await?;
    let stores = Stores::sqlite(open_store(&config, clock.clone()).await?);
    start_with_stores(listener, config, clock, stores, metrics).await
}

async fn bind_metrics(config: &Config) -> anyhow::Result<Option<(TcpListener, PrometheusHandle)>> {
    match config.metrics_bind {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "binding the metrics listener {addr} (`metrics_bind`); choose a free address or \"none\""
                )
            })?;
            let handle = crate::telemetry::install().context("`metrics_bind`")?;
            Ok(Some((listener, handle)))
        }
        None => Ok(None),
    }
}

/// Like [`start`], on stores the caller provides.
pub async fn start_with(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    stores: Stores,
) -> anyhow::Result<Running> {
    let metrics = bind_metrics(&config).await?;
    start_with_stores(listener, config, clock, stores, metrics).await
}

async fn start_with_stores(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    stores: Stores,
    metrics: Option<(TcpListener, PrometheusHandle)>,
) -> anyhow::Result<Running> {
    let engine = open_engine(&config, &stores, clock.clone()).await?;
    engine
        .revoked_set()
        .sync(&**engine.sessions(), clock.now())
        .await
        .context("reading revocations")?;

    let state = AppState {
        engine: engine.clone(),
        http: Arc::new(HttpSettings {
            public_origin: config.public_origin().ascii_serialization(),
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| o.ascii_serialization())
                .collect(),
            allowed_transports: config.allowed_transports.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        }),
        cookies: Arc::new(CookiePolicy {
            domain: config.cookie_domain.clone(),
            clear_site_data: config.logout_clear_site_data,
        }),
    };
    let router = app::router(state, config.request_timeout_duration());

    let mut background = Vec::new();
    // Liveness: revocations made by other instances reach this one within a second.
    // Its age is a metric because a stalled sync silently widens the window
    // in which a revoked session's access tokens still work here.
    let (e, c) = (engine.clone(), clock.clone());
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // The sync just above succeeded.
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            match e.revoked_set().sync(&**e.sessions(), c.now()).await {
                Ok(_) => last_ok = tokio::time::Instant::now(),
                Err(err) => {
                    tracing::warn!(error = %err, "revocation sync failed; falling back to store reads");
                }
            }
            crate::telemetry::revocation_sync_age(last_ok.elapsed());
        }
    }));
    let (e, every) = (engine.clone(), config.key_reload_duration());
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = e.reload_keys().await {
                tracing::warn!(error = %err, "key ring reload failed; keeping the current ring");
            }
        }
    }));

    let addr = listener.local_addr()?;
    let (metrics, metrics_addr) = match metrics {
        Some((listener, handle)) => {
            let addr = listener.local_addr()?;
            let h = handle.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::telemetry::UPKEEP_EVERY);
                loop {
                    tick.tick().await;
                    crate::telemetry::upkeep(&h);
                }
            }));
            (
                Some(MetricsServer::spawn(
                    listener,
                    crate::telemetry::router(handle),
                )),
                Some(addr),
            )
        }
        None => (None, None),
    };

    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await
    });
    Ok(Running {
        addr,
        metrics_addr,
        engine,
        stores,
        shutdown: Some(tx),
        server,
        metrics,
        background,
    })
}
