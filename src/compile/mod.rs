//! Compile: a pure function from the object store to the data plane's `Config`, plus
//! diagnostics. No I/O, no clocks, no randomness: the same store always gives the same answer.
//!
//! Everything the Ingress spec means lives here: class ownership, host and path rules, merging
//! of Ingresses on one host and its conflicts, default backends, Service → endpoints, and TLS.

pub mod annotations;
pub mod backend;
pub mod class;
pub mod configmap;
pub mod diag;
pub mod explain;
pub mod validate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use rustls::sign::CertifiedKey;

pub use diag::{Diagnostic, Reason, Severity};

use crate::config::{Config, Filter, HostDefault, ListenerSpec, PathKind, ProxySettings, Route, RouteLabels, RouteMatch, TlsCert, VirtualHost, WeightedBackend};
use crate::store::{Key, ObjRef, Store};
use backend::{PortRef, Resolver};

/// The controller's settings that change what the objects mean.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--ingress-class`: the class name we answer to.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of IngressClasses that are ours.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_without_class: bool,
    /// `--default-backend-service`.
    pub default_backend_service: Option<Key>,
    /// `--default-ssl-certificate`.
    pub default_ssl_certificate: Option<Key>,
    /// Redirect plain HTTP to HTTPS for hosts with TLS (ingress-nginx's `ssl-redirect`).
    pub ssl_redirect: bool,
    /// The certificate served when nothing else fits (generated at start).
    pub fallback_cert: Arc<CertifiedKey>,
    /// Certificates already read, by the content of `tls.crt` and `tls.key`: a memo that spares
    /// re-parsing every Secret on every change; it never changes a result.
    pub cert_cache: CertCache,
    /// Limits and timeouts for requests, from flags (`compile` applies the ConfigMap over them).
    pub proxy: ProxySettings,
    /// The traffic listeners to have open.
    pub listeners: Vec<ListenerSpec>,
    /// `--configmap`: the ConfigMap whose settings apply over the flags (see `configmap`).
    pub configmap: Option<Key>,
    /// How backends pick endpoints unless an Ingress's annotations say otherwise.
    pub default_policy: crate::config::Policy,
}

/// Parsed certificates by content hash.
#[derive(Debug, Clone, Default)]
pub struct CertCache(Arc<std::sync::Mutex<HashMap<u64, Result<Arc<CertifiedKey>, String>>>>);

impl CertCache {
    fn get(&self, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
        use std::hash::{Hash, Hasher};
        let crt = secret_value(secret, "tls.crt").ok_or("has no tls.crt")?;
        let key = secret_value(secret, "tls.key").ok_or("has no tls.key")?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (crt, key).hash(&mut h);
        let id = h.finish();
        if let Some(hit) = self.0.lock().expect("cert cache lock").get(&id) {
            return hit.clone();
        }
        let parsed = crate::tls::certified_key_from_pem(crt, key).map(Arc::new);
        let mut map = self.0.lock().expect("cert cache lock");
        if map.len() > 50_000 {
            map.clear();
        }
        map.insert(id, parsed.clone());
        parsed
    }
}

impl Settings {
    pub fn new(fallback_cert: Arc<CertifiedKey>) -> Self {
        Settings {
            ingress_class: "vestibule".into(),
            controller_class: "vestibule.dev/ingress-controller".into(),
            watch_without_class: true,
            default_backend_service: None,
            default_ssl_certificate: None,
            ssl_redirect: true,
            fallback_cert,
            cert_cache: CertCache::default(),
            proxy: ProxySettings::default(),
            listeners: Vec::new(),
            configmap: None,
            default_policy: Default::default(),
        }
    }
}

/// Oldest first, then by namespace/name: the order in which Ingresses win conflicts.
fn age_key(ing: &Ingress) -> (bool, Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, String, String) {
    let ts = ing.metadata.creation_timestamp.clone();
    (ts.is_none(), ts, ing.metadata.namespace.clone().unwrap_or_default(), ing.metadata.name.clone().unwrap_or_default())
}

/// Turns a path as written into the path as matched, with its kind.
pub fn route_path(path: Option<&str>, path_type: &str) -> (String, PathKind) {
    let path = path.unwrap_or("");
    if path_type == "Exact" {
        (path.to_string(), PathKind::Exact)
    } else {
        (path.trim_end_matches('/').to_string(), PathKind::Prefix)
    }
}

struct Builder<'a> {
    store: &'a Store,
    certs: &'a CertCache,
    resolver: Resolver<'a>,
    diags: Vec<Diagnostic>,
    vhosts: BTreeMap<String, VirtualHost>,
    claimed: HashMap<(String, String, PathKind), Arc<ObjRef>>,
    proxy: Arc<ProxySettings>,
    next_route: usize,
}

impl<'a> Builder<'a> {
    fn next_id(&mut self) -> usize {
        self.next_route += 1;
        self.next_route - 1
    }

    fn host_default(&mut self, backend: Arc<crate::config::Backend>, ingress: Arc<ObjRef>, host: &str) -> HostDefault {
        let labels = RouteLabels::new(host, "", &ingress, &backend.service);
        HostDefault { id: self.next_id(), backend, ingress, proxy: self.proxy.clone(), labels }
    }

    fn diag(&mut self, sev: Severity, obj: &ObjRef, field: impl Into<String>, reason: Reason, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(sev, obj, field, reason, msg));
    }

    /// Resolves an Ingress backend; `None` when it can never route (a resource backend).
    fn backend(&mut self, ing: &ObjRef, field: &str, b: &IngressBackend, ann: &annotations::Annotations) -> Option<Arc<crate::config::Backend>> {
        let Some(svc) = &b.service else {
            self.diag(Severity::Warning, ing, field, Reason::Unsupported, "resource backends are not supported; this backend is skipped");
            return None;
        };
        let port = PortRef::of(svc)?;
        let reach = self.reach(ing, &svc.name, ann);
        let (backend, problem) = self.resolver.resolve(&ing.namespace, &svc.name, &port, &reach);
        if let Some((reason, msg)) = problem {
            self.diag(Severity::Warning, ing, format!("{field}.service"), reason, msg);
        }
        Some(backend)
    }

    /// The protocol, balancing and backend TLS an Ingress asks for.
    fn reach(&mut self, ing: &ObjRef, service: &str, ann: &annotations::Annotations) -> backend::Reach {
        let protocol = ann.backend_protocol;
        let ssl = &ann.proxy_ssl;
        let tls = if protocol.tls() && (ssl.verify || ssl.secret.is_some() || ssl.name.is_some() || ssl.server_name) {
            match self.upstream_tls(ing, service, protocol, ssl) {
                Ok(t) => Some(t),
                Err(msg) => {
                    self.diag(Severity::Warning, ing, "metadata.annotations[proxy-ssl-secret]", Reason::SecretInvalid, msg);
                    None
                }
            }
        } else {
            None
        };
        backend::Reach { protocol, policy: ann.policy.clone(), tls, tls_key: protocol.tls().then(|| ssl.clone()) }
    }

    /// TLS towards a backend that verifies its certificate against a CA from a Secret.
    fn upstream_tls(&mut self, ing: &ObjRef, service: &str, protocol: crate::config::BackendProtocol, ssl: &annotations::ProxySsl) -> Result<crate::config::UpstreamTls, String> {
        let name = ssl.name.clone().unwrap_or_else(|| format!("{service}.{}.svc", ing.namespace));
        let server_name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|_| format!("{name:?} is not a valid server name"))?;
        let alpn: Vec<Vec<u8>> = if protocol.http2() { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        let secret = match &ssl.secret {
            Some((ns, n)) => Some(self.store.secrets.get(&(ns.clone(), n.clone())).ok_or_else(|| format!("Secret {ns}/{n} not found; backend certificates are not verified"))?),
            None => None,
        };
        let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
        let builder = if ssl.verify {
            let secret = secret.ok_or("proxy-ssl-verify needs proxy-ssl-secret with a ca.crt")?;
            let ca = secret_value(secret, "ca.crt").ok_or("the proxy-ssl-secret has no ca.crt")?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls_pki_types::pem::PemObject;
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(|e| format!("ca.crt: {e}"))?).map_err(|e| format!("ca.crt: {e}"))?;
            }
            builder.with_root_certificates(roots)
        } else {
            let mut cfg = (*crate::tls::insecure_client(&[])).clone();
            cfg.alpn_protocols = alpn;
            cfg.enable_sni = ssl.server_name;
            let fingerprint = tls_fingerprint(ssl, &name, protocol, None);
            return Ok(crate::config::UpstreamTls { config: Arc::new(cfg), server_name, fingerprint });
        };
        let mut cfg = match secret.and_then(|s| Some((secret_value(s, "tls.crt")?, secret_value(s, "tls.key")?))) {
            Some((crt, key)) => {
                use rustls_pki_types::pem::PemObject;
                let chain = rustls_pki_types::CertificateDer::pem_slice_iter(crt).collect::<Result<Vec<_>, _>>().map_err(|e| format!("tls.crt: {e}"))?;
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn;
        cfg.enable_sni = ssl.server_name;
        let fingerprint = tls_fingerprint(ssl, &name, protocol, secret.map(|s| s.as_ref()));
        Ok(crate::config::UpstreamTls { config: Arc::new(cfg), server_name, fingerprint })
    }

    fn add_ingress(&mut self, ing: &Ingress, tls_hosts: &HashSet<String>, defaults: &annotations::Annotations) -> Option<HostDefault> {
        let oref = Arc::new(ObjRef::new("Ingress", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or("")));
        let spec = ing.spec.as_ref()?;
        let (ann, ann_errors) = annotations::parse(ing, defaults);
        for e in ann_errors {
            self.diag(Severity::Warning, &oref, e.field, Reason::InvalidField, e.message);
        }
        let rules = spec.rules.as_deref().unwrap_or(&[]);
        let default = match &spec.default_backend {
            Some(b) => self.backend(&oref, "spec.defaultBackend", b, &ann).map(|backend| self.host_default(backend, oref.clone(), "")),
            None => None,
        };
        for (i, rule) in rules.iter().enumerate() {
            let host = rule.host.as_deref().map(|h| h.to_ascii_lowercase()).unwrap_or_else(|| "*".to_string());
            let is_tls = tls_hosts.contains(&host);
            let redirect: Arc<[Filter]> = if is_tls && ann.ssl_redirect { Arc::new([Filter::HttpsRedirect { status: 308 }]) } else { Arc::new([]) };
            if !self.vhosts.contains_key(&host) {
                let v = VirtualHost { name: host.clone(), tls: is_tls, filters: redirect.clone(), ..Default::default() };
                self.vhosts.insert(host.clone(), v);
            }
            if let Some(d) = &default {
                if self.vhosts[&host].default.is_none() {
                    let hd = self.host_default(d.backend.clone(), d.ingress.clone(), rule.host.as_deref().unwrap_or(""));
                    self.vhosts.get_mut(&host).expect("inserted above").default = Some(hd);
                }
            }
            let Some(http) = &rule.http else { continue };
            for (j, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let (path, kind) = route_path(p.path.as_deref(), &p.path_type);
                let claim = (host.clone(), path.clone(), kind);
                if let Some(winner) = self.claimed.get(&claim) {
                    if **winner != *oref {
                        let msg = format!(
                            "host {host:?} path {:?} ({}) is already served by {winner}, which is older; this path is not used",
                            p.path.as_deref().unwrap_or("/"),
                            p.path_type
                        );
                        self.diag(Severity::Warning, &oref, &field, Reason::PathConflict, msg);
                    }
                    continue;
                }
                let Some(backend) = self.backend(&oref, &format!("{field}.backend"), &p.backend, &ann) else { continue };
                self.claimed.insert(claim, oref.clone());
                let id = self.next_id();
                let proxy = self.proxy.clone();
                let vhost = self.vhosts.get_mut(&host).expect("inserted above");
                let rule_path = p.path.clone().unwrap_or_else(|| "/".into());
                let labels = RouteLabels::new(rule.host.as_deref().unwrap_or(""), &rule_path, &oref, &backend.service);
                let path_type = match p.path_type.as_str() {
                    "Exact" => "Exact",
                    "Prefix" => "Prefix",
                    _ => "ImplementationSpecific",
                };
                vhost.routes.push(Route {
                    id,
                    matches: RouteMatch::path(path, kind),
                    filters: redirect.clone(),
                    backends: Arc::new([WeightedBackend { backend, weight: 100 }]),
                    proxy,
                    rule_path,
                    path_type,
                    ingress: oref.clone(),
                    labels,
                });
            }
        }
        // A rule-less Ingress with a defaultBackend is a candidate catch-all for unmatched hosts.
        if rules.is_empty() { default } else { None }
    }

    /// The certificate of a TLS Secret, or a diagnostic saying why it cannot be used.
    fn secret_cert(&mut self, owner: &ObjRef, field: &str, ns: &str, name: &str, cache: &mut HashMap<Key, Option<Arc<CertifiedKey>>>) -> Option<Arc<CertifiedKey>> {
        let key = (ns.to_string(), name.to_string());
        if let Some(hit) = cache.get(&key) {
            return hit.clone();
        }
        let result = match self.store.secrets.get(&key) {
            None => Err((Reason::SecretNotFound, format!("Secret {ns}/{name} not found; the default certificate is served"))),
            Some(secret) => self.certs.get(secret).map_err(|e| (Reason::SecretInvalid, format!("Secret {ns}/{name}: {e}; the default certificate is served"))),
        };
        let out = match result {
            Ok(ck) => Some(ck),
            Err((reason, msg)) => {
                self.diag(Severity::Warning, owner, field, reason, msg);
                None
            }
        };
        cache.insert(key, out.clone());
        out
    }
}

/// What makes two backend TLS setups interchangeable for a pooled connection: the settings,
/// the name, and the Secret's content. Never 0 or 1 (plain and the default TLS use those).
fn tls_fingerprint(ssl: &annotations::ProxySsl, name: &str, protocol: crate::config::BackendProtocol, secret: Option<&Secret>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (ssl, name, protocol).hash(&mut h);
    if let Some(s) = secret {
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            secret_value(s, key).hash(&mut h);
        }
    }
    h.finish() | 2
}

/// The value of a key in a Secret, from `stringData` (files) or `data`.
fn secret_value<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.as_slice())
}

pub fn cert_of_secret(secret: &Secret) -> Result<CertifiedKey, String> {
    let crt = secret_value(secret, "tls.crt").ok_or("has no tls.crt")?;
    let key = secret_value(secret, "tls.key").ok_or("has no tls.key")?;
    crate::tls::certified_key_from_pem(crt, key)
}

/// Builds the data plane's configuration from the store.
pub fn compile(store: &Store, settings: &Settings) -> (Config, Vec<Diagnostic>) {
    let (settings, diags) = &configmap::effective(store, settings);
    let mut b = Builder {
        store,
        certs: &settings.cert_cache,
        resolver: Resolver::new(store),
        diags: diags.clone(),
        vhosts: BTreeMap::new(),
        claimed: HashMap::new(),
        proxy: Arc::new(settings.proxy.clone()),
        next_route: 0,
    };
    let default_class = class::we_are_default(store, settings);

    // Which Ingresses are ours and valid, oldest first.
    let mut owned: Vec<&Ingress> = Vec::new();
    for ing in store.ingresses.values() {
        let oref = ObjRef::new("Ingress", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or(""));
        if let Err(why) = class::owns(ing, store, settings, default_class) {
            b.diag(Severity::Info, &oref, "spec.ingressClassName", Reason::ClassIgnored, format!("ignored: {why}"));
            continue;
        }
        let errors = validate::ingress(ing);
        if !errors.is_empty() {
            for e in errors {
                b.diag(Severity::Error, &oref, e.field, Reason::InvalidField, format!("{}; the Ingress is skipped", e.message));
            }
            continue;
        }
        owned.push(ing);
    }
    owned.sort_by_key(|i| age_key(i));

    // Hosts with TLS configured, from every Ingress we own.
    let mut tls_hosts: HashSet<String> = HashSet::new();
    for ing in &owned {
        let spec = ing.spec.as_ref().expect("validated");
        for tls in spec.tls.as_deref().unwrap_or(&[]) {
            match tls.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => tls_hosts.extend(hosts.iter().map(|h| h.to_ascii_lowercase())),
                _ => tls_hosts.extend(spec.rules.as_deref().unwrap_or(&[]).iter().filter_map(|r| r.host.as_ref().map(|h| h.to_ascii_lowercase()))),
            }
        }
    }

    let mut catch_all: Option<HostDefault> = None;
    for ing in &owned {
        if let Some(d) = b.add_ingress(ing, &tls_hosts, &configmap::annotation_defaults(settings)) {
            match &catch_all {
                None => catch_all = Some(d),
                Some(winner) => {
                    let msg = format!("{} is older and already provides the default backend for unmatched hosts; this one is not used", winner.ingress);
                    let oref = (*d.ingress).clone();
                    b.diag(Severity::Warning, &oref, "spec.defaultBackend", Reason::DefaultConflict, msg);
                }
            }
        }
    }
    let global_default = match catch_all {
        Some(d) => Some(d),
        None => settings.default_backend_service.as_ref().map(|(ns, name)| {
            let oref = ObjRef::new("Service", ns, name);
            let (backend, problem) = b.resolver.resolve_first_port(ns, name);
            if let Some((reason, msg)) = problem {
                b.diag(Severity::Warning, &oref, "--default-backend-service", reason, msg);
            }
            b.host_default(backend, Arc::new(oref), "")
        }),
    };

    // TLS certificates by host, oldest Ingress first.
    let fallback = TlsCert { key: settings.fallback_cert.clone(), secret: None };
    let default_cert = match &settings.default_ssl_certificate {
        Some((ns, name)) => {
            let oref = ObjRef::new("Secret", ns, name);
            let mut cache = HashMap::new();
            match b.secret_cert(&oref, "--default-ssl-certificate", ns, name, &mut cache) {
                Some(key) => TlsCert { key, secret: Some((ns.clone(), name.clone())) },
                None => fallback,
            }
        }
        None => fallback,
    };
    let mut config = Config::new(default_cert);
    let mut cert_cache: HashMap<Key, Option<Arc<CertifiedKey>>> = HashMap::new();
    for ing in &owned {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("");
        let oref = ObjRef::new("Ingress", ns, ing.metadata.name.as_deref().unwrap_or(""));
        let spec = ing.spec.as_ref().expect("validated");
        for (i, tls) in spec.tls.as_deref().unwrap_or(&[]).iter().enumerate() {
            let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else { continue };
            let Some(key) = b.secret_cert(&oref, &format!("spec.tls[{i}].secretName"), ns, secret, &mut cert_cache) else { continue };
            let cert = TlsCert { key, secret: Some((ns.to_string(), secret.to_string())) };
            let hosts: Vec<String> = match tls.hosts.as_deref() {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                _ => spec.rules.as_deref().unwrap_or(&[]).iter().filter_map(|r| r.host.as_ref().map(|h| h.to_ascii_lowercase())).collect(),
            };
            for host in hosts {
                match host.strip_prefix("*.") {
                    Some(parent) => config.tls.wildcard.entry(parent.to_string()).or_insert_with(|| cert.clone()),
                    None => config.tls.exact.entry(host).or_insert_with(|| cert.clone()),
                };
            }
        }
    }

    for (name, mut vhost) in std::mem::take(&mut b.vhosts) {
        vhost.sort_routes();
        let vhost = Arc::new(vhost);
        if name == "*" {
            config.hostless = Some(vhost);
        } else if let Some(parent) = name.strip_prefix("*.") {
            config.wildcard.insert(parent.to_string(), vhost);
        } else {
            config.exact.insert(name, vhost);
        }
    }
    config.default_backend = global_default;
    config.listeners = settings.listeners.clone();
    config.proxy = b.proxy.clone();
    config.route_count = b.next_route;
    config.backend_count = b.resolver.backend_count();
    let mut diags = b.diags;
    diags.extend(backend::slice_diagnostics(store));
    diags.sort();
    diags.dedup();
    (config, diags)
}
