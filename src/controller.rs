//! `vestibule controller`: the Kubernetes API → store → compile → live config → proxy.
//!
//! The source is `source::kube` (reflectors); everything after the store is `serve::Frontend`
//! and `serve::Engine`, exactly as in `serve`. Around that loop, and only on the leader
//! (a coordination.k8s.io/v1 Lease held through kube-lease-manager):
//! - `status`: writes `status.loadBalancer.ingress` of every Ingress we own, and clears it when
//!   the last replica stops;
//! - `gateway_status`: writes the status compile gives GatewayClasses, Gateways and route
//!   parents of ours (with `--update-status`);
//! - `events`: turns each compile diagnostic on an Ingress into a Kubernetes Event, once while it
//!   stands, rate-limited, plus one `Sync` event per change of an Ingress.

mod events;
pub mod gateway_status;
mod leader;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::engine::Read;
use crate::proxy::Shared;
use crate::serve::{Frontend, ServeOptions};
use crate::source::kube::{Backoff, KubeSource, SourceHealth, SourceOptions};
use crate::store::Key;

pub use status::{addresses_of_service, parse_status_addresses};

/// Where the Kubernetes API is.
#[derive(Debug, Clone, Default)]
pub enum ApiConfig {
    /// The in-cluster service account (the default).
    #[default]
    InCluster,
    /// A kubeconfig file (`--kubeconfig`): token, client certificate and CA data all work.
    Kubeconfig(PathBuf),
}

/// Everything `controller` needs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Listeners, class, default backend and certificate, proxy limits, access log: as in
    /// `serve` (`manifests` is not used).
    pub serve: ServeOptions,
    pub api: ApiConfig,
    /// `--watch-namespace`: None (or empty) watches every namespace.
    pub watch_namespace: Option<String>,
    /// `--configmap NS/NAME`: watched into the store; its settings apply over the flags (the
    /// same as `serve.configmap`: either may be set).
    pub configmap: Option<Key>,
    /// `--publish-service NS/NAME`: its load-balancer addresses (or external IPs) go into the
    /// status of our Ingresses.
    pub publish_service: Option<Key>,
    /// `--publish-status-address`: these addresses instead (IPs as `ip`, names as `hostname`).
    pub publish_status_address: Vec<String>,
    /// `--election-id`: the Lease's name.
    pub election_id: String,
    /// `--update-status`.
    pub update_status: bool,
    /// `--update-status-on-shutdown`.
    pub update_status_on_shutdown: bool,
    /// The controller's namespace (the Lease's); default: POD_NAMESPACE, else the service
    /// account's namespace file, else the kubeconfig context's namespace.
    pub namespace: Option<String>,
    /// This replica's identity in the Lease and in Events; default: POD_NAME, else the hostname.
    pub identity: Option<String>,
    /// How long a Lease holds without renewal, in seconds.
    pub lease_duration_secs: u64,
    /// How long before expiry the holder renews, in seconds (less than the duration).
    pub lease_grace_secs: u64,
    /// Quiet time that ends a burst of changes.
    pub debounce: Duration,
    /// Retry delays after a watch error.
    pub backoff: Backoff,
    /// How often API discovery is asked again while some Gateway API kinds are missing (so
    /// that CRDs installed later are watched without a restart).
    pub gateway_rediscovery: Duration,
    /// Events: how many may be sent at once after a quiet time...
    pub event_burst: u32,
    /// ...and how many per second after that.
    pub event_rate: f64,
    /// `--patch-webhook-ca NAME`: the ValidatingWebhookConfiguration whose `caBundle` gets the
    /// generated webhook certificate's CA.
    pub patch_webhook_ca: Option<String>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            serve: ServeOptions { http_port: 80, https_port: 443, healthz_port: 10254, watch_without_class: false, ..ServeOptions::default() },
            api: ApiConfig::InCluster,
            watch_namespace: None,
            configmap: None,
            publish_service: None,
            publish_status_address: Vec::new(),
            election_id: "vestibule-leader".into(),
            update_status: true,
            update_status_on_shutdown: true,
            namespace: None,
            identity: None,
            lease_duration_secs: 15,
            lease_grace_secs: 5,
            // A burst from the API arrives within milliseconds, and an apply of a few hosts takes
            // a few: a short quiet time (capped at five times it) keeps one change's wait small.
            debounce: Duration::from_millis(10),
            backoff: Backoff::default(),
            gateway_rediscovery: Duration::from_secs(60),
            event_burst: 25,
            event_rate: 2.0,
            patch_webhook_ca: None,
        }
    }
}

pub use crate::engine::Applied;

/// A running controller.
pub struct Running {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub healthz: SocketAddr,
    /// The admission webhook, with `--validating-webhook`.
    pub webhook: Option<crate::webhook::Endpoint>,
    pub shared: Arc<Shared>,
    /// `health.stale` is true while the served configuration may be out of date (the API server
    /// is unreachable or erroring and not every kind has been relisted since).
    pub health: Arc<SourceHealth>,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// The controller's namespace (where the Lease is).
    pub namespace: String,
    leader: watch::Receiver<bool>,
    applied: watch::Receiver<Option<Arc<Applied>>>,
    leadership: Option<leader::Leadership>,
    /// Status writer and event recorder: stopped first on shutdown.
    workers: Vec<AbortHandle>,
    /// Watches, the apply loop, listeners.
    tasks: Vec<AbortHandle>,
    client: Client,
    clear_on_shutdown: bool,
    publish_service: Option<Key>,
    shutdown_delay: Duration,
    shutdown_grace: Duration,
}

impl Running {
    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Leadership as it changes.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The last applied configuration's inputs and diagnostics.
    pub fn applied(&self) -> Option<Arc<Applied>> {
        self.applied.borrow().clone()
    }

    /// Stops as on SIGTERM. The data plane drains as in `serve` (unready at once, listeners
    /// closed after `shutdown_delay`, `shutdown_grace` for what is in flight); meanwhile the
    /// leader clears the status addresses when no other replica is running
    /// (`--update-status-on-shutdown`) and releases the Lease, so that another replica takes
    /// over at once. Then everything stops.
    pub async fn shutdown(mut self) {
        for w in &self.workers {
            w.abort();
        }
        let shared = self.shared.clone();
        let drain = shared.shutdown(self.shutdown_delay, self.shutdown_grace);
        let leadership = self.leadership.take();
        let control = async {
            if self.clear_on_shutdown
                && self.is_leader()
                && let Some(app) = self.applied()
            {
                let clear = status::clear_on_shutdown(&self.client, &app, self.publish_service.as_ref(), &self.identity);
                if tokio::time::timeout(Duration::from_secs(10), clear).await.is_err() {
                    tracing::warn!("clearing Ingress status on shutdown timed out");
                }
            }
            if let Some(l) = leadership {
                l.release().await;
            }
        };
        tokio::join!(drain, control);
        self.abort();
        tracing::info!(identity = %self.identity, "controller stopped");
    }

    /// Stops at once, as a crash would: nothing is cleared and the Lease is left to expire.
    pub fn stop(mut self) {
        self.abort();
    }

    fn abort(&mut self) {
        if let Some(l) = &self.leadership {
            l.abort();
        }
        for t in self.workers.iter().chain(self.tasks.iter()) {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.abort();
    }
}

/// A client for `api`.
pub async fn client(api: &ApiConfig) -> anyhow::Result<Client> {
    crate::tls::install_provider();
    let config = match api {
        ApiConfig::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?
        }
        ApiConfig::InCluster => kube::Config::incluster().map_err(|e| anyhow::anyhow!("in-cluster Kubernetes configuration: {e}; outside a cluster, pass --kubeconfig FILE"))?,
    };
    Client::try_from(config).map_err(|e| anyhow::anyhow!("Kubernetes client: {e}"))
}

const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

fn controller_namespace(opt: Option<&str>, client: &Client) -> String {
    if let Some(ns) = opt.filter(|n| !n.is_empty()) {
        return ns.to_string();
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.trim().is_empty()
    {
        return ns.trim().to_string();
    }
    if let Ok(ns) = std::fs::read_to_string(SA_NAMESPACE_FILE)
        && !ns.trim().is_empty()
    {
        return ns.trim().to_string();
    }
    let ns = client.default_namespace().to_string();
    tracing::info!(namespace = %ns, "neither POD_NAMESPACE nor a service account namespace: using the kubeconfig's namespace for the Lease");
    ns
}

fn identity(opt: Option<&str>) -> String {
    if let Some(id) = opt.filter(|i| !i.is_empty()) {
        return id.to_string();
    }
    for var in ["POD_NAME", "HOSTNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_string();
        }
    }
    if let Ok(h) = std::fs::read_to_string("/etc/hostname")
        && !h.trim().is_empty()
    {
        return h.trim().to_string();
    }
    format!("vestibule-{}", std::process::id())
}

/// Connects to the API server, binds the listeners and starts watching, serving, electing a
/// leader, and (on the leader) writing status and Events.
pub async fn start(opts: ControllerOptions) -> anyhow::Result<Running> {
    if opts.lease_duration_secs == 0 || opts.lease_grace_secs == 0 || opts.lease_grace_secs >= opts.lease_duration_secs {
        anyhow::bail!("lease grace ({}s) must be positive and shorter than the lease duration ({}s)", opts.lease_grace_secs, opts.lease_duration_secs);
    }
    // `--configmap` feeds both the watch and the compile settings, whichever field set it.
    let mut opts = opts;
    let configmap = opts.configmap.clone().or_else(|| opts.serve.configmap.clone());
    (opts.configmap, opts.serve.configmap) = (configmap.clone(), configmap);
    let client = client(&opts.api).await?;
    let namespace = controller_namespace(opts.namespace.as_deref(), &client);
    let identity = identity(opts.identity.as_deref());
    if let Some(w) = &mut opts.serve.webhook
        && w.names.is_empty()
    {
        w.names = crate::webhook::service_names(&namespace);
    }

    let mut front = Frontend::bind(&opts.serve).await?;
    // Health answers 503 until the first configuration from the cluster is live. The traffic
    // listeners open now, before the cluster is read, so that a taken port fails the start;
    // until the first configuration they answer 404.
    let mut tasks: Vec<AbortHandle> = front.spawn().iter().map(|t| t.abort_handle()).collect();
    let bootstrap = front.shared.listeners.reconcile(&front.engine.settings.listeners, &front.shared);
    if let Some(e) = bootstrap.first() {
        anyhow::bail!("{e}");
    }
    let (http, https) = (front.listener("http")?, front.listener("https")?);
    if let Some((_, task)) = front.spawn_http3(&opts.serve, https) {
        tasks.push(task.abort_handle());
    }
    let webhook = front.webhook.as_ref().map(|w| w.endpoint.clone());
    match (&opts.patch_webhook_ca, webhook.as_ref().map(|w| w.ca_pem.as_ref())) {
        (Some(name), Some(Some(ca))) => tasks.push(crate::webhook::patch::spawn(client.clone(), name.clone(), ca.clone()).abort_handle()),
        (Some(_), Some(None)) => tracing::warn!("--patch-webhook-ca: the webhook serves the certificate files given; their CA is not patched in"),
        (Some(_), None) => tracing::warn!("--patch-webhook-ca without --validating-webhook: nothing to patch"),
        (None, _) => {}
    }
    let Frontend { engine, shared, healthz, .. } = front;

    let source_opts = SourceOptions {
        watch_namespace: opts.watch_namespace.clone().filter(|n| !n.is_empty()),
        configmap: opts.configmap.clone(),
        service_config_maps: opts.serve.tcp_services.iter().chain(opts.serve.udp_services.iter()).cloned().collect(),
        extra_services: opts.serve.default_backend_service.iter().cloned().collect(),
        extra_secrets: opts.serve.default_ssl_certificate.iter().cloned().collect(),
        secret_refs: {
            let settings = engine.settings.clone();
            // With --watch-namespace, a Secret another namespace holds (an `auth-secret:
            // NS/NAME`, say) is not read: the objects that name it find it missing.
            let only = opts.watch_namespace.clone().filter(|n| !n.is_empty());
            crate::source::kube_secrets::SecretRefs(Arc::new(move |s| {
                let mut named = crate::compile::refs_secrets::named(s, &settings);
                if let Some(ns) = &only {
                    named.retain(|(n, _)| n == ns);
                }
                named
            }))
        },
        debounce: opts.debounce,
        backoff: opts.backoff,
        gateway_rediscovery: opts.gateway_rediscovery,
    };
    let (source, mut batches) = KubeSource::start(client.clone(), &source_opts);
    let health = source.health.clone();
    let gateway_readers = source.gateway.subscribe();
    let _ = shared.metrics.source.set(Arc::new(WatchHealth(health.clone())));
    tasks.extend(source.tasks.iter().cloned());

    let (applied_tx, applied_rx) = watch::channel::<Option<Arc<Applied>>>(None);
    let apply_health = health.clone();
    let apply_loop = tokio::spawn(async move {
        {
            let ready = source.wait_until_ready();
            tokio::pin!(ready);
            loop {
                tokio::select! {
                    _ = &mut ready => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {
                        tracing::warn!(failing = ?apply_health.failing(), "still waiting for the first list of every kind from the API server");
                    }
                }
            }
        }
        while batches.try_recv().is_ok() {}
        let read = move |batch: Option<crate::source::kube::Batch>| {
            if apply_health.is_stale() {
                tracing::warn!(failing = ?apply_health.failing(), "applying a configuration while some watches are failing: it may be stale");
            }
            let (store, changed) = source.changes();
            match batch {
                // The first configuration is compiled whole.
                None => Read::Apply { store, manifest_errors: Vec::new(), seen_at: None },
                // Taken with an earlier batch, or a re-list that changed nothing.
                Some(_) if changed.is_empty() => Read::Nothing,
                Some(b) => {
                    tracing::debug!(endpoints_only = b.endpoints_only, objects = changed.len(), "applying a batch");
                    Read::Changed { store, manifest_errors: Vec::new(), seen_at: Some(b.seen_at), changed: Some(changed) }
                }
            }
        };
        engine.run(true, batches, read, applied_tx).await;
    });
    tasks.push(apply_loop.abort_handle());
    let supervisor_health = health.clone();
    let supervisor = tokio::spawn(async move {
        if let Err(e) = apply_loop.await
            && e.is_panic()
        {
            supervisor_health.stale.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "the apply loop panicked: the last configuration keeps serving, but no change applies any more");
        }
    });
    tasks.push(supervisor.abort_handle());

    let (leader_tx, leader_rx) = watch::channel(false);
    let leadership = leader::spawn(client.clone(), namespace.clone(), opts.election_id.clone(), identity.clone(), opts.lease_duration_secs, opts.lease_grace_secs, leader_tx);

    let mut workers = Vec::new();
    let publish = if !opts.publish_status_address.is_empty() {
        Some(status::Publish::Addresses(parse_status_addresses(&opts.publish_status_address)))
    } else {
        opts.publish_service.clone().map(status::Publish::Service)
    };
    let clear_on_shutdown = opts.update_status && opts.update_status_on_shutdown && publish.is_some();
    if opts.update_status {
        let addresses = match publish {
            Some(publish) => {
                let (addresses, handles) = status::addresses(client.clone(), publish, health.clone(), opts.backoff);
                tasks.extend(handles);
                workers.push(tokio::spawn(status::run_writer(client.clone(), leader_rx.clone(), applied_rx.clone(), addresses.clone())).abort_handle());
                addresses
            }
            None => {
                tracing::info!("neither --publish-service nor --publish-status-address: Ingress status is not written, and Gateways get no status.addresses");
                let (tx, rx) = watch::channel(Some(Vec::new()));
                tasks.push(tokio::spawn(async move { tx.closed().await }).abort_handle());
                rx
            }
        };
        let writer = gateway_status::run(client.clone(), leader_rx.clone(), applied_rx.clone(), addresses, gateway_readers);
        workers.push(tokio::spawn(writer).abort_handle());
    }
    let event_opts = events::EventOptions {
        controller: opts.serve.controller_class.clone(),
        instance: identity.clone(),
        burst: opts.event_burst.max(1),
        rate: if opts.event_rate > 0.0 { opts.event_rate } else { 1.0 },
    };
    workers.push(tokio::spawn(events::run(client.clone(), event_opts, leader_rx.clone(), applied_rx.clone())).abort_handle());

    tracing::info!(%http, %https, %healthz, %identity, %namespace, lease = %opts.election_id, watch_namespace = ?source_opts.watch_namespace, "vestibule controller started");
    Ok(Running {
        http,
        https,
        healthz,
        webhook,
        shared,
        health,
        identity,
        namespace,
        leader: leader_rx,
        applied: applied_rx,
        leadership: Some(leadership),
        workers,
        tasks,
        client,
        clear_on_shutdown,
        publish_service: opts.publish_service.clone(),
        shutdown_delay: opts.serve.shutdown_delay,
        shutdown_grace: opts.serve.shutdown_grace,
    })
}

/// The watches' health, as the metrics export it.
#[derive(Debug)]
struct WatchHealth(Arc<crate::source::kube::SourceHealth>);

impl crate::metrics::SourceGauges for WatchHealth {
    fn stale(&self) -> bool {
        self.0.is_stale()
    }
    fn failures(&self) -> u64 {
        self.0.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn lists(&self) -> u64 {
        self.0.lists.load(std::sync::atomic::Ordering::Relaxed)
    }
}
