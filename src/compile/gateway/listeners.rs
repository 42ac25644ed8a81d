//! GatewayClasses and Gateways that are ours, and their listeners: what each listener is,
//! whether it is valid, and how listeners of several Gateways share a port (merged when
//! compatible, `Conflicted` when not; the older Gateway keeps the port).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::conditions::{cond, set};
use super::hostnames;
use crate::compile::builder::Builder;
use crate::compile::{Reason, Severity};
use crate::config::ListenerProtocol;
use crate::gateway_api::{self as gw, Gateway, RouteGroupKind};
use crate::store::{Key, ObjRef};

/// What a listener carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http,
    /// TLS terminated with the listener's certificates.
    Https,
    /// TLS spliced to TLSRoute backends by SNI.
    TlsPassthrough,
}

impl Proto {
    /// The data plane listener a port of this protocol needs.
    pub fn listener(self) -> ListenerProtocol {
        match self {
            Proto::Http => ListenerProtocol::Http,
            Proto::Https | Proto::TlsPassthrough => ListenerProtocol::Https,
        }
    }

    /// The route kinds a listener of this protocol supports.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Proto::Http | Proto::Https => &["HTTPRoute", "GRPCRoute"],
            Proto::TlsPassthrough => &["TLSRoute"],
        }
    }
}

/// One listener of a Gateway that is ours.
#[derive(Debug, Clone)]
pub struct GwListener {
    pub gateway: Arc<Gateway>,
    pub gw_ref: Arc<ObjRef>,
    /// Its index in `spec.listeners`.
    pub index: usize,
    pub name: String,
    pub port: u16,
    /// `None`: a protocol we do not serve (`Accepted: False`).
    pub proto: Option<Proto>,
    /// Lowercase.
    pub hostname: Option<String>,
    pub allowed: gw::AllowedRoutes,
    /// The route kinds that may attach (those supported and allowed).
    pub kinds: Vec<RouteGroupKind>,
    /// Routes may attach and it is served: accepted, its references resolved, no conflict.
    pub ready: bool,
    pub conditions: Vec<Condition>,
    pub attached: i32,
    /// For HTTPS: the certificates of `certificateRefs` that resolved.
    pub certs: Vec<crate::config::TlsCert>,
}

impl GwListener {
    pub fn key(&self) -> Key {
        (self.gw_ref.namespace.clone(), self.gw_ref.name.clone())
    }

    pub fn field(&self) -> String {
        format!("spec.listeners[{}]", self.index)
    }

    fn fail(&mut self, type_: &str, status: bool, reason: &str, msg: &str) {
        let c = cond(type_, status, reason, msg, &self.gateway.metadata);
        set(&mut self.conditions, c);
        self.ready = false;
    }
}

/// Oldest first, then namespace/name: the order in which Gateways win a port.
pub fn age_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (bool, i64, String, String) {
    let o = crate::config::RouteOrder::of(meta, (0, 0));
    (o.undated, o.created, o.namespace, o.name)
}

/// The names of our GatewayClasses, with their status filled in.
pub fn classes(b: &mut Builder) -> Vec<String> {
    let mut ours = Vec::new();
    for (name, class) in &b.store.gateway_classes {
        if class.spec.controller_name != b.settings.gateway_controller_name {
            continue;
        }
        let m = &class.metadata;
        let mut status = gw::GatewayClassStatus::default();
        status.conditions.push(cond("Accepted", true, "Accepted", "handled by Vestibule", m));
        status.conditions.push(cond("SupportedVersion", true, "SupportedVersion", "Gateway API v1.5", m));
        b.status.gateway.gateway_classes.insert(name.clone(), status);
        ours.push(name.clone());
    }
    ours
}

/// The listeners of every Gateway of our classes, oldest Gateway first, each checked and
/// merged by port; the Gateways' own status entries are made (completed by `finish`).
pub fn listeners(b: &mut Builder, classes: &[String]) -> Vec<GwListener> {
    let mut gateways: Vec<Arc<Gateway>> = b.store.gateways.values().filter(|g| classes.contains(&g.spec.gateway_class_name)).cloned().collect();
    gateways.sort_by_key(|g| age_key(&g.metadata));
    let mut out = Vec::new();
    for g in gateways {
        let ns = g.metadata.namespace.clone().unwrap_or_default();
        let gw_ref = Arc::new(ObjRef::new("Gateway", &ns, g.metadata.name.as_deref().unwrap_or("")));
        b.status.gateway.gateways.insert((gw_ref.namespace.clone(), gw_ref.name.clone()), gw::GatewayStatus::default());
        for (i, l) in g.spec.listeners.iter().enumerate() {
            out.push(listener(b, &g, &gw_ref, i, l));
        }
    }
    merge(b, &mut out);
    out
}

fn listener(b: &mut Builder, g: &Arc<Gateway>, gw_ref: &Arc<ObjRef>, index: usize, l: &gw::Listener) -> GwListener {
    let m = &g.metadata;
    let tls_mode = l.tls.as_ref().map(|t| t.mode_or_default()).unwrap_or("Terminate");
    let proto = match l.protocol.as_str() {
        "HTTP" => Some(Proto::Http),
        "HTTPS" => Some(Proto::Https),
        "TLS" if tls_mode == "Passthrough" => Some(Proto::TlsPassthrough),
        _ => None,
    };
    let mut gl = GwListener {
        gateway: g.clone(),
        gw_ref: gw_ref.clone(),
        index,
        name: l.name.clone(),
        port: u16::try_from(l.port).unwrap_or(0),
        proto,
        hostname: l.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
        allowed: l.allowed_routes.clone().unwrap_or_default(),
        kinds: Vec::new(),
        ready: true,
        conditions: vec![
            cond("Accepted", true, "Accepted", "", m),
            cond("Programmed", true, "Programmed", "", m),
            cond("ResolvedRefs", true, "ResolvedRefs", "", m),
            cond("Conflicted", false, "NoConflicts", "", m),
        ],
        attached: 0,
        certs: Vec::new(),
    };
    let field = gl.field();
    let problem = if gl.port == 0 {
        Some((format!("{field}.port"), "UnsupportedProtocol", format!("port {} is not a TCP port", l.port)))
    } else if proto.is_none() {
        let what = if l.protocol == "TLS" { format!("TLS mode {tls_mode:?} (only Passthrough is served for TLS)") } else { format!("protocol {:?} (HTTP, HTTPS and TLS Passthrough are served)", l.protocol) };
        Some((format!("{field}.protocol"), "UnsupportedProtocol", format!("{what} is not supported")))
    } else if gl.hostname.as_deref().is_some_and(|h| !hostnames::valid(h)) {
        Some((format!("{field}.hostname"), "UnsupportedValue", format!("{:?} is not a valid hostname", l.hostname.as_deref().unwrap_or(""))))
    } else {
        None
    };
    if let Some((f, reason, msg)) = problem {
        b.diag(Severity::Error, gw_ref, f, Reason::Unsupported, format!("{msg}; the listener is not served"));
        gl.fail("Accepted", false, reason, &msg);
        gl.fail("Programmed", false, "Invalid", &msg);
        return gl;
    }
    let proto = proto.expect("checked above");
    kinds(b, &mut gl, proto);
    if proto == Proto::Https {
        super::certs::resolve(b, &mut gl, l);
    }
    gl
}

/// The route kinds a listener takes: `allowedRoutes.kinds` (all its protocol supports when
/// unset); a kind it cannot serve is `ResolvedRefs: False` (InvalidRouteKinds).
fn kinds(b: &mut Builder, gl: &mut GwListener, proto: Proto) {
    let supported = proto.kinds();
    match &gl.allowed.kinds {
        None => gl.kinds = supported.iter().map(|k| RouteGroupKind::new(k)).collect(),
        Some(asked) => {
            let mut bad = Vec::new();
            for k in asked {
                if k.group_or_default() == gw::GROUP && supported.contains(&k.kind.as_str()) {
                    if !gl.kinds.iter().any(|x| x.kind == k.kind) {
                        gl.kinds.push(RouteGroupKind::new(&k.kind));
                    }
                } else {
                    bad.push(format!("{}/{}", k.group_or_default(), k.kind));
                }
            }
            if !bad.is_empty() {
                let msg = format!("route kinds {} are not supported on a {:?} listener", bad.join(", "), proto);
                b.diag(Severity::Warning, &gl.gw_ref.clone(), format!("{}.allowedRoutes.kinds", gl.field()), Reason::Unsupported, msg.clone());
                let c = cond("ResolvedRefs", false, "InvalidRouteKinds", msg, &gl.gateway.metadata);
                set(&mut gl.conditions, c);
                if gl.kinds.is_empty() {
                    gl.ready = false;
                }
            }
        }
    }
}

/// Listeners on one port share it when their protocols go together (HTTP alone; HTTPS with
/// TLS) and their hostnames differ; otherwise the later one (younger Gateway, later in its
/// list) is `Conflicted` and not served. A port of the Ingress listeners takes Gateway
/// listeners of its own protocol only.
fn merge(b: &mut Builder, all: &mut [GwListener]) {
    let ingress: BTreeMap<u16, ListenerProtocol> = b.settings.listeners.iter().map(|l| (l.addr.port(), l.protocol)).filter(|(p, _)| *p != 0).collect();
    let mut taken: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for i in 0..all.len() {
        let Some(proto) = all[i].proto else { continue };
        if !all[i].ready && crate::compile::gateway::conditions::get(&all[i].conditions, "Accepted").is_some_and(|c| c.status == "False") {
            continue;
        }
        let port = all[i].port;
        let clash = if ingress.get(&port).is_some_and(|p| *p != proto.listener()) {
            Some(("ProtocolConflict", format!("port {port} is an Ingress listener of another protocol")))
        } else {
            taken.get(&port).into_iter().flatten().find_map(|&j| {
                let other = &all[j];
                if other.proto.map(Proto::listener) != Some(proto.listener()) {
                    Some(("ProtocolConflict", format!("port {port} is already a {:?} listener of {} ({})", other.proto.unwrap_or(Proto::Http), other.gw_ref, other.name)))
                } else if other.hostname == all[i].hostname {
                    let h = all[i].hostname.as_deref().unwrap_or("(any)");
                    Some(("HostnameConflict", format!("hostname {h} on port {port} is already served by {} ({})", other.gw_ref, other.name)))
                } else {
                    None
                }
            })
        };
        match clash {
            None => taken.entry(port).or_default().push(i),
            Some((reason, msg)) => {
                let gl = &mut all[i];
                b.diag(Severity::Warning, &gl.gw_ref.clone(), gl.field(), Reason::InvalidField, format!("{msg}; this listener is not served"));
                gl.fail("Conflicted", true, reason, &msg);
                gl.fail("Programmed", false, "Invalid", &msg);
                if reason == "ProtocolConflict" {
                    gl.fail("Accepted", false, "ProtocolConflict", &msg);
                }
            }
        }
    }
}

/// Completes the Gateways' status: listener entries with their attached routes, and the
/// Gateway's `Accepted` and `Programmed`.
pub fn finish(b: &mut Builder, all: &[GwListener]) {
    let keys: Vec<Key> = b.status.gateway.gateways.keys().cloned().collect();
    for key in keys {
        let mine: Vec<&GwListener> = all.iter().filter(|l| l.key() == key).collect();
        let Some(g) = b.store.gateways.get(&key).cloned() else { continue };
        let m = &g.metadata;
        let status = b.status.gateway.gateways.get_mut(&key).expect("made in listeners");
        status.listeners = mine
            .iter()
            .map(|l| gw::ListenerStatus { name: l.name.clone(), supported_kinds: l.kinds.clone(), attached_routes: l.attached, conditions: l.conditions.clone() })
            .collect();
        let invalid: Vec<&str> = mine.iter().filter(|l| !l.ready).map(|l| l.name.as_str()).collect();
        let any_ready = mine.iter().any(|l| l.ready);
        if invalid.is_empty() {
            status.conditions.push(cond("Accepted", true, "Accepted", "", m));
            status.conditions.push(cond("Programmed", true, "Programmed", "", m));
        } else {
            let msg = format!("listeners not served: {}", invalid.join(", "));
            status.conditions.push(cond("Accepted", any_ready || mine.is_empty(), "ListenersNotValid", msg.clone(), m));
            status.conditions.push(cond("Programmed", any_ready, if any_ready { "Programmed" } else { "Invalid" }, msg, m));
        }
    }
}
