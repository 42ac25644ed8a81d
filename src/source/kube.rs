//! The Kubernetes source: kube-rs reflectors over the API server, feeding the same `Store` the
//! file source feeds.
//!
//! One watch per kind (and per extra object the flags name outside `--watch-namespace`), each a
//! kube-rs `watcher` applied into a reflector store. After any watch error the watch waits out
//! the backoff (kube's default: 0.8 s doubling to 30 s, with jitter) and starts over with a full
//! list, as client-go's reflectors do: while the API server is away the reflector stores keep
//! their last contents, so the last configuration keeps serving; when it is back, every kind is
//! listed afresh. A `410 Gone` during a watch makes the watcher relist at once.
//!
//! Changes are coalesced: 100 ms of quiet (at most 500 ms in all) for a burst that touches any
//! object; an endpoint-only burst waits 20 ms of quiet (at most 100 ms).
//!
//! Each watch notes the objects its events touched (`kube_changes`), and `changes` hands them
//! over with the store, so the engine compiles only what they reach; a re-list notes the
//! objects it found added, removed or at another `resourceVersion`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store as Reader;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use super::kube_health::{Backoff, SourceHealth};
use super::kube_changes::{self, ChangeLog};
use super::kube_gateway::GatewaySource;
use super::kube_secrets::{self, SecretRefs, SecretWatches};
use crate::store::SERVICE_NAME_LABEL;
use crate::store::{Key, ObjRef, Slice, Store, Svc};

/// What a watch event touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Only EndpointSlices.
    Endpoints,
    /// Anything else, or a relist.
    Objects,
}

/// A coalesced burst of changes.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// When the first change of the burst was seen.
    pub seen_at: Instant,
    /// Whether only EndpointSlices changed.
    pub endpoints_only: bool,
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// `--watch-namespace`: None watches every namespace.
    pub watch_namespace: Option<String>,
    /// `--configmap NS/NAME`.
    pub configmap: Option<Key>,
    /// `--tcp-services-configmap` and `--udp-services-configmap`: watched like `configmap`.
    pub service_config_maps: Vec<Key>,
    /// Services the flags name (`--default-backend-service`); watched on their own, with their
    /// EndpointSlices, when they are outside the watched namespace.
    pub extra_services: Vec<Key>,
    /// Secrets the flags name (`--default-ssl-certificate`): always read, by name.
    pub extra_secrets: Vec<Key>,
    /// Which Secrets the other objects name: the only other Secrets read (`kube_secrets`).
    pub secret_refs: SecretRefs,
    /// Quiet time that ends a burst of changes.
    pub debounce: Duration,
    pub backoff: Backoff,
    /// How often API discovery is asked again while some Gateway API kinds are missing.
    pub gateway_rediscovery: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            watch_namespace: None,
            configmap: None,
            service_config_maps: Vec::new(),
            extra_services: Vec::new(),
            extra_secrets: Vec::new(),
            secret_refs: SecretRefs::default(),
            // A burst from the API arrives within milliseconds, and an apply of a few hosts takes
            // a few: a short quiet time (capped at five times it) keeps one change's wait small.
            debounce: Duration::from_millis(10),
            backoff: Backoff::default(),
            gateway_rediscovery: Duration::from_secs(60),
        }
    }
}

/// `Kind ns/name` of an object, for logs.
pub fn describe<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let kind = K::kind(&());
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{kind} {ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        None => format!("{kind} {}", obj.meta().name.as_deref().unwrap_or("")),
    }
}

/// The reflector stores of every kind, filled by the watches.
pub struct KubeSource {
    ingresses: Vec<Reader<Ingress>>,
    classes: Vec<Reader<IngressClass>>,
    services: Vec<Reader<Service>>,
    slices: Vec<Reader<EndpointSlice>>,
    /// The Services and slices the reflectors hold, as last converted for the store.
    compact_services: Compacted<Service, Svc>,
    compact_slices: Compacted<EndpointSlice, Slice>,
    /// The Secrets read by name.
    pub secrets: SecretWatches,
    config_maps: Vec<Reader<ConfigMap>>,
    namespaces: Vec<Reader<Namespace>>,
    /// The Gateway API kinds the cluster serves (see `kube_gateway`).
    pub gateway: GatewaySource,
    /// The watch tasks.
    pub tasks: Vec<AbortHandle>,
    pub health: Arc<SourceHealth>,
    /// The objects the watches changed since the store was last read.
    log: Arc<ChangeLog>,
}

fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn scope_name(kind: &str, ns: Option<&str>, extra: &str) -> String {
    let mut s = match ns {
        Some(ns) => format!("{kind} in namespace {ns}"),
        None => format!("{kind} in all namespaces"),
    };
    if !extra.is_empty() {
        s.push_str(&format!(" ({extra})"));
    }
    s
}

impl KubeSource {
    /// Starts every watch. Batches of changes arrive on the receiver once the first list of
    /// every kind is done (see `wait_until_ready`).
    pub fn start(client: Client, opts: &SourceOptions) -> (KubeSource, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(SourceHealth::default());
        let log = Arc::new(ChangeLog::default());
        let mut src = KubeSource {
            ingresses: Vec::new(),
            classes: Vec::new(),
            services: Vec::new(),
            slices: Vec::new(),
            compact_services: Compacted::default(),
            compact_slices: Compacted::default(),
            secrets: SecretWatches::new(client.clone(), Watches { tx: tx.clone(), health: health.clone(), backoff: opts.backoff, log: log.clone() }, opts.secret_refs.clone(), opts.extra_secrets.iter().cloned().collect()),
            config_maps: Vec::new(),
            namespaces: Vec::new(),
            gateway: GatewaySource::empty(),
            tasks: Vec::new(),
            health: health.clone(),
            log: log.clone(),
        };
        let ns = opts.watch_namespace.as_deref().filter(|n| !n.is_empty());
        let w = Watches { tx: tx.clone(), health: health.clone(), backoff: opts.backoff, log };
        let (gateway, t) = GatewaySource::start(client.clone(), ns.map(str::to_string), w.clone(), opts.gateway_rediscovery);
        src.gateway = gateway;
        src.tasks.push(t);
        let cfg = watcher::Config::default;

        let (r, t) = w.spawn(scope_name("Ingress", ns, ""), scoped::<Ingress>(&client, ns), cfg(), Change::Objects);
        src.ingresses.push(r);
        src.tasks.push(t);
        let (r, t) = w.spawn("IngressClass".into(), Api::<IngressClass>::all(client.clone()), cfg(), Change::Objects);
        src.classes.push(r);
        src.tasks.push(t);
        let (r, t) = w.spawn(scope_name("Service", ns, ""), scoped::<Service>(&client, ns), cfg(), Change::Objects);
        src.services.push(r);
        src.tasks.push(t);
        let (r, t) = w.spawn(scope_name("EndpointSlice", ns, ""), scoped::<EndpointSlice>(&client, ns), cfg(), Change::Endpoints);
        src.slices.push(r);
        src.tasks.push(t);
        let ns_cfg = match ns {
            Some(n) => cfg().fields(&format!("metadata.name={n}")),
            None => cfg(),
        };
        let (r, t) = w.spawn("Namespace".into(), Api::<Namespace>::all(client.clone()), ns_cfg, Change::Objects);
        src.namespaces.push(r);
        src.tasks.push(t);
        let mut config_maps: Vec<&Key> = opts.configmap.iter().chain(opts.service_config_maps.iter()).collect();
        config_maps.sort();
        config_maps.dedup();
        for (cm_ns, name) in config_maps {
            let (r, t) = w.spawn(format!("ConfigMap {cm_ns}/{name}"), Api::<ConfigMap>::namespaced(client.clone(), cm_ns), cfg().fields(&format!("metadata.name={name}")), Change::Objects);
            src.config_maps.push(r);
            src.tasks.push(t);
        }
        // Objects the flags name that the namespaced watches cannot see.
        if let Some(ns) = ns {
            for (svc_ns, name) in opts.extra_services.iter().filter(|(n, _)| n != ns) {
                let (r, t) = w.spawn(format!("Service {svc_ns}/{name}"), Api::<Service>::namespaced(client.clone(), svc_ns), cfg().fields(&format!("metadata.name={name}")), Change::Objects);
                src.services.push(r);
                src.tasks.push(t);
                let (r, t) = w.spawn(
                    format!("EndpointSlices of Service {svc_ns}/{name}"),
                    Api::<EndpointSlice>::namespaced(client.clone(), svc_ns),
                    cfg().labels(&format!("{SERVICE_NAME_LABEL}={name}")),
                    Change::Endpoints,
                );
                src.slices.push(r);
                src.tasks.push(t);
            }
        }
        drop(tx);
        (src, debounce(rx, opts.debounce))
    }

    /// Waits until every watch has completed its first list.
    pub async fn wait_until_ready(&self) {
        for r in &self.ingresses {
            let _ = r.wait_until_ready().await;
        }
        for r in &self.classes {
            let _ = r.wait_until_ready().await;
        }
        for r in &self.services {
            let _ = r.wait_until_ready().await;
        }
        for r in &self.slices {
            let _ = r.wait_until_ready().await;
        }
        for r in &self.config_maps {
            let _ = r.wait_until_ready().await;
        }
        for r in &self.namespaces {
            let _ = r.wait_until_ready().await;
        }
        self.gateway.wait_until_ready().await;
        // Then the Secrets the objects listed name, each by name.
        self.secrets.reconcile(&self.objects());
        kube_secrets::wait_ready(self.secrets.readiness()).await;
    }

    /// The objects the reflectors hold now, as a `Store` (the objects are shared, not copied),
    /// with the Secrets they name. Secrets newly named start being read now, and arrive with a
    /// later batch; Secrets no longer named are dropped.
    pub fn store(&self) -> Store {
        self.changes().0
    }

    /// `store`, and the objects that changed since the last call (a Secret newly named is
    /// one of them once it has been read).
    pub fn changes(&self) -> (Store, Vec<ObjRef>) {
        self.log.take(|| {
            let mut s = self.objects();
            self.secrets.reconcile(&s);
            self.secrets.fill(&mut s);
            s
        })
    }

    /// Every kind but Secrets.
    fn objects(&self) -> Store {
        fn key<K: Resource>(o: &K) -> Key {
            (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
        }
        let mut s = Store::default();
        for o in self.ingresses.iter().flat_map(|r| r.state()) {
            s.ingresses.insert(key(&*o), o);
        }
        for o in self.classes.iter().flat_map(|r| r.state()) {
            s.ingress_classes.insert(o.name_any(), o);
        }
        self.compact_services.convert(self.services.iter().flat_map(|r| r.state()), key, |k, o| {
            s.services.insert(k, o);
        });
        self.compact_slices.convert(self.slices.iter().flat_map(|r| r.state()), key, |k, o| {
            s.endpoint_slices.insert(k, o);
        });
        for o in self.config_maps.iter().flat_map(|r| r.state()) {
            s.config_maps.insert(key(&*o), o);
        }
        for o in self.namespaces.iter().flat_map(|r| r.state()) {
            s.namespaces.insert(o.name_any(), o);
        }
        self.gateway.fill(&mut s);
        s
    }

    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.secrets.abort();
    }
}

/// Objects of one kind as last converted for the store, by the reflector's object they came
/// from: a snapshot converts only what changed since the previous one (a reflector replaces an
/// object's `Arc` when, and only when, the object changes).
struct Compacted<K, V>(std::sync::Mutex<HashMap<Key, (Arc<K>, Arc<V>)>>);

impl<K, V> Default for Compacted<K, V> {
    fn default() -> Self {
        Compacted(Default::default())
    }
}

impl<K, V: for<'a> From<&'a K>> Compacted<K, V> {
    /// Hands `put` the converted form of each of `objects`, and forgets the ones not among them.
    fn convert(&self, objects: impl Iterator<Item = Arc<K>>, key: impl Fn(&K) -> Key, mut put: impl FnMut(Key, Arc<V>)) {
        let mut seen = self.0.lock().expect("the converted objects");
        let mut now = HashMap::with_capacity(seen.len());
        for o in objects {
            let k = key(&o);
            let v = match seen.remove(&k) {
                Some((was, v)) if Arc::ptr_eq(&was, &o) => v,
                _ => Arc::new(V::from(&o)),
            };
            put(k.clone(), v.clone());
            now.insert(k, (o, v));
        }
        *seen = now;
    }
}

/// Spawns watches that report their changes to one channel.
#[derive(Clone)]
pub struct Watches {
    pub tx: mpsc::UnboundedSender<Change>,
    pub health: Arc<SourceHealth>,
    pub backoff: Backoff,
    /// Where the watches note the objects they changed.
    pub log: Arc<ChangeLog>,
}

impl Watches {
    /// Starts one watch of `api` named `name` (for logs); `change` is what its events touch.
    pub fn spawn<K>(&self, name: String, api: Api<K>, cfg: watcher::Config, change: Change) -> (Reader<K>, AbortHandle)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let writer = Writer::<K>::default();
        let reader = writer.as_reader();
        let task = tokio::spawn(run_watch(name, api, cfg, writer, change, self.clone()));
        (reader, task.abort_handle())
    }

    /// Like `spawn`, but returns the watch as a future for the caller to run.
    pub fn prepare<K>(&self, name: String, api: Api<K>, cfg: watcher::Config, change: Change) -> (Reader<K>, impl Future<Output = ()> + Send + 'static)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let writer = Writer::<K>::default();
        let reader = writer.as_reader();
        (reader, run_watch(name, api, cfg, writer, change, self.clone()))
    }

    /// The retry delays, as the watches use them.
    pub fn backoff_iter(&self) -> Box<dyn kube::runtime::utils::Backoff> {
        self.backoff.build()
    }
}

async fn run_watch<K>(name: String, api: Api<K>, cfg: watcher::Config, mut writer: Writer<K>, change: Change, w: Watches)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let Watches { tx, health, backoff, log } = w;
    let kind = kube_changes::static_kind(&K::kind(&()));
    // What the reflector held when a (re-)list began, to note what the list changed.
    let mut before_list = None;
    let mut retry = backoff.build();
    loop {
        let mut stream = watcher::watcher(api.clone(), cfg.clone()).boxed();
        let error = loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    // Managed fields are large and never read.
                    let ev = ev.modify(|o| o.meta_mut().managed_fields = None);
                    match &ev {
                        Event::Init => tracing::debug!(watch = %name, "listing"),
                        Event::Apply(o) => tracing::debug!(object = %describe(o), "changed"),
                        Event::Delete(o) => tracing::debug!(object = %describe(o), "deleted"),
                        Event::InitApply(_) | Event::InitDone => {}
                    }
                    if let Event::Init = ev {
                        before_list = Some(kube_changes::versions(&writer.as_reader()));
                    }
                    {
                        let mut pending = log.lock();
                        writer.apply_watcher_event(&ev);
                        match &ev {
                            Event::Apply(o) | Event::Delete(o) => pending.note([kube_changes::obj_ref(kind, o)]),
                            Event::InitDone => {
                                let after = kube_changes::versions(&writer.as_reader());
                                pending.note(kube_changes::relisted(kind, &before_list.take().unwrap_or_default(), &after));
                            }
                            Event::Init | Event::InitApply(_) => {}
                        }
                    }
                    match ev {
                        Event::InitDone => {
                            tracing::debug!(watch = %name, objects = writer.as_reader().len(), "listed");
                            retry.reset();
                            health.listed(&name);
                            let _ = tx.send(Change::Objects);
                        }
                        Event::Apply(_) | Event::Delete(_) => {
                            let _ = tx.send(change);
                        }
                        Event::Init | Event::InitApply(_) => {}
                    }
                }
                // The watcher has reset itself and relists on the next poll.
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {
                    tracing::info!(watch = %name, "resource version expired (410 Gone): relisting");
                }
                Some(Err(e)) => break e.to_string(),
                None => break "watch stream ended".to_string(),
            }
        };
        let delay = retry.next().unwrap_or(backoff.max);
        health.failed(&name, &error, delay);
        drop(stream);
        tokio::time::sleep(delay).await;
    }
}

/// Coalesces raw changes into batches.
fn debounce(mut raw: mpsc::UnboundedReceiver<Change>, window: Duration) -> mpsc::Receiver<Batch> {
    let (tx, rx) = mpsc::channel::<Batch>(1);
    tokio::spawn(async move {
        while let Some(first) = raw.recv().await {
            let seen_at = Instant::now();
            let start = tokio::time::Instant::now();
            let mut endpoints_only = first == Change::Endpoints;
            loop {
                let (quiet, cap) = if endpoints_only { (window / 5, window) } else { (window, window * 5) };
                let deadline = (start + cap).min(tokio::time::Instant::now() + quiet);
                match tokio::time::timeout_at(deadline, raw.recv()).await {
                    Ok(Some(c)) => endpoints_only &= c == Change::Endpoints,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // While the consumer is busy, further changes wait in `raw` and form the next batch.
            if tx.send(Batch { seen_at, endpoints_only }).await.is_err() {
                return;
            }
        }
    });
    rx
}
