//! Sesame's SQL stores on sqlx. One module per database behind the same
//! traits: SQLite (the embedded default), PostgreSQL and MariaDB (features
//! `postgres` and `mysql`, with [`StoreClock`] choosing their time source).
//!
//! Key decision: rotation is classified by the engine's pure
//! [`sesame_core::rotation::decide`] on a row read without locks, and applied
//! with one conditional `UPDATE … WHERE gen = ? AND cur = ?`; a writer that
//! loses re-reads and re-decides. That is correct on every database without
//! relying on isolation levels, and SQLite never sees a read-then-write
//! deferred transaction (which fails with SQLITE_BUSY instead of waiting).
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod clock;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use clock::StoreClock;
#[cfg(feature = "mysql")]
pub use mysql::{MySqlStore, MySqlStoreOptions};
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreOptions};
