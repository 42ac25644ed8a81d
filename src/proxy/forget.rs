//! Forgetting what the live configuration no longer uses: idle upstream connections and
//! balancer state of endpoints that are gone, and any request series of a gone route that a
//! request still in flight on an older configuration made after the swap dropped it.
//!
//! This walks every backend and route, so at 10,000 Ingresses it costs more than compiling a
//! change. It only bounds memory, so it runs after a change is live, off the apply loop, and
//! once for a burst of changes: when the configuration has not changed for [`QUIET`], or
//! [`AT_MOST`] after the first change of a steady stream. (The swap itself drops the series
//! of the routes a change removed, from the hosts it touched only.) Then the allocator's free
//! pages go back to the system.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shared;

/// Quiet time after a change before forgetting.
pub const QUIET: Duration = Duration::from_millis(300);
/// The longest forgetting waits while changes keep coming.
pub const AT_MOST: Duration = Duration::from_secs(3);

/// One forgetting pending at most; a change while one waits joins it.
#[derive(Debug, Default)]
pub struct Forget {
    pending: std::sync::OnceLock<mpsc::Sender<()>>,
}

impl Forget {
    /// Asks for `shared` to forget what its live configuration no longer uses. Inside a
    /// runtime this returns at once; outside one it forgets before returning.
    pub fn later(&self, shared: &Arc<Shared>) {
        let tx = self.pending.get_or_init(|| {
            let (tx, rx) = mpsc::channel(1);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(run(Arc::downgrade(shared), rx));
            }
            tx
        });
        if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
            shared.forget_unused();
        }
    }
}

/// Ends when the `Shared` is dropped: its sender goes with it.
async fn run(shared: Weak<Shared>, mut asked: mpsc::Receiver<()>) {
    while asked.recv().await.is_some() {
        let deadline = Instant::now() + AT_MOST;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(deadline);
            match tokio::time::timeout_at(quiet_until, asked.recv()).await {
                Ok(Some(())) if Instant::now() < deadline => continue,
                Ok(None) => return,
                _ => break,
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        let sweep = move || {
            shared.forget_unused();
            release_free_memory();
        };
        if tokio::task::spawn_blocking(sweep).await.is_err() {
            return;
        }
    }
}

/// Gives the allocators' free pages back to the system. A change frees the configuration and
/// objects it replaced, in pieces spread among pages still in use, which an allocator keeps for
/// later: with glibc's malloc, at 1,000 Ingresses, 3,000 changes grew the resident memory from
/// 77 to 114 MB with a live heap of 34 MB, and `malloc_trim` brought it back to 70 MB. The
/// binary allocates with jemalloc (src/main.rs), which is told to purge its unused pages now
/// rather than over the next seconds; glibc's malloc still serves C code (aws-lc) and the
/// test binaries. It runs here, once per burst of changes and off the apply loop.
fn release_free_memory() {
    let started = std::time::Instant::now();
    // jemalloc's error number, 0 when it purged.
    #[cfg(not(target_env = "msvc"))]
    let purge = {
        // MALLCTL_ARENAS_ALL: every arena.
        const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
        // SAFETY: the name is NUL-terminated, and a purge reads and writes no value (all four
        // pointers null, length 0). jemalloc's controls may be called from any thread.
        unsafe { tikv_jemalloc_sys::mallctl(PURGE_ALL.as_ptr().cast(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0) }
    };
    #[cfg(target_env = "msvc")]
    let purge = 0;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and may be called from any thread at any time.
        unsafe { malloc_trim(0) };
    }
    tracing::debug!(took_ms = started.elapsed().as_secs_f64() * 1000.0, purge, "free memory given back");
}
