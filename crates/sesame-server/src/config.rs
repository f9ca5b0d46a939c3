//! Sesame's configuration: one flat namespace of settings, read from a TOML
//! file and from `SESAME_*` environment variables (DESIGN §8).
//!
//! Loading happens in two stages, like ripgrep's low-level and high-level
//! arguments:
//!
//! 1. [`load_raw`] layers the TOML file and the environment into a
//!    [`RawConfig`]: every field optional and only as typed as TOML is
//!    (strings, integers, booleans, lists) — exactly what the operator wrote.
//!    Defaults are *not* filled in here, so a `RawConfig` shows what was set,
//!    and tests can build one literally.
//! 2. [`validate`] turns it into a [`Config`]: defaults filled in, every value
//!    parsed into its type, cross-setting rules and production constraints
//!    checked, and secrets decoded — or, in development mode only, read from
//!    or generated into `dev_secrets_file`.
//!
//! Every failure is a [`ConfigError`] that names the setting to change and
//! its environment variable: the reader is an operator looking at a server
//! that refused to start. Messages never echo secret values.
//!
//! README.md (Configuration) documents every key; keep it in step with
//! [`KEYS`] and [`validate`].

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::config::{File, FileFormat, ValueKind};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use sesame_core::binding::{BindingKeys, BindingMode, IpPrefixes};
use sesame_core::engine::EngineConfig;
use sesame_core::keys::SigningAlg;
use sesame_core::password::HashParams;
use sesame_core::rotation::RotationPolicy;
use sesame_core::session::Transport;
use sesame_core::store::SessionCap;
use url::{Host, Origin, Url};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Every setting's key, as written in the TOML file. The environment variable
/// of key `x` is `SESAME_X`; only these variables are read, so unrelated
/// `SESAME_*` variables (test switches and the like) are ignored.
pub const KEYS: &[&str] = &[
    "mode",
    "bind",
    "public_url",
    "allowed_origins",
    "database_url",
    "database_url_file",
    "session_store_url",
    "session_store_url_file",
    "session_store_prefix",
    "allow_volatile_session_store",
    "database_max_connections",
    "database_acquire_timeout",
    "database_statement_timeout",
    "issuer",
    "audience",
    "access_ttl",
    "refresh_ttl",
    "session_max_age",
    "refresh_grace",
    "late_retry_window",
    "leeway",
    "revoked_session_visibility",
    "request_timeout",
    "key_reload_interval",
    "grace_max_answers",
    "reuse_policy",
    "max_sessions_per_user",
    "session_limit_policy",
    "require_verified_email",
    "allowed_transports",
    "signing_alg",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "hash_workers",
    "hash_queue",
    "cookie_domain",
    "logout_clear_site_data",
    "trusted_proxies",
    "log_format",
    "log_level",
    "log_pii",
    "metrics_bind",
    "dev_secrets_file",
    "master_key",
    "master_key_file",
    "refresh_key",
    "refresh_key_file",
    "refresh_key_version",
    "refresh_keys_previous",
    "refresh_keys_previous_file",
    "binding",
    "binding_key",
    "binding_key_file",
    "binding_ipv4_prefix",
    "binding_ipv6_prefix",
    "admin_api_keys",
    "service_api_keys",
    "revocation_feed_heartbeat",
    "rate_limits",
    "rate_limit_login_ip",
    "rate_limit_login_account",
    "rate_limit_register_ip",
    "rate_limit_refresh_ip",
    "rate_limit_refresh_session",
    "rate_limit_forgot_ip",
    "rate_limit_forgot_account",
    "rate_limit_verify_ip",
    "rate_limit_mfa_account",
    "login_delay_after",
    "login_delay_max",
    "audit_retention",
    "purge_interval",
    // Mail and the account lifecycle.
    "smtp_url",
    "smtp_url_file",
    "mail_from",
    "smtp_timeout",
    "mail_queue_size",
    "mail_max_attempts",
    "email_verification_ttl",
    "password_reset_ttl",
    "max_auth_age",
    "mfa_challenge_ttl",
    "notify_password_changed",
    "notify_mfa_changed",
    "notify_new_device",
    "notify_reuse_detected",
];

/// Keys whose value is a list: a TOML array, or comma-separated in the
/// environment.
const LIST_KEYS: &[&str] = &[
    "allowed_origins",
    "allowed_transports",
    "trusted_proxies",
    "refresh_keys_previous",
    "admin_api_keys",
    "service_api_keys",
];

/// Keys whose values must never appear in an error message (the URLs may
/// carry a password).
const SECRET_KEYS: &[&str] = &[
    "master_key",
    "refresh_key",
    "refresh_keys_previous",
    "binding_key",
    "database_url",
    "session_store_url",
    "smtp_url",
];

/// The environment variable naming the TOML file.
pub const CONFIG_ENV: &str = "SESAME_CONFIG";

/// The longest duration accepted anywhere, so that `now + duration` can never
/// overflow an `i64` of Unix seconds.
const MAX_DURATION: i64 = 36_500 * 86_400;

const GENERATE_KEY_HINT: &str = "generate one with: head -c 32 /dev/urandom | base64";

/// The environment variable of a key: `access_ttl` ↔ `SESAME_ACCESS_TTL`.
pub fn env_var(key: &str) -> String {
    format!("SESAME_{}", key.to_ascii_uppercase())
}

// ---------------------------------------------------------------------------
// Errors

/// A configuration problem, naming the setting the operator has to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, as in the TOML file (`access_ttl`); `config` for the file
    /// itself.
    pub setting: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ({}): {}",
            self.setting,
            env_var(&self.setting),
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(setting: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::new(setting, message))
}

// ---------------------------------------------------------------------------
// Stage 1: raw settings

/// Settings as written, before defaults and validation. `None` = not set.
///
/// Durations are strings (`"10m"`; a TOML integer is read as seconds);
/// integers are `i64` so that an out-of-range value gets a message naming
/// the range instead of a type error. Secrets are [`SecretString`]s, so that
/// `Debug` output never shows them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in README.md (Configuration)
pub struct RawConfig {
    pub mode: Option<String>,
    pub bind: Option<String>,
    pub public_url: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub database_url: Option<SecretString>,
    pub database_url_file: Option<String>,
    pub session_store_url: Option<SecretString>,
    pub session_store_url_file: Option<String>,
    pub session_store_prefix: Option<String>,
    pub allow_volatile_session_store: Option<bool>,
    pub database_max_connections: Option<i64>,
    pub database_acquire_timeout: Option<String>,
    pub database_statement_timeout: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub access_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub session_max_age: Option<String>,
    pub refresh_grace: Option<String>,
    pub late_retry_window: Option<String>,
    pub leeway: Option<String>,
    pub revoked_session_visibility: Option<String>,
    pub request_timeout: Option<String>,
    pub key_reload_interval: Option<String>,
    pub grace_max_answers: Option<i64>,
    pub reuse_policy: Option<String>,
    pub max_sessions_per_user: Option<i64>,
    pub session_limit_policy: Option<String>,
    pub require_verified_email: Option<bool>,
    pub allowed_transports: Option<Vec<String>>,
    pub signing_alg: Option<String>,
    pub argon2_memory_kib: Option<i64>,
    pub argon2_iterations: Option<i64>,
    pub argon2_parallelism: Option<i64>,
    pub hash_workers: Option<i64>,
    pub hash_queue: Option<i64>,
    pub cookie_domain: Option<String>,
    pub logout_clear_site_data: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub log_pii: Option<bool>,
    pub metrics_bind: Option<String>,
    pub dev_secrets_file: Option<String>,
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<String>,
    pub refresh_key: Option<SecretString>,
    pub refresh_key_file: Option<String>,
    pub refresh_key_version: Option<i64>,
    pub refresh_keys_previous: Option<Vec<SecretString>>,
    pub refresh_keys_previous_file: Option<String>,
    pub binding: Option<String>,
    pub binding_key: Option<SecretString>,
    pub binding_key_file: Option<String>,
    pub binding_ipv4_prefix: Option<i64>,
    pub binding_ipv6_prefix: Option<i64>,
    pub admin_api_keys: Option<Vec<String>>,
    pub service_api_keys: Option<Vec<String>>,
    pub revocation_feed_heartbeat: Option<String>,
    pub rate_limits: Option<bool>,
    pub rate_limit_login_ip: Option<String>,
    pub rate_limit_login_account: Option<String>,
    pub rate_limit_register_ip: Option<String>,
    pub rate_limit_refresh_ip: Option<String>,
    pub rate_limit_refresh_session: Option<String>,
    pub rate_limit_forgot_ip: Option<String>,
    pub rate_limit_forgot_account: Option<String>,
    pub rate_limit_verify_ip: Option<String>,
    pub rate_limit_mfa_account: Option<String>,
    pub login_delay_after: Option<i64>,
    pub login_delay_max: Option<String>,
    pub audit_retention: Option<String>,
    pub purge_interval: Option<String>,
    // Mail and the account lifecycle.
    pub smtp_url: Option<SecretString>,
    pub smtp_url_file: Option<String>,
    pub mail_from: Option<String>,
    pub smtp_timeout: Option<String>,
    pub mail_queue_size: Option<i64>,
    pub mail_max_attempts: Option<i64>,
    pub email_verification_ttl: Option<String>,
    pub password_reset_ttl: Option<String>,
    pub max_auth_age: Option<String>,
    pub mfa_challenge_ttl: Option<String>,
    pub notify_password_changed: Option<bool>,
    pub notify_mfa_changed: Option<bool>,
    pub notify_new_device: Option<bool>,
    pub notify_reuse_detected: Option<bool>,
}

/// Layers the TOML file and the environment into a [`RawConfig`].
///
/// The file is `file`, else the path in `SESAME_CONFIG`, else none; a file
/// named either way must exist. The environment (`env`, normally
/// `std::env::vars().collect()`) wins over the file, key by key; an empty
/// variable counts as unset. Unknown keys in the file are an error naming
/// the key.
///
/// Layering goes through the `config` crate: the file as a TOML source and
/// each known variable as an override. We do not use its `Environment`
/// source because it splits lists only together with `try_parsing`, which
/// also turns numeric-looking strings into numbers (`SESAME_AUDIENCE=007`
/// would become `7`), and because only known keys may be read anyway.
pub fn load_raw(
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<RawConfig, ConfigError> {
    let path: Option<PathBuf> = match file {
        Some(p) => Some(p.to_path_buf()),
        None => env
            .get(CONFIG_ENV)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
    };

    let mut builder = ::config::Config::builder();
    if let Some(path) = &path {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return err("config", format!("{} is not a file", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return err(
                    "config",
                    format!("configuration file {} does not exist", path.display()),
                );
            }
            Err(e) => return err("config", format!("cannot read {}: {e}", path.display())),
        }
        builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
    }

    for &key in KEYS {
        let Some(value) = env.get(&env_var(key)).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value: ::config::Value = if LIST_KEYS.contains(&key) {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<String>>()
                .into()
        } else {
            value.clone().into()
        };
        builder = builder
            .set_override(key, value)
            .map_err(|e| from_config_error(e, path.as_deref()))?;
    }

    let table: ::config::Map<String, ::config::Value> = builder
        .build()
        .and_then(::config::Config::try_deserialize)
        .map_err(|e| from_config_error(e, path.as_deref()))?;

    // Checked here rather than left to `deny_unknown_fields`, whose message
    // lists all forty-odd keys and names no file. Only the file can bring an
    // unknown key: the environment is filtered above.
    let mut unknown: Vec<&String> = table
        .keys()
        .filter(|k| !KEYS.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if let Some(key) = unknown.first() {
        let place = path
            .as_deref()
            .map_or_else(String::new, |p| format!(" in {}", p.display()));
        return err(
            key,
            format!(
                "unknown setting{place}; see the Configuration table in README.md for the valid keys"
            ),
        );
    }

    ::config::Value::new(None, ValueKind::Table(table))
        .try_deserialize::<RawConfig>()
        .map_err(|e| from_config_error(e, path.as_deref()))
}

/// Maps the `config` crate's errors onto the setting they concern.
fn from_config_error(e: ::config::ConfigError, path: Option<&Path>) -> ConfigError {
    use ::config::ConfigError as E;
    // A key path like `allowed_origins[2]` concerns `allowed_origins`.
    let top = |key: &str| {
        key.split(['.', '['])
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("config")
            .to_owned()
    };
    match e {
        E::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => {
            let setting = top(&key);
            let found = if SECRET_KEYS.contains(&setting.as_str()) {
                "a value of another type".to_owned()
            } else {
                unexpected.to_string()
            };
            ConfigError::new(setting, format!("expected {expected}, found {found}"))
        }
        E::At {
            key: Some(key),
            error,
            ..
        } if !SECRET_KEYS.contains(&top(&key).as_str()) => {
            ConfigError::new(top(&key), error.to_string())
        }
        E::At { key: Some(key), .. } => ConfigError::new(top(&key), "invalid value"),
        E::FileParse { cause, .. } => {
            let name = path.map_or_else(|| "the file".to_owned(), |p| p.display().to_string());
            // The TOML error quotes the offending line, which may hold a
            // secret; keep its position and explanation only.
            let cause = cause.to_string();
            let cause: Vec<&str> = cause
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | "))
                .collect();
            ConfigError::new(
                "config",
                format!("{name} is not valid TOML: {}", cause.join(": ")),
            )
        }
        other => ConfigError::new("config", other.to_string()),
    }
}

// ---------------------------------------------------------------------------
// Stage 2: validated settings

/// `mode`: development makes the embedded default just work; production
/// refuses anything weak or missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Loopback only, generated secrets, `http://` allowed, cheap hashing.
    Development,
    /// `https://` public URL, configured secrets, OWASP hashing.
    Production,
}

impl Mode {
    /// The configured spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// `reuse_policy`: what a detected refresh-token reuse revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReusePolicy {
    /// The session whose token was replayed.
    Session,
    /// Every session of that user.
    User,
}

/// `session_limit_policy`: what happens at `max_sessions_per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLimitPolicy {
    /// Revoke the least recently used session.
    EvictOldest,
    /// Refuse the login with 409 `session_limit_reached`.
    Refuse,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which SQL database `database_url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `sqlite:` — the embedded default.
    Sqlite,
    /// `postgres:` or `postgresql:`.
    Postgres,
    /// `mysql:` or `mariadb:` (one driver; MariaDB is tested, MySQL 8
    /// expected to work).
    MySql,
}

impl DatabaseKind {
    /// The database's name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MariaDB/MySQL",
        }
    }
}

/// `database_url`, typed by its scheme. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The driver.
    pub kind: DatabaseKind,
    /// The URL as the driver takes it (`mariadb:` rewritten to `mysql:`).
    pub url: String,
}

impl DatabaseUrl {
    /// The URL with any password replaced by `***`, for display.
    pub fn masked(&self) -> String {
        match self.kind {
            DatabaseKind::Sqlite => self.url.clone(),
            _ => mask_url(&self.url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("kind", &self.kind)
            .field("url", &self.masked())
            .finish()
    }
}

/// `session_store_url`: a `redis://` URL. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionStoreUrl {
    /// The URL as configured.
    pub url: String,
}

impl SessionStoreUrl {
    /// The URL with any password replaced by `***`, for display.
    pub fn masked(&self) -> String {
        mask_url(&self.url)
    }
}

impl fmt::Debug for SessionStoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStoreUrl")
            .field("url", &self.masked())
            .finish()
    }
}

/// How a connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain text (a local relay).
    Plain,
    /// `smtp://…?tls=required`: STARTTLS, refused if the server lacks it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// `smtp_url`: where mail is submitted. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// The URL as lettre takes it (credentials and `tls=` included).
    pub url: String,
    /// The host, for messages.
    pub host: String,
    /// Plain, STARTTLS or implicit TLS.
    pub security: SmtpSecurity,
}

impl SmtpUrl {
    /// The URL with any password replaced by `***`, for display.
    pub fn masked(&self) -> String {
        mask_url(&self.url)
    }

    /// Whether mail and credentials would cross a network in clear text: a
    /// plain `smtp://` URL to a host other than the loopback.
    pub fn is_plain_remote(&self) -> bool {
        if self.security != SmtpSecurity::Plain {
            return false;
        }
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        !(host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("url", &self.masked())
            .field("security", &self.security)
            .finish()
    }
}

/// A URL with its password, and query parameters that carry one, replaced
/// by `***`.
fn mask_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "[unparsable URL]".to_owned();
    };
    if url.password().is_some() && url.set_password(Some("***")).is_err() {
        return "[URL with a password]".to_owned();
    }
    let secret_param = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("password") || k == "pass" || k == "passwd"
    };
    if url.query_pairs().any(|(k, _)| secret_param(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Secret key material. `Debug` shows which keys exist, never their bytes.
pub struct Secrets {
    /// Seals signing keys, TOTP secrets and other data at rest (AES-256-GCM).
    pub master_key: Zeroizing<[u8; 32]>,
    /// Refresh-token keys by version: the current `refresh_key_version` first
    /// (the highest, so it is the one `RefreshKeys` mints with), then the
    /// verify-only previous versions.
    pub refresh_keys: Vec<(u8, SecretBox<[u8]>)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u8> = self.refresh_keys.iter().map(|(v, _)| *v).collect();
        f.debug_struct("Secrets")
            .field("master_key", &"[redacted]")
            .field("refresh_key_versions", &versions)
            .finish()
    }
}

/// Validated settings: defaults applied, every value typed and checked.
/// Durations are in seconds.
#[derive(Debug)]
#[allow(missing_docs)] // each field is documented in README.md (Configuration)
pub struct Config {
    pub mode: Mode,
    pub bind: SocketAddr,
    /// Scheme, host and port only; path `/`.
    pub public_url: Url,
    /// Deduplicated; each is a tuple origin (`http`/`https`).
    pub allowed_origins: Vec<Origin>,
    /// Accounts, and sessions unless `session_store_url` is set.
    pub database_url: DatabaseUrl,
    /// Sessions in Redis instead of `database_url`.
    pub session_store_url: Option<SessionStoreUrl>,
    /// Prefix of every Redis key.
    pub session_store_prefix: String,
    /// Production accepts a Redis without AOF.
    pub allow_volatile_session_store: bool,
    /// Pool size of the SQL store.
    pub database_max_connections: u32,
    /// Seconds a store call waits for a pooled connection.
    pub database_acquire_timeout: i64,
    /// Seconds one statement (or Redis command) may run.
    pub database_statement_timeout: i64,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: i64,
    /// 0 = no idle expiry.
    pub refresh_ttl: i64,
    pub session_max_age: i64,
    pub refresh_grace: i64,
    pub late_retry_window: i64,
    pub leeway: i64,
    pub revoked_session_visibility: i64,
    pub request_timeout: i64,
    pub key_reload_interval: i64,
    pub grace_max_answers: u32,
    pub reuse_policy: ReusePolicy,
    /// 0 = unlimited.
    pub max_sessions_per_user: u32,
    pub session_limit_policy: SessionLimitPolicy,
    pub require_verified_email: bool,
    /// Non-empty, deduplicated, in the configured order.
    pub allowed_transports: Vec<Transport>,
    pub signing_alg: SigningAlg,
    pub hash_params: HashParams,
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// Lower-case ASCII domain without a leading dot.
    pub cookie_domain: Option<String>,
    pub logout_clear_site_data: bool,
    pub trusted_proxies: Vec<IpNet>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub log_pii: bool,
    /// `None` = metrics disabled.
    pub metrics_bind: Option<SocketAddr>,
    pub dev_secrets_file: PathBuf,
    pub refresh_key_version: u8,
    pub secrets: Secrets,
    pub binding: BindingMode,
    pub binding_prefixes: IpPrefixes,
    /// Keys derived from `binding_key` (or, when it is unset and `ip_ua` is
    /// not used, from the master key); `None` when binding is off.
    pub binding_keys: Option<BindingKeys>,
    /// SHA-256 of each admin API key (two during a key rotation).
    pub admin_api_keys: Vec<[u8; 32]>,
    /// SHA-256 of each service API key (revocation feed).
    pub service_api_keys: Vec<[u8; 32]>,
    /// Seconds between heartbeats on the revocation feed.
    pub revocation_feed_heartbeat: i64,
    /// `None` when `rate_limits = false`.
    pub rate_limits: Option<crate::rate_limit::Limits>,
    /// Seconds audit rows are kept.
    pub audit_retention: i64,
    /// Seconds between retention purges; 0 = never (run `sesame purge`).
    pub purge_interval: i64,
    // Mail and the account lifecycle.
    /// Where mail goes; `None`: the log and the dev outbox in development
    /// mode, nowhere (mail disabled) in production.
    pub smtp_url: Option<SmtpUrl>,
    /// The `From` of every mail.
    pub mail_from: lettre::message::Mailbox,
    /// Seconds one delivery attempt (connect, TLS, SMTP dialogue) may take.
    pub smtp_timeout: i64,
    /// Mails waiting for delivery (or for a retry) at most; more are dropped.
    pub mail_queue_size: usize,
    /// Delivery attempts per mail, the first included.
    pub mail_max_attempts: u32,
    /// Seconds an email-verification link stays valid.
    pub email_verification_ttl: i64,
    /// Seconds a password-reset link stays valid.
    pub password_reset_ttl: i64,
    /// Seconds after a password or factor check during which sensitive
    /// changes need no new check.
    pub max_auth_age: i64,
    /// Seconds a login may wait for its second factor.
    pub mfa_challenge_ttl: i64,
    pub notify_password_changed: bool,
    pub notify_mfa_changed: bool,
    pub notify_new_device: bool,
    pub notify_reuse_detected: bool,
}

impl Config {
    /// Whether `mode = "production"`.
    pub fn is_production(&self) -> bool {
        self.mode == Mode::Production
    }

    /// The origin of `public_url`, which CSRF checks always accept.
    pub fn public_origin(&self) -> Origin {
        self.public_url.origin()
    }

    /// `request_timeout` as a [`Duration`].
    pub fn request_timeout_duration(&self) -> Duration {
        Duration::from_secs(self.request_timeout.unsigned_abs())
    }

    /// `database_acquire_timeout` as a [`Duration`].
    pub fn database_acquire_duration(&self) -> Duration {
        Duration::from_secs(self.database_acquire_timeout.unsigned_abs())
    }

    /// `database_statement_timeout` as a [`Duration`].
    pub fn database_statement_duration(&self) -> Duration {
        Duration::from_secs(self.database_statement_timeout.unsigned_abs())
    }

    /// `key_reload_interval` as a [`Duration`].
    pub fn key_reload_duration(&self) -> Duration {
        Duration::from_secs(self.key_reload_interval.unsigned_abs())
    }

    /// `smtp_timeout` as a [`Duration`].
    pub fn smtp_timeout_duration(&self) -> Duration {
        Duration::from_secs(self.smtp_timeout.unsigned_abs())
    }

    /// The rotation knobs for the engine.
    pub fn rotation_policy(&self) -> RotationPolicy {
        RotationPolicy {
            grace: self.refresh_grace,
            late_retry: self.late_retry_window,
            grace_max_answers: self.grace_max_answers,
            idle_ttl: (self.refresh_ttl != 0).then_some(self.refresh_ttl),
            reuse_revokes_user: self.reuse_policy == ReusePolicy::User,
        }
    }

    /// The per-user session cap, or `None` when unlimited.
    pub fn session_cap(&self) -> Option<SessionCap> {
        (self.max_sessions_per_user != 0).then_some(SessionCap {
            max: self.max_sessions_per_user,
            evict_oldest: self.session_limit_policy == SessionLimitPolicy::EvictOldest,
        })
    }

    /// The name authenticator apps show: "Sesame (host)".
    pub fn totp_issuer(&self) -> String {
        match self.public_url.host_str() {
            Some(h) => format!("Sesame ({h})"),
            None => "Sesame".into(),
        }
    }

    /// The engine's settings.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl,
            leeway: self.leeway,
            session_max_age: self.session_max_age,
            rotation: self.rotation_policy(),
            session_cap: self.session_cap(),
            require_verified_email: self.require_verified_email,
            hash_params: self.hash_params,
            signing_alg: self.signing_alg,
            revoked_session_visibility: self.revoked_session_visibility,
            log_pii: self.log_pii,
            binding: sesame_core::engine::BindingConfig {
                mode: self.binding,
                keys: self.binding_keys.clone(),
                prefixes: self.binding_prefixes,
            },
            email_verification_ttl: self.email_verification_ttl,
            password_reset_ttl: self.password_reset_ttl,
            max_auth_age: self.max_auth_age,
            mfa_challenge_ttl: self.mfa_challenge_ttl,
            totp_issuer: self.totp_issuer(),
        }
    }
}

/// [`load_raw`] then [`validate`].
pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    validate(load_raw(file, env)?)
}

/// Applies defaults, parses and checks every setting, and resolves secrets.
///
/// In development mode this may read or create `dev_secrets_file`; nothing
/// else touches the file system except reading `*_file` secrets.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mode = match raw.mode.as_deref() {
        None | Some("development") => Mode::Development,
        Some("production") => Mode::Production,
        Some(other) => {
            return err(
                "mode",
                format!("must be \"development\" or \"production\", not {other:?}"),
            );
        }
    };
    let production = mode == Mode::Production;

    let bind = parse_socket_addr("bind", raw.bind.as_deref().unwrap_or("127.0.0.1:8080"))?;
    if !production && !bind.ip().is_loopback() {
        return err(
            "bind",
            format!(
                "development mode refuses the non-loopback address {bind}: \
                 set mode = \"production\" (with public_url and secrets) or bind to 127.0.0.1"
            ),
        );
    }

    let public_url = parse_public_url(raw.public_url.as_deref(), production, bind)?;

    let allowed_transports = parse_transports(raw.allowed_transports.as_deref())?;
    let allowed_origins = parse_origins(
        raw.allowed_origins.as_deref().unwrap_or_default(),
        &public_url,
        &allowed_transports,
    )?;

    // Storage.
    let database_url = parse_database_url(sourced(
        "database_url",
        raw.database_url,
        raw.database_url_file,
    )?)?;
    let session_store_url = sourced(
        "session_store_url",
        raw.session_store_url,
        raw.session_store_url_file,
    )?
    .map(parse_session_store_url)
    .transpose()?;
    let session_store_prefix = parse_key_prefix(raw.session_store_prefix)?;
    let allow_volatile_session_store = raw.allow_volatile_session_store.unwrap_or(false);
    let database_max_connections: u32 = int(
        "database_max_connections",
        raw.database_max_connections,
        16,
        1,
        1000,
    )?;
    let database_acquire_timeout = duration(
        "database_acquire_timeout",
        raw.database_acquire_timeout.as_deref(),
        5,
    )?;
    in_range(
        "database_acquire_timeout",
        database_acquire_timeout,
        1,
        3600,
    )?;
    let database_statement_timeout = duration(
        "database_statement_timeout",
        raw.database_statement_timeout.as_deref(),
        5,
    )?;
    in_range(
        "database_statement_timeout",
        database_statement_timeout,
        1,
        3600,
    )?;

    let issuer = match raw.issuer {
        None => public_url.origin().ascii_serialization(),
        Some(s) if s.trim().is_empty() => return err("issuer", "must not be empty"),
        Some(s) => s,
    };
    let audience = match raw.audience {
        None => "sesame".to_owned(),
        Some(s) if s.trim().is_empty() => return err("audience", "must not be empty"),
        Some(s) => s,
    };

    // Durations.
    let access_ttl = duration("access_ttl", raw.access_ttl.as_deref(), 600)?;
    in_range("access_ttl", access_ttl, 60, 3600)?;
    let refresh_ttl = duration("refresh_ttl", raw.refresh_ttl.as_deref(), 7 * 86_400)?;
    let session_max_age = duration(
        "session_max_age",
        raw.session_max_age.as_deref(),
        30 * 86_400,
    )?;
    if session_max_age < access_ttl {
        return err(
            "session_max_age",
            format!("must be at least access_ttl ({})", fmt_duration(access_ttl)),
        );
    }
    if refresh_ttl != 0 && session_max_age < refresh_ttl {
        return err(
            "session_max_age",
            format!(
                "must be at least refresh_ttl ({}): the absolute lifetime cannot be shorter than the idle one",
                fmt_duration(refresh_ttl)
            ),
        );
    }
    let refresh_grace = duration("refresh_grace", raw.refresh_grace.as_deref(), 30)?;
    in_range("refresh_grace", refresh_grace, 0, 300)?;
    let late_retry_window = duration(
        "late_retry_window",
        raw.late_retry_window.as_deref(),
        2 * refresh_grace,
    )?;
    if late_retry_window < refresh_grace {
        return err(
            "late_retry_window",
            format!(
                "must be at least refresh_grace ({})",
                fmt_duration(refresh_grace)
            ),
        );
    }
    let leeway = duration("leeway", raw.leeway.as_deref(), 60)?;
    in_range("leeway", leeway, 0, 60)?;
    let revoked_session_visibility = duration(
        "revoked_session_visibility",
        raw.revoked_session_visibility.as_deref(),
        7 * 86_400,
    )?;
    let request_timeout = duration("request_timeout", raw.request_timeout.as_deref(), 10)?;
    in_range("request_timeout", request_timeout, 1, MAX_DURATION)?;
    let key_reload_interval = duration(
        "key_reload_interval",
        raw.key_reload_interval.as_deref(),
        30,
    )?;
    in_range("key_reload_interval", key_reload_interval, 1, MAX_DURATION)?;

    // Sessions and rotation.
    let grace_max_answers = int("grace_max_answers", raw.grace_max_answers, 5, 1, 100)?;
    let reuse_policy = match raw.reuse_policy.as_deref() {
        None | Some("session") => ReusePolicy::Session,
        Some("user") => ReusePolicy::User,
        Some(other) => {
            return err(
                "reuse_policy",
                format!("must be \"session\" or \"user\", not {other:?}"),
            );
        }
    };
    let max_sessions_per_user = int(
        "max_sessions_per_user",
        raw.max_sessions_per_user,
        0,
        0,
        u32::MAX,
    )?;
    let session_limit_policy = match raw.session_limit_policy.as_deref() {
        None | Some("evict_oldest") => SessionLimitPolicy::EvictOldest,
        Some("refuse") => SessionLimitPolicy::Refuse,
        Some(other) => {
            return err(
                "session_limit_policy",
                format!("must be \"evict_oldest\" or \"refuse\", not {other:?}"),
            );
        }
    };
    let require_verified_email = raw.require_verified_email.unwrap_or(false);

    let signing_alg = match raw.signing_alg.as_deref() {
        None => SigningAlg::EdDSA,
        Some(s) => SigningAlg::parse(s).ok_or_else(|| {
            ConfigError::new(
                "signing_alg",
                format!("must be \"EdDSA\", \"ES256\" or \"HS256\" (exact spelling), not {s:?}"),
            )
        })?,
    };

    // Password hashing.
    let hash_params = parse_hash_params(
        raw.argon2_memory_kib,
        raw.argon2_iterations,
        raw.argon2_parallelism,
        production,
    )?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let hash_workers = int("hash_workers", raw.hash_workers, cores, 1, cores * 2)?;
    let hash_queue = int("hash_queue", raw.hash_queue, 32, 0, 100_000)?;

    // HTTP details.
    let cookie_domain = raw
        .cookie_domain
        .as_deref()
        .map(|d| parse_cookie_domain(d, &public_url))
        .transpose()?;
    let logout_clear_site_data = raw.logout_clear_site_data.unwrap_or(false);
    let trusted_proxies = raw
        .trusted_proxies
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| parse_ip_net(s))
        .collect::<Result<Vec<_>, _>>()?;

    // Logs and metrics.
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return err(
                "log_format",
                format!("must be \"text\" or \"json\", not {other:?}"),
            );
        }
    };
    let log_level = match raw.log_level {
        None => "info".to_owned(),
        Some(s) if s.trim().is_empty() => return err("log_level", "must not be empty"),
        Some(s) => s,
    };
    let log_pii = raw.log_pii.unwrap_or(false);
    let metrics_bind = match raw.metrics_bind.as_deref() {
        Some("none") => None,
        other => Some(parse_socket_addr(
            "metrics_bind",
            other.unwrap_or("127.0.0.1:9090"),
        )?),
    };
    if metrics_bind == Some(bind) {
        return err(
            "metrics_bind",
            format!("must differ from bind ({bind}); set another port or \"none\""),
        );
    }

    // Secrets.
    let dev_secrets_file = PathBuf::from(
        raw.dev_secrets_file
            .as_deref()
            .unwrap_or("sesame-dev.secrets"),
    );
    let refresh_key_version: u8 = int("refresh_key_version", raw.refresh_key_version, 1, 1, 255)?;
    let secrets = resolve_secrets(
        SecretInputs {
            master_key: raw.master_key,
            master_key_file: raw.master_key_file,
            refresh_key: raw.refresh_key,
            refresh_key_file: raw.refresh_key_file,
            refresh_keys_previous: raw.refresh_keys_previous,
            refresh_keys_previous_file: raw.refresh_keys_previous_file,
        },
        refresh_key_version,
        production,
        &dev_secrets_file,
    )?;

    // Binding and API keys.
    let binding = match raw.binding.as_deref() {
        None => BindingMode::None,
        Some(b) => BindingMode::parse(b).ok_or_else(|| {
            ConfigError::new(
                "binding",
                format!("must be \"none\", \"cookie\" or \"ip_ua\", not {b:?}"),
            )
        })?,
    };
    let binding_prefixes = IpPrefixes {
        v4: int("binding_ipv4_prefix", raw.binding_ipv4_prefix, 24, 8, 32)?,
        v6: int("binding_ipv6_prefix", raw.binding_ipv6_prefix, 64, 16, 128)?,
    };
    let binding_key = sourced("binding_key", raw.binding_key, raw.binding_key_file)?;
    let binding_keys = match (binding, binding_key) {
        (BindingMode::None, _) => None,
        (_, Some(key)) => {
            let bytes = decode_b64(&key)?;
            if bytes.len() < 32 {
                return err(
                    &key.setting,
                    format!(
                        "must decode to at least 32 bytes, not {}; {GENERATE_KEY_HINT}",
                        bytes.len()
                    ),
                );
            }
            Some(BindingKeys::derive(&bytes))
        }
        // Resource servers checking ip_ua need the key, so production wants
        // it configured (and shared with them); cookie binding needs no key
        // outside Sesame and derives its own from the master key.
        (BindingMode::IpUa, None) if production => return Err(missing("binding_key")),
        (_, None) => Some(BindingKeys::derive(&sesame_core::crypto::hkdf32(
            &secrets.master_key[..],
            b"sesame/binding_key",
        ))),
    };
    let admin_api_keys = api_key_hashes("admin_api_keys", raw.admin_api_keys)?;
    let service_api_keys = api_key_hashes("service_api_keys", raw.service_api_keys)?;
    let revocation_feed_heartbeat = duration(
        "revocation_feed_heartbeat",
        raw.revocation_feed_heartbeat.as_deref(),
        5,
    )?;
    in_range(
        "revocation_feed_heartbeat",
        revocation_feed_heartbeat,
        1,
        60,
    )?;
    let audit_retention = duration(
        "audit_retention",
        raw.audit_retention.as_deref(),
        90 * 86_400,
    )?;
    in_range("audit_retention", audit_retention, 86_400, MAX_DURATION)?;
    let purge_interval = duration("purge_interval", raw.purge_interval.as_deref(), 3600)?;
    if purge_interval != 0 {
        in_range("purge_interval", purge_interval, 60, 7 * 86_400)?;
    }
    let rate_limits = if raw.rate_limits.unwrap_or(true) {
        let limit = |key: &str, raw: Option<&str>, default: &str| {
            crate::rate_limit::Limit::parse(raw.unwrap_or(default), |d| {
                duration(key, Some(d), 0).ok()
            })
            .ok_or_else(|| {
                ConfigError::new(
                    key,
                    format!(
                        "must be N/period with N ≥ 1 and a period of at least 1s, like \"{default}\""
                    ),
                )
            })
        };
        let delay_max = duration("login_delay_max", raw.login_delay_max.as_deref(), 60)?;
        in_range("login_delay_max", delay_max, 1, 3600)?;
        Some(crate::rate_limit::Limits {
            login_ip: limit(
                "rate_limit_login_ip",
                raw.rate_limit_login_ip.as_deref(),
                "30/1m",
            )?,
            login_account: limit(
                "rate_limit_login_account",
                raw.rate_limit_login_account.as_deref(),
                "10/1m",
            )?,
            register_ip: limit(
                "rate_limit_register_ip",
                raw.rate_limit_register_ip.as_deref(),
                "20/1h",
            )?,
            refresh_ip: limit(
                "rate_limit_refresh_ip",
                raw.rate_limit_refresh_ip.as_deref(),
                "600/1m",
            )?,
            refresh_session: limit(
                "rate_limit_refresh_session",
                raw.rate_limit_refresh_session.as_deref(),
                "30/1m",
            )?,
            forgot_ip: limit(
                "rate_limit_forgot_ip",
                raw.rate_limit_forgot_ip.as_deref(),
                "20/1h",
            )?,
            forgot_account: limit(
                "rate_limit_forgot_account",
                raw.rate_limit_forgot_account.as_deref(),
                "5/1h",
            )?,
            verify_ip: limit(
                "rate_limit_verify_ip",
                raw.rate_limit_verify_ip.as_deref(),
                "30/1m",
            )?,
            mfa_account: limit(
                "rate_limit_mfa_account",
                raw.rate_limit_mfa_account.as_deref(),
                "5/1m",
            )?,
            delay_after: int("login_delay_after", raw.login_delay_after, 5, 1, 1000)?,
            delay_max: Duration::from_secs(delay_max.unsigned_abs()),
        })
    } else {
        None
    };

    // Mail and the account lifecycle.
    let smtp_url = sourced("smtp_url", raw.smtp_url, raw.smtp_url_file)?
        .map(parse_smtp_url)
        .transpose()?;
    if production && smtp_url.is_none() && require_verified_email {
        return err(
            "smtp_url",
            "is required in production when require_verified_email = true: without mail no \
             one could verify an address and every login would be refused; configure SMTP, \
             or set require_verified_email = false",
        );
    }
    let mail_from = parse_mail_from(raw.mail_from.as_deref(), &public_url)?;
    let smtp_timeout = duration("smtp_timeout", raw.smtp_timeout.as_deref(), 10)?;
    in_range("smtp_timeout", smtp_timeout, 1, 300)?;
    let mail_queue_size = int("mail_queue_size", raw.mail_queue_size, 1000, 1, 1_000_000)?;
    let mail_max_attempts = int("mail_max_attempts", raw.mail_max_attempts, 5, 1, 20)?;
    let email_verification_ttl = duration(
        "email_verification_ttl",
        raw.email_verification_ttl.as_deref(),
        86_400,
    )?;
    in_range(
        "email_verification_ttl",
        email_verification_ttl,
        300,
        30 * 86_400,
    )?;
    let password_reset_ttl = duration(
        "password_reset_ttl",
        raw.password_reset_ttl.as_deref(),
        1800,
    )?;
    in_range("password_reset_ttl", password_reset_ttl, 300, 86_400)?;
    let max_auth_age = duration("max_auth_age", raw.max_auth_age.as_deref(), 300)?;
    in_range("max_auth_age", max_auth_age, 30, 86_400)?;
    let mfa_challenge_ttl = duration("mfa_challenge_ttl", raw.mfa_challenge_ttl.as_deref(), 300)?;
    in_range("mfa_challenge_ttl", mfa_challenge_ttl, 30, 3600)?;
    let notify_password_changed = raw.notify_password_changed.unwrap_or(true);
    let notify_mfa_changed = raw.notify_mfa_changed.unwrap_or(true);
    let notify_new_device = raw.notify_new_device.unwrap_or(true);
    let notify_reuse_detected = raw.notify_reuse_detected.unwrap_or(true);

    Ok(Config {
        mode,
        bind,
        public_url,
        allowed_origins,
        database_url,
        session_store_url,
        session_store_prefix,
        allow_volatile_session_store,
        database_max_connections,
        database_acquire_timeout,
        database_statement_timeout,
        issuer,
        audience,
        access_ttl,
        refresh_ttl,
        session_max_age,
        refresh_grace,
        late_retry_window,
        leeway,
        revoked_session_visibility,
        request_timeout,
        key_reload_interval,
        grace_max_answers,
        reuse_policy,
        max_sessions_per_user,
        session_limit_policy,
        require_verified_email,
        allowed_transports,
        signing_alg,
        hash_params,
        hash_workers,
        hash_queue,
        cookie_domain,
        logout_clear_site_data,
        trusted_proxies,
        log_format,
        log_level,
        log_pii,
        metrics_bind,
        dev_secrets_file,
        refresh_key_version,
        secrets,
        binding,
        binding_prefixes,
        binding_keys,
        admin_api_keys,
        service_api_keys,
        revocation_feed_heartbeat,
        rate_limits,
        audit_retention,
        purge_interval,
        smtp_url,
        mail_from,
        smtp_timeout,
        mail_queue_size,
        mail_max_attempts,
        email_verification_ttl,
        password_reset_ttl,
        max_auth_age,
        mfa_challenge_ttl,
        notify_password_changed,
        notify_mfa_changed,
        notify_new_device,
        notify_reuse_detected,
    })
}

/// API keys are configured by their SHA-256 (`sha256:` + base64url, as
/// `sesame api-key new` prints it), so the configuration holds nothing that
/// opens the API.
fn api_key_hashes(key: &str, raw: Option<Vec<String>>) -> Result<Vec<[u8; 32]>, ConfigError> {
    raw.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .trim()
                .strip_prefix("sha256:")
                .and_then(sesame_core::crypto::b64_decode)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ConfigError::new(
                        key,
                        format!(
                            "entry {} must be sha256:<base64url of 32 bytes>, as printed by `sesame api-key new`",
                            i + 1
                        ),
                    )
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Scalars

/// Parses a duration: a whole number of seconds (`"90"`), or a whole number
/// with one unit `s`, `m`, `h` or `d` (`"10m"`). Returns seconds, at most
/// 36500 days. The error completes a sentence about the setting.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "must be a whole number with a unit s, m, h or d (like \"10m\"), \
             or a plain number of seconds; {s:?} is neither"
        )
    };
    let (digits, multiplier) = match s.as_bytes().last() {
        None => return Err("must not be empty; write a duration like \"10m\"".to_owned()),
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3_600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        Some(_) => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&n| n <= MAX_DURATION)
        .ok_or_else(|| format!("must be at most {}", fmt_duration(MAX_DURATION)))
}

/// Seconds in the largest unit that divides them exactly, for messages.
fn fmt_duration(secs: i64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn duration(key: &str, raw: Option<&str>, default: i64) -> Result<i64, ConfigError> {
    raw.map_or(Ok(default), |s| {
        parse_duration(s).map_err(|m| ConfigError::new(key, m))
    })
}

fn in_range(key: &str, secs: i64, min: i64, max: i64) -> Result<(), ConfigError> {
    if (min..=max).contains(&secs) {
        Ok(())
    } else {
        err(
            key,
            format!(
                "must be between {} and {}, not {}",
                fmt_duration(min),
                fmt_duration(max),
                fmt_duration(secs)
            ),
        )
    }
}

/// An integer setting in `min..=max`, converted to its typed width.
fn int<T>(key: &str, raw: Option<i64>, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: TryFrom<i64> + PartialOrd + fmt::Display + Copy,
{
    let Some(v) = raw else {
        return Ok(default);
    };
    match T::try_from(v) {
        Ok(t) if t >= min && t <= max => Ok(t),
        Ok(t) if t < min => err(key, format!("must be at least {min}, not {v}")),
        Ok(_) => err(key, format!("must be at most {max}, not {v}")),
        // Outside the type's range: report whichever bound it is past.
        Err(_) if v < 0 => err(key, format!("must be at least {min}, not {v}")),
        Err(_) => err(key, format!("must be at most {max}, not {v}")),
    }
}

fn parse_socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse().map_err(|_| {
        ConfigError::new(
            key,
            format!("must be an IP address and port like 127.0.0.1:8080 or [::1]:8080, not {s:?}"),
        )
    })
}

fn parse_ip_net(s: &str) -> Result<IpNet, ConfigError> {
    let s = s.trim();
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            ConfigError::new(
                "trusted_proxies",
                format!("{s:?} is not an IP address or CIDR network (like 10.0.0.0/8 or fd00::/8)"),
            )
        })
}

fn parse_database_url(src: Option<Sourced>) -> Result<DatabaseUrl, ConfigError> {
    let Some(src) = src else {
        return Ok(DatabaseUrl {
            kind: DatabaseKind::Sqlite,
            url: "sqlite://sesame.db".to_owned(),
        });
    };
    let setting = src.setting.as_str();
    let text = src.value.expose_secret().trim();
    // The URL itself is never echoed: it may carry a password.
    let scheme = text
        .split_once(':')
        .map_or_else(String::new, |(s, _)| s.to_ascii_lowercase());
    let kind = match scheme.as_str() {
        "sqlite" => {
            return Ok(DatabaseUrl {
                kind: DatabaseKind::Sqlite,
                url: text.to_owned(),
            });
        }
        "postgres" | "postgresql" => DatabaseKind::Postgres,
        "mysql" | "mariadb" => DatabaseKind::MySql,
        _ => {
            return err(
                setting,
                "must be a database URL: sqlite://sesame.db, \
                 postgres://user:password@host:5432/database or \
                 mysql://user:password@host:3306/database (mariadb:// is accepted too)",
            );
        }
    };
    Url::parse(text)
        .map_err(|e| ConfigError::new(setting, format!("is not a valid {scheme}: URL ({e})")))?;
    // MariaDB speaks the MySQL protocol: one driver, one scheme.
    let url = if scheme == "mariadb" {
        format!("mysql{}", &text[scheme.len()..])
    } else {
        text.to_owned()
    };
    Ok(DatabaseUrl { kind, url })
}

fn parse_session_store_url(src: Sourced) -> Result<SessionStoreUrl, ConfigError> {
    let setting = src.setting.as_str();
    let text = src.value.expose_secret().trim();
    let scheme = text
        .split_once(':')
        .map_or_else(String::new, |(s, _)| s.to_ascii_lowercase());
    match scheme.as_str() {
        "redis" => {}
        "rediss" => {
            return err(
                setting,
                "rediss:// (Redis over TLS) is not supported in this build; use redis:// \
                 on a private network or through a TLS tunnel",
            );
        }
        _ => {
            return err(
                setting,
                "must be a Redis URL like redis://127.0.0.1:6379 or \
                 redis://:password@host:6379/0; unset it to keep sessions in database_url",
            );
        }
    }
    let url = Url::parse(text)
        .map_err(|e| ConfigError::new(setting, format!("is not a valid redis: URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return err(setting, "has no host; write redis://host:6379");
    }
    Ok(SessionStoreUrl {
        url: text.to_owned(),
    })
}

fn parse_key_prefix(raw: Option<String>) -> Result<String, ConfigError> {
    let Some(prefix) = raw else {
        return Ok("sesame:".to_owned());
    };
    if prefix.is_empty() || prefix.len() > 64 {
        return err(
            "session_store_prefix",
            "must be 1 to 64 characters, like \"sesame:\"",
        );
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(
            "session_store_prefix",
            format!("must not contain spaces or control characters, not {prefix:?}"),
        );
    }
    Ok(prefix)
}

fn parse_transports(raw: Option<&[String]>) -> Result<Vec<Transport>, ConfigError> {
    let Some(list) = raw else {
        return Ok(vec![
            Transport::Hybrid,
            Transport::Cookie,
            Transport::Bearer,
        ]);
    };
    let mut out = Vec::new();
    for s in list {
        let t = Transport::parse(s.trim()).ok_or_else(|| {
            ConfigError::new(
                "allowed_transports",
                format!("{s:?} is not a transport; use \"hybrid\", \"cookie\" or \"bearer\""),
            )
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return err(
            "allowed_transports",
            "must name at least one of \"hybrid\", \"cookie\", \"bearer\"",
        );
    }
    Ok(out)
}

fn parse_hash_params(
    memory_kib: Option<i64>,
    iterations: Option<i64>,
    parallelism: Option<i64>,
    production: bool,
) -> Result<HashParams, ConfigError> {
    let owasp = HashParams::OWASP;
    // argon2's own limits: p in 1..2^24, m ≥ 8·p KiB, t ≥ 1. Below 1 MiB a
    // hash is nearly free even for tests' purposes.
    let p: u32 = int("argon2_parallelism", parallelism, owasp.p, 1, 0xFF_FFFF)?;
    let t: u32 = int("argon2_iterations", iterations, owasp.t, 1, u32::MAX)?;
    let m: u32 = int(
        "argon2_memory_kib",
        memory_kib,
        owasp.m_kib,
        1024.max(8 * p),
        u32::MAX,
    )?;
    let params = HashParams { m_kib: m, t, p };
    if production && !params.meets_owasp() {
        // Every OWASP setting with t ≤ 5 needs less than 47104 KiB only at a
        // higher t, so too little memory for the chosen t is always the cause.
        return err(
            "argon2_memory_kib",
            format!(
                "{m} KiB with argon2_iterations = {t} is below OWASP's minimum, which production \
                 mode refuses; use 19456 with t = 2 (or 47104/1, 12288/3, 9216/4, 7168/5)"
            ),
        );
    }
    Ok(params)
}

// ---------------------------------------------------------------------------
// URLs, origins and sites

fn parse_smtp_url(src: Sourced) -> Result<SmtpUrl, ConfigError> {
    let setting = src.setting.as_str();
    let text = src.value.expose_secret().trim();
    let hint = "must be an SMTP URL: smtp://host:25 (plain, for a local relay), \
                smtp://user:password@host:587?tls=required (STARTTLS) or \
                smtps://user:password@host:465 (implicit TLS)";
    // The URL itself is never echoed: it may carry a password.
    let url = Url::parse(text).map_err(|_| ConfigError::new(setting, hint))?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let security = match (url.scheme(), tls.as_deref()) {
        ("smtp", None) => SmtpSecurity::Plain,
        ("smtp", Some("required")) => SmtpSecurity::StartTls,
        ("smtps", None | Some("required" | "wrapper")) => SmtpSecurity::Implicit,
        ("smtp", Some("opportunistic")) => {
            return err(
                setting,
                "tls=opportunistic falls back to clear text when an attacker strips STARTTLS; \
                 use tls=required, smtps://, or plain smtp:// to a local relay",
            );
        }
        _ => return err(setting, hint),
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => return err(setting, "has no host; write smtp://host:25"),
    };
    // Fail now, not at the first mail: lettre parses the URL the same way.
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(text)
        .map_err(|_| ConfigError::new(setting, hint))?;
    Ok(SmtpUrl {
        url: text.to_owned(),
        host,
        security,
    })
}

/// `mail_from`: an address, or `Name <address>`; by default
/// `sesame@<public_url host>` (`sesame@localhost` when the host is an IP).
fn parse_mail_from(
    raw: Option<&str>,
    public_url: &Url,
) -> Result<lettre::message::Mailbox, ConfigError> {
    let text = match raw {
        Some(s) => s.trim().to_owned(),
        None => match public_url.host() {
            Some(Host::Domain(d)) => format!("Sesame <sesame@{d}>"),
            _ => "Sesame <sesame@localhost>".to_owned(),
        },
    };
    text.parse().map_err(|_| {
        ConfigError::new(
            "mail_from",
            format!(
                "must be an address like sesame@example.com or \"Sesame <sesame@example.com>\", \
                 not {text:?}"
            ),
        )
    })
}

fn parse_public_url(
    raw: Option<&str>,
    production: bool,
    bind: SocketAddr,
) -> Result<Url, ConfigError> {
    let text = match raw {
        Some(s) => s.trim().to_owned(),
        None if production => {
            return err(
                "public_url",
                "is required in production mode: the https:// address browsers use to reach \
                 Sesame, like https://auth.example.com",
            );
        }
        None => format!("http://{bind}"),
    };
    let url = Url::parse(&text)
        .map_err(|e| ConfigError::new("public_url", format!("is not a valid URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if !production => {}
        "http" => {
            return err(
                "public_url",
                "must start with https:// in production mode (cookies are Secure and tokens \
                 must not cross networks in clear text)",
            );
        }
        other => {
            return err(
                "public_url",
                format!("must be an http(s) URL, not {other}:"),
            );
        }
    }
    check_origin_shaped(&url).map_err(|m| ConfigError::new("public_url", m))?;
    Ok(url)
}

/// An origin-like URL: a host, and nothing beyond scheme, host and port.
fn check_origin_shaped(url: &Url) -> Result<(), String> {
    if url.host().is_none() {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user:password@".to_owned());
    }
    if url.path() != "/" {
        return Err(format!(
            "must not have a path (found {:?}): Sesame serves /auth/… at the root of its origin",
            url.path()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(())
}

fn parse_origins(
    raw: &[String],
    public_url: &Url,
    transports: &[Transport],
) -> Result<Vec<Origin>, ConfigError> {
    let cookies = transports.iter().any(|t| t.refresh_in_cookie());
    let public_origin = public_url.origin();
    let mut out: Vec<Origin> = Vec::new();
    for s in raw {
        let s = s.trim();
        if s == "*" {
            return err(
                "allowed_origins",
                "\"*\" is refused: wildcard CORS with credentials would let any site act as \
                 the signed-in user; list each origin",
            );
        }
        let origin = parse_origin(s).map_err(|m| {
            ConfigError::new("allowed_origins", format!("{s:?} is not an origin: {m}"))
        })?;
        if cookies && !same_site(&origin, &public_origin) {
            return err(
                "allowed_origins",
                format!(
                    "{s} is not on the same site as public_url ({}), so browsers would not send \
                     the refresh cookie from it; cross-site deployments must use \
                     allowed_transports = [\"bearer\"]",
                    public_origin.ascii_serialization()
                ),
            );
        }
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}

fn parse_origin(s: &str) -> Result<Origin, String> {
    let url = Url::parse(s).map_err(|e| format!("{e}; write scheme://host[:port]"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    check_origin_shaped(&url)?;
    Ok(url.origin())
}

/// Same site in the browser's (schemeful) sense: same scheme and same
/// registrable domain. Hosts without a registrable domain — IP addresses,
/// `localhost`, public suffixes themselves — are only same-site with
/// themselves.
fn same_site(a: &Origin, b: &Origin) -> bool {
    match (site(a), site(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn site(origin: &Origin) -> Option<(String, String)> {
    let Origin::Tuple(scheme, host, _port) = origin else {
        return None;
    };
    let site = match host {
        Host::Domain(d) => {
            // `url` has already lower-cased and punycoded the name, as the
            // list expects.
            let d = d.trim_end_matches('.');
            if d == "localhost" {
                d.to_owned()
            } else {
                psl::domain_str(d).unwrap_or(d).to_owned()
            }
        }
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    Some((scheme.clone(), site))
}

fn parse_cookie_domain(raw: &str, public_url: &Url) -> Result<String, ConfigError> {
    let bad = |m: String| ConfigError::new("cookie_domain", m);
    let trimmed = raw.trim().trim_start_matches('.');
    if trimmed.is_empty() || trimmed.contains(['/', ':', '@', ' ']) {
        return Err(bad(format!(
            "must be a bare domain like example.com (no scheme, port or path), not {raw:?}"
        )));
    }
    let domain = match Host::parse(trimmed) {
        Ok(Host::Domain(d)) => d,
        Ok(_) => {
            return Err(bad(
                "must be a domain name: browsers ignore Domain= with an IP address".to_owned(),
            ));
        }
        Err(e) => return Err(bad(format!("is not a valid domain name: {e}"))),
    };
    if psl::domain_str(&domain).is_none() {
        return Err(bad(format!(
            "{domain} is a public suffix; browsers refuse cookies for it"
        )));
    }
    let host = public_url.host_str().unwrap_or_default();
    if host != domain && !host.ends_with(&format!(".{domain}")) {
        return Err(bad(format!(
            "public_url's host {host} is not {domain} or under it, so browsers would drop the cookie"
        )));
    }
    Ok(domain)
}

// ---------------------------------------------------------------------------
// Secrets

/// The secret settings as configured, before resolution.
struct SecretInputs {
    master_key: Option<SecretString>,
    master_key_file: Option<String>,
    refresh_key: Option<SecretString>,
    refresh_key_file: Option<String>,
    refresh_keys_previous: Option<Vec<SecretString>>,
    refresh_keys_previous_file: Option<String>,
}

/// A configured secret and the setting it came from (`x` or `x_file`), so
/// that an error about its content names the right one.
struct Sourced {
    value: SecretString,
    setting: String,
}

fn resolve_secrets(
    input: SecretInputs,
    refresh_key_version: u8,
    production: bool,
    dev_secrets_file: &Path,
) -> Result<Secrets, ConfigError> {
    let master = sourced("master_key", input.master_key, input.master_key_file)?;
    let refresh = sourced("refresh_key", input.refresh_key, input.refresh_key_file)?;
    let previous = previous_entries(
        input.refresh_keys_previous,
        input.refresh_keys_previous_file,
    )?;

    // Development only: whatever is not configured comes from the dev file,
    // which is created on first use so the embedded default just works.
    // Configured values always win; with both configured the file is not
    // touched at all.
    let dev = if !production && (master.is_none() || refresh.is_none()) {
        Some(load_or_create_dev_secrets(dev_secrets_file)?)
    } else {
        None
    };
    let from_dev = |pick: fn(&DevSecrets) -> &str| {
        dev.as_ref().map(|d| Sourced {
            value: SecretString::from(pick(d)),
            setting: "dev_secrets_file".to_owned(),
        })
    };

    let master = master
        .or_else(|| from_dev(|d| &d.master_key))
        .ok_or_else(|| missing("master_key"))?;
    let master_bytes = decode_b64(&master)?;
    if master_bytes.len() != 32 {
        return err(
            &master.setting,
            format!(
                "must decode to exactly 32 bytes, not {}; {GENERATE_KEY_HINT}",
                master_bytes.len()
            ),
        );
    }
    let mut master_key = Zeroizing::new([0u8; 32]);
    master_key.copy_from_slice(&master_bytes);

    let refresh = refresh
        .or_else(|| from_dev(|d| &d.refresh_key))
        .ok_or_else(|| missing("refresh_key"))?;
    let mut refresh_keys = vec![(refresh_key_version, refresh_key_bytes(&refresh)?)];

    for (i, entry) in previous.iter().enumerate() {
        let setting = &entry.setting;
        let n = i + 1;
        let Some((ver, key)) = entry.value.expose_secret().split_once(':') else {
            return err(
                setting,
                format!("entry {n} must be VERSION:BASE64KEY, like 1:q83v…"),
            );
        };
        let ver: u8 = match ver.trim().parse() {
            Ok(v) if v >= 1 => v,
            _ => {
                return err(
                    setting,
                    format!("entry {n} must start with a version from 1 to 255"),
                );
            }
        };
        // The engine mints with the highest version it holds, so an older key
        // must carry a lower number than the current one.
        if ver >= refresh_key_version {
            return err(
                setting,
                format!(
                    "entry {n} has version {ver}, which must be lower than refresh_key_version \
                     ({refresh_key_version}): the current key has the highest version"
                ),
            );
        }
        if refresh_keys.iter().any(|(v, _)| *v == ver) {
            return err(setting, format!("entry {n} repeats version {ver}"));
        }
        let key = Sourced {
            value: SecretString::from(key),
            setting: setting.clone(),
        };
        refresh_keys.push((ver, refresh_key_bytes(&key)?));
    }

    Ok(Secrets {
        master_key,
        refresh_keys,
    })
}

fn missing(name: &str) -> ConfigError {
    ConfigError::new(
        name,
        format!(
            "is required in production mode (or set {name}_file to a file holding it); \
             {GENERATE_KEY_HINT}"
        ),
    )
}

fn refresh_key_bytes(key: &Sourced) -> Result<SecretBox<[u8]>, ConfigError> {
    let bytes = decode_b64(key)?;
    if bytes.len() < 32 {
        return err(
            &key.setting,
            format!(
                "a refresh key must decode to at least 32 bytes, not {}; {GENERATE_KEY_HINT}",
                bytes.len()
            ),
        );
    }
    // An exact-size copy: the decoded buffer is zeroed when it drops.
    Ok(SecretBox::from(Box::<[u8]>::from(&bytes[..])))
}

/// Decodes standard or URL-safe base64, padded or not.
fn decode_b64(secret: &Sourced) -> Result<Zeroizing<Vec<u8>>, ConfigError> {
    const CFG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CFG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CFG);
    let s = secret.value.expose_secret().trim();
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map(Zeroizing::new)
        .map_err(|_| {
            ConfigError::new(
                &secret.setting,
                format!("is not valid base64 or base64url; {GENERATE_KEY_HINT}"),
            )
        })
}

/// `name` or `name_file`, never both.
fn sourced(
    name: &str,
    inline: Option<SecretString>,
    file: Option<String>,
) -> Result<Option<Sourced>, ConfigError> {
    let file_key = format!("{name}_file");
    match (inline, file) {
        (Some(_), Some(_)) => err(name, format!("set either {name} or {file_key}, not both")),
        (Some(value), None) => Ok(Some(Sourced {
            value,
            setting: name.to_owned(),
        })),
        (None, Some(path)) => Ok(Some(Sourced {
            value: read_secret_file(&file_key, Path::new(&path))?,
            setting: file_key,
        })),
        (None, None) => Ok(None),
    }
}

/// A secret file's contents without the trailing newline editors and
/// `echo` add.
fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let bytes = Zeroizing::new(
        fs::read(path)
            .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigError::new(key, format!("{} is not UTF-8 text", path.display())))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return err(key, format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(value))
}

/// `refresh_keys_previous` entries, from the list or from the file (entries
/// separated by commas or line breaks).
fn previous_entries(
    inline: Option<Vec<SecretString>>,
    file: Option<String>,
) -> Result<Vec<Sourced>, ConfigError> {
    const NAME: &str = "refresh_keys_previous";
    match (inline, file) {
        (Some(_), Some(_)) => err(NAME, format!("set either {NAME} or {NAME}_file, not both")),
        (Some(list), None) => Ok(list
            .into_iter()
            .filter(|s| !s.expose_secret().trim().is_empty())
            .map(|value| Sourced {
                value,
                setting: NAME.to_owned(),
            })
            .collect()),
        (None, Some(path)) => {
            let key = format!("{NAME}_file");
            let all = read_secret_file(&key, Path::new(&path))?;
            Ok(all
                .expose_secret()
                .split([',', '\n', '\r'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Sourced {
                    value: SecretString::from(s),
                    setting: key.clone(),
                })
                .collect())
        }
        (None, None) => Ok(Vec::new()),
    }
}

/// The development secrets file: JSON holding both keys in base64.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct DevSecrets {
    master_key: String,
    refresh_key: String,
}

fn load_or_create_dev_secrets(path: &Path) -> Result<DevSecrets, ConfigError> {
    let fail = |m: String| ConfigError::new("dev_secrets_file", m);
    match fs::symlink_metadata(path) {
        Ok(_) => return read_dev_secrets(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("cannot read {}: {e}", path.display()))),
    }

    let mut master = Zeroizing::new([0u8; 32]);
    let mut refresh = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut master[..])
        .and_then(|()| getrandom::fill(&mut refresh[..]))
        .map_err(|e| fail(format!("the OS random number generator failed: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let generated = DevSecrets {
        master_key: b64.encode(&master[..]),
        refresh_key: b64.encode(&refresh[..]),
    };
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&generated)
            .map_err(|e| fail(format!("cannot encode secrets: {e}")))?,
    );

    // create_new: if another process got there first, its keys win and we
    // read them, rather than overwrite them and split the two processes.
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            if let Err(e) = f.write_all(&json).and_then(|()| f.sync_all()) {
                // Leave no half-written file to be read as corrupt next time.
                let _ = fs::remove_file(path);
                return Err(fail(format!("cannot write {}: {e}", path.display())));
            }
            Ok(generated)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_dev_secrets(path),
        Err(e) => Err(fail(format!(
            "cannot create {}: {e}; set it to a writable path, or configure master_key and \
             refresh_key",
            path.display()
        ))),
    }
}

fn read_dev_secrets(path: &Path) -> Result<DevSecrets, ConfigError> {
    let fail = |m: String| ConfigError::new("dev_secrets_file", m);
    // A process that just created the file may still be writing it, so an
    // incomplete file gets a short while before it is called corrupt.
    let mut attempts = 0;
    loop {
        let bytes = Zeroizing::new(
            fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?,
        );
        match serde_json::from_slice::<DevSecrets>(&bytes) {
            Ok(secrets) => return Ok(secrets),
            Err(_) if attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => {
                return Err(fail(format!(
                    "{} is not a Sesame development secrets file ({e}); delete it to generate \
                     new secrets (this logs every session out)",
                    path.display()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path in the temp directory; nothing is created.
    fn temp_path(tag: &str) -> PathBuf {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("sesame-config-test-{tag}-{hex}"))
    }

    /// Removes the file when the test ends, pass or fail.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(tag: &str) -> Self {
            Self(temp_path(tag))
        }
        fn with(tag: &str, contents: &str) -> Self {
            let f = Self::new(tag);
            fs::write(&f.0, contents).unwrap();
            f
        }
        fn path_string(&self) -> String {
            self.0.to_str().unwrap().to_owned()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn b64(n: usize, fill: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![fill; n])
    }

    fn dev(secrets: &TempFile) -> RawConfig {
        RawConfig {
            dev_secrets_file: Some(secrets.path_string()),
            ..Default::default()
        }
    }

    fn prod() -> RawConfig {
        RawConfig {
            mode: Some("production".into()),
            bind: Some("0.0.0.0:8080".into()),
            public_url: Some("https://auth.example.com".into()),
            master_key: Some(b64(32, 1).into()),
            refresh_key: Some(b64(32, 2).into()),
            ..Default::default()
        }
    }

    fn setting_of(r: Result<Config, ConfigError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.setting,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keys_list_matches_raw_config_fields() {
        // Debug of the derived struct lists every field name in order.
        let debug = format!("{:?}", RawConfig::default());
        let fields: Vec<&str> = debug
            .trim_start_matches("RawConfig { ")
            .trim_end_matches(" }")
            .split(", ")
            .map(|f| f.trim_end_matches(": None"))
            .collect();
        assert_eq!(fields, KEYS);
    }

    #[test]
    fn defaults_validate_in_development_and_reuse_the_dev_secrets_file() {
        let secrets = TempFile::new("dev");
        let c = validate(dev(&secrets)).unwrap();
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.audience, "sesame");
        assert_eq!(c.database_url.kind, DatabaseKind::Sqlite);
        assert_eq!(c.database_url.url, "sqlite://sesame.db");
        assert_eq!(c.session_store_url, None);
        assert_eq!(c.session_store_prefix, "sesame:");
        assert!(!c.allow_volatile_session_store);
        assert_eq!(c.database_max_connections, 16);
        assert_eq!(
            (c.database_acquire_timeout, c.database_statement_timeout),
            (5, 5)
        );
        assert_eq!(
            (c.access_ttl, c.refresh_ttl, c.session_max_age),
            (600, 7 * 86_400, 30 * 86_400)
        );
        assert_eq!(
            (c.refresh_grace, c.late_retry_window, c.leeway),
            (30, 60, 60)
        );
        assert_eq!(c.allowed_transports.len(), 3);
        assert_eq!(c.signing_alg, SigningAlg::EdDSA);
        assert_eq!(c.hash_params, HashParams::OWASP);
        assert_eq!(c.metrics_bind, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.session_cap(), None);
        assert_eq!(c.rotation_policy().idle_ttl, Some(7 * 86_400));
        assert_eq!(c.secrets.refresh_keys.len(), 1);
        assert_eq!(c.secrets.refresh_keys[0].0, 1);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&secrets.0).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let again = validate(dev(&secrets)).unwrap();
        assert_eq!(*again.secrets.master_key, *c.secrets.master_key);
        assert_eq!(
            again.secrets.refresh_keys[0].1.expose_secret(),
            c.secrets.refresh_keys[0].1.expose_secret()
        );
        assert_ne!(*c.secrets.master_key, [0u8; 32]);
    }

    #[test]
    fn concurrent_first_starts_agree_on_dev_secrets() {
        let secrets = TempFile::new("race");
        let path = secrets.path_string();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let c = validate(RawConfig {
                        dev_secrets_file: Some(path),
                        ..Default::default()
                    })
                    .unwrap();
                    *c.secrets.master_key
                })
            })
            .collect();
        let keys: Vec<[u8; 32]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn configured_secrets_win_over_the_dev_file() {
        let secrets = TempFile::new("dev-win");
        let generated = validate(dev(&secrets)).unwrap();
        let c = validate(RawConfig {
            master_key: Some(b64(32, 7).into()),
            ..dev(&secrets)
        })
        .unwrap();
        assert_eq!(*c.secrets.master_key, [7u8; 32]);
        // The other one still comes from the file.
        assert_eq!(
            c.secrets.refresh_keys[0].1.expose_secret(),
            generated.secrets.refresh_keys[0].1.expose_secret()
        );
    }

    #[test]
    fn a_corrupt_dev_secrets_file_names_the_setting() {
        let secrets = TempFile::with("dev-bad", "not json");
        assert_eq!(setting_of(validate(dev(&secrets))), "dev_secrets_file");
    }

    #[test]
    fn secrets_debug_shows_no_key_material() {
        let c = validate(prod()).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("[redacted]"));
        assert!(!debug.contains("1, 1, 1, 1"));
        assert!(!debug.contains("2, 2, 2, 2"));
        let raw = format!("{:?}", prod());
        assert!(!raw.contains(&b64(32, 1)));
    }

    #[test]
    fn production_needs_a_master_key() {
        let r = validate(RawConfig {
            master_key: None,
            ..prod()
        });
        let e = r.unwrap_err();
        assert_eq!(e.setting, "master_key");
        assert!(e.message.contains("head -c 32 /dev/urandom | base64"));
        assert!(
            e.to_string()
                .starts_with("`master_key` (SESAME_MASTER_KEY): ")
        );
    }

    #[test]
    fn production_refuses_a_short_or_garbled_master_key() {
        let short = validate(RawConfig {
            master_key: Some(b64(31, 1).into()),
            ..prod()
        });
        assert_eq!(setting_of(short), "master_key");
        let garbled = validate(RawConfig {
            master_key: Some("not base64 at all!".into()),
            ..prod()
        });
        assert_eq!(setting_of(garbled), "master_key");
        let short_refresh = validate(RawConfig {
            refresh_key: Some(b64(31, 1).into()),
            ..prod()
        });
        assert_eq!(setting_of(short_refresh), "refresh_key");
    }

    #[test]
    fn production_with_proper_keys_passes() {
        let c = validate(prod()).unwrap();
        assert!(c.is_production());
        assert_eq!(*c.secrets.master_key, [1u8; 32]);
        assert_eq!(c.issuer, "https://auth.example.com");
        // base64url without padding is accepted too.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        let c = validate(RawConfig {
            master_key: Some(url_safe.into()),
            ..prod()
        })
        .unwrap();
        assert_eq!(*c.secrets.master_key, [0xfbu8; 32]);
    }

    #[test]
    fn production_needs_an_https_public_url() {
        let missing = validate(RawConfig {
            public_url: None,
            ..prod()
        });
        assert_eq!(setting_of(missing), "public_url");
        let http = validate(RawConfig {
            public_url: Some("http://auth.example.com".into()),
            ..prod()
        });
        assert_eq!(setting_of(http), "public_url");
        let path = validate(RawConfig {
            public_url: Some("https://example.com/auth".into()),
            ..prod()
        });
        assert_eq!(setting_of(path), "public_url");
    }

    #[test]
    fn production_refuses_weak_argon2() {
        let r = validate(RawConfig {
            argon2_memory_kib: Some(4096),
            ..prod()
        });
        assert_eq!(setting_of(r), "argon2_memory_kib");
        // OWASP's alternative pairs pass.
        let ok = validate(RawConfig {
            argon2_memory_kib: Some(7168),
            argon2_iterations: Some(5),
            ..prod()
        });
        assert!(ok.is_ok());
        // Development allows cheap hashing for tests, down to 1 MiB.
        let secrets = TempFile::new("argon");
        let c = validate(RawConfig {
            argon2_memory_kib: Some(1024),
            argon2_iterations: Some(1),
            ..dev(&secrets)
        })
        .unwrap();
        assert_eq!(
            c.hash_params,
            HashParams {
                m_kib: 1024,
                t: 1,
                p: 1
            }
        );
        let too_cheap = validate(RawConfig {
            argon2_memory_kib: Some(512),
            ..dev(&secrets)
        });
        assert_eq!(setting_of(too_cheap), "argon2_memory_kib");
    }

    #[test]
    fn development_refuses_a_public_bind() {
        let secrets = TempFile::new("bind");
        let r = validate(RawConfig {
            bind: Some("0.0.0.0:8080".into()),
            ..dev(&secrets)
        });
        let e = r.unwrap_err();
        assert_eq!(e.setting, "bind");
        assert!(e.message.contains("127.0.0.1"));
        // Nothing was generated for a configuration that failed earlier.
        assert!(!secrets.0.exists());
    }

    #[test]
    fn wildcard_origin_is_refused() {
        let r = validate(RawConfig {
            allowed_origins: Some(vec!["*".into()]),
            ..prod()
        });
        assert_eq!(setting_of(r), "allowed_origins");
    }

    #[test]
    fn cross_site_origins_need_bearer_only() {
        let cross = || Some(vec!["https://app.other.com".to_owned()]);
        let e = validate(RawConfig {
            allowed_origins: cross(),
            ..prod()
        })
        .unwrap_err();
        assert_eq!(e.setting, "allowed_origins");
        assert!(e.message.contains("allowed_transports = [\"bearer\"]"));

        let hybrid_only = validate(RawConfig {
            allowed_origins: cross(),
            allowed_transports: Some(vec!["bearer".into(), "hybrid".into()]),
            ..prod()
        });
        assert_eq!(setting_of(hybrid_only), "allowed_origins");

        let bearer = validate(RawConfig {
            allowed_origins: cross(),
            allowed_transports: Some(vec!["bearer".into()]),
            ..prod()
        })
        .unwrap();
        assert_eq!(bearer.allowed_transports, [Transport::Bearer]);
        assert_eq!(bearer.allowed_origins.len(), 1);
    }

    #[test]
    fn same_site_origins_pass_with_cookies() {
        let c = validate(RawConfig {
            allowed_origins: Some(vec![
                "https://app.example.com".into(),
                "https://example.com:8443/".into(),
                "https://app.example.com".into(),
            ]),
            ..prod()
        })
        .unwrap();
        assert_eq!(c.allowed_origins.len(), 2);
        assert_eq!(
            c.allowed_origins[0].ascii_serialization(),
            "https://app.example.com"
        );

        // Scheme matters (schemeful same-site), and a private-registry suffix
        // such as github.io separates its users.
        for other in ["http://app.example.com", "https://example.github.io"] {
            let r = validate(RawConfig {
                allowed_origins: Some(vec![other.into()]),
                ..prod()
            });
            assert_eq!(setting_of(r), "allowed_origins", "{other}");
        }
        let r = validate(RawConfig {
            public_url: Some("https://me.github.io".into()),
            allowed_origins: Some(vec!["https://you.github.io".into()]),
            ..prod()
        });
        assert_eq!(setting_of(r), "allowed_origins");

        // Loopback hosts are same-site only with the same host.
        let secrets = TempFile::new("site");
        let ok = validate(RawConfig {
            allowed_origins: Some(vec!["http://127.0.0.1:5173".into()]),
            ..dev(&secrets)
        });
        assert!(ok.is_ok());
        let r = validate(RawConfig {
            allowed_origins: Some(vec!["http://localhost:5173".into()]),
            ..dev(&secrets)
        });
        assert_eq!(setting_of(r), "allowed_origins");
    }

    #[test]
    fn origins_must_be_origins() {
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "null",
            "ftp://example.com",
        ] {
            let r = validate(RawConfig {
                allowed_origins: Some(vec![bad.into()]),
                allowed_transports: Some(vec!["bearer".into()]),
                ..prod()
            });
            assert_eq!(setting_of(r), "allowed_origins", "{bad}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("0"), Ok(0));
        for bad in [
            "10x",
            "-5s",
            "",
            "m",
            "1.5h",
            " 10m",
            "10M",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("36500d").is_ok());
        assert!(parse_duration("36501d").is_err());
    }

    #[test]
    fn duration_rules_name_their_setting() {
        let secrets = TempFile::new("durations");
        let cases = [
            (
                RawConfig {
                    access_ttl: Some("2h".into()),
                    ..dev(&secrets)
                },
                "access_ttl",
            ),
            (
                RawConfig {
                    access_ttl: Some("30s".into()),
                    ..dev(&secrets)
                },
                "access_ttl",
            ),
            (
                RawConfig {
                    leeway: Some("61".into()),
                    ..dev(&secrets)
                },
                "leeway",
            ),
            (
                RawConfig {
                    refresh_grace: Some("6m".into()),
                    ..dev(&secrets)
                },
                "refresh_grace",
            ),
            (
                RawConfig {
                    refresh_ttl: Some("60d".into()),
                    ..dev(&secrets)
                },
                "session_max_age",
            ),
            (
                RawConfig {
                    refresh_grace: Some("1m".into()),
                    late_retry_window: Some("30s".into()),
                    ..dev(&secrets)
                },
                "late_retry_window",
            ),
            (
                RawConfig {
                    request_timeout: Some("0".into()),
                    ..dev(&secrets)
                },
                "request_timeout",
            ),
            (
                RawConfig {
                    grace_max_answers: Some(0),
                    ..dev(&secrets)
                },
                "grace_max_answers",
            ),
            (
                RawConfig {
                    hash_workers: Some(0),
                    ..dev(&secrets)
                },
                "hash_workers",
            ),
            (
                RawConfig {
                    refresh_key_version: Some(256),
                    ..dev(&secrets)
                },
                "refresh_key_version",
            ),
            (
                RawConfig {
                    signing_alg: Some("eddsa".into()),
                    ..dev(&secrets)
                },
                "signing_alg",
            ),
            (
                RawConfig {
                    allowed_transports: Some(vec![]),
                    ..dev(&secrets)
                },
                "allowed_transports",
            ),
            (
                RawConfig {
                    database_url: Some("mongodb://u:pw@db/sesame".into()),
                    ..dev(&secrets)
                },
                "database_url",
            ),
            (
                RawConfig {
                    database_url: Some("postgres://u:pw@db:99999/sesame".into()),
                    ..dev(&secrets)
                },
                "database_url",
            ),
            (
                RawConfig {
                    session_store_url: Some("rediss://u:pw@cache:6380".into()),
                    ..dev(&secrets)
                },
                "session_store_url",
            ),
            (
                RawConfig {
                    session_store_url: Some("memcached://u:pw@cache".into()),
                    ..dev(&secrets)
                },
                "session_store_url",
            ),
            (
                RawConfig {
                    session_store_prefix: Some(String::new()),
                    ..dev(&secrets)
                },
                "session_store_prefix",
            ),
            (
                RawConfig {
                    database_max_connections: Some(0),
                    ..dev(&secrets)
                },
                "database_max_connections",
            ),
            (
                RawConfig {
                    database_max_connections: Some(1001),
                    ..dev(&secrets)
                },
                "database_max_connections",
            ),
            (
                RawConfig {
                    database_acquire_timeout: Some("0".into()),
                    ..dev(&secrets)
                },
                "database_acquire_timeout",
            ),
            (
                RawConfig {
                    database_statement_timeout: Some("2h".into()),
                    ..dev(&secrets)
                },
                "database_statement_timeout",
            ),
            (
                RawConfig {
                    trusted_proxies: Some(vec!["10.0.0.0/33".into()]),
                    ..dev(&secrets)
                },
                "trusted_proxies",
            ),
            (
                RawConfig {
                    metrics_bind: Some("127.0.0.1:8080".into()),
                    ..dev(&secrets)
                },
                "metrics_bind",
            ),
            (
                RawConfig {
                    cookie_domain: Some("co.uk".into()),
                    ..prod()
                },
                "cookie_domain",
            ),
            (
                RawConfig {
                    cookie_domain: Some("other.com".into()),
                    ..prod()
                },
                "cookie_domain",
            ),
        ];
        for (raw, setting) in cases {
            let e = validate(raw).unwrap_err();
            assert_eq!(e.setting, setting, "{e}");
            assert!(!e.message.contains("pw@"), "{e}");
        }

        // refresh_ttl = 0 means no idle expiry and lifts the max-age rule.
        let c = validate(RawConfig {
            refresh_ttl: Some("0".into()),
            session_max_age: Some("1h".into()),
            ..dev(&secrets)
        })
        .unwrap();
        assert_eq!(c.rotation_policy().idle_ttl, None);
    }

    #[test]
    fn database_urls_select_the_driver_and_hide_passwords() {
        let secrets = TempFile::new("db-urls");
        let with = |url: &str| {
            validate(RawConfig {
                database_url: Some(url.into()),
                ..dev(&secrets)
            })
            .unwrap()
        };
        for (url, kind) in [
            ("sqlite://sesame.db", DatabaseKind::Sqlite),
            ("sqlite::memory:", DatabaseKind::Sqlite),
            ("postgres://u:hunter2@db/sesame", DatabaseKind::Postgres),
            ("postgresql://u@db:5432/sesame", DatabaseKind::Postgres),
            ("mysql://root:hunter2@db:3306/sesame", DatabaseKind::MySql),
            ("mariadb://root@db/sesame", DatabaseKind::MySql),
        ] {
            let c = with(url);
            assert_eq!(c.database_url.kind, kind, "{url}");
            let debug = format!("{c:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }
        // One driver for MariaDB and MySQL.
        assert_eq!(
            with("mariadb://root@db/sesame").database_url.url,
            "mysql://root@db/sesame"
        );
        let c = with("postgres://u:hunter2@db/sesame?sslmode=require&password=hunter2");
        assert_eq!(
            c.database_url.masked(),
            "postgres://u:***@db/sesame?sslmode=require&password=***"
        );
        assert_eq!(
            c.database_url.url,
            "postgres://u:hunter2@db/sesame?sslmode=require&password=hunter2"
        );

        // The secret-file form, and never both.
        let file = TempFile::with("db-url", "postgres://u:hunter2@db/sesame\n");
        let c = validate(RawConfig {
            database_url_file: Some(file.path_string()),
            ..dev(&secrets)
        })
        .unwrap();
        assert_eq!(c.database_url.url, "postgres://u:hunter2@db/sesame");
        let both = validate(RawConfig {
            database_url: Some("sqlite://x.db".into()),
            database_url_file: Some(file.path_string()),
            ..dev(&secrets)
        });
        assert_eq!(setting_of(both), "database_url");
        let bad = TempFile::with("db-url-bad", "oracle://u:hunter2@db\n");
        let e = validate(RawConfig {
            database_url_file: Some(bad.path_string()),
            ..dev(&secrets)
        })
        .unwrap_err();
        assert_eq!(e.setting, "database_url_file");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        // A value of the wrong type in the file does not echo it either.
        let toml = TempFile::with("db-url.toml", "database_url = [\"hunter2\"]\n");
        let e = load_raw(Some(&toml.0), &env(&[])).unwrap_err();
        assert_eq!(e.setting, "database_url");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn redis_session_store_settings() {
        let secrets = TempFile::new("redis");
        let c = validate(RawConfig {
            session_store_url: Some("redis://:hunter2@cache:6379/2".into()),
            session_store_prefix: Some("app1:".into()),
            allow_volatile_session_store: Some(true),
            database_max_connections: Some(40),
            database_acquire_timeout: Some("2s".into()),
            database_statement_timeout: Some("1500ms".into()),
            ..dev(&secrets)
        });
        // Durations are whole seconds.
        assert_eq!(setting_of(c), "database_statement_timeout");
        let c = validate(RawConfig {
            session_store_url: Some("redis://:hunter2@cache:6379/2".into()),
            session_store_prefix: Some("app1:".into()),
            allow_volatile_session_store: Some(true),
            database_max_connections: Some(40),
            database_acquire_timeout: Some("2s".into()),
            database_statement_timeout: Some("3".into()),
            ..dev(&secrets)
        })
        .unwrap();
        let url = c.session_store_url.as_ref().unwrap();
        assert_eq!(url.url, "redis://:hunter2@cache:6379/2");
        assert_eq!(url.masked(), "redis://:***@cache:6379/2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.session_store_prefix, "app1:");
        assert!(c.allow_volatile_session_store);
        assert_eq!(c.database_max_connections, 40);
        assert_eq!(c.database_acquire_duration(), Duration::from_secs(2));
        assert_eq!(c.database_statement_duration(), Duration::from_secs(3));

        let file = TempFile::with("redis-url", "redis://127.0.0.1:6379\n");
        let c = validate(RawConfig {
            session_store_url_file: Some(file.path_string()),
            ..dev(&secrets)
        })
        .unwrap();
        assert_eq!(c.session_store_url.unwrap().url, "redis://127.0.0.1:6379");
        let e = validate(RawConfig {
            session_store_url: Some("rediss://:hunter2@cache:6380".into()),
            ..dev(&secrets)
        })
        .unwrap_err();
        assert!(e.message.contains("not supported in this build"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = validate(RawConfig {
            session_store_prefix: Some("a b".into()),
            ..dev(&secrets)
        })
        .unwrap_err();
        assert_eq!(e.setting, "session_store_prefix");
    }

    #[test]
    fn misc_settings_parse() {
        let c = validate(RawConfig {
            trusted_proxies: Some(vec!["10.1.2.3/8".into(), "192.0.2.7".into(), "::1".into()]),
            cookie_domain: Some(".Example.com".into()),
            metrics_bind: Some("none".into()),
            max_sessions_per_user: Some(3),
            session_limit_policy: Some("refuse".into()),
            reuse_policy: Some("user".into()),
            log_format: Some("json".into()),
            ..prod()
        })
        .unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]);
        assert_eq!(c.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(c.metrics_bind, None);
        assert_eq!(
            c.session_cap(),
            Some(SessionCap {
                max: 3,
                evict_oldest: false
            })
        );
        assert!(c.rotation_policy().reuse_revokes_user);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn previous_refresh_keys() {
        let prev = |entries: &[String]| RawConfig {
            refresh_key_version: Some(3),
            refresh_keys_previous: Some(entries.iter().map(|e| e.as_str().into()).collect()),
            ..prod()
        };
        let c = validate(prev(&[
            format!("1:{}", b64(32, 9)),
            format!("2:{}", b64(40, 8)),
        ]))
        .unwrap();
        let versions: Vec<u8> = c.secrets.refresh_keys.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, [3, 1, 2]);
        assert_eq!(c.secrets.refresh_keys[2].1.expose_secret().len(), 40);

        for bad in [
            format!("3:{}", b64(32, 9)),
            format!("4:{}", b64(32, 9)),
            format!("0:{}", b64(32, 9)),
            b64(32, 9),
            format!("1:{}", b64(16, 9)),
        ] {
            assert_eq!(setting_of(validate(prev(&[bad]))), "refresh_keys_previous");
        }
        let dup = [format!("1:{}", b64(32, 9)), format!("1:{}", b64(32, 8))];
        assert_eq!(setting_of(validate(prev(&dup))), "refresh_keys_previous");
    }

    #[test]
    fn secret_files() {
        let key = TempFile::with("master", &format!("{}\n", b64(32, 5)));
        let c = validate(RawConfig {
            master_key: None,
            master_key_file: Some(key.path_string()),
            ..prod()
        })
        .unwrap();
        assert_eq!(*c.secrets.master_key, [5u8; 32]);

        let both = validate(RawConfig {
            master_key_file: Some(key.path_string()),
            ..prod()
        });
        assert_eq!(setting_of(both), "master_key");

        let short = TempFile::with("short", &b64(31, 5));
        let r = validate(RawConfig {
            master_key: None,
            master_key_file: Some(short.path_string()),
            ..prod()
        });
        assert_eq!(setting_of(r), "master_key_file");

        let r = validate(RawConfig {
            refresh_key: None,
            refresh_key_file: Some(temp_path("absent").to_str().unwrap().to_owned()),
            ..prod()
        });
        assert_eq!(setting_of(r), "refresh_key_file");

        let prev = TempFile::with("prev", &format!("1:{}\n2:{}\n", b64(32, 1), b64(32, 2)));
        let c = validate(RawConfig {
            refresh_key_version: Some(3),
            refresh_keys_previous_file: Some(prev.path_string()),
            ..prod()
        })
        .unwrap();
        assert_eq!(c.secrets.refresh_keys.len(), 3);
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = TempFile::with(
            "layer.toml",
            "access_ttl = \"10m\"\nrefresh_grace = 20\nallowed_origins = [\"https://x.example.com\"]\n",
        );
        let raw = load_raw(
            Some(&file.0),
            &env(&[
                ("SESAME_ACCESS_TTL", "5m"),
                ("SESAME_REQUIRE_BACKENDS", "1"),
                (
                    "SESAME_ALLOWED_ORIGINS",
                    "https://a.example.com, https://b.example.com",
                ),
                ("SESAME_LOG_LEVEL", "info,sesame=debug"),
                ("SESAME_AUDIENCE", "007"),
                ("SESAME_HASH_QUEUE", "64"),
                ("SESAME_LOG_PII", "true"),
                ("SESAME_COOKIE_DOMAIN", ""),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(raw.access_ttl.as_deref(), Some("5m"));
        // A TOML integer duration is seconds.
        assert_eq!(raw.refresh_grace.as_deref(), Some("20"));
        assert_eq!(
            raw.allowed_origins,
            Some(vec![
                "https://a.example.com".to_owned(),
                "https://b.example.com".to_owned()
            ])
        );
        // Non-list values keep their commas and their leading zeros.
        assert_eq!(raw.log_level.as_deref(), Some("info,sesame=debug"));
        assert_eq!(raw.audience.as_deref(), Some("007"));
        assert_eq!(raw.hash_queue, Some(64));
        assert_eq!(raw.log_pii, Some(true));
        assert_eq!(raw.cookie_domain, None);

        let secrets = TempFile::new("layer");
        let mut raw = raw;
        raw.dev_secrets_file = Some(secrets.path_string());
        raw.allowed_transports = Some(vec!["bearer".into()]);
        let c = validate(raw).unwrap();
        assert_eq!(c.access_ttl, 300);
        assert_eq!(c.refresh_grace, 20);
        assert_eq!(c.late_retry_window, 40);
    }

    #[test]
    fn the_file_can_come_from_sesame_config() {
        let file = TempFile::with("via-env.toml", "audience = \"api\"\n");
        let raw = load_raw(None, &env(&[("SESAME_CONFIG", &file.path_string())])).unwrap();
        assert_eq!(raw.audience.as_deref(), Some("api"));
        // No file at all is fine.
        let raw = load_raw(None, &env(&[])).unwrap();
        assert!(raw.audience.is_none());
    }

    #[test]
    fn file_errors_name_the_setting() {
        let unknown = TempFile::with("unknown.toml", "access_ttl = \"5m\"\nacess_ttl = \"5m\"\n");
        let e = load_raw(Some(&unknown.0), &env(&[])).unwrap_err();
        assert_eq!(e.setting, "acess_ttl");
        assert!(e.message.contains(&unknown.path_string()), "{e}");

        let table = TempFile::with("table.toml", "[server]\nbind = \"127.0.0.1:1\"\n");
        assert_eq!(
            load_raw(Some(&table.0), &env(&[])).unwrap_err().setting,
            "server"
        );

        let e = load_raw(Some(&temp_path("missing.toml")), &env(&[])).unwrap_err();
        assert_eq!(e.setting, "config");
        let e = load_raw(None, &env(&[("SESAME_CONFIG", "/nonexistent/sesame.toml")])).unwrap_err();
        assert_eq!(e.setting, "config");
        assert!(e.to_string().starts_with("`config` (SESAME_CONFIG): "));

        let unquoted = TempFile::with("unquoted.toml", "master_key = hunter2hunter2\n");
        let e = load_raw(Some(&unquoted.0), &env(&[])).unwrap_err();
        assert_eq!(e.setting, "config");
        assert!(e.message.contains("line 1"), "{e}");
        assert!(!e.message.contains("hunter2"), "{e}");

        let syntax = TempFile::with("syntax.toml", "access_ttl = \n");
        assert_eq!(
            load_raw(Some(&syntax.0), &env(&[])).unwrap_err().setting,
            "config"
        );

        let wrong_type = TempFile::with("type.toml", "hash_queue = \"lots\"\n");
        assert_eq!(
            load_raw(Some(&wrong_type.0), &env(&[]))
                .unwrap_err()
                .setting,
            "hash_queue"
        );

        let e = load_raw(None, &env(&[("SESAME_LOG_PII", "maybe")])).unwrap_err();
        assert_eq!(e.setting, "log_pii");

        let secret = TempFile::with("secret.toml", "master_key = [\"hunter2hunter2\"]\n");
        let e = load_raw(Some(&secret.0), &env(&[])).unwrap_err();
        assert_eq!(e.setting, "master_key");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn load_runs_both_stages() {
        let secrets = TempFile::new("load");
        let c = load(
            None,
            &env(&[
                ("SESAME_DEV_SECRETS_FILE", &secrets.path_string()),
                ("SESAME_ACCESS_TTL", "15m"),
            ]),
        )
        .unwrap();
        assert_eq!(c.access_ttl, 900);
        let e = load(None, &env(&[("SESAME_MODE", "production")])).unwrap_err();
        assert_eq!(e.setting, "public_url");
    }

    #[test]
    fn mail_settings_defaults_and_rules() {
        let secrets = TempFile::new("mail");
        let c = validate(dev(&secrets)).unwrap();
        assert_eq!(c.smtp_url, None);
        assert_eq!(c.mail_from.to_string(), "Sesame <sesame@localhost>");
        assert_eq!(
            (c.smtp_timeout, c.mail_queue_size, c.mail_max_attempts),
            (10, 1000, 5)
        );
        assert_eq!(
            (
                c.email_verification_ttl,
                c.password_reset_ttl,
                c.max_auth_age,
                c.mfa_challenge_ttl
            ),
            (86_400, 1800, 300, 300)
        );
        assert!(
            c.notify_password_changed
                && c.notify_mfa_changed
                && c.notify_new_device
                && c.notify_reuse_detected
        );

        let c = validate(prod()).unwrap();
        assert_eq!(c.mail_from.email.to_string(), "sesame@auth.example.com");
        assert_eq!(c.smtp_url, None, "production without SMTP: mail disabled");

        for (url, security, plain_remote) in [
            ("smtp://127.0.0.1:25", SmtpSecurity::Plain, false),
            ("smtp://localhost:2525", SmtpSecurity::Plain, false),
            ("smtp://mail.internal:25", SmtpSecurity::Plain, true),
            (
                "smtp://u:p@mail.example.com:587?tls=required",
                SmtpSecurity::StartTls,
                false,
            ),
            (
                "smtps://u:p@mail.example.com",
                SmtpSecurity::Implicit,
                false,
            ),
        ] {
            let c = validate(RawConfig {
                smtp_url: Some(url.into()),
                notify_new_device: Some(false),
                ..prod()
            })
            .unwrap();
            let smtp = c.smtp_url.unwrap();
            assert_eq!(smtp.security, security, "{url}");
            assert_eq!(smtp.is_plain_remote(), plain_remote, "{url}");
            assert!(!c.notify_new_device);
            assert!(!format!("{smtp:?}").contains(":p@"), "{smtp:?}");
        }

        for bad in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://",
            "not a url",
        ] {
            let r = validate(RawConfig {
                smtp_url: Some(bad.into()),
                ..prod()
            });
            assert_eq!(setting_of(r), "smtp_url", "{bad}");
        }
        let secret = TempFile::with("smtp", "smtps://u:s3cret@mail.example.com\n");
        let c = validate(RawConfig {
            smtp_url_file: Some(secret.path_string()),
            ..prod()
        })
        .unwrap();
        assert_eq!(c.smtp_url.unwrap().url, "smtps://u:s3cret@mail.example.com");
        let r = validate(RawConfig {
            smtp_url: Some("smtps://u:s3cret@mail.example.com:465?x=1 bad".into()),
            ..prod()
        });
        if let Err(e) = r {
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }

        let r = validate(RawConfig {
            require_verified_email: Some(true),
            ..prod()
        });
        let e = r.unwrap_err();
        assert_eq!(e.setting, "smtp_url");
        assert!(e.message.contains("require_verified_email"), "{e}");
        // Development keeps working without SMTP: mail goes to the outbox.
        assert!(
            validate(RawConfig {
                require_verified_email: Some(true),
                ..dev(&secrets)
            })
            .is_ok()
        );

        for (raw, key) in [
            (
                RawConfig {
                    mail_from: Some("not an address".into()),
                    ..prod()
                },
                "mail_from",
            ),
            (
                RawConfig {
                    smtp_timeout: Some("0s".into()),
                    ..prod()
                },
                "smtp_timeout",
            ),
            (
                RawConfig {
                    mail_queue_size: Some(0),
                    ..prod()
                },
                "mail_queue_size",
            ),
            (
                RawConfig {
                    mail_max_attempts: Some(21),
                    ..prod()
                },
                "mail_max_attempts",
            ),
            (
                RawConfig {
                    email_verification_ttl: Some("1m".into()),
                    ..prod()
                },
                "email_verification_ttl",
            ),
            (
                RawConfig {
                    password_reset_ttl: Some("2d".into()),
                    ..prod()
                },
                "password_reset_ttl",
            ),
            (
                RawConfig {
                    max_auth_age: Some("5".into()),
                    ..prod()
                },
                "max_auth_age",
            ),
            (
                RawConfig {
                    mfa_challenge_ttl: Some("2h".into()),
                    ..prod()
                },
                "mfa_challenge_ttl",
            ),
        ] {
            assert_eq!(setting_of(validate(raw)), key);
        }
        let c = validate(RawConfig {
            mail_from: Some("noreply@example.com".into()),
            smtp_timeout: Some("30s".into()),
            password_reset_ttl: Some("1h".into()),
            ..prod()
        })
        .unwrap();
        assert_eq!(c.mail_from.email.to_string(), "noreply@example.com");
        assert_eq!(c.smtp_timeout_duration(), Duration::from_secs(30));
        assert_eq!(c.password_reset_ttl, 3600);
    }
}
