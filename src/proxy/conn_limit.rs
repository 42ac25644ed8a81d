//! `max-worker-connections`: the most client connections (HTTP listeners) open at once. At the
//! bound the listeners stop accepting, as nginx does when its worker connections run out: new
//! connections wait in the kernel's backlog and are taken as open ones close, and the open ones
//! are served as before. nginx's value is per worker process; Vestibule is one process, so the
//! bound is the value times the runtime's worker threads (one per core by default, as
//! ingress-nginx runs one worker process per core). 0: no bound but the descriptor limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ConnLimit {
    open: AtomicUsize,
    limit: AtomicUsize,
    freed: Notify,
    /// Seconds since `start` when "limit reached" was last logged (once per 10 s).
    logged: AtomicU64,
    start: std::time::Instant,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Slot(Arc<ConnLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::AcqRel);
        if before >= self.0.limit.load(Ordering::Acquire) {
            self.0.freed.notify_waiters();
        }
    }
}

impl Default for ConnLimit {
    fn default() -> Self {
        ConnLimit { open: AtomicUsize::new(0), limit: AtomicUsize::new(usize::MAX), freed: Notify::new(), logged: AtomicU64::new(u64::MAX), start: std::time::Instant::now() }
    }
}

impl ConnLimit {
    /// Sets the bound from `max-worker-connections` (per worker thread; 0 for none).
    pub fn set(&self, per_worker: usize) {
        let workers = tokio::runtime::Handle::try_current().map(|h| h.metrics().num_workers()).unwrap_or(1).max(1);
        let limit = if per_worker == 0 { usize::MAX } else { per_worker.saturating_mul(workers) };
        self.limit.store(limit, Ordering::Release);
        self.freed.notify_waiters();
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until one more connection may be accepted.
    pub async fn room(&self) {
        if self.open.load(Ordering::Acquire) < self.limit.load(Ordering::Acquire) {
            return;
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let limit = self.limit.load(Ordering::Acquire);
            if self.open.load(Ordering::Acquire) < limit {
                return;
            }
            let now = self.start.elapsed().as_secs();
            let last = self.logged.load(Ordering::Relaxed);
            if (last == u64::MAX || now >= last + 10) && self.logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                tracing::warn!(limit, "max-worker-connections reached: new connections wait in the backlog until open ones close");
            }
            // Also wakes now and then, should a wake-up race with a close.
            let _ = tokio::time::timeout(Duration::from_secs(1), freed).await;
        }
    }

    /// Counts a connection just accepted.
    pub fn take(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::AcqRel);
        Slot(self.clone())
    }
}
