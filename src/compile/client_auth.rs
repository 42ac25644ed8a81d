//! Client-certificate policies by host, from the `auth-tls-*` annotations: the CA Secret is
//! read and a TLS server configuration that asks for a client certificate is prepared.
//!
//! The oldest Ingress with `auth-tls-secret` for a host decides (ingress-nginx keeps the first
//! server-level setting). A Secret that is missing or unusable fails closed: the host's
//! requests are refused (403, as ingress-nginx answers an authentication-TLS error) and an
//! Error names the Ingress and the annotation.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use super::annotations::{self, auth_tls};
use super::builder::Builder;
use super::tls::secret_value;
use super::{Reason, Severity};
use crate::config::client_auth::{ClientAuth, ClientAuths, ClientTls, NoCert};
use crate::config::route::Pattern;
use crate::store::{ObjRef, Store};

/// The policies of every host of the Ingresses we own (oldest first).
pub(super) fn hosts(b: &mut Builder, owned: &[&Ingress]) -> ClientAuths {
    let mut out: HashMap<String, Arc<ClientAuth>> = HashMap::new();
    let mut prepared: HashMap<(String, String), Result<ClientTls, (Reason, String)>> = HashMap::new();
    for ing in owned {
        let a = auth_tls::of(ing);
        if a.secret.is_none() && a.bad_secret.is_none() {
            continue;
        }
        let oref = Arc::new(ObjRef::new("Ingress", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or("")));
        let key = annotations::get(ing, "auth-tls-secret").map(|(k, _)| k).unwrap_or_default();
        let tls = match &a.secret {
            Some(s) if a.bad_secret.is_none() => match prepared.entry(s.clone()).or_insert_with(|| prepare(b.store, s)) {
                Ok(t) => Some(t.clone()),
                Err((reason, msg)) => {
                    let msg = format!("{msg}; the hosts of this Ingress refuse every request (403) rather than serve without client certificates");
                    b.diag(Severity::Error, &oref, format!("metadata.annotations[{key}]"), reason.clone(), msg);
                    None
                }
            },
            // Already reported by the annotation parse.
            _ => None,
        };
        let policy = Arc::new(ClientAuth {
            ingress: oref,
            verify: a.verify,
            depth: a.depth,
            error_page: a.error_page.clone(),
            pass_cert: a.pass_cert,
            match_cn: a.match_cn.as_deref().and_then(|m| Pattern::new(m).ok()),
            tls,
        });
        for host in hosts_of(ing) {
            out.entry(host).or_insert_with(|| policy.clone());
        }
    }
    ClientAuths { hosts: out }
}

/// The hosts an Ingress's rules and TLS section name.
fn hosts_of(ing: &Ingress) -> Vec<String> {
    let spec = ing.spec.as_ref();
    let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or(&[]).iter().filter_map(|r| r.host.clone());
    let tls = spec.and_then(|s| s.tls.as_deref()).unwrap_or(&[]).iter().flat_map(|t| t.hosts.clone().unwrap_or_default());
    rules.chain(tls).map(|h| h.to_ascii_lowercase()).collect()
}

/// Reads `ca.crt` (and `ca.crl`) of the Secret and prepares the TLS configuration.
fn prepare(store: &Store, (ns, name): &(String, String)) -> Result<ClientTls, (Reason, String)> {
    let secret = store.secrets.get(&(ns.clone(), name.clone())).ok_or_else(|| (Reason::SecretNotFound, format!("Secret {ns}/{name} not found")))?;
    let invalid = |m: String| (Reason::SecretInvalid, format!("Secret {ns}/{name}: {m}"));
    let ca = secret_value(secret, "ca.crt").ok_or_else(|| invalid("has no ca.crt".into()))?;
    let cas = CertificateDer::pem_slice_iter(ca).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(format!("ca.crt: {e}")))?;
    if cas.is_empty() {
        return Err(invalid("ca.crt holds no certificate".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &cas {
        roots.add(c.clone()).map_err(|e| invalid(format!("ca.crt: {e}")))?;
    }
    let crls = match secret_value(secret, "ca.crl") {
        Some(crl) => CertificateRevocationListDer::pem_slice_iter(crl).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(format!("ca.crl: {e}")))?,
        None => Vec::new(),
    };
    if secret_value(secret, "ca.crl").is_some() && crls.is_empty() {
        return Err(invalid("ca.crl holds no revocation list".into()));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
        .with_crls(crls)
        .build()
        .map_err(|e| invalid(format!("ca.crt/ca.crl: {e}")))?;
    let mut server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_client_cert_verifier(Arc::new(Asks { inner: verifier.clone() }))
        .with_cert_resolver(Arc::new(NoCert));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ClientTls { server: Arc::new(server), verifier, cas })
}

/// Asks for a client certificate and takes any chain whose key signs the handshake; whether
/// it is trusted is decided per request (so that failures get ingress-nginx's answers).
#[derive(Debug)]
struct Asks {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for Asks {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
