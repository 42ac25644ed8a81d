//! TCP and UDP services (`--tcp-services-configmap`, `--udp-services-configmap`) and SSL
//! passthrough hosts: what the data plane forwards below HTTP. Pure data, like the rest of
//! `config`; the data plane reconciles its L4 sockets with `Config::l4` on every swap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Backend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum L4Protocol {
    Tcp,
    Udp,
}

impl L4Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        }
    }
}

/// One external port forwarded to the endpoints of one Service port.
#[derive(Debug, Clone)]
pub struct L4Service {
    /// `tcp-9000`, `udp-5353`: stable while the ConfigMap key stays.
    pub name: String,
    pub protocol: L4Protocol,
    /// `--bind-address` and the ConfigMap key (the external port).
    pub addr: SocketAddr,
    pub backend: Arc<Backend>,
    /// The first `:PROXY`: read a PROXY protocol header from each client (TCP only).
    pub decode_proxy: bool,
    /// The second `:PROXY`: send a PROXY protocol v1 line to the endpoint (TCP only).
    pub encode_proxy: bool,
    /// `proxy-stream-timeout`: a connection (or UDP session) idle this long is closed.
    pub idle_timeout: Duration,
    /// `proxy-connect-timeout`: dialling one endpoint.
    pub connect_timeout: Duration,
    /// Where it was declared, for diagnostics: `ConfigMap NS/NAME data.KEY`.
    pub origin: String,
    /// The ConfigMap (namespace, name) and key, for diagnostics about this port.
    pub source: (String, String, String),
}

/// SSL passthrough: TLS connections whose SNI names one of these hosts go, untouched, to the
/// host's backend; every other connection on the HTTPS port is terminated as usual.
#[derive(Debug, Clone, Default)]
pub struct Passthrough {
    /// By lowercase host name.
    pub hosts: HashMap<String, Arc<Backend>>,
    /// Gateway API wildcards (`*.foo.com` matches one or more labels), by the suffix with its
    /// leading dot (`.foo.com`), longest first; tried after `hosts`.
    pub suffixes: Vec<(String, Arc<Backend>)>,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Passthrough {
    /// The backend for an SNI name: the exact host, else a one-label wildcard (`*.foo.com`).
    pub fn backend(&self, sni: &str) -> Option<&Arc<Backend>> {
        let sni = sni.to_ascii_lowercase();
        if let Some(b) = self.hosts.get(&sni) {
            return Some(b);
        }
        if let Some(b) = sni.split_once('.').and_then(|(_, parent)| self.hosts.get(&format!("*.{parent}"))) {
            return Some(b);
        }
        self.suffixes.iter().find(|(suffix, _)| sni.len() > suffix.len() && sni.ends_with(suffix.as_str())).map(|(_, b)| b)
    }

    /// Whether no connection is spliced here.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.suffixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_one_label_wildcard() {
        let b = |n: &str| Arc::new(Backend::new(0, "ns", n, "443", Vec::new(), None));
        let mut p = Passthrough::default();
        p.hosts.insert("a.foo.com".into(), b("exact"));
        p.hosts.insert("*.foo.com".into(), b("wild"));
        assert_eq!(p.backend("A.foo.com").unwrap().service, "exact");
        assert_eq!(p.backend("b.foo.com").unwrap().service, "wild");
        assert!(p.backend("x.b.foo.com").is_none() && p.backend("foo.com").is_none());
    }
}
