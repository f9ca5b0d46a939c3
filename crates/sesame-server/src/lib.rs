//! The `sesame` server: configuration, the HTTP API over the engine, the
//! store wiring (SQLite, PostgreSQL, MariaDB, Redis), background tasks,
//! Prometheus metrics and the CLI. Only this crate knows HTTP; `anyhow` is
//! used here and nowhere else.

pub mod app;
pub mod config;
pub mod fuzzing;
pub mod hash_pool;
pub mod http;
pub mod mail;
pub mod notify;
pub mod problem;
pub mod rate_limit;
pub mod server;
pub mod telemetry;
