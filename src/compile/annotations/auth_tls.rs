//! `auth-tls-*`: client certificates (mutual TLS) for the hosts of an Ingress.
//!
//! As ingress-nginx: an unknown `auth-tls-verify-client` is `on`; a depth that is not a
//! positive number is 1; `auth-tls-match-cn` without `CN=` is ignored; the pass-certificate
//! flag is a Go boolean. The match expression is compiled as data, never templated.

use super::{Reader, go_bool, string};
use crate::config::client_auth::VerifyClient;

pub const KEYS: &[&str] = &["auth-tls-secret", "auth-tls-verify-client", "auth-tls-verify-depth", "auth-tls-error-page", "auth-tls-pass-certificate-to-upstream", "auth-tls-match-cn"];

/// What an Ingress asks of client certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTls {
    /// The Secret with `ca.crt` (and optionally `ca.crl`); `None`: no client authentication.
    pub secret: Option<(String, String)>,
    /// Set when `auth-tls-secret` is present but not `NAMESPACE/NAME`: the hosts fail closed.
    pub bad_secret: Option<String>,
    pub verify: VerifyClient,
    pub depth: u32,
    pub error_page: Option<String>,
    pub pass_cert: bool,
    pub match_cn: Option<String>,
}

/// The `auth-tls-*` settings of an Ingress, without reporting (the annotation parse reports).
pub fn of(ing: &k8s_openapi::api::networking::v1::Ingress) -> AuthTls {
    parse(&mut Reader { ingress: ing, errors: Vec::new() })
}

pub fn parse(r: &mut Reader) -> AuthTls {
    let mut a = AuthTls { depth: 1, ..Default::default() };
    let Some((k, v)) = r.get("auth-tls-secret") else { return a };
    match v.trim().split_once('/') {
        Some((ns, n)) if !ns.is_empty() && !n.is_empty() && !n.contains('/') => a.secret = Some((ns.to_string(), n.to_string())),
        _ => {
            // ingress-nginx denies the location; Vestibule refuses the host's requests (403).
            let msg = format!("{v:?}: must be NAMESPACE/NAME of a Secret; the hosts of this Ingress refuse every request");
            r.invalid(&k, msg.clone());
            a.bad_secret = Some(msg);
            return a;
        }
    }
    if let Some((k, v)) = r.get("auth-tls-verify-client") {
        a.verify = match v.trim() {
            "on" => VerifyClient::On,
            "off" => VerifyClient::Off,
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => VerifyClient::OptionalNoCa,
            _ => {
                r.bad(&k, format!("{v:?}: must be on, off, optional or optional_no_ca; \"on\" is used"));
                VerifyClient::On
            }
        };
    }
    if let Some((k, v)) = r.get("auth-tls-verify-depth") {
        match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => a.depth = n,
            _ => r.bad(&k, format!("{v:?}: must be a positive number; 1 is used")),
        }
    }
    if let Some((_, v)) = r.get("auth-tls-error-page") {
        a.error_page = string(v);
    }
    if let Some((k, v)) = r.get("auth-tls-pass-certificate-to-upstream") {
        match go_bool(v) {
            Some(b) => a.pass_cert = b,
            None => r.bad(&k, format!("{v:?}: must be true or false")),
        }
    }
    if let Some((k, v)) = r.get("auth-tls-match-cn") {
        let v = v.trim();
        if !v.contains("CN=") {
            r.bad(&k, format!("{v:?}: must contain \"CN=\"; it is ignored"));
        } else if let Err(e) = crate::config::route::Pattern::new(v) {
            // ingress-nginx would break its configuration; the check is not applied... which
            // would open the host, so the Ingress's hosts refuse every request instead.
            let msg = format!("{v:?}: not a valid expression ({e}); the hosts of this Ingress refuse every request");
            r.invalid(&k, msg.clone());
            a.bad_secret = Some(msg);
        } else {
            a.match_cn = Some(v.to_string());
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::super::tests::ing;
    use super::*;

    #[test]
    fn defaults_and_fallbacks_follow_ingress_nginx() {
        let p = "nginx.ingress.kubernetes.io/";
        let a = of(&ing(&[(&format!("{p}auth-tls-secret"), "ns/ca")]));
        assert_eq!((a.secret, a.verify, a.depth, a.pass_cert), (Some(("ns".into(), "ca".into())), VerifyClient::On, 1, false));
        let i = ing(&[
            (&format!("{p}auth-tls-secret"), "ns/ca"),
            (&format!("{p}auth-tls-verify-client"), "maybe"),
            (&format!("{p}auth-tls-verify-depth"), "0"),
            (&format!("{p}auth-tls-match-cn"), "client"),
        ]);
        let a = of(&i);
        assert_eq!((a.verify, a.depth, a.match_cn), (VerifyClient::On, 1, None));
        let a = of(&ing(&[(&format!("{p}auth-tls-secret"), "ca")]));
        assert!(a.bad_secret.is_some() && a.secret.is_none());
        let a = of(&ing(&[(&format!("{p}auth-tls-secret"), "ns/ca"), (&format!("{p}auth-tls-match-cn"), "CN=(")]));
        assert!(a.bad_secret.is_some());
    }
}
