//! Wiring: open the stores (SQLite, PostgreSQL or MariaDB for accounts, and
//! sessions there or in Redis), start the engine, build the router, run the
//! background tasks (liveness sync ≤ 1 s, key-ring reload, metrics upkeep,
//! the mail worker) and serve with graceful shutdown — the API on the given
//! listener and `/metrics` on a second one bound to `metrics_bind`. Tests
//! call [`start`] with a listener on 127.0.0.1:0 and a manual clock;
//! `sesame serve` calls [`serve`].

use crate::app;
use crate::config::{Config, DatabaseKind, SessionStoreUrl};
use crate::hash_pool::PooledHasher;
pub use crate::http::api_keys::new_api_key;
use crate::http::cookies::CookiePolicy;
use crate::http::extract::{AppState, HttpSettings};
use crate::http::feed::FeedHub;
use crate::mail::{MailSettings, MailWorker, Mailer};
use crate::rate_limit::RateLimiter;
use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretBox};
use sesame_core::clock::Clock;
use sesame_core::engine::{Engine, EngineParts, RevocationHook};
use sesame_core::refresh::RefreshKeys;
use sesame_core::store::{AccountStore, SessionStore, StoreError};
use sesame_store_redis::{Persistence, RedisClock, RedisSessionStore, RedisStoreOptions};
use sesame_store_sqlx::{
    MySqlStore, MySqlStoreOptions, PgStore, PgStoreOptions, SqliteStore, SqliteStoreOptions,
    StoreClock,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// Where the networked stores (PostgreSQL, MariaDB, Redis) take their time
/// from. SQLite is embedded and always uses the clock it is given.
#[derive(Debug, Clone)]
pub enum StoreTime {
    /// The database's (or Redis's) own clock, so every instance decides
    /// rotation and expiry on one clock: production.
    Database,
    /// This clock instead (tests drive a manual clock with it).
    Fixed(Arc<dyn Clock>),
}

/// The SQL store behind `database_url`.
#[derive(Debug, Clone)]
enum SqlStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
    MySql(MySqlStore),
}

impl SqlStore {
    /// The same store as both traits (one allocation, so `/readyz` can tell
    /// that the session store is not a separate one).
    fn both(&self) -> (Arc<dyn AccountStore>, Arc<dyn SessionStore>) {
        match self {
            Self::Sqlite(s) => {
                let a = Arc::new(s.clone());
                (a.clone(), a)
            }
            Self::Postgres(s) => {
                let a = Arc::new(s.clone());
                (a.clone(), a)
            }
            Self::MySql(s) => {
                let a = Arc::new(s.clone());
                (a.clone(), a)
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.migrate().await,
            Self::Postgres(s) => s.migrate().await,
            Self::MySql(s) => s.migrate().await,
        }
    }

    async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => s.pending_migrations().await,
            Self::Postgres(s) => s.pending_migrations().await,
            Self::MySql(s) => s.pending_migrations().await,
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
            Self::MySql(s) => s.close().await,
        }
    }
}

/// Opens the SQL store `database_url` names, applying pending migrations
/// when `migrate` is set.
async fn open_sql(
    config: &Config,
    clock: Arc<dyn Clock>,
    time: &StoreTime,
    migrate: bool,
) -> anyhow::Result<SqlStore> {
    let url = config.database_url.url.clone();
    let margin = config.access_ttl + config.leeway + 1;
    let store_clock = match time {
        StoreTime::Database => StoreClock::Database,
        StoreTime::Fixed(c) => StoreClock::Fixed(c.clone()),
    };
    let opened = match config.database_url.kind {
        DatabaseKind::Sqlite => {
            let mut o = SqliteStoreOptions::new(url);
            o.max_connections = config.database_max_connections;
            o.acquire_timeout = config.database_acquire_duration();
            o.busy_timeout = config.database_statement_duration();
            o.revocation_margin = margin;
            if migrate {
                SqliteStore::open(&o, clock).await
            } else {
                SqliteStore::connect(&o, clock).await
            }
            .map(SqlStore::Sqlite)
        }
        DatabaseKind::Postgres => {
            let mut o = PgStoreOptions::new(url);
            o.max_connections = config.database_max_connections;
            o.acquire_timeout = config.database_acquire_duration();
            o.statement_timeout = config.database_statement_duration();
            o.revocation_margin = margin;
            if migrate {
                PgStore::open(&o, store_clock).await
            } else {
                PgStore::connect(&o, store_clock).await
            }
            .map(SqlStore::Postgres)
        }
        DatabaseKind::MySql => {
            let mut o = MySqlStoreOptions::new(url);
            o.max_connections = config.database_max_connections;
            o.acquire_timeout = config.database_acquire_duration();
            o.statement_timeout = config.database_statement_duration();
            o.revocation_margin = margin;
            if migrate {
                MySqlStore::open(&o, store_clock).await
            } else {
                MySqlStore::connect(&o, store_clock).await
            }
            .map(SqlStore::MySql)
        }
    };
    // The URL is not echoed: it may carry a password.
    opened.with_context(|| {
        format!(
            "opening the {} database (`database_url`){}",
            config.database_url.kind.as_str(),
            if migrate { " and migrating it" } else { "" }
        )
    })
}

/// Connects to the Redis session store `session_store_url` names.
async fn open_redis(
    config: &Config,
    url: &SessionStoreUrl,
    time: &StoreTime,
) -> anyhow::Result<RedisSessionStore> {
    let acquire = config.database_acquire_duration();
    let options = RedisStoreOptions {
        key_prefix: config.session_store_prefix.clone(),
        clock: match time {
            StoreTime::Database => RedisClock::Server,
            StoreTime::Fixed(c) => RedisClock::Fixed(c.clone()),
        },
        revocation_margin: config.access_ttl + config.leeway + 1,
        // The device list shows ended sessions this long.
        revoked_visibility: config.revoked_session_visibility,
        response_timeout: config.database_statement_duration(),
        // A call waiting for a reconnection waits up to three attempts: keep
        // that within the acquire timeout, as a pool would.
        connection_timeout: (acquire / 3).max(Duration::from_millis(100)),
        ..RedisStoreOptions::default()
    };
    RedisSessionStore::connect(&url.url, options)
        .await
        .context("connecting to the Redis session store (`session_store_url`)")
}

/// Opens the configured stores: accounts in the SQL database
/// (`database_url`), sessions in Redis when `session_store_url` is set and
/// otherwise in the same database. `migrate` applies pending SQL migrations
/// (Redis needs none); `sesame migrate` opens without it.
pub async fn open_stores(
    config: &Config,
    clock: Arc<dyn Clock>,
    time: StoreTime,
    migrate: bool,
) -> anyhow::Result<Stores> {
    let sql = open_sql(config, clock, &time, migrate).await?;
    let (accounts, mut sessions) = sql.both();
    let redis = match &config.session_store_url {
        None => None,
        Some(url) => match open_redis(config, url, &time).await {
            Ok(r) => {
                sessions = Arc::new(r.clone());
                Some(r)
            }
            Err(e) => {
                sql.close().await;
                return Err(e);
            }
        },
    };
    Ok(Stores {
        accounts,
        sessions,
        sql: Some(sql),
        redis,
    })
}

/// The stores a server runs on.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Users, credentials, keys, audit.
    pub accounts: Arc<dyn AccountStore>,
    /// Sessions, rotation, revocation.
    pub sessions: Arc<dyn SessionStore>,
    /// The SQL store, when the server opened it (migrations, closing).
    sql: Option<SqlStore>,
    /// The Redis session store, when configured (persistence check).
    redis: Option<RedisSessionStore>,
}

impl Stores {
    /// One SQLite store serving both traits.
    pub fn sqlite(store: SqliteStore) -> Self {
        let sql = SqlStore::Sqlite(store);
        let (accounts, sessions) = sql.both();
        Self {
            accounts,
            sessions,
            sql: Some(sql),
            redis: None,
        }
    }

    /// Stores supplied by the caller (a library user, or tests wrapping a
    /// store to inject faults); the caller migrates and closes them.
    pub fn custom(accounts: Arc<dyn AccountStore>, sessions: Arc<dyn SessionStore>) -> Self {
        Self {
            accounts,
            sessions,
            sql: None,
            redis: None,
        }
    }

    /// Applies pending SQL migrations (nothing for custom stores).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.sql {
            Some(s) => s
                .migrate()
                .await
                .context("migrating the database (`database_url`)"),
            None => Ok(()),
        }
    }

    /// SQL migrations this build knows and the database has not applied
    /// (none for custom stores).
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        match &self.sql {
            Some(s) => s
                .pending_migrations()
                .await
                .context("reading the applied migrations (`database_url`)"),
            None => Ok(Vec::new()),
        }
    }

    /// What wakes this instance when another one revokes: Redis pub/sub for
    /// Redis sessions, LISTEN/NOTIFY for PostgreSQL; `None` (polling only)
    /// for SQLite, which has one writer, and MariaDB, which has neither.
    fn revocation_watcher(&self) -> Option<RevocationWatcher> {
        match (&self.redis, &self.sql) {
            (Some(r), _) => Some(RevocationWatcher::Redis(Box::new(r.clone()))),
            (None, Some(SqlStore::Postgres(p))) => Some(RevocationWatcher::Postgres(p.clone())),
            _ => None,
        }
    }

    /// Closes the SQL pool (Redis connections close when dropped).
    pub async fn close(&self) {
        if let Some(s) = &self.sql {
            s.close().await;
        }
    }

    /// Production refuses a Redis without the append-only file unless
    /// `allow_volatile_session_store`: a restart would lose rotations and
    /// revocations, bringing rotated-away refresh tokens back to life.
    async fn check_session_persistence(&self, config: &Config) -> anyhow::Result<()> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let persistence = redis
            .check_persistence()
            .await
            .context("asking the Redis session store about persistence (`session_store_url`)")?;
        match persistence {
            Persistence::Aof => Ok(()),
            Persistence::Volatile if !config.is_production() => {
                tracing::info!(
                    "the Redis session store has no append-only file (appendonly no); \
                     production mode refuses that unless allow_volatile_session_store = true"
                );
                Ok(())
            }
            Persistence::Volatile if config.allow_volatile_session_store => {
                tracing::warn!(
                    "the Redis session store has no append-only file: a Redis restart loses \
                     recent rotations and revocations (allowed by allow_volatile_session_store)"
                );
                Ok(())
            }
            Persistence::Volatile => anyhow::bail!(
                "the Redis session store (`session_store_url`) runs without the append-only \
                 file (appendonly no): a Redis restart would lose rotations and revocations \
                 and bring rotated-away refresh tokens back to life. Turn AOF on \
                 (appendonly yes), or accept the risk with `allow_volatile_session_store` = true \
                 (SESAME_ALLOW_VOLATILE_SESSION_STORE)"
            ),
            Persistence::Unknown => {
                tracing::warn!(
                    "could not tell whether the Redis session store persists writes \
                     (CONFIG and INFO refused); make sure the append-only file is on"
                );
                Ok(())
            }
        }
    }
}

/// A subscription to other instances' revocations.
enum RevocationWatcher {
    Redis(Box<RedisSessionStore>),
    Postgres(PgStore),
}

impl RevocationWatcher {
    async fn run(self, wake: impl Fn() + Send + Sync) {
        match self {
            Self::Redis(r) => r.watch_revocations(wake).await,
            Self::Postgres(p) => p.watch_revocations(wake).await,
        }
    }
}

/// The engine over `stores`, with the server's bounded hashing pool.
pub async fn open_engine(
    config: &Config,
    stores: &Stores,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<Engine>> {
    open_engine_with(config, stores, clock, None, None).await
}

/// [`open_engine`] with a callback after each revocation it makes.
async fn open_engine_with(
    config: &Config,
    stores: &Stores,
    clock: Arc<dyn Clock>,
    on_revoked: Option<RevocationHook>,
    on_notice: Option<sesame_core::notice::NoticeHook>,
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
        on_revoked,
        on_notice,
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
    /// The mailer the routes use.
    pub mailer: Mailer,
    mail_worker: Option<MailWorker>,
    feed: Arc<FeedHub>,
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
        // Open feeds never finish by themselves; graceful shutdown waits
        // for every connection.
        self.feed.close();
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
        self.stop_mail().await;
        self.stores.close().await;
        res.context("server task panicked")?
            .context("server error")?;
        metrics
    }

    /// Gives queued mails a bounded time to go out (no request can queue
    /// more: the API has stopped).
    async fn stop_mail(&mut self) {
        if let Some(w) = self.mail_worker.take() {
            w.shutdown(crate::mail::SHUTDOWN_DRAIN).await;
        }
    }

    /// Waits until the server stops (ctrl-c handling is the caller's).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let res = (&mut self.server).await;
        // The API is gone, so the metrics listener has nothing left to report.
        if let Some(m) = self.metrics.take() {
            let _ = m.stop().await;
        }
        self.stop_mail().await;
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
                self.stop_mail().await;
                self.stores.close().await;
                return res.context("server task panicked")?.context("server error");
            }
            () = signal => {}
        }
        self.stop().await
    }
}

/// Starts serving on `listener` with `config`: the instance reads time from
/// `clock`, the networked stores from their own servers
/// ([`StoreTime::Database`]).
pub async fn start(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    start_with_time(listener, config, clock, StoreTime::Database).await
}

/// Like [`start`], with the networked stores' time source chosen by the
/// caller (tests run PostgreSQL, MariaDB and Redis under a manual clock).
pub async fn start_with_time(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    time: StoreTime,
) -> anyhow::Result<Running> {
    // Bound first, so a taken port fails the start before anything opens.
    let metrics = bind_metrics(&config).await?;
    let stores = open_stores(&config, clock.clone(), time, true).await?;
    if let Err(e) = stores.check_session_persistence(&config).await {
        stores.close().await;
        return Err(e);
    }
    tracing::info!(
        accounts = config.database_url.kind.as_str(),
        sessions = if config.session_store_url.is_some() {
            "Redis"
        } else {
            config.database_url.kind.as_str()
        },
        "stores open"
    );
    let closer = stores.clone();
    let started = start_with_stores(listener, config, clock, stores, metrics).await;
    if started.is_err() {
        closer.close().await;
    }
    started
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
    // Revocations by this instance, or (through NOTIFY / pub/sub) by any,
    // kick the liveness sync at once instead of at its next tick.
    let kick = Arc::new(tokio::sync::Notify::new());
    let k = kick.clone();
    let hook = RevocationHook(Arc::new(move || k.notify_one()));
    let (mailer, mail_worker) = Mailer::start(MailSettings::from_config(&config));
    let notices = crate::notify::hook(
        mailer.clone(),
        crate::notify::Switches::from_config(&config),
    );
    let engine =
        open_engine_with(&config, &stores, clock.clone(), Some(hook), Some(notices)).await?;
    engine
        .revoked_set()
        .sync(&**engine.sessions(), clock.now())
        .await
        .context("reading revocations")?;

    // Shared through Redis when the sessions are there (every instance
    // enforces one limit); otherwise per instance, in memory.
    let limiter = config
        .rate_limits
        .clone()
        .map(|limits| match &stores.redis {
            Some(r) => RateLimiter::redis(
                limits,
                r.connection(),
                r.prefix().to_owned(),
                r.op_timeout(),
            ),
            None => RateLimiter::in_memory(limits),
        });
    let feed = Arc::new(FeedHub::new(Duration::from_secs(
        config.revocation_feed_heartbeat.unsigned_abs(),
    )));
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
            admin_api_keys: config.admin_api_keys.clone(),
            service_api_keys: config.service_api_keys.clone(),
        }),
        cookies: Arc::new(CookiePolicy {
            domain: config.cookie_domain.clone(),
            clear_site_data: config.logout_clear_site_data,
        }),
        feed: feed.clone(),
        limiter: limiter.clone(),
        mailer: mailer.clone(),
    };
    let router = app::router(state, config.request_timeout_duration());

    let mut background = Vec::new();
    // Liveness: revocations made by other instances reach this one within a second.
    // Its age is a metric because a stalled sync silently widens the window
    // in which a revoked session's access tokens still work here.
    // The same sync feeds the revocation feed: new rows bump the hub.
    let (e, c, f, k) = (engine.clone(), clock.clone(), feed.clone(), kick.clone());
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        // The sync just above succeeded.
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = k.notified() => {}
            }
            match e.revoked_set().sync(&**e.sessions(), c.now()).await {
                Ok(n) => {
                    last_ok = tokio::time::Instant::now();
                    if n > 0 {
                        f.bump();
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "revocation sync failed; falling back to store reads");
                }
            }
            crate::telemetry::revocation_sync_age(last_ok.elapsed());
        }
    }));
    if config.purge_interval > 0 {
        let (e, every, keep) = (
            engine.clone(),
            Duration::from_secs(config.purge_interval.unsigned_abs()),
            config.audit_retention,
        );
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(err) = e.purge(keep).await {
                    tracing::warn!(error = %err, "retention purge failed; retrying at the next interval");
                }
            }
        }));
    }
    if let Some(l) = limiter.clone() {
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                l.prune();
            }
        }));
    }
    if let Some(watch) = stores.revocation_watcher() {
        let k = kick.clone();
        background.push(tokio::spawn(async move {
            watch.run(move || k.notify_one()).await;
        }));
    }
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
            let e = engine.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    match e.live_sessions().await {
                        Ok(n) => crate::telemetry::live_sessions(n),
                        Err(err) => tracing::debug!(error = %err, "counting live sessions failed"),
                    }
                }
            }));
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
        mailer,
        mail_worker: Some(mail_worker),
        feed,
        stores,
        shutdown: Some(tx),
        server,
        metrics,
        background,
    })
}
