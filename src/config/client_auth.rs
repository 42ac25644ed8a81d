//! Client certificates (mutual TLS) per host: what the HTTPS handshake asks for when SNI names
//! the host, and what its requests need (ingress-nginx's `auth-tls-*`).

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;

use super::route::Pattern;
use crate::store::ObjRef;

/// `auth-tls-verify-client`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum VerifyClient {
    /// A certificate is required and must chain to the CA (else 400).
    #[default]
    On,
    /// No certificate is asked for.
    Off,
    /// A certificate is asked for; none passes, an untrusted one is refused (400).
    Optional,
    /// A certificate is asked for and passes whoever signed it (its result is still reported).
    OptionalNoCa,
}

/// The TLS side of a policy, built from the CA Secret.
#[derive(Clone)]
pub struct ClientTls {
    /// Asks for a client certificate; its certificate resolver is replaced by the listener's.
    pub server: Arc<rustls::ServerConfig>,
    /// Verifies a presented chain against the CA roots and CRLs (after the handshake, which
    /// accepts any chain whose key signed the handshake, so that failures are answered as
    /// ingress-nginx answers them: 400 or the error page).
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// The CA certificates (a chain that includes them does not count them toward the depth).
    pub cas: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("cas", &self.cas.len()).finish()
    }
}

/// One host's client-certificate policy.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The Ingress that set it (the oldest one with `auth-tls-secret` for the host).
    pub ingress: Arc<ObjRef>,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth`: how many certificates above the client's may be needed.
    pub depth: u32,
    /// `auth-tls-error-page`: failures are redirected here instead of answered 400.
    pub error_page: Option<String>,
    /// `auth-tls-pass-certificate-to-upstream`: `ssl-client-cert` carries the URL-encoded PEM.
    pub pass_cert: bool,
    /// `auth-tls-match-cn`: matched (unanchored) against the subject DN; no match is 403.
    pub match_cn: Option<Pattern>,
    /// `None` when the Secret cannot be used: every request to the host is refused (403),
    /// never served without client authentication.
    pub tls: Option<ClientTls>,
}

/// Every host's policy, by host as written (`foo.com`, `*.foo.com`).
#[derive(Debug, Clone, Default)]
pub struct ClientAuths {
    pub hosts: std::collections::HashMap<String, Arc<ClientAuth>>,
}

impl ClientAuths {
    /// The policy of a host name (lowercase, no port, no trailing dot): exact, then `*.parent`.
    pub fn get(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        if self.hosts.is_empty() {
            return None;
        }
        self.hosts.get(host).or_else(|| host.split_once('.').and_then(|(_, parent)| self.hosts.get(&format!("*.{parent}"))))
    }
}

/// A certificate resolver that has none: it stands in until the listener sets its own.
#[derive(Debug)]
pub struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}
