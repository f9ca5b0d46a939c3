//! Store time for the server-based stores (PostgreSQL, MariaDB).
//!
//! The design decides rotation and expiry on the **store's** clock, never an
//! instance's: several instances with skewed clocks then still agree on
//! whether a refresh is inside the grace window or a session has expired.
//! [`StoreClock::Database`] is that production mode: each operation reads the
//! database's time once, in the statement that reads or locks its rows (for a
//! rotation, `SELECT …, <now> AS store_now FROM sessions WHERE id = …`), and
//! binds that one value into every write that follows, so one operation never
//! mixes two readings. Write-only statements (audit rows, `updated_at`) use
//! the database expression inline.
//!
//! [`StoreClock::Fixed`] replaces the database's reading with a [`Clock`]:
//! the conformance suite drives time with a `ManualClock`, which a real
//! server's `now()` cannot follow. The SQL stays the same in both modes (the
//! database reading is still taken and then ignored, or bound as
//! `COALESCE($n, <database now>)` with `$n` NULL in production), so tests
//! exercise the production statements. Only a bare "what time is it"
//! (`SessionStore::now`) skips its round trip under a fixed clock; `ping`
//! always makes one.

use sesame_core::clock::{Clock, UnixTime};
use std::sync::Arc;

/// Where a server-based store takes its time from.
#[derive(Debug, Clone)]
pub enum StoreClock {
    /// The database server's clock (production).
    Database,
    /// A given clock instead of the server's (tests, simulations).
    Fixed(Arc<dyn Clock>),
}

// Used by the server-based stores only; a SQLite-only build keeps the type.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl StoreClock {
    /// The given clock's time, or `None` when the database decides. Bound as
    /// `COALESCE($n, <database now>)` in write-only statements.
    pub(crate) fn fixed(&self) -> Option<UnixTime> {
        match self {
            Self::Database => None,
            Self::Fixed(c) => Some(c.now()),
        }
    }

    /// The operation's time, given the database's reading `db`.
    pub(crate) fn pick(&self, db: UnixTime) -> UnixTime {
        self.fixed().unwrap_or(db)
    }
}
