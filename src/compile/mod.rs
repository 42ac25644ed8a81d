//! Compile: a pure function from the object store to the data plane's `Config`, plus
//! diagnostics. No I/O, no clocks, no randomness: the same store always gives the same answer.
//!
//! Everything the Ingress spec means lives here: class ownership, host and path rules, merging
//! of Ingresses on one host and its conflicts, default backends, Service → endpoints, and TLS.

pub mod annotations;
pub mod backend;
mod builder;
mod canary;
pub mod class;
pub mod configmap;
pub mod diag;
pub mod explain;
pub mod few;
pub mod gateway;
pub mod http_settings;
pub mod incremental;
pub mod endpoint_only;
pub mod headers_settings;
pub mod tls_settings;
pub mod migration;
mod ingress;
mod locations;
mod location;
mod auth;
pub mod l4;
pub mod refs_secrets;
pub mod status;
pub mod tls;
pub mod validate;
mod client_auth;

use std::sync::Arc;

use rustls::sign::CertifiedKey;

pub use diag::{Diagnostic, Reason, Severity};
pub use status::{IngressStatus, Ownership, Status};
pub use tls::{CertCache, cert_of_secret};

use crate::config::{Config, ListenerSpec, PathKind, ProxySettings};
use crate::store::{Key, ObjRef, Store};
use builder::Builder;

/// The controller's settings that change what the objects mean.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--ingress-class`: the class name we answer to.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of IngressClasses that are ours.
    pub controller_class: String,
    /// `--gateway-controller-name`: the `spec.controllerName` of GatewayClasses that are ours.
    pub gateway_controller_name: String,
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
    /// The redirect settings of the ConfigMap (`http-redirect-code`, `force-ssl-redirect`, ...).
    pub redirects: annotations::redirect::Global,
    /// Forwarded headers, request ID, `Server` header (ConfigMap only).
    pub http: crate::config::http::HttpSettings,
    /// ConfigMap `global-allowed-response-headers`: the header names `custom-headers` may set.
    pub allowed_response_headers: Vec<String>,
    /// ConfigMap `custom-http-errors`: the codes replaced by the default backend's answer
    /// unless an Ingress names its own.
    pub custom_http_errors: Vec<u16>,
    /// ConfigMap `service-upstream`: dial Services' ClusterIP unless an Ingress says otherwise.
    pub service_upstream: bool,
    /// `--tcp-services-configmap`: external port → `namespace/service:port[:PROXY[:PROXY]]`.
    pub tcp_services: Option<Key>,
    /// `--udp-services-configmap`: the same syntax, for UDP.
    pub udp_services: Option<Key>,
    /// `--bind-address`: where TCP and UDP services listen.
    pub l4_bind: std::net::IpAddr,
    /// `--enable-ssl-passthrough`: honour the `ssl-passthrough` annotation.
    pub ssl_passthrough: bool,
    /// `proxy-stream-timeout` (ConfigMap): idle timeout of TCP and UDP services and passthrough.
    pub stream_timeout: std::time::Duration,
    /// The ConfigMap's `global-auth-url` (with `global-auth-method`, `-signin`,
    /// `-response-headers`): external auth of every Ingress without `auth-url`.
    pub global_auth: Option<Result<annotations::auth::External, String>>,
}

/// The default `--gateway-controller-name`.
pub const DEFAULT_GATEWAY_CONTROLLER: &str = "vestibule.dev/gateway-controller";

impl Settings {
    pub fn new(fallback_cert: Arc<CertifiedKey>) -> Self {
        Settings {
            ingress_class: "vestibule".into(),
            controller_class: "vestibule.dev/ingress-controller".into(),
            gateway_controller_name: DEFAULT_GATEWAY_CONTROLLER.into(),
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
            redirects: Default::default(),
            http: Default::default(),
            allowed_response_headers: Vec::new(),
            custom_http_errors: Vec::new(),
            service_upstream: false,
            tcp_services: None,
            udp_services: None,
            l4_bind: std::net::IpAddr::from([0, 0, 0, 0]),
            ssl_passthrough: false,
            stream_timeout: std::time::Duration::from_secs(600),
            global_auth: None,
        }
    }
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

/// What one compile produced: the data plane's configuration, what was found wrong, and what
/// was decided about each object.
#[derive(Debug)]
pub struct Compiled {
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
    pub status: Status,
}

/// Builds the data plane's configuration from the store.
pub fn compile(store: &Store, flags: &Settings) -> Compiled {
    let (settings, configmap_diags) = configmap::effective(store, flags);
    let settings = &settings;
    let mut b = Builder::new(store, settings);
    for d in configmap_diags.into_iter().chain(backend::slice_diagnostics(store)) {
        b.push(d);
    }
    let owned = ingress::owned(&mut b, store, settings);
    let catch_all = ingress::process(&mut b, &owned, settings);
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

    let mut config = Config::new(tls::default_cert(&mut b, settings));
    tls::ingress_certs(&mut b, &owned, &mut config.tls);
    let gateway = gateway::process(&mut b, &mut config.tls);
    config.default_backend = global_default;
    config.listeners = settings.listeners.clone();
    config.listeners.extend(gateway::listener_specs(&gateway, settings.l4_bind));
    config.http = Arc::new(settings.http.clone());
    config.l4 = l4::services(&mut b, settings);
    config.passthrough = Arc::new(l4::passthrough(&mut b, &owned, settings));
    config.client_auth = Arc::new(client_auth::hosts(&mut b, &owned));
    let mut compiled = b.finish(config);
    gateway::place(gateway, &mut compiled.config, settings);
    compiled
}
