//! `proxy-ssl-verify`, `proxy-ssl-secret`, `proxy-ssl-name`, `proxy-ssl-server-name`: TLS
//! towards backends that speak HTTPS or GRPCS.

use super::{Reader, on_off};

pub const KEYS: &[&str] = &["proxy-ssl-verify", "proxy-ssl-secret", "proxy-ssl-name", "proxy-ssl-server-name"];

/// TLS towards backends (`proxy-ssl-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProxySsl {
    pub verify: bool,
    /// A Secret with `ca.crt` (and optionally `tls.crt`/`tls.key` for a client certificate).
    pub secret: Option<(String, String)>,
    pub name: Option<String>,
    pub server_name: bool,
}

pub fn parse(r: &mut Reader) -> ProxySsl {
    let mut ssl = ProxySsl::default();
    if let Some((k, v)) = r.get("proxy-ssl-verify") {
        match on_off(v) {
            Some(b) => ssl.verify = b,
            None => r.bad(&k, format!("{v:?}: must be \"on\" or \"off\"")),
        }
    }
    if let Some((k, v)) = r.get("proxy-ssl-server-name") {
        match on_off(v) {
            Some(b) => ssl.server_name = b,
            None => r.bad(&k, format!("{v:?}: must be \"on\" or \"off\"")),
        }
    }
    if let Some((k, v)) = r.get("proxy-ssl-secret") {
        let ns_default = r.ingress.metadata.namespace.clone().unwrap_or_default();
        let (ns, name) = v.trim().split_once('/').map(|(n, s)| (n.to_string(), s.to_string())).unwrap_or((ns_default, v.trim().to_string()));
        if name.is_empty() || ns.is_empty() || name.contains('/') {
            r.bad(&k, format!("{v:?}: must be NAMESPACE/NAME of a Secret"));
        } else {
            ssl.secret = Some((ns, name));
        }
    }
    if let Some((k, v)) = r.get("proxy-ssl-name") {
        let v = v.trim();
        if rustls_pki_types::ServerName::try_from(v.to_string()).is_ok() {
            ssl.name = Some(v.to_string());
        } else {
            r.bad(&k, format!("{v:?}: not a valid server name"));
        }
    }
    ssl
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default as parse_all};

    #[test]
    fn secret_defaults_to_the_ingress_namespace() {
        let (a, e) = parse_all(&ing(&[("nginx.ingress.kubernetes.io/proxy-ssl-secret", "ca"), ("nginx.ingress.kubernetes.io/proxy-ssl-verify", "on")]));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(a.proxy_ssl.secret, Some(("ns".into(), "ca".into())));
        assert!(a.proxy_ssl.verify);
        let (_, e) = parse_all(&ing(&[("nginx.ingress.kubernetes.io/proxy-ssl-secret", "a/b/c")]));
        assert_eq!(e[0].message, "\"a/b/c\": must be NAMESPACE/NAME of a Secret");
    }
}
