//! Certificates: TLS Secrets → certificates for SNI, the default certificate, and TLS towards
//! backends (`proxy-ssl-*`). Parsed certificates are memoised by content in `CertCache`.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use rustls::sign::CertifiedKey;

use super::annotations::ProxySsl;
use super::builder::Builder;
use super::{Reason, Settings, Severity};
use crate::config::{BackendProtocol, TlsCert, TlsCerts, UpstreamTls};
use crate::store::{Key, ObjRef, Store};

/// Parsed certificates by content hash.
#[derive(Debug, Clone, Default)]
pub struct CertCache(Arc<std::sync::Mutex<HashMap<u64, Result<Arc<CertifiedKey>, String>>>>);

impl CertCache {
    pub(super) fn get(&self, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
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

/// The certificates of TLS Secrets as one compile reads them: each Secret once per owner set.
type SecretMemo = HashMap<Key, Result<Arc<CertifiedKey>, (Reason, String)>>;

/// The certificate of a TLS Secret, or a diagnostic saying why it cannot be used (on every
/// owner that names it, so that each one's findings depend on itself alone).
fn secret_cert(b: &mut Builder, owner: &ObjRef, field: &str, ns: &str, name: &str, memo: &mut SecretMemo) -> Option<Arc<CertifiedKey>> {
    let key = (ns.to_string(), name.to_string());
    let result = match memo.get(&key) {
        Some(hit) => hit.clone(),
        None => {
            let result = match b.store.secrets.get(&key) {
                None => Err((Reason::SecretNotFound, format!("Secret {ns}/{name} not found; the default certificate is served"))),
                Some(secret) => b.certs.get(secret).map_err(|e| (Reason::SecretInvalid, format!("Secret {ns}/{name}: {e}; the default certificate is served"))),
            };
            memo.insert(key, result.clone());
            result
        }
    };
    match result {
        Ok(ck) => Some(ck),
        Err((reason, msg)) => {
            b.diag(Severity::Warning, owner, field, reason, msg);
            None
        }
    }
}

/// The certificate for SNI names nothing else covers: `--default-ssl-certificate` when it is
/// usable, else the generated one.
pub(super) fn default_cert(b: &mut Builder, settings: &Settings) -> TlsCert {
    let fallback = TlsCert { key: settings.fallback_cert.clone(), secret: None };
    match &settings.default_ssl_certificate {
        Some((ns, name)) => {
            let oref = ObjRef::new("Secret", ns, name);
            match secret_cert(b, &oref, "--default-ssl-certificate", ns, name, &mut HashMap::new()) {
                Some(key) => TlsCert { key, secret: Some((ns.clone(), name.clone())) },
                None => fallback,
            }
        }
        None => fallback,
    }
}

/// Certificates by SNI name from the `spec.tls` of Ingresses, oldest first: the first to name a
/// host keeps it.
pub(super) fn ingress_certs(b: &mut Builder, owned: &[&Ingress], tls: &mut TlsCerts) {
    let mut memo = SecretMemo::new();
    for ing in owned {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("");
        let oref = ObjRef::new("Ingress", ns, ing.metadata.name.as_deref().unwrap_or(""));
        let spec = ing.spec.as_ref().expect("validated");
        for (i, entry) in spec.tls.as_deref().unwrap_or(&[]).iter().enumerate() {
            let Some(secret) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else { continue };
            let Some(key) = secret_cert(b, &oref, &format!("spec.tls[{i}].secretName"), ns, secret, &mut memo) else { continue };
            let cert = TlsCert { key, secret: Some((ns.to_string(), secret.to_string())) };
            let hosts: Vec<String> = match entry.hosts.as_deref() {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                _ => spec.rules.as_deref().unwrap_or(&[]).iter().filter_map(|r| r.host.as_ref().map(|h| h.to_ascii_lowercase())).collect(),
            };
            for host in hosts {
                match host.strip_prefix("*.") {
                    Some(parent) => tls.wildcard.entry(parent.to_string()).or_insert_with(|| cert.clone()),
                    None => tls.exact.entry(host).or_insert_with(|| cert.clone()),
                };
            }
        }
    }
}

/// TLS towards a backend that verifies its certificate against a CA from a Secret.
pub(super) fn upstream_tls(store: &Store, ing: &ObjRef, service: &str, protocol: BackendProtocol, ssl: &ProxySsl) -> Result<UpstreamTls, String> {
    let name = ssl.name.clone().unwrap_or_else(|| format!("{service}.{}.svc", ing.namespace));
    let server_name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|_| format!("{name:?} is not a valid server name"))?;
    let alpn: Vec<Vec<u8>> = if protocol.http2() { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let secret = match &ssl.secret {
        Some((ns, n)) => Some(store.secrets.get(&(ns.clone(), n.clone())).ok_or_else(|| format!("Secret {ns}/{n} not found; backend certificates are not verified"))?),
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
        return Ok(UpstreamTls { config: Arc::new(cfg), server_name, fingerprint });
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
    Ok(UpstreamTls { config: Arc::new(cfg), server_name, fingerprint })
}

/// What makes two backend TLS setups interchangeable for a pooled connection: the settings,
/// the name, and the Secret's content. Never 0 or 1 (plain and the default TLS use those).
fn tls_fingerprint(ssl: &ProxySsl, name: &str, protocol: BackendProtocol, secret: Option<&Secret>) -> u64 {
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
pub(super) fn secret_value<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
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
