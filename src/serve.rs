//! `vestibule serve`: manifests from files → store → compile → live config → proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::accesslog::{self, AccessLog};
use crate::compile::Settings;
use crate::config::{Config, ListenerProtocol, ListenerSpec, ProxySettings};
use crate::engine::{Engine, Read};
use crate::metrics::{Metrics, ResultLabels};
use crate::proxy::{ProxyOptions, Shared};
use crate::source::files::{self, FileSource};
use tokio::net::TcpListener;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifests: Vec<PathBuf>,
    /// Largest manifest file read, in bytes.
    pub max_manifest_size: u64,
    pub bind: IpAddr,
    /// Where the healthz port (/healthz, /metrics, /debug/*) binds; `bind` when `None`.
    pub admin_bind: Option<IpAddr>,
    pub http_port: u16,
    pub https_port: u16,
    pub healthz_port: u16,
    /// `--http3`: HTTP/3 on UDP, at `http3_port` or the HTTPS listener's port.
    pub http3: bool,
    pub http3_port: Option<u16>,
    /// `--http3-0rtt`: early data for idempotent methods.
    pub http3_0rtt: bool,
    /// `--enable-dashboard`: `/dashboard` on the healthz port.
    pub enable_dashboard: bool,
    pub ingress_class: String,
    pub controller_class: String,
    /// `--gateway-controller-name`: the `spec.controllerName` of GatewayClasses that are ours.
    pub gateway_controller_name: String,
    pub watch_without_class: bool,
    pub default_backend_service: Option<(String, String)>,
    pub default_ssl_certificate: Option<(String, String)>,
    pub ssl_redirect: bool,
    /// `--configmap NS/NAME`: the ConfigMap whose settings apply over the flags, live.
    pub configmap: Option<(String, String)>,
    pub proxy: ProxyOptions,
    /// The HTTPS port clients reach, for redirects; defaults to `https_port`.
    pub public_https_port: Option<u16>,
    /// Where access log lines go.
    pub access_log: AccessLogTarget,
    /// Graceful shutdown: unready for this long before the listeners close...
    pub shutdown_delay: std::time::Duration,
    /// ...then this long for what is in flight to finish.
    pub shutdown_grace: std::time::Duration,
    /// `--tcp-services-configmap NS/NAME`, live.
    pub tcp_services: Option<(String, String)>,
    /// `--udp-services-configmap NS/NAME`, live.
    pub udp_services: Option<(String, String)>,
    /// `--enable-ssl-passthrough`.
    pub ssl_passthrough: bool,
    /// `--validating-webhook`: the admission webhook, when set.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

/// Where access log lines go.
pub enum AccessLogTarget {
    Off,
    Stdout(accesslog::Format),
    /// Any writer (tests use a pipe or a buffer).
    Writer(accesslog::Format, std::sync::Mutex<Option<Box<dyn std::io::Write + Send>>>),
}

impl std::fmt::Debug for AccessLogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLogTarget::Off => f.write_str("Off"),
            AccessLogTarget::Stdout(fmt) => write!(f, "Stdout({fmt:?})"),
            AccessLogTarget::Writer(fmt, _) => write!(f, "Writer({fmt:?})"),
        }
    }
}

impl Clone for AccessLogTarget {
    fn clone(&self) -> Self {
        match self {
            AccessLogTarget::Off => AccessLogTarget::Off,
            AccessLogTarget::Stdout(f) => AccessLogTarget::Stdout(*f),
            AccessLogTarget::Writer(f, w) => AccessLogTarget::Writer(*f, std::sync::Mutex::new(w.lock().ok().and_then(|mut w| w.take()))),
        }
    }
}

impl ServeOptions {
    /// The compile settings these options describe, with `fallback` as the default certificate.
    pub fn settings(&self, fallback: Arc<rustls::sign::CertifiedKey>) -> Settings {
        let mut settings = Settings::new(fallback);
        settings.ingress_class = self.ingress_class.clone();
        settings.controller_class = self.controller_class.clone();
        settings.gateway_controller_name = self.gateway_controller_name.clone();
        settings.watch_without_class = self.watch_without_class;
        settings.default_backend_service = self.default_backend_service.clone();
        settings.default_ssl_certificate = self.default_ssl_certificate.clone();
        settings.ssl_redirect = self.ssl_redirect;
        settings.configmap = self.configmap.clone();
        settings.tcp_services = self.tcp_services.clone();
        settings.udp_services = self.udp_services.clone();
        settings.ssl_passthrough = self.ssl_passthrough;
        settings.l4_bind = self.bind;
        let p = &self.proxy;
        settings.proxy = ProxySettings {
            connect_timeout: p.connect_timeout,
            read_timeout: p.read_timeout,
            send_timeout: p.read_timeout,
            body_limit: p.body_limit,
            upstream_tries: p.upstream_tries.max(1),
            ..Default::default()
        };
        let listener = |name: &str, port: u16, protocol| ListenerSpec { name: name.into(), addr: SocketAddr::new(self.bind, port), protocol, proxy_protocol: p.proxy_protocol };
        settings.listeners = vec![listener("http", self.http_port, ListenerProtocol::Http), listener("https", self.https_port, ListenerProtocol::Https)];
        settings
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            manifests: Vec::new(),
            max_manifest_size: files::DEFAULT_MAX_SIZE,
            bind: IpAddr::from([0, 0, 0, 0]),
            admin_bind: None,
            http_port: 8080,
            https_port: 8443,
            healthz_port: 10254,
            enable_dashboard: true,
            http3: true,
            http3_port: None,
            http3_0rtt: false,
            ingress_class: "vestibule".into(),
            controller_class: "vestibule.dev/ingress-controller".into(),
            gateway_controller_name: crate::compile::DEFAULT_GATEWAY_CONTROLLER.into(),
            watch_without_class: true,
            default_backend_service: None,
            default_ssl_certificate: None,
            ssl_redirect: true,
            configmap: None,
            proxy: ProxyOptions::default(),
            public_https_port: None,
            access_log: AccessLogTarget::Stdout(accesslog::Format::Text),
            shutdown_delay: std::time::Duration::from_secs(2),
            shutdown_grace: std::time::Duration::from_secs(30),
            tcp_services: None,
            udp_services: None,
            ssl_passthrough: false,
            webhook: None,
        }
    }
}

/// A running instance: where it listens, and the handles that keep it alive.
pub struct Running {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub healthz: SocketAddr,
    /// HTTP/3 (UDP), with `--http3`.
    pub http3: Option<SocketAddr>,
    /// The admission webhook, with `--validating-webhook`.
    pub webhook: Option<crate::webhook::Endpoint>,
    pub shared: Arc<Shared>,
    /// What the live configuration was compiled from, and its diagnostics.
    pub snapshot: Arc<arc_swap::ArcSwap<crate::engine::Snapshot>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rescan: tokio::sync::mpsc::Sender<Instant>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Running {
    /// Graceful shutdown (see `Shared::shutdown`), then stops everything. Returns how many
    /// connections were still open when the grace period ended.
    pub async fn shutdown(self, delay: std::time::Duration, grace: std::time::Duration) -> usize {
        let left = self.shared.shutdown(delay, grace).await;
        drop(self);
        left
    }

    /// Something that asks for the manifests to be read again, as a change seen by the watcher
    /// does (SIGHUP uses it).
    pub fn rescanner(&self) -> Rescan {
        Rescan(self.rescan.clone())
    }

    /// Stops accepting and stops watching.
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Asks a running `serve` to read its manifests again.
#[derive(Clone)]
pub struct Rescan(tokio::sync::mpsc::Sender<Instant>);

impl Rescan {
    /// Never waits: when a rescan is already pending, that one reads what changed.
    pub fn request(&self) {
        let _ = self.0.try_send(Instant::now());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What every mode shares after its source: the compile settings, the health listener, the
/// live configuration and the engine that compiles stores into it. `serve` feeds it from files,
/// `controller` from the Kubernetes API. The traffic listeners are part of the configuration:
/// the first apply opens them.
pub struct Frontend {
    pub engine: Engine,
    pub shared: Arc<Shared>,
    pub healthz: SocketAddr,
    healthz_listener: Option<TcpListener>,
    /// The admission webhook, bound (with `--validating-webhook`).
    pub webhook: Option<crate::webhook::Bound>,
    dashboard: bool,
}

impl Frontend {
    /// Builds the settings from `opts` and binds the health listener (not accepting yet).
    pub async fn bind(opts: &ServeOptions) -> anyhow::Result<Frontend> {
        crate::tls::install_provider();
        let (fallback_cert, _, _) = crate::tls::self_signed(&["vestibule.invalid"])?;
        let settings = opts.settings(fallback_cert.clone());
        let admin = SocketAddr::new(opts.admin_bind.unwrap_or(opts.bind), opts.healthz_port);
        let healthz_l = TcpListener::bind(admin).await.map_err(|e| anyhow::anyhow!("binding healthz port {}: {e}", opts.healthz_port))?;
        let healthz = healthz_l.local_addr()?;

        let mut proxy_opts = opts.proxy.clone();
        proxy_opts.https_port = opts.public_https_port.unwrap_or(0);
        let metrics = Arc::new(Metrics::default());
        let access_log = match &opts.access_log {
            AccessLogTarget::Off => AccessLog::off(metrics.clone()),
            AccessLogTarget::Stdout(f) => AccessLog::stdout(*f, metrics.clone()),
            AccessLogTarget::Writer(f, w) => match w.lock().ok().and_then(|mut w| w.take()) {
                Some(w) => AccessLog::to_writer(*f, w, metrics.clone()),
                None => AccessLog::off(metrics.clone()),
            },
        };
        let initial = Config::new(crate::config::TlsCert { key: fallback_cert, secret: None });
        let shared = Shared::with_observability(initial, proxy_opts, metrics, access_log);
        let engine = Engine::new(shared.clone(), settings);
        let webhook = match &opts.webhook {
            Some(w) => Some(crate::webhook::bind(w).await?),
            None => None,
        };
        Ok(Frontend { engine, shared, healthz, healthz_listener: Some(healthz_l), webhook, dashboard: opts.enable_dashboard })
    }

    /// Starts accepting on the health listener and the webhook's (once; later calls do
    /// nothing).
    pub fn spawn(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(l) = self.healthz_listener.take() else { return Vec::new() };
        let mut tasks = vec![crate::admin::spawn(l, self.shared.clone(), self.engine.snapshot.clone(), self.dashboard)];
        if let Some(w) = &mut self.webhook {
            tasks.extend(w.spawn(self.engine.snapshot.clone(), self.engine.settings.clone(), self.shared.metrics.clone()));
        }
        tasks
    }

    /// Opens HTTP/3 beside the HTTPS listener at `https` (UDP, same port unless
    /// `--http3-port`), and starts advertising it. A UDP port that cannot be bound is logged and
    /// HTTPS goes on without HTTP/3.
    pub fn spawn_http3(&self, opts: &ServeOptions, https: SocketAddr) -> Option<(SocketAddr, tokio::task::JoinHandle<()>)> {
        if !opts.http3 {
            return None;
        }
        let addr = SocketAddr::new(https.ip(), opts.http3_port.unwrap_or(https.port()));
        let limits = crate::proxy::h3::H3Limits { early_data: opts.http3_0rtt, ..crate::proxy::h3::H3Limits::from_opts(&self.shared.opts) };
        match crate::proxy::h3::bind(self.shared.clone(), addr, &limits) {
            Ok(endpoint) => {
                let local = endpoint.local_addr().unwrap_or(addr);
                // Clients reach the port the HTTPS redirects name.
                let port = if opts.http3_port.is_some() { local.port() } else { opts.public_https_port.unwrap_or(local.port()) };
                let _ = self.shared.alt_svc.set(crate::proxy::h3::alt_svc(port));
                tracing::info!(%local, "HTTP/3 serving");
                Some((local, crate::proxy::h3::spawn(self.shared.clone(), endpoint, limits)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP/3 is off");
                None
            }
        }
    }

    /// Where the traffic listener `name` is bound, once open.
    pub fn listener(&self, name: &str) -> anyhow::Result<SocketAddr> {
        self.shared.listeners.local_addr(name).ok_or_else(|| anyhow::anyhow!("the {name} listener is not open"))
    }
}

/// Loads the manifests, binds the listeners and starts serving and watching.
pub async fn start(opts: ServeOptions) -> anyhow::Result<Running> {
    let mut front = Frontend::bind(&opts).await?;
    let metrics = front.shared.metrics.clone();

    let mut source = FileSource::new(opts.manifests.clone(), opts.max_manifest_size);
    let report = source.load();
    log_report(&report, &metrics);
    let first = front.engine.apply(source.store(), standing_errors(&source), None);
    // A taken HTTP or HTTPS port fails the start; a TCP or UDP service's port is reported on
    // its ConfigMap key instead, a Gateway listener's on the Gateway's status, and the rest
    // serves.
    let gateway = |e: &crate::proxy::listener::ListenError| crate::compile::gateway::listener_port(&e.name).is_some();
    if let Some(e) = first.listen_errors.iter().find(|e| e.source.is_none() && !gateway(e)) {
        anyhow::bail!("{e}");
    }
    let (http, https) = (front.listener("http")?, front.listener("https")?);

    // One rescan pending at most: a change seen while one waits is read by it.
    let (rescan, changes) = tokio::sync::mpsc::channel::<Instant>(1);
    let watcher = files::watch(source.paths(), source.dirty(), rescan.clone()).map_err(|e| anyhow::anyhow!("watching {:?}: {e}", opts.manifests))?;
    let mut tasks = front.spawn();
    let http3 = front.spawn_http3(&opts, https).map(|(addr, task)| {
        tasks.push(task);
        addr
    });
    let webhook = front.webhook.as_ref().map(|w| w.endpoint.clone());
    let Frontend { engine, shared, healthz, .. } = front;
    let snapshot = engine.snapshot.clone();
    let (applied, _) = tokio::sync::watch::channel(None);
    let read = move |seen_at: Option<Instant>| -> Read {
        let report = source.load_changed();
        log_report(&report, &metrics);
        if report.objects_changed {
            Read::Changed { store: source.store(), manifest_errors: standing_errors(&source), seen_at, changed: report.changed_objects }
        } else if report.changed {
            // Only errors changed: nothing new to apply, but what is standing is news.
            Read::ErrorsOnly(standing_errors(&source))
        } else {
            Read::Nothing
        }
    };
    tasks.push(tokio::spawn(engine.run(false, changes, read, applied)));
    tracing::info!(%http, %https, %healthz, manifests = ?opts.manifests, "vestibule serving");
    Ok(Running { http, https, healthz, http3, webhook, shared, snapshot, tasks, rescan, _watcher: Some(watcher) })
}

fn log_report(report: &files::LoadReport, metrics: &Metrics) {
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    for e in &report.new_errors {
        tracing::error!("{e}; the last good version of its objects keeps serving");
    }
    if !report.new_errors.is_empty() {
        metrics.config_changes.get_or_create(&ResultLabels { result: "rejected".into() }).inc();
    }
}

fn standing_errors(source: &FileSource) -> Vec<String> {
    source.errors().iter().map(|e| e.to_string()).collect()
}
