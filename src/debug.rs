//! Read-only views of the live configuration for operators: `/debug/config` and
//! `/debug/explain`. Certificates are described (names, issuer, expiry); key material never
//! leaves the process.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{Backend, Config, HostDefault, TlsCert, VirtualHost};
use crate::engine::Snapshot;

fn backend(b: &Backend) -> Value {
    json!({
        "name": b.name,
        "namespace": b.namespace,
        "service": b.service,
        "port": b.port,
        "endpoints": b.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "unavailable": b.unavailable,
    })
}

fn host_default(d: &HostDefault) -> Value {
    json!({ "source": d.ingress.to_string(), "backend": backend(&d.backend) })
}

fn vhost(v: &VirtualHost) -> Value {
    json!({
        "host": v.name,
        "tls": v.tls,
        "routes": v.routes.iter().map(|r| json!({
            "path": r.rule_path,
            "pathType": r.path_type,
            "ingress": format!("{}/{}", r.ingress.namespace, r.ingress.name),
            "source": r.ingress.to_string(),
            "sslRedirect": r.filters.iter().any(|f| matches!(f, crate::config::Filter::HttpsRedirect { .. })),
            "backend": backend(&r.backend()),
        })).collect::<Vec<_>>(),
        "defaultBackend": v.default.as_ref().map(host_default),
    })
}

fn cert(c: &TlsCert, hosts: Vec<String>) -> Value {
    let s = c.key.cert.first().and_then(|d| crate::x509::summarize(d)).unwrap_or_default();
    json!({
        "hosts": hosts,
        "secret": c.secret.as_ref().map(|(ns, n)| format!("{ns}/{n}")),
        "subject": s.subject_cn,
        "issuer": s.issuer_cn,
        "dnsNames": s.dns_names,
        "serial": s.serial,
        "notBefore": s.not_before,
        "notAfter": s.not_after,
    })
}

/// The SSL passthrough hosts, sorted, with their backends.
fn passthrough_hosts(config: &Config) -> Vec<Value> {
    let mut hosts: Vec<_> = config.passthrough.hosts.iter().collect();
    hosts.sort_by(|a, b| a.0.cmp(b.0));
    hosts.into_iter().map(|(h, b)| json!({ "host": h, "backend": backend(b) })).collect()
}

/// The live routing table as JSON.
pub fn config_json(config: &Config, snapshot: &Snapshot) -> Value {
    let mut hosts: Vec<Value> = Vec::new();
    let mut exact: Vec<_> = config.exact.values().collect();
    exact.sort_by(|a, b| a.name.cmp(&b.name));
    hosts.extend(exact.into_iter().map(|v| vhost(v)));
    let mut wild: Vec<_> = config.wildcard.values().collect();
    wild.sort_by(|a, b| a.name.cmp(&b.name));
    hosts.extend(wild.into_iter().map(|v| vhost(v)));
    if let Some(v) = &config.hostless {
        hosts.push(vhost(v));
    }
    // One entry per certificate, with every SNI name it serves.
    let mut certs: BTreeMap<usize, (TlsCert, Vec<String>)> = BTreeMap::new();
    for (name, c) in config.tls.exact.iter().map(|(n, c)| (n.clone(), c)).chain(config.tls.wildcard.iter().map(|(n, c)| (format!("*.{n}"), c))) {
        certs.entry(Arc::as_ptr(&c.key) as *const () as usize).or_insert_with(|| (c.clone(), Vec::new())).1.push(name);
    }
    let mut certificates: Vec<Value> = certs.into_values().map(|(c, mut hosts)| {
        hosts.sort();
        cert(&c, hosts)
    }).collect();
    certificates.push(cert(&config.tls.default, vec!["(default)".into()]));
    json!({
        "hosts": hosts,
        "defaultBackend": config.default_backend.as_ref().map(host_default),
        "certificates": certificates,
        "l4Services": config.l4.iter().map(|s| json!({
            "name": s.name,
            "protocol": s.protocol.as_str(),
            "address": s.addr.to_string(),
            "source": s.origin,
            "decodeProxyProtocol": s.decode_proxy,
            "encodeProxyProtocol": s.encode_proxy,
            "idleTimeoutSeconds": s.idle_timeout.as_secs_f64(),
            "backend": backend(&s.backend),
        })).collect::<Vec<_>>(),
        "sslPassthrough": passthrough_hosts(config),
        "diagnostics": snapshot.diagnostics.iter().map(|d| json!({
            "severity": format!("{:?}", d.severity),
            "object": d.object.to_string(),
            "field": d.field,
            "reason": d.reason.as_str(),
            "message": d.message,
        })).collect::<Vec<_>>(),
        "manifestErrors": snapshot.manifest_errors,
    })
}

/// Decodes a query-string value (`%XX` and `+`).
pub fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(query_value("url=http%3A%2F%2Fa.com%2Fx&format=text", "url").as_deref(), Some("http://a.com/x"));
        assert_eq!(query_value("format=text", "url"), None);
        assert_eq!(query_value("url=a+b%", "url").as_deref(), Some("a b%"));
    }
}
