//! Argon2id on a bounded blocking pool with a bounded queue.
//!
//! `workers` hashes run at once (≤ cores, so a login flood leaves the async
//! executor free for refreshes and protected routes); up to `queue` more wait;
//! anything beyond is refused at once with `overloaded` instead of piling up.
//! Hashing threads also run at a lower CPU priority (nice 10), so that on a
//! busy core a login flood yields to refreshes and protected routes instead
//! of sharing the core with them equally.

use sesame_core::password::{self, HashError, HashParams, Password, PasswordHasher, Verified};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The server's [`PasswordHasher`].
#[derive(Debug, Clone)]
pub struct PooledHasher {
    params: HashParams,
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl PooledHasher {
    /// A pool of `workers` running hashes and `queue` waiting ones.
    pub fn new(params: HashParams, workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            params,
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(HashParams) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            metrics_overloaded();
            HashError::Overloaded
        })?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Internal)?;
        let params = self.params;
        tokio::task::spawn_blocking(move || {
            lower_priority();
            job(params)
        })
        .await
        .map_err(|_| HashError::Internal)
    }
}

/// Lowers the calling (blocking-pool) thread's priority once: Linux keeps
/// the nice value per thread. Tokio reuses these threads for other blocking
/// work, which then also runs niced — none of it is latency-critical.
fn lower_priority() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    DONE.with(|done| {
        if done.replace(true) {
            return;
        }
        #[cfg(target_os = "linux")]
        if rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASH_NICE).is_err()
        {
            // A sandbox may forbid it: the priority stays as it was.
            tracing::debug!("could not lower the hashing thread's priority");
        }
    });
}

/// The nice value of hashing threads (0 is normal, 19 the lowest).
#[cfg(target_os = "linux")]
const HASH_NICE: i32 = 10;

fn metrics_overloaded() {
    crate::telemetry::overloaded();
    tracing::warn!("password hashing pool full: answering overloaded");
}

#[async_trait::async_trait]
impl PasswordHasher for PooledHasher {
    async fn hash(&self, pw: Password) -> Result<String, HashError> {
        self.run(move |p| password::hash_blocking(&p, &pw)).await?
    }

    async fn verify(&self, pw: Password, phc: String) -> Result<Verified, HashError> {
        self.run(move |p| password::verify_blocking(&p, &pw, &phc))
            .await
    }
}
