//! `vestibule serve`: manifests from files → store → compile → live config → proxy.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::compile::{self, Diagnostic, Settings, Severity};
use crate::config::Config;
use crate::proxy::{ProxyOptions, Shared, listener};
use crate::source::files::{self, FileSource};
use crate::store::Store;

/// Compiles stores into live configurations, logging each diagnostic once when it appears.
pub struct Engine {
    pub shared: Arc<Shared>,
    pub settings: Settings,
    seen: HashSet<Diagnostic>,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, settings: Settings) -> Self {
        Engine { shared, settings, seen: HashSet::new() }
    }

    /// Compiles `store` and makes the result live. Returns the diagnostics.
    pub fn apply(&mut self, store: &Store) -> Vec<Diagnostic> {
        let started = Instant::now();
        let (config, diags) = compile::compile(store, &self.settings);
        let routes: usize = config.exact.values().chain(config.wildcard.values()).chain(config.hostless.iter()).map(|v| v.routes.len()).sum();
        self.shared.swap(config);
        let now: HashSet<Diagnostic> = diags.iter().cloned().collect();
        for d in &diags {
            if self.seen.contains(d) {
                continue;
            }
            match d.severity {
                Severity::Error => tracing::error!(object = %d.object, field = %d.field, reason = d.reason.as_str(), "{}", d.message),
                Severity::Warning => tracing::warn!(object = %d.object, field = %d.field, reason = d.reason.as_str(), "{}", d.message),
                Severity::Info => tracing::info!(object = %d.object, field = %d.field, reason = d.reason.as_str(), "{}", d.message),
            }
        }
        self.seen = now;
        tracing::info!(objects = store.len(), routes, diagnostics = diags.len(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "configuration applied");
        diags
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifests: Vec<PathBuf>,
    pub bind: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
    pub healthz_port: u16,
    pub ingress_class: String,
    pub controller_class: String,
    pub watch_without_class: bool,
    pub default_backend_service: Option<(String, String)>,
    pub default_ssl_certificate: Option<(String, String)>,
    pub ssl_redirect: bool,
    pub proxy: ProxyOptions,
    /// The HTTPS port clients reach, for redirects; defaults to `https_port`.
    pub public_https_port: Option<u16>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            manifests: Vec::new(),
            bind: IpAddr::from([0, 0, 0, 0]),
            http_port: 8080,
            https_port: 8443,
            healthz_port: 10254,
            ingress_class: "vestibule".into(),
            controller_class: "vestibule.dev/ingress-controller".into(),
            watch_without_class: true,
            default_backend_service: None,
            default_ssl_certificate: None,
            ssl_redirect: true,
            proxy: ProxyOptions::default(),
            public_https_port: None,
        }
    }
}

/// A running instance: where it listens, and the handles that keep it alive.
pub struct Running {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub healthz: SocketAddr,
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Running {
    /// Stops accepting and stops watching.
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Loads the manifests, binds the listeners and starts serving and watching.
pub async fn start(opts: ServeOptions) -> anyhow::Result<Running> {
    crate::tls::install_provider();
    let (fallback_cert, _, _) = crate::tls::self_signed(&["vestibule.invalid"])?;
    let mut settings = Settings::new(fallback_cert.clone());
    settings.ingress_class = opts.ingress_class.clone();
    settings.controller_class = opts.controller_class.clone();
    settings.watch_without_class = opts.watch_without_class;
    settings.default_backend_service = opts.default_backend_service.clone();
    settings.default_ssl_certificate = opts.default_ssl_certificate.clone();
    settings.ssl_redirect = opts.ssl_redirect;

    let http_l = listener::bind(SocketAddr::new(opts.bind, opts.http_port)).await.map_err(|e| anyhow::anyhow!("binding HTTP port {}: {e}", opts.http_port))?;
    let https_l = listener::bind(SocketAddr::new(opts.bind, opts.https_port)).await.map_err(|e| anyhow::anyhow!("binding HTTPS port {}: {e}", opts.https_port))?;
    let healthz_l = listener::bind(SocketAddr::new(opts.bind, opts.healthz_port)).await.map_err(|e| anyhow::anyhow!("binding healthz port {}: {e}", opts.healthz_port))?;
    let (http, https, healthz) = (http_l.local_addr()?, https_l.local_addr()?, healthz_l.local_addr()?);

    let mut proxy_opts = opts.proxy.clone();
    proxy_opts.https_port = opts.public_https_port.unwrap_or(https.port());
    let shared = Shared::new(Config::new(crate::config::TlsCert { key: fallback_cert, secret: None }), proxy_opts);
    let mut engine = Engine::new(shared.clone(), settings);

    let mut source = FileSource::new(opts.manifests.clone());
    let report = source.load();
    log_report(&report);
    engine.apply(&source.store());

    let (watcher, mut changes) = files::watch(source.paths())?;
    let mut tasks = vec![
        listener::spawn_http(http_l, shared.clone()),
        listener::spawn_https(https_l, shared.clone()),
        crate::admin::spawn(healthz_l, shared.clone()),
    ];
    tasks.push(tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let report = source.load();
            log_report(&report);
            if report.changed {
                engine.apply(&source.store());
            }
        }
    }));
    tracing::info!(%http, %https, %healthz, manifests = ?opts.manifests, "vestibule serving");
    Ok(Running { http, https, healthz, shared, tasks, _watcher: Some(watcher) })
}

fn log_report(report: &files::LoadReport) {
    for e in &report.new_errors {
        tracing::error!("{e}; the last good version of its objects keeps serving");
    }
}
