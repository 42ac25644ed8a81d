//! Route tables per port: the hosts one listener port serves. Ingress rules are served on
//! every Ingress listener (the `Config`'s own table); Gateway API routes only on the port of
//! the listener they attach to. A port that has Gateway routes gets a `RouteTable` of its own
//! in `Config::ports`: on an Ingress port it holds the Ingress hosts merged with that port's
//! Gateway routes, on a Gateway-only port just the Gateway routes.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Passthrough, PathKind, Route, VirtualHost};

/// The hosts of one listener port.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub exact: HashMap<String, Arc<VirtualHost>>,
    /// Keyed by the parent domain: `*.foo.com` is stored under `foo.com`.
    pub wildcard: HashMap<String, Arc<VirtualHost>>,
    pub hostless: Option<Arc<VirtualHost>>,
    /// Some wildcard here is a Gateway API one, which matches one or more labels.
    pub deep: bool,
    /// An Ingress port: what no route matched goes to the configuration's default backend.
    pub ingress: bool,
    /// TLS connections spliced by SNI on this port (TLSRoutes, and on an Ingress HTTPS port
    /// also the `ssl-passthrough` hosts).
    pub passthrough: Arc<Passthrough>,
}

impl RouteTable {
    pub fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        lookup(&self.exact, &self.wildcard, self.hostless.as_deref(), self.deep, host)
    }

    pub fn vhosts(&self) -> impl Iterator<Item = &Arc<VirtualHost>> {
        self.exact.values().chain(self.wildcard.values()).chain(self.hostless.iter())
    }
}

/// The virtual host for `host`: exact, then the longest wildcard that matches (an Ingress
/// wildcard matches one label; a Gateway API one, when `deep`, any number), then the
/// host-less rules.
pub(super) fn lookup<'a>(
    exact: &'a HashMap<String, Arc<VirtualHost>>,
    wildcard: &'a HashMap<String, Arc<VirtualHost>>,
    hostless: Option<&'a VirtualHost>,
    deep: bool,
    host: &str,
) -> Option<&'a VirtualHost> {
    if let Some(v) = exact.get(host) {
        return Some(v);
    }
    let mut rest = host;
    let mut first = true;
    while let Some((_, parent)) = rest.split_once('.') {
        if let Some(v) = wildcard.get(parent)
            && (first || v.gateway)
        {
            return Some(v);
        }
        if !deep {
            break;
        }
        first = false;
        rest = parent;
    }
    hostless
}

/// The Gateway API precedence of a route's matches, best first: Exact path, then regular
/// expressions (longest first), then the longest prefix; then a method match, then the most
/// header matches, then the most query matches; then `Route::order`.
pub(super) fn precedence(r: &Route) -> impl Ord + '_ {
    let p = &r.matches.path;
    let kind = match p.kind {
        PathKind::Exact => 0u8,
        PathKind::Regex => 1,
        PathKind::Prefix => 2,
    };
    (kind, std::cmp::Reverse(p.path.len()), r.matches.method.is_none(), std::cmp::Reverse(r.matches.headers.len()), std::cmp::Reverse(r.matches.query.len()), &r.order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &str, gateway: bool) -> Arc<VirtualHost> {
        Arc::new(VirtualHost { name: name.into(), gateway, ..Default::default() })
    }

    #[test]
    fn exact_then_longest_wildcard_then_hostless() {
        let mut t = RouteTable { deep: true, hostless: Some(vh("*", false)), ..Default::default() };
        t.exact.insert("a.foo.com".into(), vh("a.foo.com", true));
        t.wildcard.insert("foo.com".into(), vh("*.foo.com", true));
        t.wildcard.insert("b.foo.com".into(), vh("*.b.foo.com", true));
        t.wildcard.insert("bar.com".into(), vh("*.bar.com", false));
        let name = |h: &str| t.vhost(h).map(|v| v.name.clone()).unwrap();
        assert_eq!(name("a.foo.com"), "a.foo.com");
        assert_eq!(name("x.y.foo.com"), "*.foo.com", "a Gateway wildcard matches several labels");
        assert_eq!(name("x.b.foo.com"), "*.b.foo.com", "the longer wildcard first");
        assert_eq!(name("foo.com"), "*", "a wildcard never matches its parent itself");
        assert_eq!(name("x.bar.com"), "*.bar.com");
        assert_eq!(name("x.y.bar.com"), "*", "an Ingress wildcard matches one label");
    }
}
