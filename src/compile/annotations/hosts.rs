//! `server-alias`, `upstream-vhost` and `service-upstream`: more host names for an Ingress's
//! virtual hosts, the Host header sent to its backends, and dialling the Service's ClusterIP
//! instead of its endpoints.

use super::Reader;

pub const KEYS: &[&str] = &["server-alias", "upstream-vhost", "service-upstream"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Extra names (lowercase, sorted, without repeats) served by the Ingress's hosts.
    pub aliases: Vec<String>,
    pub upstream_vhost: Option<String>,
    pub service_upstream: bool,
}

use super::go_bool;

/// ingress-nginx's server-name charset (nginx regex names included).
fn server_name_chars(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._~/:^$[](){}*+?|&=\\".contains(c))
}

/// A name Vestibule can serve: a host name, or `*.` and one.
fn plain_host(s: &str) -> bool {
    let h = s.strip_prefix("*.").unwrap_or(s);
    !h.is_empty() && h.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-') && !l.ends_with('-'))
}

pub fn parse(r: &mut Reader, service_upstream_default: bool) -> Hosts {
    let mut h = Hosts { service_upstream: service_upstream_default, ..Default::default() };
    if let Some((k, v)) = r.get("server-alias") {
        let entries: Vec<String> = v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect();
        if let Some(bad) = entries.iter().find(|e| !server_name_chars(e)) {
            // ingress-nginx drops the whole Ingress; Vestibule reports an Error and serves the
            // Ingress without its aliases.
            r.invalid(&k, format!("{bad:?} is not a valid server name; no alias of this Ingress is used"));
        } else {
            for e in entries {
                if plain_host(&e) {
                    h.aliases.push(e);
                } else {
                    r.bad(&k, format!("{e:?}: regular-expression server names are not supported; this alias is not used"));
                }
            }
            h.aliases.sort();
            h.aliases.dedup();
        }
    }
    if let Some((k, v)) = r.get("upstream-vhost").filter(|(_, v)| !v.trim().is_empty()) {
        let v = v.trim();
        if !server_name_chars(v) {
            // ingress-nginx drops the whole Ingress; Vestibule reports an Error and keeps the
            // client's Host.
            r.invalid(&k, format!("{v:?} is not a valid host name; the client's Host is sent"));
        } else if v.contains('$') {
            r.invalid(&k, format!("{v:?}: nginx variables are not expanded by Vestibule; the client's Host is sent"));
        } else {
            h.upstream_vhost = Some(v.to_string());
        }
    }
    if let Some((k, v)) = r.get("service-upstream") {
        h.service_upstream = match go_bool(v) {
            Some(b) => b,
            None => {
                r.bad(&k, format!("{v:?}: must be \"true\" or \"false\"; false is used"));
                false
            }
        };
    }
    h
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ing, parse_default};

    #[test]
    fn aliases_and_vhost() {
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/server-alias", " B.example, a.example,b.example ,~^www\\d+$"), ("nginx.ingress.kubernetes.io/upstream-vhost", "internal.svc")]));
        assert_eq!(a.hosts.aliases, ["a.example", "b.example"]);
        assert_eq!(a.hosts.upstream_vhost.as_deref(), Some("internal.svc"));
        assert_eq!(e.len(), 1, "the regex alias is reported: {e:?}");
        let (a, e) = parse_default(&ing(&[("nginx.ingress.kubernetes.io/server-alias", "a.example, b example"), ("nginx.ingress.kubernetes.io/service-upstream", "yes")]));
        assert!(a.hosts.aliases.is_empty() && !a.hosts.service_upstream);
        assert_eq!(e.iter().map(|e| e.severity).collect::<Vec<_>>(), [crate::compile::Severity::Error, crate::compile::Severity::Warning]);
    }
}
