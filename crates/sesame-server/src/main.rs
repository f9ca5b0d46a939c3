//! `sesame`: the server and its operations commands.
//!
//! Run with: `cargo run --release` (development mode, SQLite, generated keys,
//! http://127.0.0.1:8080).

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use sesame_core::clock::{Clock, SystemClock};
use sesame_core::ids::{Email, SessionId, UserId};
use sesame_core::session::RevokeReason;
use sesame_server::config::{self, Config, LogFormat};
use sesame_server::server;
use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "sesame",
    version,
    about = "JWT session authentication: server and operations"
)]
struct Cli {
    /// TOML configuration file (also SESAME_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations.
    Migrate {
        /// Only report pending migrations; exit 1 if there are any.
        #[arg(long)]
        check: bool,
    },
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Read the audit log, newest first, as JSON lines.
    Audit {
        /// Only this user (id or email).
        #[arg(long)]
        user: Option<String>,
        /// Only this session id.
        #[arg(long)]
        session: Option<String>,
        /// Only this event, e.g. login_failed.
        #[arg(long)]
        event: Option<String>,
        /// At or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
        /// Before this Unix time.
        #[arg(long)]
        until: Option<i64>,
        /// At most this many rows (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Run the retention purge once (what `purge_interval` runs in `serve`).
    Purge,
    /// API keys for the admin API and the revocation feed.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
}

#[derive(Subcommand, Debug)]
enum ApiKeyCmd {
    /// Generate a key: prints the key (give it to the caller) and its hash
    /// (put it in `admin_api_keys` or `service_api_keys`).
    New,
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Promote the next key, retire the active one, publish a new next key.
    Rotate {
        /// Compromise response: unpublish the old key at once (its tokens die).
        #[arg(long)]
        revoke_old: bool,
    },
    /// List the key ring.
    List,
    /// Re-seal every signing key under a new master key (master-key
    /// rotation). The new key is read from a file, never argv; afterwards set
    /// `master_key` to it and restart every instance.
    Rewrap {
        /// File holding the new master key (base64 of 32 bytes).
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Create a user; the password is read from stdin (never argv).
    Add { email: String },
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Disable a user (by id or email) and revoke all their sessions.
    Disable { user: String },
    /// Enable a disabled user (by id or email).
    Enable { user: String },
    /// Delete a user (by id or email): every session ends, the row goes.
    Delete { user: String },
    /// Remove a user's second factor and recovery codes (lost phone);
    /// audited as `mfa_reset`. The user signs in with the password alone
    /// and may enrol again.
    MfaReset { user: String },
}

#[derive(Subcommand, Debug)]
enum SessionsCmd {
    /// List a user's sessions (by id or email).
    List { user: String },
    /// Revoke one session, or with --all every session.
    Revoke {
        /// The session id.
        session: Option<String>,
        /// Revoke every session (after restoring a backup).
        #[arg(long)]
        all: bool,
        /// Reason recorded with --all: `restored` or `revoked_by_admin`.
        #[arg(long, default_value = "revoked_by_admin")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate the configuration and print the effective settings.
    Check,
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let env: HashMap<String, String> = std::env::vars().collect();
    config::load(cli.config.as_deref(), &env)
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The configured stores for an operations command, on the stores' own
/// clocks like `serve`.
async fn open_stores(
    cfg: &Config,
    clock: Arc<dyn Clock>,
    migrate: bool,
) -> anyhow::Result<server::Stores> {
    server::open_stores(cfg, clock, server::StoreTime::Database, migrate).await
}

fn read_password() -> anyhow::Result<String> {
    eprint!("password (read from stdin): ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn find_user(engine: &sesame_core::Engine, who: &str) -> anyhow::Result<UserId> {
    if let Some(id) = UserId::parse(who) {
        return Ok(id);
    }
    let email = Email::parse(who)
        .map_err(|e| anyhow::anyhow!("`{who}` is neither a user id nor an email: {e}"))?;
    match engine.accounts().user_by_email(&email).await? {
        Some(c) => Ok(c.user.id),
        None => bail!("no user with email {who}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ApiKey(ApiKeyCmd::New)) = &cli.command {
        // Needs no configuration: nothing is stored.
        let key = server::new_api_key();
        println!("key:  {}", key.key);
        println!("hash: {}", key.hash);
        return Ok(());
    }
    let cfg = load_config(&cli)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => {
            let shutdown = shutdown_signal();
            init_tracing(&cfg);
            println!(
                "sesame {} — mode: {}",
                env!("CARGO_PKG_VERSION"),
                cfg.mode.as_str()
            );
            let listener = tokio::net::TcpListener::bind(cfg.bind)
                .await
                .with_context(|| format!("binding {} (`bind`)", cfg.bind))?;
            println!(
                "sesame listening on http://{} — public URL: {}",
                listener.local_addr()?,
                cfg.public_origin().ascii_serialization()
            );
            let running = server::start(listener, cfg, clock).await?;
            if let Some(addr) = running.metrics_addr {
                println!("sesame metrics on http://{addr}/metrics");
            }
            running.run_until(shutdown).await?;
            println!("sesame: stopped");
        }
        Command::Migrate { check } => {
            // Opened without migrating: `--check` applies nothing.
            let stores = open_stores(&cfg, clock, false).await?;
            let pending = stores.pending_migrations().await?;
            for p in &pending {
                println!("pending: {p}");
            }
            if pending.is_empty() {
                println!("database is up to date");
            } else if *check {
                stores.close().await;
                std::process::exit(1);
            } else {
                stores.migrate().await?;
                println!("applied {} migration(s)", pending.len());
            }
            stores.close().await;
        }
        Command::Keys(k) => {
            let stores = open_stores(&cfg, clock.clone(), true).await?;
            match k {
                KeysCmd::Rotate { revoke_old } => {
                    if stores.accounts.load_keys().await?.is_empty() {
                        // How production creates its first keys: an active and a next key.
                        let recs = sesame_core::keys::initial_records(
                            cfg.signing_alg,
                            clock.now(),
                            &cfg.secrets.master_key,
                        )?;
                        stores.accounts.save_keys(&recs).await?;
                        println!("created the first signing keys");
                        print_keys(&*server::open_engine(&cfg, &stores, clock).await?);
                    } else {
                        let engine = server::open_engine(&cfg, &stores, clock).await?;
                        engine.rotate_keys(*revoke_old).await?;
                        print_keys(&engine);
                    }
                }
                KeysCmd::List => {
                    let engine = server::open_engine(&cfg, &stores, clock).await?;
                    print_keys(&engine);
                }
                KeysCmd::Rewrap {
                    new_master_key_file,
                } => {
                    let new = read_master_key(new_master_key_file)?;
                    let old = &cfg.secrets.master_key;
                    let records = stores.accounts.load_keys().await?;
                    let rewrapped = records
                        .iter()
                        .map(|r| r.rewrap(old, &new))
                        .collect::<Result<Vec<_>, _>>()
                        .context("opening the stored keys with the current `master_key`")?;
                    // Prove the new key opens every record before anything is written.
                    sesame_core::keys::KeyRing::open(&rewrapped, &new)?;
                    stores.accounts.save_keys(&rewrapped).await?;
                    println!(
                        "re-sealed {} signing keys; now set `master_key` to the new key and restart every instance",
                        rewrapped.len()
                    );
                }
            }
            stores.close().await;
        }
        Command::User(u) => {
            let stores = open_stores(&cfg, clock.clone(), true).await?;
            let engine = server::open_engine(&cfg, &stores, clock).await?;
            match u {
                UserCmd::Add { email } => {
                    let pw = read_password()?;
                    let user = engine
                        .add_user(email, pw)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("{}\t{}", user.id, user.identity);
                }
                UserCmd::List { limit, offset } => {
                    for u in engine.accounts().list_users(*limit, *offset).await? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            u.id,
                            u.identity,
                            if u.email_verified {
                                "verified"
                            } else {
                                "unverified"
                            },
                            if u.disabled { "disabled" } else { "active" }
                        );
                    }
                }
                UserCmd::Disable { user } => {
                    let id = find_user(&engine, user).await?;
                    engine
                        .set_user_disabled(id, true)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("disabled {id}; every session revoked");
                }
                UserCmd::Enable { user } => {
                    let id = find_user(&engine, user).await?;
                    engine
                        .set_user_disabled(id, false)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("enabled {id}");
                }
                UserCmd::Delete { user } => {
                    let id = find_user(&engine, user).await?;
                    engine
                        .delete_user(id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("deleted {id}; every session revoked");
                }
                UserCmd::MfaReset { user } => {
                    let id = find_user(&engine, user).await?;
                    match engine.reset_mfa(id).await {
                        Ok(()) => println!("removed the second factor of {id}"),
                        Err(sesame_core::Error::NotFound) => {
                            anyhow::bail!("{id} has no second factor")
                        }
                        Err(e) => anyhow::bail!("{e}"),
                    }
                }
            }
            stores.close().await;
        }
        Command::Sessions(s) => {
            let stores = open_stores(&cfg, clock.clone(), true).await?;
            let engine = server::open_engine(&cfg, &stores, clock).await?;
            match s {
                SessionsCmd::List { user } => {
                    let id = find_user(&engine, user).await?;
                    for s in engine
                        .list_sessions(id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                    {
                        println!(
                            "{}\t{}\tcreated {}\tlast seen {}\t{}",
                            s.id,
                            s.transport.as_str(),
                            s.created_at,
                            s.last_seen_at,
                            s.revoke_reason.map_or("live", |r| r.as_str())
                        );
                    }
                }
                SessionsCmd::Revoke {
                    session,
                    all,
                    reason,
                } => {
                    let reason = match reason.as_str() {
                        "restored" => RevokeReason::Restored,
                        "revoked_by_admin" => RevokeReason::RevokedByAdmin,
                        other => bail!(
                            "--reason must be `restored` or `revoked_by_admin`, not `{other}`"
                        ),
                    };
                    match (session, all) {
                        (None, true) => {
                            let n = engine.sessions().revoke_all(reason).await?;
                            println!("revoked {n} sessions");
                        }
                        (Some(sid), false) => {
                            let sid = SessionId::parse(sid).context("not a session id")?;
                            engine
                                .logout(sid, reason, None)
                                .await
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            println!("revoked {sid}");
                        }
                        _ => bail!("give either a session id or --all"),
                    }
                }
            }
            stores.close().await;
        }
        Command::Config(ConfigCmd::Check) => {
            println!("configuration is valid");
            println!("{cfg:#?}");
        }
        // Answered before the configuration was loaded.
        Command::ApiKey(_) => {}
        Command::Audit {
            user,
            session,
            event,
            since,
            until,
            limit,
        } => {
            let stores = open_stores(&cfg, clock.clone(), true).await?;
            let engine = server::open_engine(&cfg, &stores, clock).await?;
            let mut query = vec![format!("limit={limit}")];
            if let Some(u) = user {
                query.push(format!("user={}", find_user(&engine, u).await?));
            }
            for (k, v) in [("session", session.clone()), ("event", event.clone())] {
                if let Some(v) = v {
                    query.push(format!("{k}={v}"));
                }
            }
            for (k, v) in [("since", since), ("until", until)] {
                if let Some(v) = v {
                    query.push(format!("{k}={v}"));
                }
            }
            let filter = sesame_server::http::admin::audit_filter(&query.join("&"))
                .map_err(|e| anyhow::anyhow!("{}", e.describe()))?;
            for r in engine
                .read_audit(&filter)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                println!("{}", sesame_server::http::admin::audit_json(&r));
            }
            stores.close().await;
        }
        Command::Purge => {
            let stores = open_stores(&cfg, clock.clone(), true).await?;
            let engine = server::open_engine(&cfg, &stores, clock).await?;
            let p = engine
                .purge(cfg.audit_retention)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "purged {} sessions, {} revocation rows, {} one-time tokens, {} audit rows",
                p.sessions, p.revocations, p.one_time_tokens, p.audit
            );
            stores.close().await;
        }
    }
    Ok(())
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM (what service managers send).
/// Registers the SIGTERM and SIGINT handlers now (before the server starts,
/// so a signal that arrives right after start-up is not fatal) and returns a
/// future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {}
                () = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        println!("sesame: shutting down (in-flight requests finish first)");
    }
}

fn read_master_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the new master key from {}", path.display()))?;
    let bytes = sesame_core::crypto::b64_decode(
        text.trim()
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
            .as_str(),
    )
    .context("the new master key is not base64")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the new master key must be exactly 32 bytes"))
}

fn print_keys(engine: &sesame_core::Engine) {
    let ring = engine.key_ring();
    let mut keys: Vec<_> = ring.keys().collect();
    keys.sort_by_key(|k| (k.state() as u8, k.kid().to_string()));
    for k in keys {
        println!("{}\t{}\t{}", k.kid(), k.alg().as_str(), k.state().as_str());
    }
}
