//! The HTTPS listener's TLS: the certificate for each handshake is picked by SNI from the
//! configuration live at that moment.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Shared;
use crate::config::http::{TlsOptions, TlsVersion};

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

/// The server-side TLS configuration for the options live now: ALPN h2 and http/1.1,
/// certificates by SNI.
pub fn server_config(shared: Arc<Shared>) -> Arc<rustls::ServerConfig> {
    let opts = shared.config().http.tls.clone();
    server_config_for(shared, &opts)
}

/// The server-side TLS configuration for `opts` (`ssl-protocols`, `ssl-ciphers`,
/// `ssl-session-tickets`): the protocol versions and cipher suites they name, session tickets
/// when on.
pub fn server_config_for(shared: Arc<Shared>, opts: &TlsOptions) -> Arc<rustls::ServerConfig> {
    let mut provider = crate::tls::provider().as_ref().clone();
    if let Some(suites) = &opts.cipher_suites {
        let all = std::mem::take(&mut provider.cipher_suites);
        provider.cipher_suites = suites.iter().filter_map(|s| all.iter().find(|c| c.suite() == *s).copied()).collect();
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        opts.versions.iter().map(|v| match v { TlsVersion::Tls12 => &rustls::version::TLS12, TlsVersion::Tls13 => &rustls::version::TLS13 }).collect();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider));
    // Compile guarantees versions and suites that fit together; should they not, the defaults.
    let builder = builder.with_protocol_versions(&versions).unwrap_or_else(|_| {
        rustls::ServerConfig::builder_with_provider(crate::tls::provider()).with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]).expect("aws-lc-rs supports TLS 1.2 and 1.3")
    });
    let mut cfg = builder.with_no_client_auth().with_cert_resolver(Arc::new(SniResolver { shared }));
    // The server's order of cipher suites wins, as with ingress-nginx's default
    // `ssl-prefer-server-ciphers: "true"`.
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if opts.session_tickets {
        match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => cfg.ticketer = t,
            Err(e) => tracing::warn!(error = %e, "no TLS session ticketer; tickets stay off"),
        }
    }
    Arc::new(cfg)
}

/// The HTTPS accept loop's TLS configuration, rebuilt when the live TLS options change.
pub struct Picker {
    current: Option<(TlsOptions, Arc<rustls::ServerConfig>)>,
}

impl Picker {
    pub fn new() -> Self {
        Picker { current: None }
    }

    /// The TLS configuration for a connection accepted now (hosts without a client
    /// certificate policy; those with one use theirs).
    pub fn pick(&mut self, shared: &Arc<Shared>) -> Arc<rustls::ServerConfig> {
        let live = shared.config();
        match &self.current {
            Some((opts, config)) if *opts == live.http.tls => config.clone(),
            _ => {
                let config = server_config_for(shared.clone(), &live.http.tls);
                self.current = Some((live.http.tls.clone(), config.clone()));
                config
            }
        }
    }
}

impl Default for Picker {
    fn default() -> Self {
        Self::new()
    }
}
