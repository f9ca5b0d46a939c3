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

mod shared {
    //! Row pieces every SQL backend decodes the same way.
    use sesame_core::ids::{Email, UserId};
    use sesame_core::store::{ExternalId, Identity, OneTimeToken, StoreError};

    pub(crate) fn corrupt(what: &str) -> StoreError {
        StoreError::Other(format!("corrupt row: {what}").into())
    }

    /// A user's identity from its `email` and `external_id` columns.
    pub(crate) fn identity(
        email: String,
        external: Option<String>,
    ) -> Result<Identity, StoreError> {
        match external {
            Some(x) => ExternalId::parse(&x)
                .map(Identity::External)
                .ok_or_else(|| corrupt("external id")),
            None => Ok(Identity::Email(Email::from_trusted(email))),
        }
    }

    /// A consumed one-time token from its columns.
    pub(crate) fn one_time(
        kind: &'static str,
        hash: &[u8; 32],
        user_id: Vec<u8>,
        payload: &str,
        expires_at: i64,
    ) -> Result<OneTimeToken, StoreError> {
        Ok(OneTimeToken {
            kind,
            hash: *hash,
            user_id: UserId::from_bytes(user_id.try_into().map_err(|_| corrupt("user id"))?),
            payload: serde_json::from_str(payload).map_err(|_| corrupt("payload"))?,
            expires_at,
        })
    }

    /// An audit row from its columns.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit_record(
        id: i64,
        at: i64,
        kind: String,
        user: Option<Vec<u8>>,
        session: Option<Vec<u8>>,
        ip: Option<String>,
        detail: &str,
    ) -> Result<sesame_core::store::AuditRecord, StoreError> {
        Ok(sesame_core::store::AuditRecord {
            id,
            at,
            kind,
            user_id: user
                .map(|b| b.try_into().map(UserId::from_bytes))
                .transpose()
                .map_err(|_| corrupt("audit user"))?,
            session_id: session
                .map(|b| b.try_into().map(sesame_core::ids::SessionId::from_bytes))
                .transpose()
                .map_err(|_| corrupt("audit session"))?,
            ip,
            detail: serde_json::from_str(detail).unwrap_or(serde_json::Value::Null),
        })
    }

    /// The `email` and `email_key` columns of a shadow user.
    pub(crate) fn shadow_email(x: &ExternalId) -> (&'static str, String) {
        ("", x.email_key())
    }
}
