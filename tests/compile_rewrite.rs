//! Rewrites, regex paths and redirects as tables straight through `compile`: which route
//! answers on a regex host, the filters each path gets (in order), the www host, and the
//! diagnostics of values that cannot be used.

mod common;

use std::net::SocketAddr;

use common::*;
use vestibule::compile::{self, Compiled, Reason, Severity};
use vestibule::config::{Config, Filter, Target};

const CREATED: &str = "2020-01-01T00:00:00Z";
const A: &str = "nginx.ingress.kubernetes.io/";

fn compile_docs(docs: &[String], configmap: Option<&ConfigMap>) -> Compiled {
    let mut text = manifest(docs);
    if let Some(cm) = configmap {
        text = manifest([text, cm.to_yaml()]);
    }
    let store = store_of(&text);
    let mut settings = compile_settings();
    if configmap.is_some() {
        settings.configmap = Some(("default".into(), "vestibule".into()));
    }
    compile::compile(&store, &settings)
}

fn backend(svc: &str) -> String {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    backend_yaml("default", svc, &[addr])
}

fn ingress(name: &str) -> Ingress {
    Ingress::new("default", name).created(CREATED)
}

/// One filter as a short word.
fn word(f: &Filter) -> String {
    match f {
        Filter::HttpsRedirect { status, preserve_trailing_slash, use_port } => format!("https({status}{}{})", if *preserve_trailing_slash { ",slash" } else { "" }, if *use_port { ",port" } else { "" }),
        Filter::Rewrite { pattern, target, prefix } => format!("rewrite({} -> {target}{})", pattern.0.as_str(), prefix.as_ref().map(|p| format!(", prefix {p}")).unwrap_or_default()),
        Filter::AppRoot { root } => format!("app-root({root})"),
        Filter::FixedRedirect { status, location } => format!("redirect({status} {location})"),
        Filter::WwwRedirect { to_host, status } => format!("www({status} {to_host})"),
        other => format!("{other:?}"),
    }
}

/// `ingress rule-path -> service [filters]` for the route that answers, or `no route [filters]`.
fn decide(config: &Config, host: &str, path: &str) -> String {
    let filters = |f: &[Filter]| if f.is_empty() { String::new() } else { format!(" [{}]", f.iter().map(word).collect::<Vec<_>>().join(", ")) };
    match config.route_path(host, path) {
        Target::Route { route, .. } => format!("{} {} -> {}{}", route.ingress.name, route.rule_path, route.backend().service, filters(&route.filters)),
        Target::HostDefault { vhost, .. } | Target::HostNotFound { vhost } => format!("no route{}", filters(&vhost.filters)),
        Target::Default(_) | Target::NotFound => "404".into(),
    }
}

fn check(config: &Config, rows: &[(&str, &str, &str)]) {
    let bad: Vec<String> = rows
        .iter()
        .filter_map(|(h, p, want)| {
            let got = decide(config, h, p);
            (got != *want).then(|| format!("{h}{p}: want {want:?}\n{:>w$}got  {got:?}", "", w = h.len() + p.len() + 2))
        })
        .collect();
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn regex_hosts() {
    let mut docs: Vec<String> = ["plain", "re", "acme", "root", "other", "ex", "bar", "lower"].iter().map(|s| backend(s)).collect();
    // ingress-nginx e2e "should use ~* location modifier if regex annotation is present".
    docs.push(ingress("a-plain").host_path("re.com", "/foo", "Prefix", "plain", 80).host_path("re.com", "/exact", "Exact", "ex", 80).to_yaml());
    docs.push(ingress("b-regex").annotations(&[(&format!("{A}use-regex"), "true"), (&format!("{A}rewrite-target"), "/new/backend")]).host_path("re.com", "/foo.+", "ImplementationSpecific", "re", 80).to_yaml());
    // e2e "should fail to use longest match for documented warning".
    docs.push(ingress("c-bar").host_path("long.com", "/foo/bar/bar", "Prefix", "bar", 80).to_yaml());
    docs.push(ingress("d-lower").annotations(&[(&format!("{A}use-regex"), "true"), (&format!("{A}rewrite-target"), "/new/backend")]).host_path("long.com", "/foo/bar/[a-z]{3}", "ImplementationSpecific", "lower", 80).to_yaml());
    // e2e "should use correct longest path match".
    docs.push(ingress("e-acme").host_path("acme.com", "/.well-known/acme/challenge", "Prefix", "acme", 80).to_yaml());
    docs.push(ingress("f-root").annotation(&format!("{A}rewrite-target"), "/new/backend").host_path("acme.com", "/", "Prefix", "root", 80).to_yaml());
    // Another host is not affected; a target equal to its path is no rewrite.
    docs.push(ingress("g-other").annotation(&format!("{A}rewrite-target"), "/foo").host_path("other.com", "/foo", "Prefix", "other", 80).to_yaml());
    let c = compile_docs(&docs, None);
    check(
        &c.config,
        &[
            ("re.com", "/foo", "a-plain /foo -> plain"),
            ("re.com", "/foo/bar", "b-regex /foo.+ -> re [rewrite((?i)^/foo.+ -> /new/backend)]"),
            ("re.com", "/FOO/bar", "b-regex /foo.+ -> re [rewrite((?i)^/foo.+ -> /new/backend)]"),
            // Exact paths become prefix-like expressions on a regex host.
            ("re.com", "/exact", "a-plain /exact -> ex"),
            ("re.com", "/exactly", "a-plain /exact -> ex"),
            ("re.com", "/EXACT/x", "a-plain /exact -> ex"),
            ("re.com", "/fo", "404"),
            ("long.com", "/foo/bar/bar", "d-lower /foo/bar/[a-z]{3} -> lower [rewrite((?i)^/foo/bar/[a-z]{3} -> /new/backend)]"),
            // The plain path can never answer: the expression is longer and matches it too.
            ("long.com", "/foo/bar/bar/x", "d-lower /foo/bar/[a-z]{3} -> lower [rewrite((?i)^/foo/bar/[a-z]{3} -> /new/backend)]"),
            ("long.com", "/foo/bar/b", "404"),
            ("acme.com", "/.well-known/acme/challenge/x", "e-acme /.well-known/acme/challenge -> acme"),
            ("acme.com", "/other", "f-root / -> root [rewrite((?i)^/ -> /new/backend)]"),
            ("other.com", "/foo/x", "g-other /foo -> other"),
            ("other.com", "/foobar", "404"),
        ],
    );
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
}

#[test]
fn a_path_that_is_not_an_expression_is_an_error_and_skipped() {
    let docs = [backend("web"), ingress("bad").annotation(&format!("{A}use-regex"), "true").host_path("x.com", "/ok", "Prefix", "web", 80).host_path("x.com", "/a(b", "ImplementationSpecific", "web", 80).to_yaml()];
    let c = compile_docs(&docs, None);
    let d: Vec<_> = c.diagnostics.iter().map(|d| (d.severity, d.object.name.as_str(), d.field.as_str(), d.reason)).collect();
    assert_eq!(d, [(Severity::Error, "bad", "spec.rules[0].http.paths[1].path", Reason::InvalidField)]);
    check(&c.config, &[("x.com", "/ok", "bad /ok -> web"), ("x.com", "/a(b", "404")]);
}

#[test]
fn a_path_whose_program_would_pass_the_size_limit_is_an_error_and_skipped() {
    // Nested counted repetition: tiny to write, millions of states to compile.
    let huge = "/(((a{100}){100}){100})";
    let docs = [backend("web"), ingress("big").annotation(&format!("{A}use-regex"), "true").host_path("x.com", "/ok", "Prefix", "web", 80).host_path("x.com", huge, "ImplementationSpecific", "web", 80).to_yaml()];
    let c = compile_docs(&docs, None);
    let d: Vec<_> = c.diagnostics.iter().map(|d| (d.severity, d.object.name.as_str(), d.field.as_str(), d.reason)).collect();
    assert_eq!(d, [(Severity::Error, "big", "spec.rules[0].http.paths[1].path", Reason::InvalidField)], "{:?}", c.diagnostics);
    check(&c.config, &[("x.com", "/ok", "big /ok -> web")]);
}

#[test]
fn filters_in_order() {
    let docs = [
        backend("web"),
        secret_yaml("default", "tls", "x", "y"),
        ingress("all")
            .annotations(&[
                (&format!("{A}app-root"), "/app"),
                (&format!("{A}permanent-redirect"), "http://redirect.example.com"),
                (&format!("{A}permanent-redirect-code"), "308"),
                (&format!("{A}force-ssl-redirect"), "true"),
                (&format!("{A}preserve-trailing-slash"), "true"),
                (&format!("{A}use-port-in-redirects"), "true"),
                (&format!("{A}rewrite-target"), "/$1"),
                (&format!("{A}x-forwarded-prefix"), "/p"),
            ])
            .host_path("all.com", "/api/(.*)", "ImplementationSpecific", "web", 80)
            .to_yaml(),
        ingress("temporal").annotations(&[(&format!("{A}temporal-redirect"), "https://t.example.com/x"), (&format!("{A}permanent-redirect"), "http://p.example.com")]).host_path("t.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("tls").tls(&["tls.com"], "tls").host_path("tls.com", "/", "Prefix", "web", 80).host_path("tls.com", "/.well-known/acme-challenge", "Prefix", "web", 80).to_yaml(),
        ingress("tls-off").annotation(&format!("{A}ssl-redirect"), "false").tls(&["off.com"], "tls").host_path("off.com", "/", "Prefix", "web", 80).to_yaml(),
    ];
    let c = compile_docs(&docs, None);
    check(
        &c.config,
        &[
            ("all.com", "/api/x", "all /api/(.*) -> web [app-root(/app), redirect(308 http://redirect.example.com), https(308,slash,port), rewrite((?i)^/api/(.*) -> /$1, prefix /p)]"),
            // app-root answers for the whole host, even where no path matches.
            ("all.com", "/", "no route [app-root(/app)]"),
            ("t.com", "/x", "temporal / -> web [redirect(302 https://t.example.com/x)]"),
            ("tls.com", "/x", "tls / -> web [https(308)]"),
            ("tls.com", "/.well-known/acme-challenge/t", "tls /.well-known/acme-challenge -> web"),
            ("off.com", "/", "tls-off / -> web"),
        ],
    );
}

#[test]
fn www_host_and_redirect_code() {
    let cm = ConfigMap::new("default", "vestibule").data("http-redirect-code", "301");
    let docs = [
        backend("web"),
        secret_yaml("default", "tls", "x", "y"),
        ingress("bare").annotation(&format!("{A}from-to-www-redirect"), "true").tls(&["bare.com"], "tls").host_path("bare.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("www").annotation(&format!("{A}from-to-www-redirect"), "true").host_path("www.w.com", "/", "Prefix", "web", 80).to_yaml(),
        // The other name is served already: no www host.
        ingress("both").annotation(&format!("{A}from-to-www-redirect"), "true").host_path("b.com", "/", "Prefix", "web", 80).host_path("www.b.com", "/", "Prefix", "web", 80).to_yaml(),
    ];
    let c = compile_docs(&docs, Some(&cm));
    check(
        &c.config,
        &[
            ("bare.com", "/", "bare / -> web [https(301)]"),
            ("www.bare.com", "/x", "no route [www(301 bare.com)]"),
            ("w.com", "/", "no route [www(301 www.w.com)]"),
            ("www.b.com", "/", "both / -> web"),
        ],
    );
    let bad = ConfigMap::new("default", "vestibule").data("http-redirect-code", "303");
    let c = compile_docs(&docs, Some(&bad));
    check(&c.config, &[("bare.com", "/", "bare / -> web [https(308)]"), ("w.com", "/", "no route [www(308 www.w.com)]")]);
    assert!(c.diagnostics.iter().any(|d| d.field == "data.http-redirect-code" && d.severity == Severity::Warning), "{:?}", c.diagnostics);
}

#[test]
fn invalid_values_are_reported_and_not_applied() {
    let rows: &[(&str, &str, Severity)] = &[
        ("rewrite-target", "/a?b=1", Severity::Warning),
        ("app-root", "relative", Severity::Warning),
        ("x-forwarded-prefix", "/a b", Severity::Error),
        ("permanent-redirect", "http://x/$request_uri", Severity::Error),
        ("permanent-redirect-code", "three", Severity::Error),
        ("from-to-www-redirect", "sure", Severity::Error),
    ];
    for (key, value, severity) in rows {
        let docs = [backend("web"), ingress("bad").annotation(&format!("{A}{key}"), value).host_path("x.com", "/", "Prefix", "web", 80).to_yaml()];
        let c = compile_docs(&docs, None);
        let d: Vec<_> = c.diagnostics.iter().map(|d| (d.severity, d.field.clone())).collect();
        assert_eq!(d, [(*severity, format!("metadata.annotations[{A}{key}]"))], "{key}: {:?}", c.diagnostics);
        // The rest of the Ingress serves, without the annotation.
        check(&c.config, &[("x.com", "/", "bad / -> web")]);
        assert!(c.config.exact.len() == 1, "{key}: no www host");
    }
}
