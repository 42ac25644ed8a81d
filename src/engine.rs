//! The apply engine both modes share: a store in, compiled, made live, logged and measured.
//! `serve` feeds it from files, `controller` from the Kubernetes API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::compile::endpoint_only;
use crate::compile::incremental::{self, Index};
use crate::compile::{self, Diagnostic, Settings, Severity, Status};
use crate::config::Config;
use crate::metrics::{CertLabels, HostLabels, Metrics, ModeLabels, ReasonLabels, ResultLabels};
use crate::proxy::Shared;
use crate::proxy::listener::ListenError;
use crate::store::{ObjRef, Store};

/// The inputs and findings of the live configuration, for `/debug/explain`, status and Events.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub store: Store,
    pub settings: Option<Settings>,
    pub diagnostics: Vec<Diagnostic>,
    /// What compile decided about each object.
    pub status: Arc<Status>,
    pub manifest_errors: Vec<String>,
}

/// What a source read for one change.
pub enum Read {
    /// Objects changed: compile this store. `manifest_errors` are the rejected inputs standing.
    Apply { store: Store, manifest_errors: Vec<String>, seen_at: Option<Instant> },
    /// Objects changed and the source knows which: `changed` names each object added,
    /// replaced or removed since the last read (`None`: not known, compile everything).
    Changed { store: Store, manifest_errors: Vec<String>, seen_at: Option<Instant>, changed: Option<Vec<ObjRef>> },
    /// Only the rejected inputs changed: nothing to compile.
    ErrorsOnly(Vec<String>),
    Nothing,
}

/// The result of each apply, for status and Events.
#[derive(Debug)]
pub struct Applied {
    pub store: Store,
    pub diagnostics: Vec<Diagnostic>,
    /// What compile decided about each object: status and Events read ownership from here.
    pub status: Arc<Status>,
    pub settings: Settings,
}

/// What one apply did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub diagnostics: Vec<Diagnostic>,
    /// What compile decided about each object (ownership, hosts served).
    pub status: Arc<Status>,
    /// Listeners the new configuration declares that could not be opened.
    pub listen_errors: Vec<ListenError>,
    /// How the configuration was made: `full` (a compile of everything), `incremental` (the
    /// hosts the change reaches) or `endpoints` (endpoint sets replaced, nothing compiled).
    pub mode: &'static str,
}

/// Compiles stores into live configurations, logging each diagnostic once when it appears and
/// keeping the metrics about configuration current.
pub struct Engine {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub shared: Arc<Shared>,
    pub settings: Settings,
    seen: HashSet<Diagnostic>,
    /// What the last compile left for the next one to compile only what a change touches.
    last: Option<Last>,
}

struct Last {
    index: Index,
    /// Compile's own diagnostics (without the listeners').
    diagnostics: Vec<Diagnostic>,
    status: Arc<Status>,
}

impl Engine {
    pub fn new(shared: Arc<Shared>, settings: Settings) -> Self {
        Engine { shared, settings, seen: HashSet::new(), last: None, snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::default())) }
    }

    /// Compiles `store` and makes the result live. `manifest_errors` are the rejected inputs
    /// standing now; `seen_at` is when the change was first noticed. Returns the diagnostics.
    pub fn apply(&mut self, store: Store, manifest_errors: Vec<String>, seen_at: Option<Instant>) -> Outcome {
        self.apply_changes(store, manifest_errors, seen_at, None)
    }

    /// `apply`, knowing which objects changed since the last apply: then only the hosts they
    /// reach are compiled again when that is enough (`compile::incremental`).
    pub fn apply_changes(&mut self, store: Store, manifest_errors: Vec<String>, seen_at: Option<Instant>, changed: Option<&[ObjRef]>) -> Outcome {
        let metrics = self.shared.metrics.clone();
        let started = Instant::now();
        let prev = self.shared.config();
        let mut mode = "full";
        let partial = match (changed, self.last.as_mut()) {
            (Some(changed), Some(Last { index, diagnostics, status })) => {
                let before = || incremental::Previous { config: &prev, diagnostics, status };
                match endpoint_only::patch(index, before(), &store, changed, &self.settings) {
                    Some(c) => {
                        mode = "endpoints";
                        Some(c)
                    }
                    None => {
                        let c = incremental::recompile(index, before(), &store, changed, &self.settings);
                        if c.is_some() {
                            mode = "incremental";
                        }
                        c
                    }
                }
            }
            _ => None,
        };
        let incremental = partial.is_some();
        let compile::Compiled { config, diagnostics: mut diags, status } = partial.unwrap_or_else(|| compile::compile(&store, &self.settings));
        let status = Arc::new(status);
        let index = match self.last.take() {
            Some(last) if incremental => last.index,
            _ => Index::new(&store, config.route_count),
        };
        self.last = Some(Last { index, diagnostics: diags.clone(), status: status.clone() });
        let compile_time = started.elapsed();
        metrics.compile_duration.observe(compile_time.as_secs_f64());
        let routes: usize = config.vhosts().map(|v| v.routes.len()).sum();
        if !incremental || !same_certificates(&prev, &config) {
            update_certificate_metrics(&metrics, &config);
        }
        let listen_errors = self.shared.swap(config);
        for e in &listen_errors {
            tracing::error!("{e}; the other listeners keep serving");
        }
        let down: Vec<(u16, String)> = listen_errors.iter().filter_map(|e| Some((compile::gateway::listener_port(&e.name)?, e.error.clone()))).collect();
        let status = if down.is_empty() {
            status
        } else {
            let mut marked = (*status).clone();
            compile::gateway::ports_unavailable(&mut marked, &store, &down);
            Arc::new(marked)
        };
        diags.extend(listen_errors.iter().filter_map(port_diagnostic));
        diags.sort();
        if let Some(t) = seen_at {
            metrics.change_to_live.observe(t.elapsed().as_secs_f64());
        }
        metrics.config_changes.get_or_create(&ResultLabels { result: "applied".into() }).inc();
        metrics.config_applies.get_or_create(&ModeLabels { mode: mode.into() }).inc();
        metrics.config_last_reload_successful.set(manifest_errors.is_empty() as i64);
        metrics.config_last_reload_successful_timestamp.set(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0));
        metrics.diagnostics.clear();
        for d in &diags {
            metrics.diagnostics.get_or_create(&ReasonLabels { reason: d.reason.as_str().into() }).inc();
        }

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
        tracing::info!(
            objects = store.len(),
            routes,
            diagnostics = diags.len(),
            compile_ms = compile_time.as_secs_f64() * 1000.0,
            incremental,
            mode,
            "configuration applied"
        );
        let old = self.snapshot.swap(Arc::new(Snapshot { store, settings: Some(self.settings.clone()), diagnostics: diags.clone(), status: status.clone(), manifest_errors }));
        // Freeing the previous store takes as long as the store is large: not on the way to
        // the next change.
        if std::thread::Builder::new().name("drop-snapshot".into()).spawn(move || drop(old)).is_err() {
            tracing::debug!("the previous snapshot was freed in place");
        }
        Outcome { diagnostics: diags, status, listen_errors, mode }
    }
}

impl Engine {
    /// The apply loop both modes run. For each change from `changes` (and once at the start
    /// when `apply_first`), `read` says what the source now holds; reading and compiling are
    /// CPU work and run on the blocking pool, never on the threads that serve requests. Each
    /// apply is published on `applied`. Ends when `changes` closes; a panic in compile is
    /// raised again here, so the caller's supervisor sees it.
    pub async fn run<T, R>(self, apply_first: bool, mut changes: tokio::sync::mpsc::Receiver<T>, read: R, applied: tokio::sync::watch::Sender<Option<Arc<Applied>>>)
    where
        T: Send + 'static,
        R: FnMut(Option<T>) -> Read + Send + 'static,
    {
        let state = Arc::new(std::sync::Mutex::new((self, read)));
        let mut first = apply_first;
        loop {
            let change = if std::mem::take(&mut first) {
                None
            } else {
                match changes.recv().await {
                    Some(c) => Some(c),
                    None => return,
                }
            };
            let (state, applied) = (state.clone(), applied.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut guard = state.lock().expect("the apply loop's lock");
                let (engine, read) = &mut *guard;
                match read(change) {
                    Read::Apply { store, manifest_errors, seen_at } => {
                        let out = engine.apply(store.clone(), manifest_errors, seen_at);
                        let app = Applied { store, diagnostics: out.diagnostics, status: out.status, settings: engine.settings.clone() };
                        applied.send_replace(Some(Arc::new(app)));
                    }
                    Read::Changed { store, manifest_errors, seen_at, changed } => {
                        // A copy of the store for `applied` only when someone reads it.
                        let copy = (applied.receiver_count() > 0).then(|| store.clone());
                        let out = engine.apply_changes(store, manifest_errors, seen_at, changed.as_deref());
                        if let Some(store) = copy {
                            let app = Applied { store, diagnostics: out.diagnostics, status: out.status, settings: engine.settings.clone() };
                            applied.send_replace(Some(Arc::new(app)));
                        }
                    }
                    Read::ErrorsOnly(errors) => engine.errors_changed(errors),
                    Read::Nothing => {}
                }
            })
            .await;
            if let Err(e) = done {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
                return;
            }
        }
    }

    /// Records the rejected inputs standing now when nothing new was applied: the last
    /// reload is unsuccessful while any stands, and `/debug/config` lists them.
    pub fn errors_changed(&mut self, manifest_errors: Vec<String>) {
        let metrics = &self.shared.metrics;
        metrics.config_last_reload_successful.set(manifest_errors.is_empty() as i64);
        metrics.config_last_reload_successful_timestamp.set(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0));
        let old = self.snapshot.load();
        let store = old.store.clone();
        self.snapshot.store(Arc::new(Snapshot { store, settings: old.settings.clone(), diagnostics: old.diagnostics.clone(), status: old.status.clone(), manifest_errors }));
    }
}

/// A TCP or UDP service whose port could not be opened, reported on its ConfigMap key.
fn port_diagnostic(e: &ListenError) -> Option<Diagnostic> {
    let (ns, name, key) = e.source.as_ref()?;
    let obj = crate::store::ObjRef::new("ConfigMap", ns, name);
    let msg = format!("cannot listen on {}: {}; this service is not served, the others are", e.addr, e.error);
    Some(Diagnostic::new(Severity::Error, &obj, format!("data.{key}"), compile::Reason::PortUnavailable, msg))
}

/// Whether both configurations serve the same certificates under the same names.
fn same_certificates(a: &Config, b: &Config) -> bool {
    let same = |x: &std::collections::HashMap<String, crate::config::TlsCert>, y: &std::collections::HashMap<String, crate::config::TlsCert>| {
        x.len() == y.len() && x.iter().all(|(h, c)| y.get(h).is_some_and(|d| Arc::ptr_eq(&c.key, &d.key) && c.secret == d.secret))
    };
    same(&a.tls.exact, &b.tls.exact) && same(&a.tls.wildcard, &b.tls.wildcard)
}

/// `nginx_ingress_controller_ssl_certificate_info` and `..._ssl_expire_time_seconds` for every
/// host with a certificate from a Secret.
fn update_certificate_metrics(metrics: &Metrics, config: &Config) {
    metrics.ssl_certificate_info.clear();
    metrics.ssl_expire_time.clear();
    let all = config.tls.exact.iter().map(|(h, c)| (h.clone(), c)).chain(config.tls.wildcard.iter().map(|(h, c)| (format!("*.{h}"), c)));
    for (host, cert) in all {
        let Some((ns, secret)) = &cert.secret else { continue };
        let Some(s) = cert.key.cert.first().and_then(|d| crate::x509::summarize(d)) else { continue };
        metrics
            .ssl_certificate_info
            .get_or_create(&CertLabels {
                host: host.clone(),
                namespace: ns.clone(),
                secret_name: secret.clone(),
                identifier: format!("{}-{}", s.issuer_cn, s.serial),
                issuer_common_name: s.issuer_cn.clone(),
                issuer_organization: s.issuer_org.clone(),
                serial_number: s.serial.clone(),
            })
            .set(1);
        metrics.ssl_expire_time.get_or_create(&HostLabels { host, namespace: ns.clone(), secret_name: secret.clone() }).set(s.not_after);
    }
}

