//! The Ingress annotations Vestibule honours, under ingress-nginx's prefix
//! (`nginx.ingress.kubernetes.io/`) and its own (`vestibule.dev/`, which wins when both are set).
//!
//! Every value is parsed into a typed setting; nothing is ever copied into configuration text or
//! code. An invalid value is reported and the default is used.

use k8s_openapi::api::networking::v1::Ingress;

use crate::config::{BackendProtocol, HashKey, Policy};

pub const PREFIXES: [&str; 2] = ["vestibule.dev/", "nginx.ingress.kubernetes.io/"];

/// TLS towards backends (`proxy-ssl-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProxySsl {
    pub verify: bool,
    /// A Secret with `ca.crt` (and optionally `tls.crt`/`tls.key` for a client certificate).
    pub secret: Option<(String, String)>,
    pub name: Option<String>,
    pub server_name: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Annotations {
    pub backend_protocol: BackendProtocol,
    pub policy: Policy,
    /// `ssl-redirect: "false"` turns the HTTP→HTTPS redirect off for this Ingress.
    pub ssl_redirect: bool,
    pub proxy_ssl: ProxySsl,
}

/// An annotation that could not be used: its field path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub field: String,
    pub message: String,
}

fn get<'a>(ing: &'a Ingress, key: &str) -> Option<(String, &'a str)> {
    let a = ing.metadata.annotations.as_ref()?;
    PREFIXES.iter().find_map(|p| {
        let full = format!("{p}{key}");
        a.get(&full).map(|v| (full, v.as_str()))
    })
}

fn on_off(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Reads an Ingress's annotations over `defaults` (the global settings); errors name the
/// annotation and keep the default.
pub fn parse(ing: &Ingress, defaults: &Annotations) -> (Annotations, Vec<AnnotationError>) {
    let mut a = defaults.clone();
    let mut errors = Vec::new();
    let mut bad = |key: &str, msg: String| errors.push(AnnotationError { field: format!("metadata.annotations[{key}]"), message: msg });

    if let Some((k, v)) = get(ing, "backend-protocol") {
        match BackendProtocol::parse(v) {
            Some(p) => a.backend_protocol = p,
            None => bad(&k, format!("{v:?}: must be HTTP, HTTPS, GRPC, GRPCS or H2C; HTTP is used")),
        }
    }
    if let Some((k, v)) = get(ing, "load-balance") {
        match v.trim() {
            "round_robin" => a.policy = Policy::RoundRobin,
            "ewma" | "least_request" => a.policy = Policy::LeastRequest,
            other => bad(&k, format!("{other:?}: must be round_robin or ewma; the default is used")),
        }
    }
    if let Some((k, v)) = get(ing, "upstream-hash-by") {
        match HashKey::parse(v.trim()) {
            Ok(key) => a.policy = Policy::Hash(key),
            Err(e) => bad(&k, format!("{e}; the default is used")),
        }
    }
    if let Some((k, v)) = get(ing, "ssl-redirect") {
        match on_off(v) {
            Some(b) => a.ssl_redirect = b,
            None => bad(&k, format!("{v:?}: must be \"true\" or \"false\"")),
        }
    }
    if let Some((k, v)) = get(ing, "proxy-ssl-verify") {
        match on_off(v) {
            Some(b) => a.proxy_ssl.verify = b,
            None => bad(&k, format!("{v:?}: must be \"on\" or \"off\"")),
        }
    }
    if let Some((k, v)) = get(ing, "proxy-ssl-server-name") {
        match on_off(v) {
            Some(b) => a.proxy_ssl.server_name = b,
            None => bad(&k, format!("{v:?}: must be \"on\" or \"off\"")),
        }
    }
    if let Some((k, v)) = get(ing, "proxy-ssl-secret") {
        let ns_default = ing.metadata.namespace.clone().unwrap_or_default();
        let (ns, name) = v.trim().split_once('/').map(|(n, s)| (n.to_string(), s.to_string())).unwrap_or((ns_default, v.trim().to_string()));
        if name.is_empty() || ns.is_empty() || name.contains('/') {
            bad(&k, format!("{v:?}: must be NAMESPACE/NAME of a Secret"));
        } else {
            a.proxy_ssl.secret = Some((ns, name));
        }
    }
    if let Some((k, v)) = get(ing, "proxy-ssl-name") {
        let v = v.trim();
        if rustls_pki_types::ServerName::try_from(v.to_string()).is_ok() {
            a.proxy_ssl.name = Some(v.to_string());
        } else {
            bad(&k, format!("{v:?}: not a valid server name"));
        }
    }
    (a, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse_default(i: &Ingress) -> (Annotations, Vec<AnnotationError>) {
        parse(i, &Annotations { ssl_redirect: true, ..Default::default() })
    }

    fn ing(pairs: &[(&str, &str)]) -> Ingress {
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
    }
}
