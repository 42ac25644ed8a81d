//! The checks the Kubernetes API server applies to an Ingress (and an EndpointSlice), so that
//! objects read from files obey the same rules as objects read from a cluster.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

/// One invalid field: its path inside the object and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(errors: &mut Vec<FieldError>, field: String, message: impl Into<String>) {
    errors.push(FieldError { field, message: message.into() });
}

/// A DNS-1123 subdomain: lowercase labels of `[a-z0-9-]`, not starting or ending with `-`.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Checks an Ingress host: a DNS-1123 subdomain, optionally with a `*.` wildcard prefix; no IP.
pub fn host_error(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some(format!("{host:?}: must be a DNS name, not an IP address"));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if !is_dns1123_subdomain(name) {
        return Some(format!(
            "{host:?}: must be a lowercase DNS-1123 name (letters, digits, '-' and '.'), optionally starting with \"*.\""
        ));
    }
    None
}

pub fn path_error(path: &str, path_type: &str) -> Option<String> {
    if path_type == "ImplementationSpecific" && path.is_empty() {
        return None;
    }
    if !path.starts_with('/') {
        return Some(format!("{path:?}: must be an absolute path starting with '/'"));
    }
    if path_type != "ImplementationSpecific" {
        for bad in ["//", "/./", "/../", "%2f", "%2F"] {
            if path.contains(bad) {
                return Some(format!("{path:?}: must not contain {bad:?}"));
            }
        }
        for bad in ["/..", "/."] {
            if path.ends_with(bad) {
                return Some(format!("{path:?}: must not end with {bad:?}"));
            }
        }
    }
    // ImplementationSpecific paths may be expressions (`use-regex`), where `{n}` is a
    // repetition; nothing is ever templated, so braces are harmless there.
    let braces = path_type != "ImplementationSpecific" && (path.contains('{') || path.contains('}'));
    if braces || path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b';') {
        return Some(format!("{path:?}: must not contain spaces, control characters, '{{', '}}' or ';'"));
    }
    None
}

fn backend(errors: &mut Vec<FieldError>, field: &str, b: &IngressBackend) {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => err(errors, field.to_string(), "only one of service and resource may be set"),
        (None, None) => err(errors, field.to_string(), "one of service or resource must be set"),
        (Some(svc), None) => {
            if !is_dns1123_label(&svc.name) {
                err(errors, format!("{field}.service.name"), format!("{:?}: must be a DNS-1035 label", svc.name));
            }
            match &svc.port {
                None => err(errors, format!("{field}.service.port"), "port.name or port.number is required"),
                Some(p) => match (&p.name, p.number) {
                    (Some(_), Some(_)) => err(errors, format!("{field}.service.port"), "only one of name and number may be set"),
                    (None, None) => err(errors, format!("{field}.service.port"), "port.name or port.number is required"),
                    (Some(n), None) if n.is_empty() || n.len() > 15 || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {
                        err(errors, format!("{field}.service.port.name"), format!("{n:?}: must be an IANA service name"))
                    }
                    (None, Some(n)) if !(1..=65535).contains(&n) => {
                        err(errors, format!("{field}.service.port.number"), format!("{n}: must be between 1 and 65535"))
                    }
                    _ => {}
                },
            }
        }
        (None, Some(_)) => {}
    }
}

fn is_dns1123_label(s: &str) -> bool {
    !s.contains('.') && is_dns1123_subdomain(s) && s.len() <= 63
}

/// All field errors of an Ingress, as the API server would report them.
pub fn ingress(ing: &Ingress) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match ing.metadata.name.as_deref() {
        None | Some("") => err(&mut errors, "metadata.name".into(), "is required"),
        Some(n) if !is_dns1123_subdomain(n) => err(&mut errors, "metadata.name".into(), format!("{n:?}: must be a lowercase DNS-1123 name")),
        _ => {}
    }
    let Some(spec) = &ing.spec else {
        err(&mut errors, "spec".into(), "is required");
        return errors;
    };
    if let Some(b) = &spec.default_backend {
        backend(&mut errors, "spec.defaultBackend", b);
    }
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty() && spec.default_backend.is_none() {
        err(&mut errors, "spec".into(), "either spec.defaultBackend or spec.rules must be set");
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = rule.host.as_deref() {
            if let Some(m) = host_error(host) {
                err(&mut errors, format!("spec.rules[{i}].host"), m);
            }
        }
        if let Some(http) = &rule.http {
            if http.paths.is_empty() {
                err(&mut errors, format!("spec.rules[{i}].http.paths"), "must have at least one path");
            }
            for (j, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                match p.path_type.as_str() {
                    "Exact" | "Prefix" | "ImplementationSpecific" => {
                        if let Some(m) = path_error(p.path.as_deref().unwrap_or(""), &p.path_type) {
                            err(&mut errors, format!("{field}.path"), m);
                        }
                    }
                    "" => err(&mut errors, format!("{field}.pathType"), "is required: Exact, Prefix or ImplementationSpecific"),
                    other => err(
                        &mut errors,
                        format!("{field}.pathType"),
                        format!("{other:?}: must be Exact, Prefix or ImplementationSpecific"),
                    ),
                }
                backend(&mut errors, &format!("{field}.backend"), &p.backend);
            }
        }
    }
    for (i, tls) in spec.tls.as_deref().unwrap_or(&[]).iter().enumerate() {
        for (j, host) in tls.hosts.as_deref().unwrap_or(&[]).iter().enumerate() {
            if let Some(m) = host_error(host) {
                err(&mut errors, format!("spec.tls[{i}].hosts[{j}]"), m);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(host_error("foo.com").is_none());
        assert!(host_error("*.foo.com").is_none());
        assert!(host_error("Foo.com").is_some());
        assert!(host_error("10.0.0.1").is_some());
        assert!(host_error("foo..com").is_some());
        assert!(host_error("*foo.com").is_some());
        assert!(host_error("a.*.com").is_some());
    }

    #[test]
    fn paths() {
        assert!(path_error("/", "Prefix").is_none());
        assert!(path_error("/a/b", "Exact").is_none());
        assert!(path_error("a", "Prefix").is_some());
        assert!(path_error("/a//b", "Prefix").is_some());
        assert!(path_error("/a/..", "Prefix").is_some());
        assert!(path_error("/a%2fb", "Exact").is_some());
        assert!(path_error("", "ImplementationSpecific").is_none());
        assert!(path_error("/a;b", "Prefix").is_some());
        // Expressions (use-regex) may repeat with braces; other path types may not hold them.
        assert!(path_error("/foo/bar/[a-z]{3}", "ImplementationSpecific").is_none());
        assert!(path_error("/a{b}", "Prefix").is_some());
    }
}

/// An EndpointSlice port number that can be dialled.
pub fn endpoint_port(port: i32) -> Result<u16, String> {
    u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| format!("{port}: must be 1-65535"))
}

/// An endpoint address of a slice of `address_type` (IPv4 or IPv6) that can be dialled: an IP
/// of the slice's family that names one host (not unspecified, multicast or broadcast, which
/// would reach this host or nobody in particular).
pub fn endpoint_ip(address_type: &str, addr: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?}: must be an IP address"))?;
    if (address_type == "IPv4") != ip.is_ipv4() {
        return Err(format!("{addr:?}: must be an {address_type} address, as the slice's addressType says"));
    }
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{addr:?}: must be the address of one host, not unspecified, multicast or broadcast"));
    }
    Ok(ip)
}

/// The checks for an EndpointSlice: its address type, port numbers and (unless FQDN, which is
/// not used) addresses.
pub fn endpoint_slice(s: &crate::store::Slice) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !matches!(s.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
        err(&mut errors, "addressType".into(), format!("{:?}: must be IPv4, IPv6 or FQDN", s.address_type));
        return errors;
    }
    for (i, p) in s.ports.iter().enumerate() {
        if let Some(Err(msg)) = p.port.map(endpoint_port) {
            err(&mut errors, format!("ports[{i}].port"), msg);
        }
    }
    if s.address_type != "FQDN" {
        for (i, ep) in s.endpoints.iter().enumerate() {
            for (j, a) in s.addresses(ep).enumerate() {
                if let Err(msg) = endpoint_ip(&s.address_type, a) {
                    err(&mut errors, format!("endpoints[{i}].addresses[{j}]"), msg);
                }
            }
        }
    }
    errors
}

