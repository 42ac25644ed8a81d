//! The Ingress rules as tables of "store in, Config and diagnostics out", straight through
//! `compile` (no sockets): host precedence, path matching, defaults, conflicts, TLS redirects,
//! unusable backends, and the `--configmap` layer. tests/routing.rs checks the same rules
//! through real sockets; these name the exact rule that answers and the diagnostic it gives.

mod common;

use std::net::SocketAddr;

use common::*;
use vestibule::compile::{self, Diagnostic, Reason, Settings, Severity};
use vestibule::config::{Config, Filter, Policy, Target};
use vestibule::store::{ObjRef, Store};

const CREATED: &str = "2020-01-01T00:00:00Z";
const REDIRECT: Filter = Filter::HttpsRedirect { status: 308, preserve_trailing_slash: false, use_port: false };

/// compile's answer as a pair; the one place to adapt when its return type changes.
fn run(store: &Store, settings: &Settings) -> (Config, Vec<Diagnostic>) {
    let c = compile::compile(store, settings);
    (c.config, c.diagnostics)
}


fn settings() -> Settings {
    compile_settings()
}

fn ingress(name: &str) -> Ingress {
    Ingress::new("default", name).created(CREATED)
}

/// A Service `svc` (port `http` 80) with one ready endpoint: compile never connects to it.
fn backend(svc: &str) -> String {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    backend_yaml("default", svc, &[addr])
}

/// What the router decides for host + path, as one line:
/// `ingress rule-path -> service [redirect]`, `host-default ingress -> service`,
/// `default ingress -> service`, `host-not-found`, or `404`.
fn decide(config: &Config, host: &str, path: &str) -> String {
    let redirect = |f: &[Filter]| if f.contains(&REDIRECT) { " [redirect]" } else { "" };
    match config.route_path(host, path) {
        Target::Route { route, .. } => format!("{} {} -> {}{}", route.ingress.name, route.rule_path, route.backend().service, redirect(&route.filters)),
        Target::HostDefault { default, vhost } => format!("host-default {} -> {}{}", default.ingress.name, default.backend.service, redirect(&vhost.filters)),
        Target::Default(d) => format!("default {} -> {}", d.ingress.name, d.backend.service),
        Target::HostNotFound { vhost } => format!("host-not-found{}", redirect(&vhost.filters)),
        Target::NotFound => "404".into(),
    }
}

/// Checks every (host, path, expected) row and reports all mismatches at once.
fn check_table(config: &Config, rows: &[(&str, &str, &str)]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(host, path, want)| {
            let got = decide(config, host, path);
            (got != *want).then(|| format!("{host}{path}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The diagnostics as (severity, object name, field, reason), for exact comparison.
fn diag_rows(diags: &[Diagnostic]) -> Vec<(Severity, String, String, Reason)> {
    diags.iter().map(|d| (d.severity, d.object.to_string(), d.field.clone(), d.reason)).collect()
}

#[test]
fn host_and_path_rules() {
    let mut docs: Vec<String> = ["prefix-foo", "exact-foobar", "root", "aaabbb", "exact", "same-exact", "same-prefix", "impl", "wild", "hostless", "bar-default", "bar-api", "catchall", "svc-a", "svc-b", "svc-old", "svc-new"]
        .iter()
        .map(|s| backend(s))
        .collect();
    let mut foo = ingress("foo");
    for (path, path_type, svc) in [
        ("/foo", "Prefix", "prefix-foo"),
        ("/foo/bar", "Exact", "exact-foobar"),
        ("/", "Prefix", "root"),
        ("/aaa/bbb/", "Prefix", "aaabbb"),
        ("/exact", "Exact", "exact"),
        ("/same", "Exact", "same-exact"),
        ("/same", "Prefix", "same-prefix"),
        ("/impl", "ImplementationSpecific", "impl"),
    ] {
        foo = foo.host_path("foo.com", path, path_type, svc, 80);
    }
    docs.push(foo.to_yaml());
    docs.push(ingress("wild").host_path("*.foo.com", "/", "Prefix", "wild", 80).to_yaml());
    docs.push(ingress("hostless").path("/hostless", "Prefix", "hostless", 80).to_yaml());
    docs.push(ingress("bar").default_backend("bar-default", 80).host_path("bar.com", "/api", "Prefix", "bar-api", 80).to_yaml());
    docs.push(ingress("catchall").default_backend("catchall", 80).to_yaml());
    // The newer Ingress sorts first by name; the older one still wins the shared path.
    docs.push(Ingress::new("default", "a-newer").created("2021-06-01T00:00:00Z").host_path("merge.com", "/b", "Prefix", "svc-b", 80).host_path("merge.com", "/dup", "Prefix", "svc-new", 80).to_yaml());
    docs.push(Ingress::new("default", "z-older").created("2020-06-01T00:00:00Z").host_path("merge.com", "/a", "Prefix", "svc-a", 80).host_path("merge.com", "/dup", "Prefix", "svc-old", 80).to_yaml());
    // A second catch-all, newer: it loses.
    docs.push(Ingress::new("default", "catchall-2").created("2022-01-01T00:00:00Z").default_backend("svc-new", 80).to_yaml());
    let (config, diags) = run(&store_of(&manifest(docs)), &settings());

    check_table(
        &config,
        &[
            // Prefix matches whole path elements.
            ("foo.com", "/foo", "foo /foo -> prefix-foo"),
            ("foo.com", "/foo/", "foo /foo -> prefix-foo"),
            ("foo.com", "/foo/baz", "foo /foo -> prefix-foo"),
            ("foo.com", "/foobar", "foo / -> root"),
            ("foo.com", "/Foo", "foo / -> root"),
            // The longest path wins, Exact included.
            ("foo.com", "/foo/bar", "foo /foo/bar -> exact-foobar"),
            ("foo.com", "/foo/bar/", "foo /foo -> prefix-foo"),
            ("foo.com", "/foo/bar/baz", "foo /foo -> prefix-foo"),
            // A Prefix path's trailing slash does not count.
            ("foo.com", "/aaa/bbb", "foo /aaa/bbb/ -> aaabbb"),
            ("foo.com", "/aaa/bbb/", "foo /aaa/bbb/ -> aaabbb"),
            ("foo.com", "/aaa/bbb/ccc", "foo /aaa/bbb/ -> aaabbb"),
            ("foo.com", "/aaa/bbbxyz", "foo / -> root"),
            // Exact is exact: no trailing slash.
            ("foo.com", "/exact", "foo /exact -> exact"),
            ("foo.com", "/exact/", "foo / -> root"),
            // Exact before Prefix at equal length.
            ("foo.com", "/same", "foo /same -> same-exact"),
            ("foo.com", "/same/x", "foo /same -> same-prefix"),
            // ImplementationSpecific is Prefix.
            ("foo.com", "/impl", "foo /impl -> impl"),
            ("foo.com", "/impl/x", "foo /impl -> impl"),
            ("foo.com", "/implx", "foo / -> root"),
            ("foo.com", "/", "foo / -> root"),
            // Exact host, then a one-label wildcard, then host-less rules, then the catch-all.
            ("bar.foo.com", "/anything", "wild / -> wild"),
            ("foo.com", "/hostless", "foo / -> root"),
            ("baz.bar.foo.com", "/", "default catchall -> catchall"),
            ("baz.bar.foo.com", "/hostless", "hostless /hostless -> hostless"),
            ("other.com", "/hostless/x", "hostless /hostless -> hostless"),
            ("other.com", "/hostlessx", "default catchall -> catchall"),
            ("", "/hostless", "hostless /hostless -> hostless"),
            // A host's own defaultBackend answers its unmatched paths.
            ("bar.com", "/api", "bar /api -> bar-api"),
            ("bar.com", "/api/v1", "bar /api -> bar-api"),
            ("bar.com", "/other", "host-default bar -> bar-default"),
            // Ingresses on one host merge; on a conflict the oldest wins.
            ("merge.com", "/a", "z-older /a -> svc-a"),
            ("merge.com", "/b", "a-newer /b -> svc-b"),
            ("merge.com", "/dup", "z-older /dup -> svc-old"),
            ("merge.com", "/c", "default catchall -> catchall"),
        ],
    );
    assert_eq!(
        diag_rows(&diags),
        vec![
            (Severity::Warning, "Ingress default/a-newer".into(), "spec.rules[0].http.paths[1]".into(), Reason::PathConflict),
            (Severity::Warning, "Ingress default/catchall-2".into(), "spec.defaultBackend".into(), Reason::DefaultConflict),
        ],
        "{diags:#?}"
    );
    let conflict = &diags[0];
    assert!(conflict.message.contains("Ingress default/z-older") && conflict.message.contains("\"/dup\""), "the winner and the path are named: {conflict}");
}

#[test]
fn tls_hosts_redirect_unless_turned_off() {
    let docs = manifest([
        backend("web"),
        ingress("secure").tls(&["secure.com"], "missing").host_path("secure.com", "/a", "Exact", "web", 80).to_yaml(),
        ingress("plain").host_path("plain.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("opt-out").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false").tls(&["optout.com"], "missing").host_path("optout.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("ours-wins")
            .annotations(&[("nginx.ingress.kubernetes.io/ssl-redirect", "true"), ("vestibule.dev/ssl-redirect", "false")])
            .tls(&["ours.com"], "missing")
            .host_path("ours.com", "/", "Prefix", "web", 80)
            .to_yaml(),
        ingress("wild").tls(&["*.wild.com"], "missing").host_path("*.wild.com", "/", "Prefix", "web", 80).to_yaml(),
        // TLS without hosts covers the rules' hosts.
        ingress("implicit").tls(&[], "missing").host_path("implicit.com", "/", "Prefix", "web", 80).to_yaml(),
    ]);
    let store = store_of(&docs);
    let (config, diags) = run(&store, &settings());
    check_table(
        &config,
        &[
            ("secure.com", "/a", "secure /a -> web [redirect]"),
            // An unmatched path on a TLS host is redirected too (then 404).
            ("secure.com", "/nothing", "host-not-found [redirect]"),
            ("plain.com", "/", "plain / -> web"),
            ("optout.com", "/", "opt-out / -> web"),
            ("ours.com", "/", "ours-wins / -> web"),
            ("x.wild.com", "/", "wild / -> web [redirect]"),
            ("implicit.com", "/", "implicit / -> web [redirect]"),
        ],
    );
    assert!(diags.iter().all(|d| d.reason == Reason::SecretNotFound), "{diags:#?}");

    // `--ssl-redirect=false` turns it off everywhere; an annotation turns it back on.
    let mut off = settings();
    off.ssl_redirect = false;
    let docs = format!("{docs}\n---\n{}", ingress("pinned").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "true").tls(&["pinned.com"], "missing").host_path("pinned.com", "/", "Prefix", "web", 80).to_yaml());
    let (config, _) = run(&store_of(&docs), &off);
    check_table(&config, &[("secure.com", "/a", "secure /a -> web"), ("secure.com", "/nothing", "host-not-found"), ("x.wild.com", "/", "wild / -> web"), ("pinned.com", "/", "pinned / -> web [redirect]")]);
}

#[test]
fn unusable_backends_answer_503_with_a_diagnostic() {
    let docs = manifest([
        backend("web"),
        Service::new("default", "empty").port("http", 80).to_yaml(),
        EndpointSlice::new("default", "empty-1", "empty").port("http", 1).endpoint(Endpoint::at("127.0.0.1").ready(false)).to_yaml(),
        ingress("missing").host_path("missing.com", "/", "Prefix", "does-not-exist", 80).to_yaml(),
        ingress("badport").host_path("badport.com", "/", "Prefix", "web", 1234).to_yaml(),
        ingress("empty").host_path("empty.com", "/", "Prefix", "empty", 80).to_yaml(),
        ingress("fine").host_path("fine.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("bad-default").default_backend("gone", 80).host_path("bd.com", "/x", "Prefix", "web", 80).to_yaml(),
    ]);
    let (config, diags) = run(&store_of(&docs), &settings());
    // Routes exist (so the host is known) but their backends have no endpoints: 503.
    let unavailable = |host: &str, path: &str| config.route_path(host, path).backend().map(|b| (b.endpoints.len(), b.unavailable.is_some()));
    for host in ["missing.com", "badport.com", "empty.com"] {
        assert_eq!(unavailable(host, "/"), Some((0, true)), "{host}");
    }
    assert_eq!(unavailable("fine.com", "/"), Some((1, false)));
    assert_eq!(unavailable("bd.com", "/other"), Some((0, true)), "a host default to a missing Service");
    let field = "spec.rules[0].http.paths[0].backend.service";
    assert_eq!(
        diag_rows(&diags),
        vec![
            (Severity::Warning, "Ingress default/bad-default".into(), "spec.defaultBackend.service".into(), Reason::ServiceNotFound),
            (Severity::Warning, "Ingress default/badport".into(), field.into(), Reason::ServicePortNotFound),
            (Severity::Warning, "Ingress default/empty".into(), field.into(), Reason::NoReadyEndpoints),
            (Severity::Warning, "Ingress default/missing".into(), field.into(), Reason::ServiceNotFound),
        ],
        "{diags:#?}"
    );
    assert!(diags.iter().find(|d| d.object.name == "missing").unwrap().message.contains("does-not-exist"));
}

#[test]
fn invalid_ingresses_and_foreign_classes_are_skipped_with_a_diagnostic() {
    let docs = manifest([
        backend("web"),
        ingress("ok").host_path("ok.com", "/", "Prefix", "web", 80).to_yaml(),
        ingress("bad-path").host_path("bad.com", "/fixed-below", "Prefix", "web", 80).to_yaml(),
        ingress("foreign").class("nginx").host_path("foreign.com", "/", "Prefix", "web", 80).to_yaml(),
    ]);
    let mut store = store_of(&docs);
    // The file parser already refuses a relative path; objects from the API reach compile as
    // they are, and compile checks them again.
    let key = ("default".to_string(), "bad-path".to_string());
    let mut bad = (*store.ingresses[&key]).clone();
    bad.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].http.as_mut().unwrap().paths[0].path = Some("no-slash".into());
    store.ingresses.insert(key, std::sync::Arc::new(bad));
    let (config, diags) = run(&store, &settings());
    check_table(&config, &[("ok.com", "/", "ok / -> web"), ("bad.com", "/", "404"), ("foreign.com", "/", "404")]);
    let rows = diag_rows(&diags);
    assert!(rows.iter().any(|(s, o, _, r)| *s == Severity::Error && o == "Ingress default/bad-path" && *r == Reason::InvalidField), "{diags:#?}");
    assert!(rows.iter().any(|(s, o, f, r)| *s == Severity::Info && o == "Ingress default/foreign" && f == "spec.ingressClassName" && *r == Reason::ClassIgnored), "{diags:#?}");
}

/// The `--configmap` layer: flag < ConfigMap < annotation, for each key compile reads.
#[test]
fn the_configmap_applies_over_the_flags_and_under_the_annotations() {
    let cm = |data: &[(&str, &str)]| {
        let mut c = ConfigMap::new("ingress", "vestibule");
        for (k, v) in data {
            c = c.data(k, v);
        }
        c.to_yaml()
    };
    let objects = |data: &[(&str, &str)]| {
        manifest([
            backend("web"),
            backend("api"),
            ingress("plain").tls(&["plain.com"], "missing").host_path("plain.com", "/", "Prefix", "web", 80).to_yaml(),
            ingress("annotated")
                .annotations(&[("nginx.ingress.kubernetes.io/load-balance", "round_robin"), ("nginx.ingress.kubernetes.io/ssl-redirect", "true")])
                .tls(&["annotated.com"], "missing")
                .host_path("annotated.com", "/", "Prefix", "api", 80)
                .to_yaml(),
            ingress("bad-annotation").annotation("nginx.ingress.kubernetes.io/load-balance", "random").host_path("bad.com", "/", "Prefix", "api", 80).to_yaml(),
            cm(data),
        ])
    };
    let mut flags = settings();
    flags.configmap = Some(("ingress".into(), "vestibule".into()));
    flags.proxy.body_limit = 5 * 1024 * 1024;

    let route = |config: &Config, host: &str| match config.route_path(host, "/") {
        Target::Route { route, .. } => (route.proxy.body_limit, route.backend().policy.clone(), route.has_filter(&REDIRECT)),
        other => panic!("{host}: {other:?}"),
    };

    // Nothing in the ConfigMap: the flags.
    let (config, diags) = run(&store_of(&objects(&[])), &flags);
    assert_eq!(route(&config, "plain.com"), (5 * 1024 * 1024, Policy::RoundRobin, true));
    assert!(diags.iter().all(|d| d.object.kind != "ConfigMap"), "{diags:#?}");

    let (config, diags) = run(&store_of(&objects(&[("proxy-body-size", "8k"), ("load-balance", "ewma"), ("ssl-redirect", "false"), ("use-proxy-protocol", "true")])), &flags);
    assert_eq!(route(&config, "plain.com"), (8 * 1024, Policy::LeastRequest, false), "the ConfigMap over the flags");
    assert_eq!(route(&config, "annotated.com"), (8 * 1024, Policy::RoundRobin, true), "annotations over the ConfigMap");
    assert_eq!(route(&config, "bad.com").1, Policy::LeastRequest, "an invalid annotation falls back to the ConfigMap's policy");
    assert_eq!(config.proxy.body_limit, 8 * 1024, "requests no route matched get the same limits");
    let bad = diags.iter().find(|d| d.object.name == "bad-annotation").expect("the bad annotation is reported");
    assert!(bad.field.contains("load-balance") && bad.message.contains("the default is used"), "{bad}");

    let (config, _) = run(&store_of(&objects(&[("upstream-hash-by", "$http_x_user")])), &flags);
    assert!(matches!(route(&config, "plain.com").1, Policy::Hash(_)), "upstream-hash-by reaches backends without the annotation");
    assert_eq!(route(&config, "annotated.com").1, Policy::RoundRobin);

    let (config, diags) = run(&store_of(&objects(&[("proxy-body-size", "lots"), ("worker-processes", "4")])), &flags);
    assert_eq!(route(&config, "plain.com").0, 5 * 1024 * 1024, "an invalid value keeps the flag's");
    let cm_diags: Vec<_> = diag_rows(&diags).into_iter().filter(|(_, o, _, _)| o == "ConfigMap ingress/vestibule").collect();
    assert_eq!(
        cm_diags,
        vec![
            (Severity::Info, "ConfigMap ingress/vestibule".into(), "data.worker-processes".into(), Reason::Unsupported),
            (Severity::Warning, "ConfigMap ingress/vestibule".into(), "data.proxy-body-size".into(), Reason::InvalidField),
        ]
    );
    assert!(diags.iter().any(|d| d.object == ObjRef::new("ConfigMap", "ingress", "vestibule") && d.to_string().contains("data.proxy-body-size: \"lots\"")));
}
