//! Watch health (whether the served configuration may be stale) and the watches' retry backoff.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::runtime::watcher;

/// Whether the configuration being served may be out of date.
///
/// `stale` is true while any watch is failing (API server unreachable, erroring, or refusing a
/// list) and has not yet completed a fresh list; the proxy keeps serving the last configuration
/// meanwhile, and `/healthz` stays ready.
#[derive(Debug, Default)]
pub struct SourceHealth {
    /// True while the served configuration may be stale. Read it with `Ordering::Relaxed`.
    pub stale: AtomicBool,
    /// How many times a watch failed since start.
    pub failures: AtomicU64,
    /// How many full lists completed since start (first sync and every resync).
    pub lists: AtomicU64,
    failing: Mutex<BTreeMap<String, String>>,
}

impl SourceHealth {
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// The watches failing now, with their last error.
    pub fn failing(&self) -> BTreeMap<String, String> {
        self.failing.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub(super) fn failed(&self, watch: &str, error: &str, retry_in: Duration) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let Ok(mut failing) = self.failing.lock() else { return };
        let first = failing.is_empty();
        let again = failing.insert(watch.to_string(), error.to_string()).is_some();
        self.stale.store(true, Ordering::Relaxed);
        if first {
            tracing::warn!(watch, error, retry_in = ?retry_in, "Kubernetes API unreachable or erroring: serving the last configuration, which is now stale");
        } else if !again {
            tracing::warn!(watch, error, retry_in = ?retry_in, "watch failed; the configuration stays stale until it relists");
        } else {
            tracing::debug!(watch, error, retry_in = ?retry_in, "watch failed again");
        }
    }

    pub(super) fn listed(&self, watch: &str) {
        self.lists.fetch_add(1, Ordering::Relaxed);
        let Ok(mut failing) = self.failing.lock() else { return };
        if failing.remove(watch).is_some() {
            tracing::info!(watch, "relisted after an error");
            if failing.is_empty() {
                self.stale.store(false, Ordering::Relaxed);
                tracing::info!("Kubernetes API reachable again: every kind relisted, configuration is current");
            }
        }
    }
}

/// Retry delays after a watch error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Longest delay; delays double up to it.
    pub max: Duration,
}

impl Default for Backoff {
    /// kube-rs's (and client-go's) reflector default: 0.8 s doubling to 30 s, with jitter.
    fn default() -> Self {
        Backoff { min: Duration::from_millis(800), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    pub(super) fn build(self) -> Box<dyn kube::runtime::utils::Backoff> {
        if self == Backoff::default() {
            Box::new(watcher::DefaultBackoff::default())
        } else {
            Box::new(Exponential { opts: self, next: self.min })
        }
    }
}

/// Doubling delays with ±25% jitter, for the shorter backoffs tests use.
struct Exponential {
    opts: Backoff,
    next: Duration,
}

impl Iterator for Exponential {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.opts.max);
        let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as f64 / u64::MAX as f64;
        Some(base.mul_f64(0.75 + r * 0.5))
    }
}

impl kube::runtime::utils::Backoff for Exponential {
    fn reset(&mut self) {
        self.next = self.opts.min;
    }
}

