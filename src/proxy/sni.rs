//! The HTTPS listener's TLS: the certificate for each handshake is picked by SNI from the
//! configuration live at that moment.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Shared;

/// Picks the certificate for each handshake from the configuration live at that moment.
#[derive(Debug)]
pub struct SniResolver {
    pub shared: Arc<Shared>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let live = self.shared.live.load();
        let sni = hello.server_name().map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        Some(live.config.tls.resolve(sni.as_deref()))
    }
}

/// The server-side TLS configuration: TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificates by SNI.
pub fn server_config(shared: Arc<Shared>) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { shared }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}
