//! The Ingress annotations Vestibule honours, under ingress-nginx's prefix
//! (`nginx.ingress.kubernetes.io/`) and its own (`vestibule.dev/`, which wins when both are set).
//!
//! One module per family declares the keys it owns (`KEYS`) and parses them into typed
//! settings. Every value is parsed; nothing is ever copied into configuration text or code. An
//! invalid value is reported and the default is used. A key under either prefix that no family
//! owns is reported as not supported, never silently ignored.

pub mod affinity;
pub mod backend;
pub mod balance;
pub mod canary;
pub mod passthrough;
pub mod proxy_ssl;
pub mod redirect;
pub mod rewrite;
pub mod snippet;
pub mod proxy;
pub mod hosts;
pub mod headers;
pub mod errors;
pub mod auth_tls;
pub mod ipfilter;
pub mod ratelimit;
pub mod cors;
pub mod auth;

use k8s_openapi::api::networking::v1::Ingress;

use super::diag::{Reason, Severity};
use crate::config::{BackendProtocol, Policy};

pub use proxy_ssl::ProxySsl;

/// Ours first: it wins when both name the same key.
pub const PREFIXES: [&str; 2] = ["vestibule.dev/", "nginx.ingress.kubernetes.io/"];

/// Every family and the keys (without prefix) it owns.
pub const REGISTRY: &[(&str, &[&str])] = &[
    ("backend", backend::KEYS),
    ("balance", balance::KEYS),
    ("redirect", redirect::KEYS),
    ("proxy_ssl", proxy_ssl::KEYS),
    ("rewrite", rewrite::KEYS),
    ("canary", canary::KEYS),
    ("affinity", affinity::KEYS),
    ("snippet", snippet::KEYS),
    ("proxy", proxy::KEYS),
    ("hosts", hosts::KEYS),
    ("headers", headers::KEYS),
    ("errors", errors::KEYS),
    ("passthrough", passthrough::KEYS),
    ("auth_tls", auth_tls::KEYS),
    ("ipfilter", ipfilter::KEYS),
    ("ratelimit", ratelimit::KEYS),
    ("cors", cors::KEYS),
    ("auth", auth::KEYS),
];

/// Whether Vestibule honours `key` (without prefix): some family owns it and applies it.
/// Snippets are owned (they are refused, not merely unknown) but never honoured.
pub fn is_supported(key: &str) -> bool {
    is_owned(key) && !snippet::owns(key)
}

/// Whether some family owns `key` (without prefix): it is applied, or refused with a reason of
/// its own; keys nobody owns are reported as not supported.
pub fn is_owned(key: &str) -> bool {
    REGISTRY.iter().any(|(_, keys)| keys.contains(&key)) || snippet::owns(key)
}

#[derive(Debug, Clone, Default)]
pub struct Annotations {
    pub backend_protocol: BackendProtocol,
    pub policy: Policy,
    /// `ssl-redirect: "false"` turns the HTTP→HTTPS redirect off for this Ingress.
    pub ssl_redirect: bool,
    pub proxy_ssl: ProxySsl,
    pub redirect: redirect::Redirects,
    pub rewrite: rewrite::Rewrite,
    /// Set when the Ingress is a canary (`canary: "true"`).
    pub canary: Option<crate::config::CanaryRule>,
    pub affinity: affinity::AffinityAnn,
    /// Limits, timeouts and retries (`proxy-*`), over the global settings.
    pub proxy: crate::config::ProxySettings,
    /// `proxy-redirect-*`, `proxy-cookie-*`.
    pub rewrite_response: proxy::ResponseRewrite,
    pub hosts: hosts::Hosts,
    pub custom_headers: headers::CustomHeaders,
    pub errors: errors::Errors,
    /// `ssl-passthrough` (applied by `compile::l4::passthrough`).
    pub ssl_passthrough: bool,
    /// `auth-tls-*` (applied by `compile::client_auth`).
    pub auth_tls: auth_tls::AuthTls,
    /// Source-address lists (the ConfigMap's in the defaults).
    pub ipfilter: Option<std::sync::Arc<crate::config::limits::IpFilter>>,
    pub ratelimit: ratelimit::RateAnn,
    /// The ConfigMap's settings the address and limit families read (defaults only).
    pub http: std::sync::Arc<crate::config::http::HttpSettings>,
    /// `enable-cors` and `cors-*`.
    pub cors: Option<crate::config::cors::CorsPolicy>,
    /// `auth-*` (resolved against the store by `compile::auth`).
    pub auth: auth::Auth,
}

/// An annotation that could not be used: its field path, why, and the diagnostic reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub field: String,
    pub message: String,
    pub reason: Reason,
    /// Warning for a value that fell back to its default; Error for one that is refused.
    pub severity: Severity,
}

/// The value of `key` under our prefix, else ingress-nginx's, with the full key it was found at.
pub fn get<'a>(ing: &'a Ingress, key: &str) -> Option<(String, &'a str)> {
    let a = ing.metadata.annotations.as_ref()?;
    PREFIXES.iter().find_map(|p| {
        let full = format!("{p}{key}");
        a.get(&full).map(|v| (full, v.as_str()))
    })
}

/// ingress-nginx's booleans: `on`/`true`/`yes` and `off`/`false`/`no`, any case.
pub fn on_off(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses for most boolean annotations.
pub fn go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// ingress-nginx's string normalisation: every line trimmed; `None` when nothing is left.
pub fn string(v: &str) -> Option<String> {
    let s = v.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// What a family reads from: one Ingress's annotations, collecting what could not be used.
pub struct Reader<'a> {
    pub ingress: &'a Ingress,
    errors: Vec<AnnotationError>,
}

impl<'a> Reader<'a> {
    pub fn get(&self, key: &str) -> Option<(String, &'a str)> {
        get(self.ingress, key)
    }

    /// Reports the annotation at `full_key` as invalid; the family keeps its default.
    pub fn bad(&mut self, full_key: &str, message: String) {
        self.bad_with(full_key, Severity::Warning, message);
    }

    /// `bad`, with the severity given.
    pub fn bad_with(&mut self, full_key: &str, severity: Severity, message: String) {
        self.errors.push(AnnotationError { field: field(full_key), message, reason: Reason::InvalidField, severity });
    }

    /// Refuses the annotation at `full_key` (an Error): it has no effect.
    pub fn refuse(&mut self, full_key: &str, message: String) {
        self.errors.push(AnnotationError { field: field(full_key), message, reason: Reason::SnippetRefused, severity: Severity::Error });
    }

    /// Reports the annotation at `full_key` as invalid where ingress-nginx would drop the whole
    /// Ingress: an Error, and the annotation is not applied (the rest of the Ingress serves).
    pub fn invalid(&mut self, full_key: &str, message: String) {
        self.bad_with(full_key, Severity::Error, message);
    }
}

fn field(full_key: &str) -> String {
    format!("metadata.annotations[{full_key}]")
}

/// Keys under our prefixes that no family owns, in key order.
fn unsupported(ing: &Ingress) -> Vec<AnnotationError> {
    let keys = ing.metadata.annotations.iter().flat_map(|a| a.keys());
    keys.filter(|k| PREFIXES.iter().any(|p| k.strip_prefix(p).is_some_and(|rest| !is_owned(rest))))
        .map(|k| AnnotationError { field: field(k), message: "not supported by Vestibule; it is ignored".into(), reason: Reason::AnnotationNotSupported, severity: Severity::Warning })
        .collect()
}

/// Reads an Ingress's annotations over `defaults` (the global settings: ConfigMap, flags,
/// built-in defaults); errors name the annotation and keep the default.
pub fn parse(ing: &Ingress, defaults: &Annotations) -> (Annotations, Vec<AnnotationError>) {
    let mut r = Reader { ingress: ing, errors: Vec::new() };
    let a = Annotations {
        backend_protocol: backend::parse(&mut r),
        policy: balance::parse(&mut r, &defaults.policy),
        ssl_redirect: redirect::parse(&mut r, defaults.ssl_redirect),
        proxy_ssl: proxy_ssl::parse(&mut r),
        redirect: redirect::parse_redirects(&mut r, &defaults.redirect),
        rewrite: rewrite::parse(&mut r, &defaults.rewrite),
        canary: canary::parse(&mut r),
        affinity: affinity::parse(&mut r),
        proxy: proxy::parse(&mut r, &defaults.proxy),
        rewrite_response: proxy::parse_rewrite(&mut r),
        hosts: hosts::parse(&mut r, defaults.hosts.service_upstream),
        custom_headers: headers::parse(&mut r),
        errors: errors::parse(&mut r, &defaults.errors.codes),
        ssl_passthrough: passthrough::parse(&mut r),
        auth_tls: auth_tls::parse(&mut r),
        ipfilter: ipfilter::parse(&mut r, &defaults.ipfilter),
        ratelimit: ratelimit::parse(&mut r, &defaults.http),
        http: defaults.http.clone(),
        cors: cors::parse(&mut r),
        auth: auth::parse(&mut r),
    };
    snippet::parse(&mut r);
    let mut errors = r.errors;
    errors.extend(unsupported(ing));
    (a, errors)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::HashKey;
    use std::collections::BTreeMap;

    /// `parse` over the built-in defaults.
    pub(crate) fn parse_default(i: &Ingress) -> (Annotations, Vec<AnnotationError>) {
        parse(i, &Annotations { ssl_redirect: true, ..Default::default() })
    }

    pub(crate) fn ing(pairs: &[(&str, &str)]) -> Ingress {
        let mut i = Ingress::default();
        i.metadata.namespace = Some("ns".into());
        i.metadata.annotations = Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>());
        i
    }

    #[test]
    fn reads_both_prefixes_and_prefers_ours() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/backend-protocol", "GRPC"), ("vestibule.dev/backend-protocol", "h2c")]));
        assert!(e.is_empty());
        assert_eq!(a.backend_protocol, BackendProtocol::H2c);
        let (a, _) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/upstream-hash-by", "$http_x_user")]));
        assert_eq!(a.policy, Policy::Hash(HashKey { parts: vec![crate::config::HashPart::Header("x-user".into())] }));
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let (a, e) = parse_default(&ing(&[
            ("nginx.ingress.kubernetes.io/backend-protocol", "FTP"),
            ("nginx.ingress.kubernetes.io/upstream-hash-by", "$(rm -rf /)"),
            ("nginx.ingress.kubernetes.io/load-balance", "random"),
        ]));
        assert_eq!(a.backend_protocol, BackendProtocol::Http);
        assert_eq!(a.policy, Policy::RoundRobin);
        assert_eq!(e.len(), 3);
        assert!(e[0].field.contains("backend-protocol"));
        assert!(e.iter().all(|e| e.reason == Reason::InvalidField));
    }

    #[test]
    fn keys_no_family_owns_are_reported_under_our_prefixes_only() {
        let (_, e) = parse_default(&ing(&[
            ("nginx.ingress.kubernetes.io/enable-opentelemetry", "true"),
            ("vestibule.dev/canary-unknown", "true"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ("kubernetes.io/ingress.class", "vestibule"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("example.com/rewrite-target", "/"),
        ]));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.annotations[nginx.ingress.kubernetes.io/enable-opentelemetry]", "metadata.annotations[vestibule.dev/canary-unknown]"]);
        assert!(e.iter().all(|e| e.reason == Reason::AnnotationNotSupported && e.message == "not supported by Vestibule; it is ignored"), "{e:?}");
    }

    #[test]
    fn every_key_has_one_owner() {
        let mut all: Vec<&str> = REGISTRY.iter().flat_map(|(_, keys)| keys.iter().copied()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a key is owned by two families");
    }
}
