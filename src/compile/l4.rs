//! TCP and UDP services and SSL passthrough hosts, from the objects: pure like the rest of
//! compile.
//!
//! `--tcp-services-configmap` and `--udp-services-configmap` name ConfigMaps whose keys are
//! external ports and whose values are `namespace/service:port` (a Service port number or
//! name), optionally followed by `:PROXY` (read the PROXY protocol from clients) and a second
//! `:PROXY` (send PROXY protocol v1 to the endpoints), as in ingress-nginx. A key or value that
//! does not parse is reported naming the ConfigMap and `data.KEY`; the other ports are served.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::passthrough as ann;
use super::backend::{PortRef, Reach};
use super::builder::Builder;
use super::{Reason, Settings, Severity};
use crate::config::{Backend, L4Protocol, L4Service, Passthrough};
use crate::store::ObjRef;

/// What one ConfigMap value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
    /// The first `:PROXY`.
    pub decode_proxy: bool,
    /// The second `:PROXY`.
    pub encode_proxy: bool,
}

/// A key: the external port, 1-65535.
pub fn parse_key(key: &str) -> Result<u16, String> {
    match key.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(_) => Err(format!("port {key:?} must be 1-65535")),
        Err(_) => Err(format!("key {key:?} must be a port number")),
    }
}

/// A value: `namespace/service:port[:PROXY[:PROXY]]` (`PROXY` in any case, as ingress-nginx
/// compares it; an empty field is an absent `PROXY`, so `:` `:PROXY` encodes only). Any other
/// word there is refused rather than silently ignored, so that a typo is seen.
pub fn parse_value(value: &str) -> Result<Target, String> {
    let fields: Vec<&str> = value.trim().split(':').collect();
    let form = "expected namespace/service:port, optionally followed by :PROXY and a second :PROXY";
    if fields.len() < 2 || fields.len() > 4 {
        return Err(format!("{value:?}: {form}"));
    }
    let Some((namespace, service)) = fields[0].split_once('/') else {
        return Err(format!("{value:?}: {:?} must be namespace/service", fields[0]));
    };
    let dns_label = |s: &str| !s.is_empty() && s.len() <= 63 && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') && !s.starts_with('-') && !s.ends_with('-');
    if !dns_label(namespace) || !dns_label(service) {
        return Err(format!("{value:?}: {:?} must be namespace/service, each a DNS label", fields[0]));
    }
    let port = match fields[1].parse::<i64>() {
        Ok(n) if (1..=65535).contains(&n) => PortRef::Number(n as i32),
        Ok(_) => return Err(format!("{value:?}: Service port {} must be 1-65535", fields[1])),
        Err(_) if dns_label(fields[1]) && fields[1].len() <= 15 => PortRef::Name(fields[1].to_string()),
        Err(_) => return Err(format!("{value:?}: Service port {:?} must be a number or a port name", fields[1])),
    };
    let proxy = |i: usize| -> Result<bool, String> {
        match fields.get(i) {
            // `[PROXY]` is optional in either place: `svc:80::PROXY` encodes only.
            None | Some(&"") => Ok(false),
            Some(f) if f.eq_ignore_ascii_case("PROXY") => Ok(true),
            Some(f) => Err(format!("{value:?}: field {} is {f:?}; only PROXY may follow the port", i + 1)),
        }
    };
    Ok(Target { namespace: namespace.into(), service: service.into(), port, decode_proxy: proxy(2)?, encode_proxy: proxy(3)? })
}

/// The TCP and UDP services both ConfigMaps declare, sorted by protocol and port.
pub(super) fn services(b: &mut Builder, settings: &Settings) -> Vec<L4Service> {
    let mut out = Vec::new();
    for (protocol, key, flag) in [(L4Protocol::Tcp, &settings.tcp_services, "--tcp-services-configmap"), (L4Protocol::Udp, &settings.udp_services, "--udp-services-configmap")] {
        let Some((ns, name)) = key else { continue };
        let obj = ObjRef::new("ConfigMap", ns, name);
        let Some(cm) = b.store.config_maps.get(&(ns.clone(), name.clone())) else {
            b.diag(Severity::Warning, &obj, "", Reason::ConfigMapNotFound, format!("ConfigMap {ns}/{name} (named by {flag}) not found; no {} services", protocol.as_str().to_uppercase()));
            continue;
        };
        let mut entries: Vec<(u16, String, String)> = Vec::new();
        for (k, v) in cm.data.iter().flatten() {
            match parse_key(k) {
                Ok(port) => entries.push((port, k.clone(), v.clone())),
                Err(e) => b.diag(Severity::Error, &obj, format!("data.{k}"), Reason::InvalidField, format!("{e}; this entry is not served")),
            }
        }
        // By port; of two keys for one port, the one written plainly (`9000`, not `09000`) wins.
        entries.sort_by(|a, b| (a.0, a.1 != a.0.to_string(), &a.1).cmp(&(b.0, b.1 != b.0.to_string(), &b.1)));
        let mut seen = std::collections::HashSet::new();
        for (port, k, v) in entries {
            if !seen.insert(port) {
                b.diag(Severity::Error, &obj, format!("data.{k}"), Reason::InvalidField, format!("another key already names port {port}; this entry is not served"));
                continue;
            }
            if let Some(s) = one(b, settings, protocol, &obj, port, &k, &v) {
                out.push(s);
            }
        }
    }
    out
}

fn one(b: &mut Builder, settings: &Settings, protocol: L4Protocol, obj: &ObjRef, port: u16, key: &str, value: &str) -> Option<L4Service> {
    let field = format!("data.{key}");
    let reserved = settings.listeners.iter().any(|l| l.addr.port() == port);
    if reserved && protocol == L4Protocol::Tcp {
        b.diag(Severity::Error, obj, &field, Reason::InvalidField, format!("port {port} is reserved for the HTTP and HTTPS listeners; this entry is not served"));
        return None;
    }
    let t = match parse_value(value) {
        Ok(t) => t,
        Err(e) => {
            b.diag(Severity::Error, obj, &field, Reason::InvalidField, format!("{e}; this entry is not served"));
            return None;
        }
    };
    if protocol == L4Protocol::Udp && (t.decode_proxy || t.encode_proxy) {
        b.diag(Severity::Warning, obj, &field, Reason::Unsupported, "the PROXY protocol applies to TCP only; it is ignored for this UDP service");
    }
    let (backend, problem) = b.resolver.resolve(&t.namespace, &t.service, &t.port, &Reach::default());
    if let Some((reason, msg)) = problem {
        let msg = msg.replace("requests answer 503", "connections are closed at once");
        b.diag(Severity::Warning, obj, &field, reason, msg);
    }
    let tcp = protocol == L4Protocol::Tcp;
    Some(L4Service {
        name: format!("{}-{port}", protocol.as_str()),
        protocol,
        addr: std::net::SocketAddr::new(settings.l4_bind, port),
        backend,
        decode_proxy: tcp && t.decode_proxy,
        encode_proxy: tcp && t.encode_proxy,
        idle_timeout: settings.stream_timeout,
        connect_timeout: settings.proxy.connect_timeout,
        origin: format!("{obj} {field}"),
        source: (obj.namespace.clone(), obj.name.clone(), key.to_string()),
    })
}

/// The hosts of Ingresses annotated `ssl-passthrough: "true"`, with the backend of their `/`
/// path (oldest Ingress first wins a host), when `--enable-ssl-passthrough` is set. As in
/// ingress-nginx, the Ingress's other annotations do not apply to passthrough connections:
/// Vestibule never sees inside them.
pub(super) fn passthrough(b: &mut Builder, owned: &[&Ingress], settings: &Settings) -> Passthrough {
    let mut out = Passthrough { hosts: Default::default(), suffixes: Vec::new(), connect_timeout: settings.proxy.connect_timeout, idle_timeout: settings.stream_timeout };
    for ing in owned {
        if ann::value(ing) != Some(true) {
            continue;
        }
        let oref = ObjRef::new("Ingress", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or(""));
        if !settings.ssl_passthrough {
            let msg = "ssl-passthrough needs --enable-ssl-passthrough; it is ignored and TLS is terminated as usual";
            b.diag(Severity::Warning, &oref, format!("metadata.annotations[{}]", ann::FULL_KEY), Reason::Unsupported, msg);
            continue;
        }
        for (i, rule) in ing.spec.as_ref().and_then(|s| s.rules.as_deref()).unwrap_or(&[]).iter().enumerate() {
            let Some(host) = rule.host.as_deref().map(str::to_ascii_lowercase) else { continue };
            if out.hosts.contains_key(&host) {
                continue;
            }
            match root_backend(b, &oref, ing, i) {
                Some(backend) => {
                    out.hosts.insert(host, backend);
                }
                None => {
                    let msg = format!("host {host:?} has no \"/\" path to a Service port; passthrough needs one, so TLS is terminated for it as usual");
                    b.diag(Severity::Warning, &oref, format!("spec.rules[{i}]"), Reason::InvalidField, msg);
                }
            }
        }
    }
    out
}

/// The backend of rule `i`'s `/` path.
fn root_backend(b: &mut Builder, oref: &ObjRef, ing: &Ingress, i: usize) -> Option<Arc<Backend>> {
    let rule = &ing.spec.as_ref()?.rules.as_ref()?[i];
    let p = rule.http.as_ref()?.paths.iter().find(|p| p.path.as_deref().unwrap_or("/") == "/")?;
    let svc = p.backend.service.as_ref()?;
    let port = PortRef::of(svc)?;
    let (backend, problem) = b.resolver.resolve(&oref.namespace, &svc.name, &port, &Reach::default());
    if let Some((reason, msg)) = problem {
        b.diag(Severity::Warning, oref, format!("spec.rules[{i}]"), reason, msg.replace("requests answer 503", "passthrough connections are closed at once"));
    }
    Some(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let t = |ns: &str, svc: &str, port: PortRef, d, e| Ok(Target { namespace: ns.into(), service: svc.into(), port, decode_proxy: d, encode_proxy: e });
        let cases: Vec<(&str, Result<Target, String>)> = vec![
            ("default/example-go:8080", t("default", "example-go", PortRef::Number(8080), false, false)),
            ("default/db:postgres", t("default", "db", PortRef::Name("postgres".into()), false, false)),
            ("default/db:5432:PROXY", t("default", "db", PortRef::Number(5432), true, false)),
            ("default/db:5432:PROXY:PROXY", t("default", "db", PortRef::Number(5432), true, true)),
            ("default/db:5432::PROXY", t("default", "db", PortRef::Number(5432), false, true)),
            ("default/db:5432:proxy:Proxy", t("default", "db", PortRef::Number(5432), true, true)),
        ];
        for (v, want) in cases {
            let got = parse_value(v);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{v}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{v}: got {got:?}, want {want:?}"),
            }
        }
        for bad in ["default/db", "db:5432", "/db:5432", "default/:5432", "default/db:", "default/db:0", "default/db:70000", "default/db:Bad_Name", "default/db:5432:PROXY:PROXY:PROXY", "default/db:5432:TLS", "default/db:5432:PROXY:yes", "Default/db:5432", ""] {
            assert!(parse_value(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(parse_key("9000"), Ok(9000));
        for bad in ["0", "65536", "http", "-1", ""] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }
}
