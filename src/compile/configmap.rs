//! The controller ConfigMap (`--configmap NS/NAME`): ingress-nginx's global settings, read from
//! the store like any other object, so that a change to it is a change like any other.
//!
//! Precedence, lowest first: built-in default < flag < ConfigMap < annotation. This module
//! applies the ConfigMap layer on top of the flag-derived `Settings`; annotations are applied
//! per Ingress on top of what it returns (see `annotation_defaults`).
//!
//! Pure: the same store and flags always give the same settings and diagnostics. A value that
//! cannot be used is reported (naming the ConfigMap and `data.KEY`) and the flag's value stays.

use std::time::Duration;

use super::annotations::Annotations;
use super::diag::{Diagnostic, Reason, Severity};
use super::Settings;
use crate::config::{HashKey, Policy};
use crate::store::{ObjRef, Store};

/// The ConfigMap keys Vestibule honours, with ingress-nginx's names and value syntax.
pub const KEYS: [&str; 24] = [
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "ssl-redirect",
    "proxy-next-upstream-tries",
    "use-proxy-protocol",
    "load-balance",
    "upstream-hash-by",
    "http-redirect-code",
    "force-ssl-redirect",
    "use-port-in-redirects",
    "preserve-trailing-slash",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "retry-non-idempotent",
    "proxy-request-buffering",
    "proxy-buffering",
    "proxy-http-version",
    "global-allowed-response-headers",
    "custom-http-errors",
    "service-upstream",
    "disable-proxy-intercept-errors",
    "proxy-stream-timeout",
];

/// The settings in effect: `flags` with the ConfigMap `flags.configmap` names applied, and what
/// was found wrong with it. Without `--configmap`, `flags` unchanged and no diagnostics.
pub fn effective(store: &Store, flags: &Settings) -> (Settings, Vec<Diagnostic>) {
    let mut s = flags.clone();
    let mut diags = Vec::new();
    let Some((ns, name)) = &flags.configmap else { return (s, diags) };
    let obj = ObjRef::new("ConfigMap", ns, name);
    let Some(cm) = store.config_maps.get(&(ns.clone(), name.clone())) else {
        diags.push(Diagnostic::new(
            Severity::Warning,
            &obj,
            "",
            Reason::ConfigMapNotFound,
            format!("ConfigMap {ns}/{name} (named by --configmap) not found; the flags and built-in defaults are used"),
        ));
        return (s, diags);
    };
    let empty = Default::default();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let mut warn = |key: &str, msg: String| {
        diags.push(Diagnostic::new(Severity::Warning, &obj, format!("data.{key}"), Reason::InvalidField, format!("{msg}; the value from the flags (or the built-in default) is kept")));
    };

    if let Some(v) = data.get("proxy-body-size") {
        match crate::units::parse_size(v) {
            Ok(n) => s.proxy.body_limit = n,
            Err(e) => warn("proxy-body-size", format!("{e} (0 for no limit)")),
        }
    }
    for key in ["proxy-connect-timeout", "proxy-read-timeout", "proxy-send-timeout"] {
        let Some(v) = data.get(key) else { continue };
        let slot = match key {
            "proxy-connect-timeout" => &mut s.proxy.connect_timeout,
            "proxy-read-timeout" => &mut s.proxy.read_timeout,
            _ => &mut s.proxy.send_timeout,
        };
        match seconds(v) {
            Ok(d) => *slot = d,
            Err(e) => warn(key, e),
        }
    }
    if let Some(v) = data.get("ssl-redirect") {
        match boolean(v) {
            Some(b) => s.ssl_redirect = b,
            None => warn("ssl-redirect", format!("{v:?}: must be \"true\" or \"false\"")),
        }
    }
    if let Some(v) = data.get("proxy-next-upstream-tries") {
        match v.trim().parse::<usize>() {
            // As in nginx, 0 means no limit (every endpoint may be tried).
            Ok(0) => s.proxy.upstream_tries = usize::MAX,
            Ok(n) => s.proxy.upstream_tries = n,
            Err(_) => warn("proxy-next-upstream-tries", format!("{v:?}: must be a whole number (0 for no limit)")),
        }
    }
    if let Some(v) = data.get("use-proxy-protocol") {
        match boolean(v) {
            Some(b) => s.listeners.iter_mut().for_each(|l| l.proxy_protocol = b),
            None => warn("use-proxy-protocol", format!("{v:?}: must be \"true\" or \"false\"")),
        }
    }
    if let Some(v) = data.get("load-balance") {
        match v.trim() {
            "round_robin" => s.default_policy = Policy::RoundRobin,
            "ewma" | "least_request" => s.default_policy = Policy::LeastRequest,
            other => warn("load-balance", format!("{other:?}: must be round_robin or ewma")),
        }
    }
    // Hashing wins over load-balance when both are set, as in ingress-nginx; "" means none.
    if let Some(v) = data.get("upstream-hash-by").filter(|v| !v.trim().is_empty()) {
        match HashKey::parse(v.trim()) {
            Ok(key) => s.default_policy = Policy::Hash(key),
            Err(e) => warn("upstream-hash-by", e),
        }
    }
    redirects(data, &mut s, &mut warn);

    // The idle timeout of TCP/UDP services and passthrough (nginx's stream `proxy_timeout`).
    if let Some(v) = data.get("proxy-stream-timeout") {
        match seconds(v) {
            Ok(d) => s.stream_timeout = d,
            Err(e) => warn("proxy-stream-timeout", e),
        }
    }


    proxy_keys(data, &mut s, &mut warn);
    super::http_settings::apply(data, &mut s.http, &mut warn);
    for (key, sev, msg) in super::headers_settings::apply(store, data, &mut s.http) {
        diags.push(Diagnostic::new(sev, &obj, format!("data.{key}"), Reason::InvalidField, msg));
    }
    if s.http.allow_snippet_annotations {
        let msg = "allow-snippet-annotations is accepted, but Vestibule never executes snippets: every *-snippet annotation stays refused";
        diags.push(Diagnostic::new(Severity::Info, &obj, "data.allow-snippet-annotations", Reason::SnippetRefused, msg));
    }

    let (global_auth, auth_warnings) = super::annotations::auth::global(data);
    if let Some(Err(e)) = &global_auth {
        diags.push(Diagnostic::new(Severity::Error, &obj, "data.global-auth-url", Reason::InvalidField, format!("{e}; every Ingress path without auth-url (and enable-global-auth not \"false\") answers 503")));
    }
    for (field, msg) in auth_warnings {
        diags.push(Diagnostic::new(Severity::Warning, &obj, field, Reason::InvalidField, msg));
    }
    s.global_auth = global_auth;
    let known = |k: &str| KEYS.contains(&k) || super::http_settings::KEYS.contains(&k) || super::headers_settings::KEYS.contains(&k) || super::annotations::auth::GLOBAL_KEYS.contains(&k);
    for key in data.keys().filter(|k| !known(k)) {
        diags.push(Diagnostic::new(Severity::Info, &obj, format!("data.{key}"), Reason::Unsupported, format!("{key:?} is not supported by Vestibule; it is ignored")));
    }
    (s, diags)
}

/// The keys the `proxy`, `headers` and `errors` annotation families have global forms of.
fn proxy_keys(data: &std::collections::BTreeMap<String, String>, s: &mut Settings, warn: &mut impl FnMut(&str, String)) {
    use super::annotations::proxy as p;
    fn set<T>(data: &std::collections::BTreeMap<String, String>, key: &str, slot: &mut T, parse: impl Fn(&str) -> Result<T, String>, warn: &mut impl FnMut(&str, String)) {
        if let Some(v) = data.get(key) {
            match parse(v) {
                Ok(x) => *slot = x,
                Err(e) => warn(key, e),
            }
        }
    }
    let bool_of = |v: &str| boolean(v).ok_or_else(|| format!("{v:?}: must be \"true\" or \"false\""));
    set(data, "proxy-next-upstream", &mut s.proxy.next_upstream, p::next_upstream, warn);
    let mut retry_non_idempotent = false;
    set(data, "retry-non-idempotent", &mut retry_non_idempotent, bool_of, warn);
    s.proxy.next_upstream.non_idempotent |= retry_non_idempotent;
    set(data, "proxy-next-upstream-timeout", &mut s.proxy.next_upstream_timeout, p::retry_window, warn);
    set(data, "proxy-request-buffering", &mut s.proxy.request_buffering, p::on_off_exact, warn);
    set(data, "proxy-buffering", &mut s.proxy.response_buffering, p::on_off_exact, warn);
    set(data, "proxy-http-version", &mut s.proxy.http10, p::http10, warn);
    set(data, "service-upstream", &mut s.service_upstream, bool_of, warn);
    // Only the http-level directive in ingress-nginx, which Vestibule has no equivalent of:
    // validated, no effect.
    set(data, "disable-proxy-intercept-errors", &mut false, bool_of, warn);
    // ingress-nginx keeps the global codes in 300..599 and drops the others.
    set(data, "custom-http-errors", &mut s.custom_http_errors, |v| {
        let codes: Vec<u16> = v.split(',').filter_map(|c| c.trim().parse::<u16>().ok()).filter(|c| (300..600).contains(c)).collect();
        Ok(codes)
    }, warn);
    // Names that are not header names are dropped, as ingress-nginx does.
    if let Some(v) = data.get("global-allowed-response-headers") {
        s.allowed_response_headers =
            v.split(',').map(str::trim).filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')).map(str::to_string).collect();
    }
}

/// What an Ingress without annotations gets: the effective global settings. Annotations are
/// parsed on top of these, so an annotation wins over the ConfigMap, and an invalid annotation
/// falls back to the ConfigMap's (or flag's) value.
pub fn annotation_defaults(settings: &Settings) -> Annotations {
    let g = &settings.redirects;
    let redirect = super::annotations::redirect::Redirects { force_ssl_redirect: g.force_ssl_redirect, use_port_in_redirects: g.use_port_in_redirects, ..Default::default() };
    let rewrite = super::annotations::rewrite::Rewrite { preserve_trailing_slash: g.preserve_trailing_slash, ..Default::default() };
    let mut a = Annotations { ssl_redirect: settings.ssl_redirect, policy: settings.default_policy.clone(), proxy: settings.proxy.clone(), redirect, rewrite, ..Default::default() };
    a.hosts.service_upstream = settings.service_upstream;
    a.errors.codes = settings.custom_http_errors.clone();
    a.ipfilter = super::annotations::ipfilter::global(&settings.http);
    a.http = std::sync::Arc::new(settings.http.clone());
    a
}

/// The redirect keys: `http-redirect-code` (301, 302, 307 or 308, as ingress-nginx accepts) and
/// the defaults of the redirect annotations.
fn redirects(data: &std::collections::BTreeMap<String, String>, s: &mut Settings, warn: &mut impl FnMut(&str, String)) {
    if let Some(v) = data.get("http-redirect-code") {
        match v.trim().parse::<u16>() {
            Ok(c @ (301 | 302 | 307 | 308)) => s.redirects.code = c,
            _ => warn("http-redirect-code", format!("{v:?}: must be 301, 302, 307 or 308")),
        }
    }
    for key in ["force-ssl-redirect", "use-port-in-redirects", "preserve-trailing-slash"] {
        let Some(v) = data.get(key) else { continue };
        let slot = match key {
            "force-ssl-redirect" => &mut s.redirects.force_ssl_redirect,
            "use-port-in-redirects" => &mut s.redirects.use_port_in_redirects,
            _ => &mut s.redirects.preserve_trailing_slash,
        };
        match boolean(v) {
            Some(b) => *slot = b,
            None => warn(key, format!("{v:?}: must be \"true\" or \"false\"")),
        }
    }
}

/// ingress-nginx's timeouts are whole seconds (`60`); units (`5s`, `500ms`, `2m`) are accepted
/// too. Zero is refused: nothing could ever connect or answer.
fn seconds(v: &str) -> Result<Duration, String> {
    let d = crate::units::parse_duration(v)?;
    if d.is_zero() {
        return Err(format!("{v:?}: must be more than 0"));
    }
    Ok(d)
}

/// The booleans ingress-nginx reads from its ConfigMap: Go's `strconv.ParseBool`, as for the
/// annotations.
pub(super) use super::annotations::go_bool as boolean;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HashPart, ListenerProtocol, ListenerSpec, ProxySettings};
    use k8s_openapi::api::core::v1::ConfigMap;

    const MIB: u64 = 1024 * 1024;

    fn flags() -> Settings {
        crate::tls::install_provider();
        let mut s = Settings::new(crate::tls::self_signed(&["vestibule.invalid"]).unwrap().0);
        s.configmap = Some(("ingress".into(), "vestibule".into()));
        let l = |name: &str, protocol| ListenerSpec { name: name.into(), addr: "127.0.0.1:0".parse().unwrap(), protocol, proxy_protocol: false };
        s.listeners = vec![l("http", ListenerProtocol::Http), l("https", ListenerProtocol::Https)];
        s
    }

    fn store(data: &[(&str, &str)]) -> Store {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some("ingress".into());
        cm.metadata.name = Some("vestibule".into());
        cm.data = Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut store = Store::default();
        store.insert(crate::store::Object::ConfigMap(cm));
        store
    }

    /// What a case expects of the effective settings.
    #[derive(Debug, PartialEq)]
    struct Out {
        proxy: ProxySettings,
        ssl_redirect: bool,
        proxy_protocol: bool,
        policy: Policy,
    }

    fn out(s: &Settings) -> Out {
        assert!(s.listeners.iter().all(|l| l.proxy_protocol == s.listeners[0].proxy_protocol));
        Out { proxy: s.proxy.clone(), ssl_redirect: s.ssl_redirect, proxy_protocol: s.listeners[0].proxy_protocol, policy: s.default_policy.clone() }
    }

    fn base() -> Out {
        out(&flags())
    }

    #[test]
    fn table() {
        let secs = Duration::from_secs;
        type Case = (&'static str, Vec<(&'static str, &'static str)>, Box<dyn Fn(&mut Out)>, Vec<(Severity, &'static str)>);
        let cases: Vec<Case> = vec![
            ("empty", vec![], Box::new(|_| {}), vec![]),
            ("body size in k", vec![("proxy-body-size", "8k")], Box::new(|o| o.proxy.body_limit = 8 * 1024), vec![]),
            ("body size in M", vec![("proxy-body-size", "2M")], Box::new(|o| o.proxy.body_limit = 2 * MIB), vec![]),
            ("body size in bytes", vec![("proxy-body-size", "1000")], Box::new(|o| o.proxy.body_limit = 1000), vec![]),
            ("body size 0 is no limit", vec![("proxy-body-size", "0")], Box::new(|o| o.proxy.body_limit = u64::MAX), vec![]),
            ("body size invalid", vec![("proxy-body-size", "lots")], Box::new(|_| {}), vec![(Severity::Warning, "data.proxy-body-size")]),
            ("body size negative", vec![("proxy-body-size", "-1m")], Box::new(|_| {}), vec![(Severity::Warning, "data.proxy-body-size")]),
            (
                "timeouts in seconds, as ingress-nginx",
                vec![("proxy-connect-timeout", "3"), ("proxy-read-timeout", "120"), ("proxy-send-timeout", "30")],
                Box::new(move |o| {
                    o.proxy.connect_timeout = secs(3);
                    o.proxy.read_timeout = secs(120);
                    o.proxy.send_timeout = secs(30);
                }),
                vec![],
            ),
            ("timeouts with units", vec![("proxy-connect-timeout", "500ms"), ("proxy-read-timeout", "2m")], Box::new(move |o| {
                o.proxy.connect_timeout = Duration::from_millis(500);
                o.proxy.read_timeout = secs(120);
            }), vec![]),
            (
                "timeouts invalid or zero",
                vec![("proxy-connect-timeout", "soon"), ("proxy-read-timeout", "0"), ("proxy-send-timeout", "5y")],
                Box::new(|_| {}),
                vec![(Severity::Warning, "data.proxy-connect-timeout"), (Severity::Warning, "data.proxy-read-timeout"), (Severity::Warning, "data.proxy-send-timeout")],
            ),
            ("ssl-redirect off", vec![("ssl-redirect", "false")], Box::new(|o| o.ssl_redirect = false), vec![]),
            ("ssl-redirect invalid", vec![("ssl-redirect", "maybe")], Box::new(|_| {}), vec![(Severity::Warning, "data.ssl-redirect")]),
            ("tries", vec![("proxy-next-upstream-tries", "5")], Box::new(|o| o.proxy.upstream_tries = 5), vec![]),
            ("tries 0 is no limit", vec![("proxy-next-upstream-tries", "0")], Box::new(|o| o.proxy.upstream_tries = usize::MAX), vec![]),
            ("tries invalid", vec![("proxy-next-upstream-tries", "many")], Box::new(|_| {}), vec![(Severity::Warning, "data.proxy-next-upstream-tries")]),
            ("proxy protocol on every listener", vec![("use-proxy-protocol", "true")], Box::new(|o| o.proxy_protocol = true), vec![]),
            ("proxy protocol invalid", vec![("use-proxy-protocol", "yes please")], Box::new(|_| {}), vec![(Severity::Warning, "data.use-proxy-protocol")]),
            ("ewma", vec![("load-balance", "ewma")], Box::new(|o| o.policy = Policy::LeastRequest), vec![]),
            ("load-balance invalid", vec![("load-balance", "random")], Box::new(|_| {}), vec![(Severity::Warning, "data.load-balance")]),
            (
                "hash by header",
                vec![("upstream-hash-by", "$http_x_user")],
                Box::new(|o| o.policy = Policy::Hash(HashKey { parts: vec![HashPart::Header("x-user".into())] })),
                vec![],
            ),
            (
                "hash wins over load-balance",
                vec![("load-balance", "ewma"), ("upstream-hash-by", "$request_uri")],
                Box::new(|o| o.policy = Policy::Hash(HashKey { parts: vec![HashPart::RequestUri] })),
                vec![],
            ),
            ("empty hash is none", vec![("upstream-hash-by", "")], Box::new(|_| {}), vec![]),
            ("hash invalid keeps load-balance", vec![("load-balance", "ewma"), ("upstream-hash-by", "$(rm -rf /)")], Box::new(|o| o.policy = Policy::LeastRequest), vec![(Severity::Warning, "data.upstream-hash-by")]),
            ("unknown key", vec![("enable-brotli", "true")], Box::new(|_| {}), vec![(Severity::Info, "data.enable-brotli")]),
            ("forwarded headers", vec![("use-forwarded-headers", "true"), ("server-tokens", "false")], Box::new(|_| {}), vec![]),
            ("server-tokens invalid", vec![("server-tokens", "sometimes")], Box::new(|_| {}), vec![(Severity::Warning, "data.server-tokens")]),
            ("risk level invalid", vec![("annotations-risk-level", "Extreme")], Box::new(|_| {}), vec![(Severity::Warning, "data.annotations-risk-level")]),
            ("snippets allowed is only noted", vec![("allow-snippet-annotations", "true")], Box::new(|_| {}), vec![(Severity::Info, "data.allow-snippet-annotations")]),
        ];
        let mut failures = Vec::new();
        for (name, data, expect, want_diags) in cases {
            let (s, diags) = effective(&store(&data), &flags());
            let mut want = base();
            expect(&mut want);
            let got = out(&s);
            if got != want {
                failures.push(format!("{name}: settings\n  got  {got:?}\n  want {want:?}"));
            }
            let got_diags: Vec<(Severity, &str)> = diags.iter().map(|d| (d.severity, d.field.as_str())).collect();
            if got_diags != want_diags {
                failures.push(format!("{name}: diagnostics\n  got  {got_diags:?}\n  want {want_diags:?}"));
            }
            for d in &diags {
                if d.object != ObjRef::new("ConfigMap", "ingress", "vestibule") || !d.to_string().contains("ConfigMap ingress/vestibule") {
                    failures.push(format!("{name}: diagnostic does not name the ConfigMap: {d}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_warning_says_why_and_what_is_kept() {
        let (_, diags) = effective(&store(&[("proxy-body-size", "lots")]), &flags());
        let d = &diags[0];
        assert_eq!(d.reason, Reason::InvalidField);
        assert!(d.message.contains("\"lots\"") && d.message.contains("value from the flags (or the built-in default) is kept"), "{d}");
        let (_, diags) = effective(&store(&[("enable-brotli", "true")]), &flags());
        assert!(diags[0].message.contains("not supported by Vestibule; it is ignored"), "{}", diags[0]);
    }

    #[test]
    fn the_configmap_overrides_flags_and_falls_back_to_them() {
        let mut f = flags();
        f.proxy.body_limit = 5 * MIB;
        f.ssl_redirect = false;
        let (s, _) = effective(&store(&[("proxy-body-size", "2m")]), &f);
        assert_eq!(s.proxy.body_limit, 2 * MIB, "the ConfigMap wins over the flag");
        assert!(!s.ssl_redirect, "a key the ConfigMap does not set keeps the flag's value");
        let (s, _) = effective(&store(&[("proxy-body-size", "huge")]), &f);
        assert_eq!(s.proxy.body_limit, 5 * MIB, "an invalid value keeps the flag's value");
    }

    #[test]
    fn without_the_flag_or_the_object() {
        let mut f = flags();
        f.configmap = None;
        let (s, diags) = effective(&store(&[("proxy-body-size", "1k")]), &f);
        assert_eq!((s.proxy.body_limit, diags.len()), (MIB, 0), "no --configmap: the ConfigMap is not read");
        let (s, diags) = effective(&Store::default(), &flags());
        assert_eq!(s.proxy.body_limit, MIB);
        assert_eq!(diags.len(), 1);
        assert_eq!((diags[0].severity, diags[0].reason), (Severity::Warning, Reason::ConfigMapNotFound));
        assert!(diags[0].to_string().contains("ConfigMap ingress/vestibule"), "{}", diags[0]);
    }

    #[test]
    fn annotations_start_from_the_effective_settings() {
        let (s, _) = effective(&store(&[("ssl-redirect", "false"), ("load-balance", "ewma")]), &flags());
        let a = annotation_defaults(&s);
        assert!(!a.ssl_redirect);
        assert_eq!(a.policy, Policy::LeastRequest);
    }
}
