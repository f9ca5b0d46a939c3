//! Argon2id on a few dedicated threads with a bounded queue.
//!
//! `workers` hashes run at once (≤ cores, so a login flood leaves the async
//! executor free for refreshes and protected routes); up to `queue` more wait;
//! anything beyond is refused at once with `overloaded` instead of piling up.
//! Hashing threads also run at a lower CPU priority (nice 10), so that on a
//! busy core a login flood yields to refreshes and protected routes instead
//! of sharing the core with them equally.

use sesame_core::password::{
    self, HashError, HashParams, Password, PasswordHasher, Scratch, Verified,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use tokio::sync::Semaphore;

/// Why a hashing thread got no job.
enum NoJob {
    /// Nothing came for [`KEEP_MEMORY`].
    Idle,
    /// The pool is gone.
    Disconnected,
}
use NoJob::{Disconnected, Idle};

/// A hashing job: runs on a pool thread, in that thread's Argon2 memory,
/// and sends its own answer.
type Job = Box<dyn FnOnce(HashParams, &mut Scratch) + Send>;

/// How long a hashing thread keeps its Argon2 memory with nothing to do.
const KEEP_MEMORY: std::time::Duration = std::time::Duration::from_secs(1);

/// The server's [`PasswordHasher`]: `workers` dedicated threads (not tokio's
/// blocking pool), each keeping its Argon2id memory (the memory cost,
/// 19 MiB) from one hash to the next while logins keep coming, and wiping
/// and freeing it after [`KEEP_MEMORY`] idle. Dedicated, because on tokio's
/// many blocking threads login floods left hundreds of MiB in glibc's
/// per-thread arenas (RSS 236–882 MiB in `bench/matrix.sh`); kept, because
/// mapping and zeroing fresh pages for every hash cost over a third of a
/// login's CPU. glibc may keep a freed working area in the thread's arena,
/// so after logins RSS holds up to one per hashing thread: bounded, and
/// reused without page faults by the next hash.
#[derive(Debug, Clone)]
pub struct PooledHasher {
    admitted: Arc<Semaphore>,
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl PooledHasher {
    /// A pool of `workers` running hashes and `queue` waiting ones.
    pub fn new(params: HashParams, workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        // Room for every admitted job, so a send never blocks.
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(workers + queue);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sesame-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    let mut scratch = Scratch::default();
                    loop {
                        // The lock is held only while waiting for the next
                        // job, never while hashing.
                        let job = match rx.lock() {
                            Ok(r) if scratch.is_empty() => r.recv().map_err(|_| Disconnected),
                            Ok(r) => r.recv_timeout(KEEP_MEMORY).map_err(|e| match e {
                                RecvTimeoutError::Timeout => Idle,
                                RecvTimeoutError::Disconnected => Disconnected,
                            }),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(params, &mut scratch),
                            Err(Idle) => scratch.release(),
                            // Every sender is gone: the server stopped.
                            Err(Disconnected) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            jobs,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(HashParams, &mut Scratch) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| {
            metrics_overloaded();
            HashError::Overloaded
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |params, scratch| {
            let out = job(params, scratch);
            // The permit is released when the work is done, not when the
            // waiting request goes away: the queue bounds work, not waiters.
            drop(admitted);
            let _ = tx.send(out);
        });
        self.jobs.try_send(job).map_err(|_| HashError::Internal)?;
        rx.await.map_err(|_| HashError::Internal)
    }
}

/// Lowers the calling hashing thread's priority (Linux keeps the nice value
/// per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASH_NICE).is_err() {
        // A sandbox may forbid it: the priority stays as it was.
        tracing::debug!("could not lower the hashing thread's priority");
    }
}

/// The nice value of hashing threads (0 is normal, 19 the lowest).
#[cfg(target_os = "linux")]
const HASH_NICE: i32 = 10;

/// Counts a refusal; warns at most once per [`WARN_EVERY_SECS`]: a flood
/// refuses thousands a second, and a log line each made every refusal
/// several times dearer (the counter has the numbers).
fn metrics_overloaded() {
    crate::telemetry::overloaded();
    static LAST_WARN: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARN.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY_SECS
        && LAST_WARN
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "password hashing pool full: answering overloaded (counted in sesame_overloaded_total; \
             this warning repeats at most every {WARN_EVERY_SECS} s)"
        );
    }
}

/// Spacing of the "pool full" warning.
const WARN_EVERY_SECS: u64 = 10;

#[async_trait::async_trait]
impl PasswordHasher for PooledHasher {
    fn saturated(&self) -> bool {
        let full = self.admitted.available_permits() == 0;
        if full {
            metrics_overloaded();
        }
        full
    }

    async fn hash(&self, pw: Password) -> Result<String, HashError> {
        self.run(move |p, s| password::hash_with(&p, &pw, s))
            .await?
    }

    async fn verify(&self, pw: Password, phc: String) -> Result<Verified, HashError> {
        self.run(move |p, s| password::verify_with(&p, &pw, &phc, s))
            .await
    }
}
