//! `raw`: what a backend does alone, through the same driver and pool shape
//! as Sesame's store — a primary-key read and a one-statement single-row
//! update, on a 100 000-row table (or 100 000 Redis hashes). These are the
//! ceilings the benchmark issue's W1 (`/auth/me`) and W2 (refresh) goals are
//! ratios of, measured in the same run as the HTTP workloads.
//!
//! SQLite gets Sesame's settings: WAL, `synchronous = NORMAL`, one writer
//! connection, eight readers. PostgreSQL and MariaDB get Sesame's pool of 16.
//! Redis gets one multiplexed connection, as Sesame's Redis store uses.

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows (or hashes) in the table.
const ROWS: u64 = 100_000;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `SELECT … WHERE id = ?` (Redis: `HGETALL`).
    Read,
    /// `UPDATE … SET generation = generation + 1, last_seen = ? WHERE id = ?`
    /// (Redis: `HSET` of two fields).
    Update,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RawArgs {
    /// `sqlite:<dir>`, `postgres://…`, `mysql://…` or `redis://…`.
    #[arg(long)]
    backend: String,
    #[arg(long, value_enum)]
    op: Op,
    /// Concurrent tasks issuing statements.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// The row id for the n-th draw of a task: 16 bytes, like Sesame's ids.
fn row_id(x: u64) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[8..].copy_from_slice(&(x % ROWS).to_be_bytes());
    id
}

/// A small per-task generator (xorshift64*): spread, not secret.
struct Draw(u64);
impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One operation against one backend.
#[derive(Clone)]
enum Db {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
    Redis(redis::aio::ConnectionManager),
}

impl Db {
    async fn run(&mut self, op: Op, x: u64) -> anyhow::Result<()> {
        /// The same two statements on any sqlx pool (placeholders differ).
        macro_rules! sql {
            ($pool:expr, $read:literal, $update:literal) => {
                match op {
                    Op::Read => {
                        sqlx::query($read)
                            .bind(row_id(x))
                            .fetch_one(&*$pool)
                            .await?;
                    }
                    Op::Update => {
                        sqlx::query($update)
                            .bind(now_secs())
                            .bind(row_id(x))
                            .execute(&*$pool)
                            .await?;
                    }
                }
            };
        }
        match self {
            Db::Sqlite(p) => sql!(
                p,
                "SELECT generation, last_seen FROM bench_raw WHERE id = ?",
                "UPDATE bench_raw SET generation = generation + 1, last_seen = ? WHERE id = ?"
            ),
            Db::My(p) => sql!(
                p,
                "SELECT generation, last_seen FROM bench_raw WHERE id = ?",
                "UPDATE bench_raw SET generation = generation + 1, last_seen = ? WHERE id = ?"
            ),
            Db::Pg(p) => sql!(
                p,
                "SELECT generation, last_seen FROM bench_raw WHERE id = $1",
                "UPDATE bench_raw SET generation = generation + 1, last_seen = $1 WHERE id = $2"
            ),
            Db::Redis(c) => match op {
                Op::Read => {
                    let _: Vec<String> = redis::cmd("HGETALL")
                        .arg(redis_key(x))
                        .query_async(c)
                        .await?;
                }
                Op::Update => {
                    let _: i64 = redis::cmd("HSET")
                        .arg(redis_key(x))
                        .arg("generation")
                        .arg(x)
                        .arg("last_seen")
                        .arg(now_secs())
                        .query_async(c)
                        .await?;
                }
            },
        }
        Ok(())
    }
}

fn redis_key(x: u64) -> String {
    format!("sesame_bench_raw:{}", x % ROWS)
}

/// Opens the backend with Sesame's pool shape for `op` and fills the table
/// (once: a table that already has its rows is reused).
async fn open(backend: &str, op: Op) -> anyhow::Result<Db> {
    if let Some(dir) = backend.strip_prefix("sqlite:") {
        let opts = SqliteConnectOptions::new()
            .filename(std::path::Path::new(dir).join("raw.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let size = if op == Op::Update { 1 } else { 8 };
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .connect_with(opts)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id BLOB PRIMARY KEY, generation INTEGER NOT NULL, last_seen INTEGER NOT NULL)")
            .execute(&pool)
            .await?;
        let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bench_raw")
            .fetch_one(&pool)
            .await?;
        if have < ROWS as i64 {
            let mut tx = pool.begin().await?;
            for i in 0..ROWS {
                sqlx::query("INSERT OR IGNORE INTO bench_raw VALUES (?, 0, 0)")
                    .bind(row_id(i))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        return Ok(Db::Sqlite(pool));
    }
    if backend.starts_with("postgres://") {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(PgConnectOptions::from_str(backend)?)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id BYTEA PRIMARY KEY, generation BIGINT NOT NULL, last_seen BIGINT NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO bench_raw SELECT decode(lpad('', 16, '0') || lpad(to_hex(i), 16, '0'), 'hex'), 0, 0 FROM generate_series(0, 99999) i ON CONFLICT DO NOTHING")
            .execute(&pool)
            .await?;
        return Ok(Db::Pg(pool));
    }
    if backend.starts_with("mysql://") {
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .connect_with(MySqlConnectOptions::from_str(backend)?)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id VARBINARY(16) PRIMARY KEY, generation BIGINT NOT NULL, last_seen BIGINT NOT NULL) ENGINE=InnoDB")
            .execute(&pool)
            .await?;
        // MariaDB's sequence engine makes the 100 000 ids in one statement
        // (the same bytes as `row_id`: 8 zero bytes, then the number).
        sqlx::query("INSERT IGNORE INTO bench_raw SELECT UNHEX(LPAD(HEX(seq), 32, '0')), 0, 0 FROM seq_0_to_99999")
            .execute(&pool)
            .await?;
        return Ok(Db::My(pool));
    }
    if backend.starts_with("redis://") {
        let mut c = redis::Client::open(backend)?
            .get_connection_manager()
            .await?;
        for chunk in 0..(ROWS / 1000) {
            let mut pipe = redis::pipe();
            for i in chunk * 1000..(chunk + 1) * 1000 {
                pipe.cmd("HSET")
                    .arg(redis_key(i))
                    .arg("generation")
                    .arg(0)
                    .arg("last_seen")
                    .arg(0)
                    .ignore();
            }
            let () = pipe.query_async(&mut c).await?;
        }
        return Ok(Db::Redis(c));
    }
    bail!("--backend: sqlite:<dir>, postgres://…, mysql://… or redis://…")
}

pub(crate) async fn raw(a: RawArgs) -> anyhow::Result<()> {
    let db = open(&a.backend, a.op)
        .await
        .with_context(|| format!("opening {}", a.backend))?;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let (mut db, ok, errors, stop) = (db.clone(), ok.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut draw = Draw(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            while !stop.load(Ordering::Relaxed) {
                let counter = match db.run(a.op, draw.next()).await {
                    Ok(()) => &ok,
                    Err(_) => &errors,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let (ok0, err0) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let cpu0 = crate::cpu_secs(std::process::id());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (ok1, err1) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let cpu1 = crate::cpu_secs(std::process::id());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let n = ok1 - ok0;
    let mut out = json!({
        "mode": "raw",
        "backend": a.backend.split("://").next().unwrap_or("").split(':').next().unwrap_or(""),
        "op": format!("{:?}", a.op).to_lowercase(),
        "connections": a.connections,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "ok": n,
        "errors": err1 - err0,
        "rps": (n as f64 / elapsed).round(),
    });
    if let (Some(c0), Some(c1)) = (cpu0, cpu1)
        && n > 0
    {
        // This process's own CPU (client side of the driver included).
        out["client_cpu_us_per_op"] = json!(((c1 - c0) * 1e6 / n as f64 * 100.0).round() / 100.0);
    }
    println!("{out}");
    Ok(())
}
