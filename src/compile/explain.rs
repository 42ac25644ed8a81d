//! "Why does my Ingress 404?": which Ingress, rule, path and backend a URL reaches, which
//! certificate SNI picks, and for every rule that came close, why it lost.
//!
//! The answer comes from the same `compile` and `Config::route` the proxy uses, so it cannot
//! disagree with what the proxy does.

use std::fmt::Write as _;

use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

use super::{Diagnostic, Reason, Settings, Status, compile, route_path};
use crate::config::{Config, PathKind, Route, Target};
use crate::config::path::{normalize_path, strip_port};
use crate::store::{ObjRef, Store};

#[derive(Debug, Clone, Serialize)]
pub struct Matched {
    /// The kind of object the route comes from: `Ingress`, `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    pub ingress: String,
    /// `route`, `host default` (the Ingress's defaultBackend) or `default backend`.
    pub via: String,
    pub host: String,
    pub path: String,
    pub path_type: String,
    pub service: String,
    pub port: String,
    pub endpoints: Vec<String>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub ingress: String,
    pub field: String,
    pub host: String,
    pub path: String,
    pub path_type: String,
    /// `matched`, or the reason it lost.
    pub verdict: String,
    pub why: String,
    #[serde(skip)]
    score: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertChoice {
    pub sni: String,
    pub source: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub not_after: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub url: String,
    pub scheme: String,
    pub host: String,
    pub path: String,
    /// The status the client gets from Vestibule itself (404, 503, 308), or `proxied`.
    pub outcome: String,
    pub matched: Option<Matched>,
    pub redirect: Option<String>,
    pub certificate: Option<CertChoice>,
    pub candidates: Vec<Candidate>,
    /// For a Gateway API route: its parents' conditions, as `check` prints them.
    pub gateway_status: Vec<String>,
}

/// Splits `scheme://host[:port]/path?query` into scheme, host and path with query (the
/// scheme defaults to http).
pub fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), url),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?}: only http and https URLs can be explained"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.is_empty() || path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let host = strip_port(authority.rsplit('@').next().unwrap_or("")).trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((scheme, host, path))
}

fn host_matches(rule_host: Option<&str>, host: &str) -> bool {
    match rule_host {
        None | Some("") => true,
        Some(h) => match h.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == parent),
            None => h.eq_ignore_ascii_case(host),
        },
    }
}

fn describe_kind(k: PathKind) -> &'static str {
    match k {
        PathKind::Exact => "Exact",
        PathKind::Prefix => "Prefix",
        PathKind::Regex => "regex",
    }
}

fn ns_name(r: &ObjRef) -> String {
    format!("{}/{}", r.namespace, r.name)
}

/// Explains where a request to `url` goes, given the objects and settings.
pub fn explain(store: &Store, settings: &Settings, url: &str) -> Result<Explanation, String> {
    let c = compile(store, settings);
    explain_with(store, &c.config, &c.diagnostics, &c.status, url, 443)
}

/// As `explain`, with what compile already made of `store`: its configuration, diagnostics and
/// status. `https_port` is the port clients reach HTTPS on, for redirects.
pub fn explain_with(store: &Store, config: &Config, diags: &[Diagnostic], status: &Status, url: &str, https_port: u16) -> Result<Explanation, String> {
    let (scheme, host, raw_path) = split_url(url)?;
    let path = normalize_path(raw_path.split('?').next().unwrap_or("/")).into_owned();
    // A URL with the port of a Gateway listener is routed by that port's table.
    let port = url.split_once("://").map(|(_, r)| r).unwrap_or(url).split(['/', '?']).next().and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse::<u16>().ok());
    let headers = ::http::HeaderMap::new();
    let facts = crate::config::RequestFacts { path: &path, method: &::http::Method::GET, headers: &headers, query: "" };
    let target = match port.filter(|p| config.ports.contains_key(p)) {
        Some(p) => config.route_on(p, &host, &facts),
        None => config.route_path(&host, &path),
    };

    let backend_of = |b: &crate::config::Backend| (format!("{}/{}", b.namespace, b.service), b.port.clone(), b.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(), b.unavailable.clone());
    let (matched, winner): (Option<Matched>, Option<&Route>) = match &target {
        Target::Route { vhost, route } => {
            let (service, port, endpoints, problem) = backend_of(route.backend());
            (
                Some(Matched {
                    kind: route.ingress.kind.to_string(),
                    ingress: ns_name(&route.ingress),
                    via: "route".into(),
                    host: vhost.name.clone(),
                    path: route.rule_path.clone(),
                    path_type: route.path_type.to_string(),
                    service,
                    port,
                    endpoints,
                    problem,
                }),
                Some(*route),
            )
        }
        Target::HostDefault { vhost, default } => {
            let (service, port, endpoints, problem) = backend_of(&default.backend);
            let via = if default.ingress.kind == "Ingress" && vhost.default.is_some() { "the host's defaultBackend" } else { "default backend" };
            (Some(Matched { kind: "Ingress".into(), ingress: ns_name(&default.ingress), via: via.into(), host: vhost.name.clone(), path: String::new(), path_type: String::new(), service, port, endpoints, problem }), None)
        }
        Target::Default(d) => {
            let (service, port, endpoints, problem) = backend_of(&d.backend);
            let via = if d.ingress.kind == "Ingress" { "a rule-less Ingress's defaultBackend" } else { "--default-backend-service" };
            let ingress = if d.ingress.kind == "Ingress" { ns_name(&d.ingress) } else { String::new() };
            (Some(Matched { kind: "Ingress".into(), ingress, via: via.into(), host: String::new(), path: String::new(), path_type: String::new(), service, port, endpoints, problem }), None)
        }
        Target::HostNotFound { .. } | Target::NotFound => (None, None),
    };

    let redirect = if scheme == "http" && target.ssl_redirect() {
        let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
        Some(format!("https://{host}{port}{raw_path}"))
    } else {
        None
    };
    let outcome = match (&redirect, &matched) {
        (Some(_), _) => "308".to_string(),
        (None, None) => "404".to_string(),
        (None, Some(m)) if m.endpoints.is_empty() => "503".to_string(),
        (None, Some(_)) => "proxied".to_string(),
    };

    let certificate = (scheme == "https").then(|| {
        let cert = config.tls.pick(Some(&host));
        let summary = cert.key.cert.first().and_then(|c| crate::x509::summarize(c));
        CertChoice {
            sni: host.clone(),
            source: match &cert.secret {
                Some((ns, name)) => format!("Secret {ns}/{name}"),
                None => "the generated default certificate".into(),
            },
            subject: summary.as_ref().map(|s| s.subject_cn.clone()).unwrap_or_default(),
            dns_names: summary.as_ref().map(|s| s.dns_names.clone()).unwrap_or_default(),
            not_after: summary.map(|s| s.not_after),
        }
    });

    let vhost_name = config.vhost(&host).map(|v| v.name.clone());
    let mut candidates = Vec::new();
    for ing in store.ingresses.values() {
        candidates_of(ing, status, diags, &host, &path, vhost_name.as_deref(), winner, &mut candidates);
    }
    candidates.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.ingress.cmp(&b.ingress)).then_with(|| a.field.cmp(&b.field)));
    let best = candidates.first().map(|c| c.score).unwrap_or(0);
    candidates.retain(|c| c.score >= best.min(2));
    candidates.truncate(20);

    let gateway_status = match winner {
        Some(r) if r.ingress.kind != "Ingress" => {
            let key = (r.ingress.namespace.clone(), r.ingress.name.clone());
            let g = &status.gateway;
            let parents = if r.ingress.kind == "GRPCRoute" { g.grpc_routes.get(&key) } else { g.http_routes.get(&key) };
            parents.map(|p| super::gateway::report::route_lines(r.ingress.kind, &key, p)).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    Ok(Explanation { url: url.to_string(), scheme, host, path, outcome, matched, redirect, certificate, candidates, gateway_status })
}

#[allow(clippy::too_many_arguments)]
fn candidates_of(
    ing: &Ingress,
    status: &Status,
    diags: &[Diagnostic],
    host: &str,
    path: &str,
    vhost_name: Option<&str>,
    winner: Option<&Route>,
    out: &mut Vec<Candidate>,
) {
    let ns = ing.metadata.namespace.as_deref().unwrap_or("");
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let oref = ObjRef::new("Ingress", ns, name);
    let decided = status.ingress(ns, name);
    let class_problem = decided.and_then(|s| s.not_ours());
    let invalid = decided.and_then(|s| s.invalid.as_deref());
    let Some(spec) = &ing.spec else { return };
    for (i, rule) in spec.rules.as_deref().unwrap_or(&[]).iter().enumerate() {
        let rule_host = rule.host.as_deref();
        let host_ok = host_matches(rule_host, host);
        let shown_host = rule_host.unwrap_or("*").to_string();
        let Some(http) = &rule.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let (rpath, kind) = route_path(p.path.as_deref(), &p.path_type);
            let probe = |k: PathKind| match k {
                PathKind::Exact => path == rpath,
                PathKind::Prefix => rpath.is_empty() || path.strip_prefix(rpath.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/')),
                PathKind::Regex => false,
            };
            let path_ok = probe(kind);
            let mut c = Candidate {
                ingress: ns_name(&oref),
                field: field.clone(),
                host: shown_host.clone(),
                path: p.path.clone().unwrap_or_else(|| "/".into()),
                path_type: p.path_type.clone(),
                verdict: String::new(),
                why: String::new(),
                score: (host_ok as u8) * 2 + path_ok as u8,
            };
            let diag_for = |reason: Reason| diags.iter().find(|d| d.object == oref && d.reason == reason && d.field.starts_with(&field));
            if let Some(why) = class_problem {
                c.verdict = "class ignored".into();
                c.why = why.to_string();
            } else if let Some(e) = invalid {
                c.verdict = "invalid".into();
                c.why = e.to_string();
            } else if !host_ok {
                c.verdict = "wrong host".into();
                c.why = format!("the rule is for host {shown_host}, the request for {host}");
            } else if vhost_name.is_some_and(|v| v != rule_host.unwrap_or("*")) {
                c.verdict = "host taken".into();
                c.why = format!("the more specific host rule {} serves {host}", vhost_name.unwrap_or(""));
                c.score = c.score.saturating_sub(1);
            } else if !path_ok {
                let other = if kind == PathKind::Exact { PathKind::Prefix } else { PathKind::Exact };
                if probe(other) {
                    c.verdict = "path type mismatch".into();
                    c.why = format!("{} {} does not match {path}; {} would", describe_kind(kind), c.path, describe_kind(other));
                } else {
                    c.verdict = "wrong path".into();
                    c.why = format!("{path} does not match {} {}", describe_kind(kind), c.path);
                }
            } else if let Some(d) = diag_for(Reason::PathConflict) {
                c.verdict = "conflict lost".into();
                c.why = d.message.clone();
            } else if winner.is_some_and(|w| w.ingress.as_ref() == &oref && w.rule_path == c.path && w.path_type == p.path_type) {
                c.verdict = "matched".into();
                c.score += 4;
                if let Some(d) = diag_for(Reason::ServiceNotFound)
                    .or_else(|| diag_for(Reason::ServicePortNotFound))
                    .or_else(|| diag_for(Reason::NoReadyEndpoints))
                    .or_else(|| diag_for(Reason::Unsupported))
                {
                    c.why = d.message.clone();
                }
            } else {
                c.verdict = "longer path won".into();
                c.why = match winner {
                    Some(w) => format!("{} {} ({}) is longer or more exact", w.ingress, w.rule_path, w.path_type),
                    None => "another rule won".into(),
                };
            }
            out.push(c);
        }
    }
}

impl Explanation {
    /// The explanation as a person reads it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.url);
        let _ = writeln!(s, "  host {}, path {} (as matched)", self.host, self.path);
        match &self.matched {
            Some(m) => {
                if m.via == "route" {
                    let _ = writeln!(s, "  -> {} {}: host {}, path {} ({})", m.kind, m.ingress, m.host, m.path, m.path_type);
                } else if m.ingress.is_empty() {
                    let _ = writeln!(s, "  -> no rule matches; {} answers", m.via);
                } else {
                    let _ = writeln!(s, "  -> no rule path matches; {} of Ingress {} answers", m.via, m.ingress);
                }
                let eps = if m.endpoints.is_empty() { "no ready endpoints".to_string() } else { format!("{} ready endpoint(s): {}", m.endpoints.len(), m.endpoints.join(", ")) };
                let _ = writeln!(s, "     backend Service {} port {}: {}", m.service, m.port, eps);
                if let Some(p) = &m.problem {
                    let _ = writeln!(s, "     problem: {p}");
                }
            }
            None => {
                let _ = writeln!(s, "  -> nothing matches: the built-in default backend answers 404");
            }
        }
        if let Some(r) = &self.redirect {
            let _ = writeln!(s, "  over plain HTTP: 308 redirect to {r} (the host has TLS)");
        }
        let _ = writeln!(s, "  answer: {}", self.outcome);
        if let Some(c) = &self.certificate {
            let exp = c.not_after.map(|t| {
                let (y, m, d) = crate::x509::civil_from_days(t.div_euclid(86400));
                format!(", expires {y:04}-{m:02}-{d:02}")
            });
            let _ = writeln!(s, "  TLS: SNI {} -> {} (subject {}{})", c.sni, c.source, c.subject, exp.unwrap_or_default());
        }
        for line in &self.gateway_status {
            let _ = writeln!(s, "  status: {line}");
        }
        if !self.candidates.is_empty() {
            let _ = writeln!(s, "Candidates:");
            for c in &self.candidates {
                let why = if c.why.is_empty() { String::new() } else { format!(": {}", c.why) };
                let _ = writeln!(s, "  [{}] Ingress {} {} host {} path {} ({}){}", c.verdict, c.ingress, c.field, c.host, c.path, c.path_type, why);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(split_url("http://A.com:8080/x/y?q=1").unwrap(), ("http".into(), "a.com".into(), "/x/y?q=1".into()));
        assert_eq!(split_url("http://a.com?q=1").unwrap(), ("http".into(), "a.com".into(), "/?q=1".into()));
        assert_eq!(split_url("https://a.com").unwrap(), ("https".into(), "a.com".into(), "/".into()));
        assert_eq!(split_url("a.com/z").unwrap(), ("http".into(), "a.com".into(), "/z".into()));
        assert!(split_url("ftp://a.com/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn wildcard_hosts() {
        assert!(host_matches(Some("*.foo.com"), "bar.foo.com"));
        assert!(!host_matches(Some("*.foo.com"), "baz.bar.foo.com"));
        assert!(!host_matches(Some("*.foo.com"), "foo.com"));
        assert!(host_matches(None, "x"));
    }
}

/// What a `tcp://HOST:PORT` or `udp://HOST:PORT` URL reaches: the TCP or UDP service on that
/// port, from the services ConfigMaps. `None` when `url` is not such a URL.
pub fn explain_l4(config: &Config, diags: &[Diagnostic], url: &str) -> Option<Result<String, String>> {
    let (protocol, rest) = if let Some(r) = url.strip_prefix("tcp://") {
        (crate::config::l4::L4Protocol::Tcp, r)
    } else {
        (crate::config::l4::L4Protocol::Udp, url.strip_prefix("udp://")?)
    };
    let port: u16 = match rest.trim_end_matches('/').rsplit_once(':').map(|(_, p)| p.parse()) {
        Some(Ok(p)) => p,
        _ => return Some(Err(format!("{url:?}: expected {}://HOST:PORT", protocol.as_str()))),
    };
    let Some(s) = config.l4.iter().find(|s| s.protocol == protocol && s.addr.port() == port) else {
        let why: Vec<String> = diags.iter().filter(|d| d.object.kind == "ConfigMap" && d.field == format!("data.{port}")).map(|d| format!("  problem: {}", d.message)).collect();
        return Some(Ok(format!("{url}\n  -> no {} service on port {port}\n{}", protocol.as_str(), why.join("\n"))));
    };
    let b = &s.backend;
    let endpoints: Vec<String> = b.endpoints.iter().map(|e| e.to_string()).collect();
    let mut text = format!("{url}\n  -> {} service {} ({})\n     backend Service {}/{} port {}: ", protocol.as_str(), s.name, s.origin, b.namespace, b.service, b.port);
    match &b.unavailable {
        Some(why) => text.push_str(&format!("no ready endpoints: {why}\n")),
        None => text.push_str(&format!("endpoints {}\n", endpoints.join(", "))),
    }
    if s.decode_proxy || s.encode_proxy {
        text.push_str(&format!("     PROXY protocol: from clients {}, to endpoints {}\n", if s.decode_proxy { "read" } else { "no" }, if s.encode_proxy { "sent" } else { "no" }));
    }
    text.push_str(&format!("     idle timeout {:?}\n", s.idle_timeout));
    Some(Ok(text))
}
