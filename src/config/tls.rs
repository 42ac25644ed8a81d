//! Certificates by SNI name.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

/// A certificate and where it came from.
#[derive(Debug, Clone)]
pub struct TlsCert {
    pub key: Arc<CertifiedKey>,
    /// The Secret it was read from; `None` for the generated default.
    pub secret: Option<(String, String)>,
}

/// TLS certificates by SNI name.
#[derive(Debug, Clone)]
pub struct TlsCerts {
    pub exact: HashMap<String, TlsCert>,
    /// Keyed by the parent domain: `*.foo.com` is stored under `foo.com`.
    pub wildcard: HashMap<String, TlsCert>,
    pub default: TlsCert,
}

impl TlsCerts {
    pub fn new(default: TlsCert) -> Self {
        TlsCerts { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// The certificate for an SNI name (already lowercase): exact, then one-label wildcard,
    /// then the default. Never fails.
    pub fn pick(&self, sni: Option<&str>) -> &TlsCert {
        if let Some(name) = sni {
            if let Some(c) = self.exact.get(name) {
                return c;
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(c) = self.wildcard.get(parent) {
                    return c;
                }
            }
        }
        &self.default
    }

    pub fn resolve(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        self.pick(sni).key.clone()
    }
}

