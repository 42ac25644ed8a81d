//! The validating admission webhook (`--validating-webhook`): the Kubernetes API server asks it
//! whether an Ingress may be created or updated, and it answers by compiling the would-be store
//! with the same pure `compile` the proxy's configuration comes from. Nothing from the object is
//! executed, templated or handed to another program: ingress-nginx's webhook rendered and
//! tested an nginx configuration from the object, which is what CVE-2025-1974 exploited.
//!
//! - `review`: the pure review function and the AdmissionReview types;
//! - `server`: the HTTPS server;
//! - `patch`: `--patch-webhook-ca`, which puts a generated CA into a
//!   ValidatingWebhookConfiguration's `caBundle` (controller mode).

pub mod patch;
pub mod review;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::compile::Settings;
use crate::engine::Snapshot;
use crate::metrics::Metrics;

/// The admission Service of `deploy/static/webhook.yaml`; the generated certificate is valid
/// for its DNS names.
pub const SERVICE: &str = "vestibule-controller-admission";

/// `--validating-webhook*` and `--patch-webhook-ca`.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// `--validating-webhook ADDR:PORT`.
    pub addr: SocketAddr,
    /// `--validating-webhook-certificate FILE` (PEM chain) ...
    pub cert_file: Option<PathBuf>,
    /// ... and `--validating-webhook-key FILE`. Without both, a certificate is generated.
    pub key_file: Option<PathBuf>,
    /// The names a generated certificate is valid for; empty: `service_names` of the
    /// controller's namespace (POD_NAMESPACE, else `vestibule`, in `serve`).
    pub names: Vec<String>,
}

/// The DNS names the API server may use to reach the admission Service in `namespace`.
pub fn service_names(namespace: &str) -> Vec<String> {
    vec![
        SERVICE.to_string(),
        format!("{SERVICE}.{namespace}"),
        format!("{SERVICE}.{namespace}.svc"),
        format!("{SERVICE}.{namespace}.svc.cluster.local"),
    ]
}

/// A generated serving certificate: a CA of its own (what goes into `caBundle`) and a leaf
/// for `names`, signed by it. The CA's key is dropped once the leaf is signed.
pub fn generate(names: &[String]) -> anyhow::Result<(rustls::sign::CertifiedKey, String)> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Vestibule admission webhook CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, names.first().map(String::as_str).unwrap_or(SERVICE));
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    let chain = format!("{}{}", cert.pem(), ca_cert.pem());
    let ck = crate::tls::certified_key_from_pem(chain.as_bytes(), key.serialize_pem().as_bytes()).map_err(anyhow::Error::msg)?;
    Ok((ck, ca_cert.pem()))
}

/// Where the webhook listens, and the CA of a generated certificate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// PEM of the CA that signed a generated certificate (None with certificate files).
    pub ca_pem: Option<String>,
}

/// A bound, not yet serving, webhook.
pub struct Bound {
    pub endpoint: Endpoint,
    listener: Option<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
}

/// Reads or generates the serving certificate and binds the listener.
pub async fn bind(opts: &WebhookOptions) -> anyhow::Result<Bound> {
    crate::tls::install_provider();
    let (key, ca_pem) = match (&opts.cert_file, &opts.key_file) {
        (Some(c), Some(k)) => {
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| anyhow::anyhow!("--validating-webhook: reading {}: {e}", p.display()));
            let ck = crate::tls::certified_key_from_pem(&read(c)?, &read(k)?).map_err(|e| anyhow::anyhow!("--validating-webhook-certificate/-key: {e}"))?;
            (ck, None)
        }
        (None, None) => {
            let names = if opts.names.is_empty() { service_names(&std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "vestibule".into())) } else { opts.names.clone() };
            let (ck, ca) = generate(&names)?;
            tracing::info!(names = ?names, "--validating-webhook: generated a serving certificate");
            (ck, Some(ca))
        }
        _ => anyhow::bail!("--validating-webhook-certificate and --validating-webhook-key go together"),
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(crate::tls::Single(Arc::new(key))));
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = TcpListener::bind(opts.addr).await.map_err(|e| anyhow::anyhow!("binding --validating-webhook {}: {e}", opts.addr))?;
    let addr = listener.local_addr()?;
    Ok(Bound { endpoint: Endpoint { addr, ca_pem }, listener: Some(listener), tls: Arc::new(tls) })
}

impl Bound {
    /// Starts answering reviews against the live `snapshot` (once; later calls do nothing).
    pub fn spawn(&mut self, snapshot: Arc<ArcSwap<Snapshot>>, settings: Settings, metrics: Arc<Metrics>) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self.listener.take()?;
        tracing::info!(addr = %self.endpoint.addr, path = server::PATH, "validating admission webhook listening");
        Some(server::spawn(listener, self.tls.clone(), server::Context::new(snapshot, settings, metrics)))
    }
}
