//! Ingress status: the addresses in `status.loadBalancer.ingress` of every Ingress we own.
//!
//! The addresses come from `--publish-status-address` (IPs as `ip`, names as `hostname`), else
//! from the `--publish-service` Service (its load-balancer ingress, else its external IPs),
//! watched. Only the leader writes, with PUT on the status subresource (optimistic
//! concurrency on the resourceVersion; a conflict re-reads once). An Ingress of another class
//! is never touched.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::Applied;
use crate::store::SERVICE_NAME_LABEL;
use crate::source::kube::{Backoff, Change, SourceHealth, Watches};
use crate::store::Key;

/// Where the addresses come from.
#[derive(Debug, Clone)]
pub(crate) enum Publish {
    Addresses(Vec<IngressLoadBalancerIngress>),
    Service(Key),
}

/// `--publish-status-address a,b`: IPs become `ip`, anything else `hostname`; sorted, deduplicated.
pub fn parse_status_addresses(list: &[String]) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<IngressLoadBalancerIngress> = list
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => IngressLoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() },
            Err(_) => IngressLoadBalancerIngress { hostname: Some(s.to_string()), ..Default::default() },
        })
        .collect();
    normalize(&mut out);
    out
}

/// The addresses a Service publishes: its load-balancer ingress, else its external IPs.
pub fn addresses_of_service(svc: &Service) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<IngressLoadBalancerIngress> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|i| match (&i.ip, &i.hostname) {
                    (Some(ip), _) if !ip.is_empty() => Some(IngressLoadBalancerIngress { ip: Some(ip.clone()), ..Default::default() }),
                    (_, Some(h)) if !h.is_empty() => Some(IngressLoadBalancerIngress { hostname: Some(h.clone()), ..Default::default() }),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out = parse_status_addresses(svc.spec.as_ref().and_then(|s| s.external_ips.clone()).unwrap_or_default().as_slice());
    }
    normalize(&mut out);
    out
}

fn normalize(list: &mut Vec<IngressLoadBalancerIngress>) {
    // IPs first, then host names.
    list.sort_by(|a, b| (a.ip.is_none(), &a.ip, &a.hostname).cmp(&(b.ip.is_none(), &b.ip, &b.hostname)));
    list.dedup_by(|a, b| a.ip == b.ip && a.hostname == b.hostname);
}

/// What an Ingress's status says now, as `ip`/`hostname` pairs.
fn current(ing: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    let mut out: Vec<IngressLoadBalancerIngress> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|l| l.iter().map(|i| IngressLoadBalancerIngress { ip: i.ip.clone(), hostname: i.hostname.clone(), ports: None }).collect())
        .unwrap_or_default();
    normalize(&mut out);
    out
}

fn show(list: &[IngressLoadBalancerIngress]) -> String {
    let v: Vec<&str> = list.iter().filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref())).collect();
    if v.is_empty() { "(none)".into() } else { v.join(",") }
}

/// The addresses to publish, as they change: None until known.
pub(crate) fn addresses(client: Client, publish: Publish, health: Arc<SourceHealth>, backoff: Backoff) -> (watch::Receiver<Option<Vec<IngressLoadBalancerIngress>>>, Vec<AbortHandle>) {
    match publish {
        Publish::Addresses(list) => {
            let (tx, rx) = watch::channel(Some(list));
            // Keep the sender alive for as long as anyone listens.
            let keep = tokio::spawn(async move { tx.closed().await });
            (rx, vec![keep.abort_handle()])
        }
        Publish::Service((ns, name)) => {
            let (tx, rx) = watch::channel(None);
            let (ch_tx, mut ch_rx) = mpsc::unbounded_channel::<Change>();
            let watches = Watches { tx: ch_tx, health, backoff, log: Default::default() };
            let api = Api::<Service>::namespaced(client, &ns);
            let (reader, watch_task) = watches.spawn(format!("Service {ns}/{name} (--publish-service)"), api, kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}")), Change::Objects);
            let task = tokio::spawn(async move {
                let mut warned = false;
                while ch_rx.recv().await.is_some() {
                    let svc = reader.state().into_iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
                    let list = match &svc {
                        Some(s) => addresses_of_service(s),
                        None => {
                            if !warned {
                                tracing::warn!(object = %format!("Service {ns}/{name}"), "the --publish-service Service does not exist: Ingress status addresses are cleared");
                                warned = true;
                            }
                            Vec::new()
                        }
                    };
                    if svc.is_some() {
                        warned = false;
                    }
                    tx.send_if_modified(|cur| {
                        if cur.as_ref() == Some(&list) {
                            return false;
                        }
                        tracing::info!(object = %format!("Service {ns}/{name}"), addresses = %show(&list), "publish addresses");
                        *cur = Some(list.clone());
                        true
                    });
                }
            });
            (rx, vec![watch_task, task.abort_handle()])
        }
    }
}

fn ingress_name(ns: &str, name: &str) -> String {
    format!("Ingress {ns}/{name}")
}

/// Writes `addrs` into the status of `ing`; a conflict re-reads the Ingress once.
async fn put_status(client: &Client, ing: &Ingress, addrs: &[IngressLoadBalancerIngress]) -> Result<(), kube::Error> {
    let ns = ing.metadata.namespace.as_deref().unwrap_or("");
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let api = Api::<Ingress>::namespaced(client.clone(), ns);
    let with_status = |mut obj: Ingress| {
        obj.status = Some(IngressStatus { load_balancer: Some(IngressLoadBalancerStatus { ingress: if addrs.is_empty() { None } else { Some(addrs.to_vec()) } }) });
        obj
    };
    let call = |obj: Ingress| {
        let api = api.clone();
        async move { tokio::time::timeout(Duration::from_secs(10), api.replace_status(name, &PostParams::default(), &obj)).await }
    };
    let timeout = || kube::Error::Service("request timed out".into());
    match call(with_status(ing.clone())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
            // A plain GET: RBAC grants `get` on ingresses, and only `update` on their status.
            let fresh = api.get(name).await?;
            call(with_status(fresh)).await.map_err(|_| timeout())?.map(|_| ())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timeout()),
    }
}

/// When a status pass that failed is tried again: 500 ms after the first failure, doubling to
/// 30 s, back to 500 ms after a pass that succeeds. Shared by the Ingress and Gateway writers.
pub(crate) struct WriteRetry {
    retry_at: Option<tokio::time::Instant>,
    delay: Duration,
}

impl WriteRetry {
    pub(crate) fn new() -> Self {
        WriteRetry { retry_at: None, delay: Duration::from_millis(500) }
    }

    /// Resolves when a retry is due; never while none is pending.
    pub(crate) async fn due(&self) {
        match self.retry_at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    }

    /// Records how the pass just made went.
    pub(crate) fn record(&mut self, ok: bool) {
        if ok {
            self.retry_at = None;
            self.delay = Duration::from_millis(500);
        } else {
            self.retry_at = Some(tokio::time::Instant::now() + self.delay);
            self.delay = (self.delay * 2).min(Duration::from_secs(30));
        }
    }

    /// A pass is being made now: the pending retry is part of it.
    pub(crate) fn clear(&mut self) {
        self.retry_at = None;
    }
}

/// Keeps the status of our Ingresses at the published addresses, while we lead.
pub(crate) async fn run_writer(
    client: Client,
    mut leader: watch::Receiver<bool>,
    mut applied: watch::Receiver<Option<Arc<Applied>>>,
    mut addresses: watch::Receiver<Option<Vec<IngressLoadBalancerIngress>>>,
) {
    // What we wrote, against which resourceVersion: not rewritten until the watch shows it.
    let mut written: HashMap<Key, (String, Vec<IngressLoadBalancerIngress>)> = HashMap::new();
    let mut retry = WriteRetry::new();
    loop {
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = applied.changed() => if r.is_err() { return },
            r = addresses.changed() => if r.is_err() { return },
            _ = retry.due() => {}
        }
        retry.clear();
        if !*leader.borrow_and_update() {
            written.clear();
            continue;
        }
        let Some(app) = applied.borrow_and_update().clone() else { continue };
        let Some(addrs) = addresses.borrow_and_update().clone() else { continue };
        retry.record(sync(&client, &app, &addrs, &leader, &mut written).await);
    }
}

/// One pass over our Ingresses; false when some write failed.
async fn sync(client: &Client, app: &Applied, addrs: &[IngressLoadBalancerIngress], leader: &watch::Receiver<bool>, written: &mut HashMap<Key, (String, Vec<IngressLoadBalancerIngress>)>) -> bool {
    written.retain(|k, _| app.store.ingresses.contains_key(k));
    for (key, ing) in &app.store.ingresses {
        if !app.status.owns_ingress(key) {
            continue;
        }
        let (ns, name) = key;
        let key = key.clone();
        if current(ing) == addrs {
            written.remove(&key);
            continue;
        }
        let rv = ing.metadata.resource_version.clone().unwrap_or_default();
        if written.get(&key).is_some_and(|(v, a)| *v == rv && a == addrs) {
            continue;
        }
        if !*leader.borrow() {
            return true;
        }
        match put_status(client, ing, addrs).await {
            Ok(()) => {
                tracing::info!(object = %ingress_name(ns, name), addresses = %show(addrs), "status updated");
                written.insert(key, (rv, addrs.to_vec()));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => tracing::debug!(object = %ingress_name(ns, name), "gone before its status was written"),
            Err(e) => {
                // Likely the API server is away: one line per attempt, not one per Ingress.
                tracing::warn!(object = %ingress_name(ns, name), error = %e, "status update failed; will retry");
                return false;
            }
        }
    }
    true
}

/// Ready endpoints of the publish Service other than this replica's pod.
async fn other_replicas(client: &Client, ns: &str, name: &str, identity: &str) -> Result<usize, kube::Error> {
    let api = Api::<EndpointSlice>::namespaced(client.clone(), ns);
    let slices = api.list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}"))).await?;
    let mut pods = std::collections::HashSet::new();
    for slice in &slices.items {
        for ep in slice.endpoints.iter().flatten() {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready) != Some(false);
            let terminating = c.and_then(|c| c.terminating) == Some(true);
            if !ready || terminating {
                continue;
            }
            let pod = ep.target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_else(|| ep.addresses.join(","));
            if pod != identity {
                pods.insert(pod);
            }
        }
    }
    Ok(pods.len())
}

/// On shutdown of the leader: clears the addresses of our Ingresses unless other replicas are
/// still running (they are counted from the publish Service's EndpointSlices; without
/// `--publish-service` they cannot be counted, and the next leader writes the addresses back).
pub(crate) async fn clear_on_shutdown(client: &Client, app: &Applied, publish_service: Option<&Key>, identity: &str) {
    if let Some((ns, name)) = publish_service {
        match other_replicas(client, ns, name, identity).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(replicas = n, object = %format!("Service {ns}/{name}"), "other replicas are running: Ingress status left as is");
                return;
            }
            Err(e) => {
                tracing::warn!(object = %format!("Service {ns}/{name}"), error = %e, "cannot tell whether other replicas are running: Ingress status left as is");
                return;
            }
        }
    }
    for (key, ing) in &app.store.ingresses {
        if !app.status.owns_ingress(key) || current(ing).is_empty() {
            continue;
        }
        let (ns, name) = key;
        match put_status(client, ing, &[]).await {
            Ok(()) => tracing::info!(object = %ingress_name(ns, name), "status addresses cleared on shutdown"),
            Err(e) => tracing::warn!(object = %ingress_name(ns, name), error = %e, "could not clear the status on shutdown"),
        }
    }
}
