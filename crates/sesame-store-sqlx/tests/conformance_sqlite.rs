//! The store conformance suite on SQLite (a fresh database file per test).

use sesame_core::clock::ManualClock;
use sesame_store_sqlx::{SqliteStore, SqliteStoreOptions};
use sesame_store_tests::Harness;
use std::sync::Arc;

async fn sqlite(clock: ManualClock) -> Result<Harness, String> {
    let n = u64::from_le_bytes(sesame_core::crypto::random::<8>());
    let path = std::env::temp_dir().join(format!("sesame-conformance-{n:x}.db"));
    let store = SqliteStore::open(
        &SqliteStoreOptions::new(format!("sqlite://{}", path.display())),
        Arc::new(clock.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Harness {
        accounts: Arc::new(store.clone()),
        sessions: Arc::new(store),
        clock,
    })
}

sesame_store_tests::conformance_tests!(sqlite);
