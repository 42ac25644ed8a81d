//! Leader election on a coordination.k8s.io/v1 Lease, through kube-lease-manager.
//!
//! The Lease is created when missing; the holder renews it `grace` seconds before it expires;
//! another replica takes it once it has expired, or at once after the holder released it on a
//! graceful stop. Leadership is published on a `watch` channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

pub(crate) struct Leadership {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The lease manager's own task, aborted on a crash-like stop so it cannot release.
    manager: Arc<Mutex<Option<AbortHandle>>>,
}

impl Leadership {
    /// Gives the Lease up (if held) and stops electing.
    pub(crate) async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Stops at once without releasing the Lease.
    pub(crate) fn abort(&self) {
        if let Some(m) = self.manager.lock().ok().and_then(|mut m| m.take()) {
            m.abort();
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.abort();
    }
}

pub(crate) fn spawn(client: Client, namespace: String, name: String, identity: String, duration: u64, grace: u64, tx: watch::Sender<bool>) -> Leadership {
    let (stop_tx, stop_rx) = oneshot::channel();
    let manager = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run(client, namespace, name, identity, duration, grace, tx, stop_rx, manager.clone()));
    Leadership { stop: Some(stop_tx), task: Some(task), manager }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    duration: u64,
    grace: u64,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    manager_handle: Arc<Mutex<Option<AbortHandle>>>,
) {
    let lease = format!("Lease {namespace}/{name}");
    let mut delay = Duration::from_millis(500);
    loop {
        let build = LeaseManagerBuilder::new(client.clone(), &name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace(grace)
            .build();
        let built = tokio::select! {
            r = build => r,
            _ = &mut stop => return,
        };
        let manager = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(object = %lease, error = %e, retry_in = ?delay, "leader election: cannot read or create the Lease");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => return,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        delay = Duration::from_millis(500);
        let (mut rx, handle) = manager.watch().await;
        if let Ok(mut m) = manager_handle.lock() {
            *m = Some(handle.abort_handle());
        }
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The manager gave up (it logs why); start over.
                        if tx.send_replace(false) {
                            tracing::warn!(object = %lease, %identity, "lost leadership: the lease manager stopped");
                        }
                        break;
                    }
                    let now = *rx.borrow_and_update();
                    // Only a change is news: the status writer and the event recorder start over
                    // on each notification (a recorder that starts over sends its Sync events
                    // again). The manager sends only changes today; this keeps it so here.
                    let mut was = now;
                    tx.send_if_modified(|v| {
                        was = std::mem::replace(v, now);
                        was != now
                    });
                    if now && !was {
                        tracing::info!(object = %lease, %identity, "became leader");
                    } else if !now && was {
                        tracing::info!(object = %lease, %identity, "lost leadership");
                    }
                }
                _ = &mut stop => {
                    // Dropping the receiver makes the manager release the Lease and exit.
                    drop(rx);
                    let _ = tokio::time::timeout(Duration::from_secs(4), handle).await;
                    if tx.send_replace(false) {
                        tracing::info!(object = %lease, %identity, "released leadership");
                    }
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => return,
        }
    }
}
