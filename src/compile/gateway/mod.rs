//! The Gateway API processor, beside the Ingress one: GatewayClasses and Gateways that are
//! ours, their listeners (ports to open, certificates), and the HTTPRoutes, GRPCRoutes and
//! TLSRoutes attached to them, written into the same `Builder` and `Config`, with the status
//! of each object in `Status.gateway`.
//!
//! Routes attached to a listener are served only on that listener's port: each port with
//! Gateway routes gets a `RouteTable` (`Config::ports`); on a port of the Ingress listeners it
//! holds the Ingress hosts merged with the Gateway routes (see `place`).

mod attach;
mod certs;
mod conditions;
pub mod filters;
mod grpc;
pub mod hostnames;
mod http;
mod listeners;
pub(in crate::compile) mod refs;
pub mod report;
mod routes;
mod tls_route;
mod unavailable;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::builder::Builder;
use crate::config::{Config, ListenerProtocol, ListenerSpec, Passthrough, RouteTable, TlsCerts, VirtualHost};

pub use attach::selects;
pub use unavailable::ports_unavailable;

/// What the Gateway routes add per listener port, until `place` puts it into the `Config`.
#[derive(Debug, Default)]
pub struct GwTables {
    /// By port, then host as in the table (`foo.com`, `*.foo.com`, `*`).
    vhosts: BTreeMap<u16, BTreeMap<String, VirtualHost>>,
    /// TLSRoute hosts by port.
    passthrough: BTreeMap<u16, Passthrough>,
    /// The Gateway-only ports to open, with their protocol.
    ports: BTreeMap<u16, ListenerProtocol>,
}

impl GwTables {
    fn vhost(&mut self, port: u16, host: &str) -> &mut VirtualHost {
        self.vhosts.entry(port).or_default().entry(host.to_string()).or_insert_with(|| VirtualHost { name: host.to_string(), gateway: true, ..Default::default() })
    }
}

/// Runs the processor: status for every class, Gateway and route of ours, diagnostics, the
/// certificates of HTTPS listeners into `tls`, and the tables to `place`.
pub(super) fn process(b: &mut Builder, tls: &mut TlsCerts) -> GwTables {
    let classes = listeners::classes(b);
    let mut all = listeners::listeners(b, &classes);
    let mut t = GwTables::default();
    http::process(b, &mut all, &mut t);
    grpc::process(b, &mut all, &mut t);
    tls_route::process(b, &mut all, &mut t);
    listeners::finish(b, &all);
    let ingress_ports: Vec<u16> = b.settings.listeners.iter().map(|l| l.addr.port()).filter(|p| *p != 0).collect();
    for l in all.iter().filter(|l| l.ready) {
        let proto = l.proto.expect("a ready listener has a protocol");
        if !ingress_ports.contains(&l.port) {
            t.ports.insert(l.port, proto.listener());
        }
        t.vhosts.entry(l.port).or_default();
        for cert in &l.certs {
            let names: Vec<String> = match &l.hostname {
                Some(h) => vec![h.clone()],
                None => cert_names(cert),
            };
            for host in names {
                match host.strip_prefix("*.") {
                    Some(parent) => tls.wildcard.entry(parent.to_string()).or_insert_with(|| cert.clone()),
                    None => tls.exact.entry(host).or_insert_with(|| cert.clone()),
                };
            }
        }
    }
    t
}

/// The DNS names a certificate is for (a listener without hostname serves it for those).
fn cert_names(cert: &crate::config::TlsCert) -> Vec<String> {
    let Some(der) = cert.key.cert.first() else { return Vec::new() };
    crate::x509::summarize(der).map(|s| s.dns_names.iter().map(|n| n.to_ascii_lowercase()).collect()).unwrap_or_default()
}

/// Opens the Gateway-only ports (on `--bind-address`) beside the Ingress listeners.
pub(super) fn listener_specs(t: &GwTables, bind: std::net::IpAddr) -> Vec<ListenerSpec> {
    t.ports.iter().map(|(port, protocol)| ListenerSpec { name: listener_name(*port), addr: SocketAddr::new(bind, *port), protocol: *protocol, proxy_protocol: false }).collect()
}

/// Puts the per-port tables into `config` (whose Ingress hosts are already placed). On an
/// Ingress port, a host with Gateway routes gets one virtual host with both, ordered by the
/// Gateway API precedence with ties to the oldest object (`RouteOrder`); other Ingress hosts
/// are shared as they are.
pub(super) fn place(t: GwTables, config: &mut Config, settings: &super::Settings) {
    for (port, hosts) in t.vhosts {
        let ingress = settings.listeners.iter().find(|l| l.addr.port() == port && port != 0);
        let mut table = match ingress {
            Some(l) => RouteTable {
                exact: config.exact.clone(),
                wildcard: config.wildcard.clone(),
                hostless: config.hostless.clone(),
                ingress: true,
                passthrough: if l.protocol == ListenerProtocol::Https { config.passthrough.clone() } else { Arc::default() },
                ..Default::default()
            },
            None => RouteTable::default(),
        };
        for (name, mut vhost) in hosts {
            let slot = match name.strip_prefix("*.") {
                Some(parent) => {
                    table.deep = true;
                    table.wildcard.entry(parent.to_string())
                }
                None if name == "*" => {
                    let merged = merge(table.hostless.take(), vhost);
                    table.hostless = Some(merged);
                    continue;
                }
                None => table.exact.entry(name),
            };
            let existing = match slot {
                std::collections::hash_map::Entry::Occupied(e) => Some(e.remove_entry()),
                std::collections::hash_map::Entry::Vacant(_) => None,
            };
            let (key, old) = match existing {
                Some((k, v)) => (k, Some(v)),
                None => (vhost.name.strip_prefix("*.").unwrap_or(&vhost.name).to_string(), None),
            };
            vhost.sort_routes();
            let merged = merge(old, vhost);
            if merged.name.starts_with("*.") {
                table.wildcard.insert(key, merged);
            } else {
                table.exact.insert(key, merged);
            }
        }
        if let Some(p) = t.passthrough.get(&port) {
            let mut pt = (*table.passthrough).clone();
            pt.hosts.extend(p.hosts.iter().map(|(k, v)| (k.clone(), v.clone())));
            pt.suffixes.extend(p.suffixes.iter().cloned());
            pt.suffixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
            pt.connect_timeout = p.connect_timeout;
            pt.idle_timeout = p.idle_timeout;
            table.passthrough = Arc::new(pt);
        }
        config.ports.insert(port, Arc::new(table));
    }
}

/// The Ingress virtual host `old` (if any) with the Gateway routes of `new`.
fn merge(old: Option<Arc<VirtualHost>>, mut new: VirtualHost) -> Arc<VirtualHost> {
    let Some(old) = old else {
        new.sort_routes();
        return Arc::new(new);
    };
    let mut v = (*old).clone();
    v.routes.extend(new.routes);
    v.gateway = true;
    v.sort_routes();
    Arc::new(v)
}

/// The name of the listener that serves the Gateway listeners on `port`.
pub fn listener_name(port: u16) -> String {
    format!("gateway-{port}")
}

/// The port of a listener named by [`listener_name`]; `None` for any other listener.
pub fn listener_port(name: &str) -> Option<u16> {
    name.strip_prefix("gateway-")?.parse().ok()
}
