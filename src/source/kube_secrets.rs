//! Secrets by name: the Kubernetes source reads only the Secrets the objects name (see
//! `compile::refs_secrets`), never a list of Secrets.
//!
//! Each named Secret has its own task, which makes exactly these requests:
//!
//! 1. `GET /api/v1/namespaces/NS/secrets/NAME` (RBAC verb `get`). A 404 means the Secret does
//!    not exist (yet): the store holds none, and compile reports it missing as before.
//! 2. `GET /api/v1/namespaces/NS/secrets?watch=true&fieldSelector=metadata.name%3DNAME
//!    &resourceVersion=RV&timeoutSeconds=290` (RBAC verb `watch`; the API server authorizes a
//!    collection request whose field selector pins `metadata.name` as a request for that
//!    name). RV is the resourceVersion the GET returned; after a 404 it is left unset, so the
//!    watch starts with the current state and sees the Secret's creation.
//! 3. When the watch times out, it is opened again from the last resourceVersion seen; a
//!    `410 Gone` goes back to step 1 at once; any other error waits out the backoff (the same
//!    as the other watches) and goes back to step 1.
//!
//! No request lists Secrets, so RBAC needs `get` and `watch` on Secrets and never `list`.
//! When no object names a Secret any more, its task is stopped and it leaves the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::kube::{Change, Watches};
use crate::store::{Key, Store};

/// Which Secrets a store (without Secrets) names.
#[derive(Clone)]
pub struct SecretRefs(pub Arc<dyn Fn(&Store) -> BTreeSet<Key> + Send + Sync>);

impl std::fmt::Debug for SecretRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretRefs")
    }
}

impl Default for SecretRefs {
    /// Names nothing: only the flags' Secrets are read.
    fn default() -> Self {
        SecretRefs(Arc::new(|_| BTreeSet::new()))
    }
}

struct Running {
    slot: Arc<Mutex<Option<Arc<Secret>>>>,
    ready: watch::Receiver<bool>,
    task: AbortHandle,
    label: String,
}

/// The by-name watches of the Secrets named now.
pub struct SecretWatches {
    client: Client,
    w: Watches,
    refs: SecretRefs,
    /// Always named (the flags' Secrets).
    fixed: BTreeSet<Key>,
    running: Mutex<BTreeMap<Key, Running>>,
}

impl SecretWatches {
    pub fn new(client: Client, w: Watches, refs: SecretRefs, fixed: BTreeSet<Key>) -> SecretWatches {
        SecretWatches { client, w, refs, fixed, running: Mutex::new(BTreeMap::new()) }
    }

    /// Starts a watch for each Secret `store` names that has none, and stops those of the
    /// Secrets it no longer names. Returns the readiness of the watches it started.
    pub fn reconcile(&self, store: &Store) -> Vec<watch::Receiver<bool>> {
        let mut wanted = (self.refs.0)(store);
        wanted.extend(self.fixed.iter().cloned());
        let mut running = self.running.lock().expect("secret watches lock");
        let gone: Vec<Key> = running.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
        for k in gone {
            if let Some(r) = running.remove(&k) {
                r.task.abort();
                // A watch that was failing no longer makes the configuration stale.
                self.w.health.listed(&r.label);
                tracing::debug!(watch = %r.label, "no longer named: stopped");
            }
        }
        let mut started = Vec::new();
        for k in wanted {
            if running.contains_key(&k) || k.0.is_empty() || k.1.is_empty() {
                continue;
            }
            let label = format!("Secret {}/{}", k.0, k.1);
            let slot = Arc::new(Mutex::new(None));
            let (ready_tx, ready) = watch::channel(false);
            let api = Api::<Secret>::namespaced(self.client.clone(), &k.0);
            let task = tokio::spawn(run(api, k.1.clone(), label.clone(), slot.clone(), ready_tx, self.w.clone()));
            started.push(ready.clone());
            running.insert(k, Running { slot, ready, task: task.abort_handle(), label });
        }
        started
    }

    /// The readiness of every watch running now.
    pub fn readiness(&self) -> Vec<watch::Receiver<bool>> {
        self.running.lock().expect("secret watches lock").values().map(|r| r.ready.clone()).collect()
    }

    /// Puts the Secrets read so far into `s`.
    pub fn fill(&self, s: &mut Store) {
        for (k, r) in self.running.lock().expect("secret watches lock").iter() {
            if let Some(secret) = r.slot.lock().expect("secret slot lock").clone() {
                s.secrets.insert(k.clone(), secret);
            }
        }
    }

    /// The Secrets being watched now.
    pub fn watched(&self) -> Vec<Key> {
        self.running.lock().expect("secret watches lock").keys().cloned().collect()
    }

    pub fn abort(&self) {
        for r in self.running.lock().expect("secret watches lock").values() {
            r.task.abort();
        }
    }
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Waits until every watch in `ready` has done its first GET.
pub async fn wait_ready(ready: Vec<watch::Receiver<bool>>) {
    for mut r in ready {
        let _ = r.wait_for(|v| *v).await;
    }
}

fn store_in(slot: &Mutex<Option<Arc<Secret>>>, secret: Option<Secret>) -> bool {
    let new = secret.map(|mut s| {
        s.metadata.managed_fields = None;
        Arc::new(s)
    });
    let mut cur = slot.lock().expect("secret slot lock");
    let changed = cur.as_ref().map(|s| s.resource_version()) != new.as_ref().map(|s| s.resource_version());
    *cur = new;
    changed
}

/// Runs `store`, noting the Secret as changed when it says so, as one step against a read of
/// the store (see `kube_changes`). Any Secret change compiles everything: the name alone says so.
fn noted(w: &Watches, name: &str, store: impl FnOnce() -> bool) -> bool {
    let mut pending = w.log.lock();
    let changed = store();
    if changed {
        pending.note([crate::store::ObjRef::new("Secret", "", name)]);
    }
    changed
}

/// GET, then WATCH by name, forever (see the module comment).
async fn run(api: Api<Secret>, name: String, label: String, slot: Arc<Mutex<Option<Arc<Secret>>>>, ready: watch::Sender<bool>, w: Watches) {
    let mut retry = w.backoff.build();
    loop {
        match round(&api, &name, &label, &slot, &ready, &w, &mut *retry).await {
            Ok(()) => tracing::info!(watch = %label, "resource version expired (410 Gone): reading it again"),
            Err(e) => {
                let delay = retry.next().unwrap_or(w.backoff.max);
                w.health.failed(&label, &e, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One GET and the watches that follow it; `Ok` on a 410 Gone.
async fn round(api: &Api<Secret>, name: &str, label: &str, slot: &Mutex<Option<Arc<Secret>>>, ready: &watch::Sender<bool>, w: &Watches, retry: &mut dyn kube::runtime::utils::Backoff) -> Result<(), String> {
    let got = api.get_opt(name).await.map_err(|e| e.to_string())?;
    let mut rv = got.as_ref().and_then(|s| s.metadata.resource_version.clone()).unwrap_or_default();
    tracing::debug!(watch = %label, found = got.is_some(), "read");
    let changed = noted(w, name, || store_in(slot, got));
    retry.reset();
    w.health.listed(label);
    ready.send_replace(true);
    if changed {
        let _ = w.tx.send(Change::Objects);
    }
    let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(290);
    loop {
        let stream = api.watch(&params, &rv).await.map_err(|e| e.to_string())?;
        let mut stream = stream.boxed();
        while let Some(ev) = stream.try_next().await.map_err(|e| e.to_string())? {
            let (secret, deleted) = match ev {
                WatchEvent::Added(s) | WatchEvent::Modified(s) => (s, false),
                WatchEvent::Deleted(s) => (s, true),
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) if e.code == 410 => return Ok(()),
                WatchEvent::Error(e) => return Err(format!("watch: {} ({})", e.message, e.code)),
            };
            if secret.name_any() != name {
                continue;
            }
            rv = secret.metadata.resource_version.clone().unwrap_or(rv);
            tracing::debug!(watch = %label, deleted, "changed");
            if noted(w, name, || store_in(slot, (!deleted).then_some(secret)) || deleted) {
                let _ = w.tx.send(Change::Objects);
            }
        }
    }
}
