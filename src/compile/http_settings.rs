//! The controller ConfigMap keys for forwarded headers, the request ID, the `Server` header and
//! the snippet gates, under ingress-nginx's names and defaults. `configmap.rs` calls `apply`
//! with the ConfigMap's data; the result travels in `Config::http` to the data plane.

use std::collections::BTreeMap;

use http::HeaderName;

use crate::config::http::{HttpSettings, RiskLevel};

pub const KEYS: &[&str] = &[
    "use-forwarded-headers",
    "forwarded-for-header",
    "forwarded-host-header",
    "compute-full-forwarded-for",
    "enable-real-ip",
    "proxy-add-original-uri-header",
    "generate-request-id",
    "server-tokens",
    "allow-snippet-annotations",
    "annotations-risk-level",
    "proxy-real-ip-cidr",
    "block-cidrs",
    "whitelist-source-range",
    "denylist-source-range",
    "limit-req-status-code",
    "limit-conn-status-code",
    "keep-alive",
    "keep-alive-requests",
    "max-worker-connections",
];

/// Applies the keys of `data` over `s`; `warn(key, why)` for a value that cannot be used (the
/// previous value stays).
pub fn apply(data: &BTreeMap<String, String>, s: &mut HttpSettings, warn: &mut dyn FnMut(&str, String)) {
    let flags: [(&str, &mut bool); 7] = [
        ("use-forwarded-headers", &mut s.use_forwarded_headers),
        ("compute-full-forwarded-for", &mut s.compute_full_forwarded_for),
        ("enable-real-ip", &mut s.enable_real_ip),
        ("proxy-add-original-uri-header", &mut s.proxy_add_original_uri_header),
        ("generate-request-id", &mut s.generate_request_id),
        ("server-tokens", &mut s.server_tokens),
        ("allow-snippet-annotations", &mut s.allow_snippet_annotations),
    ];
    for (key, slot) in flags {
        let Some(v) = data.get(key) else { continue };
        match super::configmap::boolean(v) {
            Some(b) => *slot = b,
            None => warn(key, format!("{v:?}: must be \"true\" or \"false\"")),
        }
    }
    for (key, slot) in [("forwarded-for-header", &mut s.forwarded_for_header), ("forwarded-host-header", &mut s.forwarded_host_header)] {
        let Some(v) = data.get(key) else { continue };
        match HeaderName::from_bytes(v.trim().as_bytes()) {
            Ok(name) => *slot = name.as_str().to_string(),
            Err(_) => warn(key, format!("{v:?}: must be a header name")),
        }
    }
    if let Some(v) = data.get("annotations-risk-level") {
        // ingress-nginx reads an unknown level as Low; Vestibule says so instead of guessing.
        match risk(v) {
            Some(r) => s.annotations_risk_level = r,
            None => warn("annotations-risk-level", format!("{v:?}: must be Low, Medium, High or Critical")),
        }
    }
    limits(data, s, warn);
    connections(data, s, warn);
}

/// `keep-alive` (seconds, or with a unit; 0 for none), `keep-alive-requests` (at least 1) and
/// `max-worker-connections`.
fn connections(data: &BTreeMap<String, String>, s: &mut HttpSettings, warn: &mut dyn FnMut(&str, String)) {
    if let Some(v) = data.get("keep-alive") {
        match crate::units::parse_duration(v) {
            Ok(d) => s.keep_alive = d,
            Err(e) => warn("keep-alive", e),
        }
    }
    if let Some(v) = data.get("keep-alive-requests") {
        match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => s.keep_alive_requests = n,
            _ => warn("keep-alive-requests", format!("{v:?}: must be a whole number of at least 1")),
        }
    }
    if let Some(v) = data.get("max-worker-connections") {
        match v.trim().parse::<usize>() {
            Ok(n) => s.max_worker_connections = n,
            Err(_) => warn("max-worker-connections", format!("{v:?}: must be a whole number (0 for no limit)")),
        }
    }
}

/// The address-list and limit-status keys. A list that cannot be parsed fails closed: an
/// invalid `block-cidrs` blocks everyone, an invalid global `whitelist-source-range` or
/// `denylist-source-range` answers 403 on every route that does not set its own list.
fn limits(data: &BTreeMap<String, String>, s: &mut HttpSettings, warn: &mut dyn FnMut(&str, String)) {
    use crate::config::limits::parse_nets;
    let mut closed: Vec<&str> = Vec::new();
    let lists: [(&str, &mut Vec<ipnet::IpNet>); 4] = [
        ("proxy-real-ip-cidr", &mut s.real_ip_cidrs),
        ("block-cidrs", &mut s.block_cidrs),
        ("whitelist-source-range", &mut s.allow_source_range),
        ("denylist-source-range", &mut s.deny_source_range),
    ];
    for (key, slot) in lists {
        let Some(v) = data.get(key) else { continue };
        match parse_nets(v) {
            Ok(n) => *slot = n,
            Err(e) if key == "proxy-real-ip-cidr" => warn(key, e),
            Err(e) => {
                warn(key, format!("{e}; it fails closed (403)"));
                closed.push(key);
            }
        }
    }
    if closed.contains(&"block-cidrs") {
        s.block_cidrs = vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")];
    }
    s.source_range_closed = closed.iter().any(|k| k.ends_with("source-range"));
    for (key, slot) in [("limit-req-status-code", &mut s.limit_req_status), ("limit-conn-status-code", &mut s.limit_conn_status)] {
        let Some(v) = data.get(key) else { continue };
        match v.trim().parse::<u16>() {
            Ok(n) if (200..600).contains(&n) => *slot = n,
            _ => warn(key, format!("{v:?}: must be an HTTP status code")),
        }
    }
}

fn risk(v: &str) -> Option<RiskLevel> {
    Some(match v.trim().to_ascii_lowercase().as_str() {
        "low" => RiskLevel::Low,
        "medium" => RiskLevel::Medium,
        "high" => RiskLevel::High,
        "critical" => RiskLevel::Critical,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> (HttpSettings, Vec<String>) {
        let data = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut s = HttpSettings::default();
        let mut bad = Vec::new();
        apply(&data, &mut s, &mut |k, _| bad.push(k.to_string()));
        (s, bad)
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let s = HttpSettings::default();
        assert!(!s.use_forwarded_headers && !s.compute_full_forwarded_for && !s.enable_real_ip && !s.server_tokens);
        assert!(s.generate_request_id && !s.allow_snippet_annotations && !s.proxy_add_original_uri_header);
        assert_eq!((s.forwarded_for_header.as_str(), s.annotations_risk_level), ("x-forwarded-for", RiskLevel::High));
    }

    #[test]
    fn values_and_invalid_values() {
        let (s, bad) = run(&[
            ("use-forwarded-headers", "true"),
            ("compute-full-forwarded-for", "1"),
            ("generate-request-id", "False"),
            ("server-tokens", "T"),
            ("forwarded-for-header", "CF-Connecting-IP"),
            ("annotations-risk-level", "critical"),
            ("allow-snippet-annotations", "true"),
        ]);
        assert!(bad.is_empty(), "{bad:?}");
        assert!(s.use_forwarded_headers && s.compute_full_forwarded_for && !s.generate_request_id && s.server_tokens && s.allow_snippet_annotations);
        assert_eq!((s.forwarded_for_header.as_str(), s.annotations_risk_level), ("cf-connecting-ip", RiskLevel::Critical));
        let (s, bad) = run(&[("server-tokens", "yes please"), ("forwarded-for-header", "not a header"), ("annotations-risk-level", "extreme"), ("enable-real-ip", "")]);
        assert_eq!(bad, ["enable-real-ip", "server-tokens", "forwarded-for-header", "annotations-risk-level"]);
        assert_eq!(s, HttpSettings::default(), "invalid values keep the previous settings");
    }
}
