//! The route index gives the answer the scan in precedence order gives, for every request:
//! generated route sets (Exact, Prefix and regular-expression paths sharing prefixes, methods,
//! headers, query parameters; in either precedence order or none) against generated requests,
//! and generated Ingresses and HTTPRoutes through `compile`. The precedence rules themselves,
//! on hosts large enough to be indexed, are in `tests/route_index_table.rs`.

use std::sync::Arc;

use proptest::prelude::*;
use vestibule::config::index::RouteIndex;
use vestibule::config::route::Pattern;
use vestibule::config::{Backend, HeaderMatch, PathKind, PathMatch, ProxySettings, QueryMatch, RequestFacts, Route, RouteLabels, RouteMatch, RouteOrder, VirtualHost, WeightedBackend};
use vestibule::store::ObjRef;

mod common;

/// Segments that share prefixes with each other (`a`, `ab`, `a.b`) and with nothing (`c`),
/// in other cases (`A`, `aB`), and letters whose case folding leaves ASCII (`k` and KELVIN
/// SIGN, `s` and LONG S).
const SEGMENTS: &[&str] = &["a", "ab", "a.b", "b", "c", "A", "aB", "k", "s", "\u{212a}", "\u{17f}"];

/// Path expressions as the compilers make them, Ingress `(?i)^PATH` and Gateway API
/// `^(?:PATH)$`: with and without a literal start, optional characters, alternations inside
/// and outside groups, escapes and classes.
const PATTERNS: &[&str] = &[
    "(?i)^/a", "(?i)^/ab/", "(?i)^/a(/|$)(.*)", "(?i)^/AB", "(?i)^/k", "(?i)^/S/", "(?i)^/ab?", "(?i)^/ab*/c", "(?i)^/a.b", "(?i)^/ab+",
    "(?i)^/a|/c", "(?i)^/a\\|/c", "(?i)^/a[|/]c", "(?i)^/", "(?i)^", "^(?:/a/[a-z]+)$", "^(?:/[ab]+)$", "^(?:.*b)$", "^(?:/)$",
    "^(?:/aB(/.*)?)$", "^(?:/a|/c)$", "^(?:/c)|(/a.*)$", "^/ab", "^(?:/k/s)$",
];

fn segments(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SEGMENTS), 0..max).prop_map(|s| s.iter().map(|s| format!("/{s}")).collect())
}

/// A route path condition: prefixes as compile stores them (no trailing slash, `""` for `/`)
/// and, to hold for any data, with one.
fn path_match() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        3 => (segments(4), any::<bool>()).prop_map(|(p, slash)| PathMatch { path: if p.is_empty() { "/".into() } else if slash { format!("{p}/") } else { p }, kind: PathKind::Exact, regex: None }),
        4 => (segments(4), prop::bool::weighted(0.1)).prop_map(|(p, slash)| PathMatch { path: if slash { format!("{p}/") } else { p }, kind: PathKind::Prefix, regex: None }),
        1 => prop::sample::select(PATTERNS).prop_map(|s| PathMatch { path: s.into(), kind: PathKind::Regex, regex: Some(Pattern::new(s).unwrap()) }),
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    path: PathMatch,
    method: Option<http::Method>,
    headers: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
    created: i64,
}

fn spec() -> impl Strategy<Value = Spec> {
    let method = prop::sample::select(vec![None, None, Some(http::Method::GET), Some(http::Method::POST)]);
    let pair = || (prop::sample::select(vec!["x-a", "x-b"]), prop::sample::select(vec!["1", "2"]));
    let qpair = (prop::sample::select(vec!["q", "r"]), prop::sample::select(vec!["1", "2"]));
    (path_match(), method, prop::collection::vec(pair(), 0..3), prop::collection::vec(qpair, 0..2), 0i64..3)
        .prop_map(|(path, method, headers, query, created)| Spec { path, method, headers, query, created })
}

fn route(id: usize, s: &Spec, backend: &Arc<Backend>) -> Route {
    let matches = RouteMatch {
        path: s.path.clone(),
        method: s.method.clone(),
        headers: s.headers.iter().map(|(n, v)| HeaderMatch::exact(http::HeaderName::from_static(n), *v)).collect(),
        query: s.query.iter().map(|(n, v)| QueryMatch::exact(*n, *v)).collect(),
    };
    let order = RouteOrder { created: s.created, namespace: "default".into(), name: format!("r{id}"), ..Default::default() };
    Route {
        id,
        matches,
        filters: Arc::from(Vec::new()),
        backends: Arc::from(vec![WeightedBackend::new(backend.clone(), 1)]),
        proxy: Arc::new(ProxySettings::default()),
        rule_path: s.path.path.clone(),
        path_type: "Prefix",
        ingress: Arc::new(ObjRef::new("HTTPRoute", "default", &format!("r{id}"))),
        labels: RouteLabels::none(),
        canary: None,
        affinity: None,
        order,
    }
}

#[derive(Debug, Clone)]
struct Req {
    path: String,
    method: http::Method,
    headers: Vec<(&'static str, &'static str)>,
    query: String,
}

fn request() -> impl Strategy<Value = Req> {
    let path = prop_oneof![
        6 => (segments(5), prop::bool::weighted(0.2)).prop_map(|(p, slash)| if p.is_empty() || slash { format!("{p}/") } else { p }),
        1 => Just(String::new()),
        1 => "[a/.b]{0,6}",
    ];
    let method = prop::sample::select(vec![http::Method::GET, http::Method::POST, http::Method::PUT]);
    let header = (prop::sample::select(vec!["x-a", "x-b"]), prop::sample::select(vec!["1", "2"]));
    let query = prop::sample::select(vec!["", "q=1", "q=2&r=1", "r=2&q=1", "r=1"]);
    (path, method, prop::collection::vec(header, 0..3), query).prop_map(|(path, method, headers, query)| Req { path, method, headers, query: query.into() })
}

fn ids(r: Option<&Route>) -> Option<usize> {
    r.map(|r| r.id)
}

/// Checks, for every request, that the index (forced on, whatever the host's size), the host
/// as built (`find`) and the scan agree, by route and by path alone.
fn agree(vhost: &VirtualHost, reqs: &[Req]) -> Result<(), TestCaseError> {
    let forced = RouteIndex::build_scanning_below(&vhost.routes, 0);
    prop_assert!(forced.indexes(&vhost.routes));
    for q in reqs {
        let mut headers = http::HeaderMap::new();
        for (n, v) in &q.headers {
            headers.append(http::HeaderName::from_static(n), v.parse().unwrap());
        }
        let facts = RequestFacts { path: &q.path, method: &q.method, headers: &headers, query: &q.query };
        let linear = ids(vhost.find_linear(&facts));
        prop_assert_eq!(ids(forced.first(&vhost.routes, &q.path, |r| r.matches.matches(&facts))), linear, "index, {:?}", q);
        prop_assert_eq!(ids(vhost.find(&facts)), linear, "find, {:?}", q);
        let by_path = ids(vhost.routes.iter().find(|r| r.matches.path.matches(&q.path)));
        prop_assert_eq!(ids(forced.first(&vhost.routes, &q.path, |r| r.matches.path.matches(&q.path))), by_path, "index by path, {:?}", q);
        prop_assert_eq!(ids(vhost.find_path(&q.path)), by_path, "find_path, {:?}", q);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    /// Sorted as compile sorts them (Ingress or Gateway API precedence), or left as generated:
    /// the index keeps whatever order the routes are in.
    #[test]
    fn index_agrees_with_the_scan(specs in prop::collection::vec(spec(), 0..48), order in 0u8..3, reqs in prop::collection::vec(request(), 24)) {
        let backend = Arc::new(Backend::new(0, "default", "web", "80", vec!["127.0.0.1:9".parse().unwrap()], None));
        let routes = specs.iter().enumerate().map(|(i, s)| route(i, s, &backend)).collect();
        let mut vhost = VirtualHost { name: "idx.test".into(), routes, gateway: order == 1, ..Default::default() };
        if order < 2 {
            vhost.sort_routes();
        } else {
            vhost.index = Arc::new(RouteIndex::build(&vhost.routes));
        }
        agree(&vhost, &reqs)?;
    }

    /// A host whose routes changed after its index was built is scanned, not misrouted.
    #[test]
    fn a_stale_index_is_not_used(specs in prop::collection::vec(spec(), 9..24), reqs in prop::collection::vec(request(), 8)) {
        let backend = Arc::new(Backend::new(0, "default", "web", "80", vec!["127.0.0.1:9".parse().unwrap()], None));
        let mut vhost = VirtualHost { name: "idx.test".into(), routes: specs.iter().enumerate().map(|(i, s)| route(i, s, &backend)).collect(), ..Default::default() };
        vhost.sort_routes();
        prop_assert!(vhost.index.indexes(&vhost.routes));
        vhost.routes.remove(0);
        prop_assert!(!vhost.index.indexes(&vhost.routes));
        agree(&vhost, &reqs)?;
    }
}

// -------------------------------------------------------------------------------------------
// Through compile: generated Ingresses and HTTPRoutes on shared hosts.

const TYPES: &[&str] = &["Prefix", "Exact", "ImplementationSpecific"];

#[derive(Debug, Clone)]
struct IngSpec {
    regex: bool,
    paths: Vec<(String, &'static str)>,
}

fn ing_spec() -> impl Strategy<Value = IngSpec> {
    let path = (segments(4), any::<bool>()).prop_map(|(p, slash)| if p.is_empty() || slash { format!("{p}/") } else { p });
    (prop::bool::weighted(0.15), prop::collection::vec((path, prop::sample::select(TYPES)), 1..12)).prop_map(|(regex, paths)| IngSpec { regex, paths })
}

#[derive(Debug, Clone)]
struct RuleSpec {
    path: (&'static str, String),
    headers: Vec<(&'static str, &'static str)>,
    method: Option<&'static str>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let path = prop_oneof![
        4 => segments(4).prop_map(|p| ("PathPrefix", if p.is_empty() { "/".to_string() } else { p })),
        2 => segments(4).prop_map(|p| ("Exact", if p.is_empty() { "/".to_string() } else { p })),
        1 => prop::sample::select(vec!["/a/[a-z]+", "/[ab]+", ".*b", "/a.*"]).prop_map(|p| ("RegularExpression", p.to_string())),
    ];
    let header = (prop::sample::select(vec!["x-a", "x-b"]), prop::sample::select(vec!["1", "2"]));
    (path, prop::collection::vec(header, 0..2), prop::sample::select(vec![None, Some("GET"), Some("POST")]))
        .prop_map(|(path, mut headers, method)| {
            headers.dedup_by_key(|h| h.0);
            RuleSpec { path, headers, method }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    /// `shared`: the Gateway listens on an Ingress port too, so its routes join the Ingress
    /// host (one host, Gateway API precedence over both).
    fn compiled_hosts_agree_with_the_scan(ings in prop::collection::vec(ing_spec(), 1..5), rules in prop::collection::vec(rule_spec(), 0..24), shared in any::<bool>(), reqs in prop::collection::vec(request(), 24)) {
        use common::gateway::*;
        use serde_json::json;
        let mut docs = vec![common::backend_yaml("default", "web", &["127.0.0.1:9".parse().unwrap()])];
        for (n, s) in ings.iter().enumerate() {
            let mut ing = common::Ingress::new("default", &format!("i{n}")).created(&format!("2020-01-0{}T00:00:00Z", n + 1));
            if s.regex {
                ing = ing.annotation("nginx.ingress.kubernetes.io/use-regex", "true");
            }
            for (p, t) in &s.paths {
                ing = ing.host_path("idx.test", p, t, "web", 80);
            }
            docs.push(ing.to_yaml());
        }
        if !rules.is_empty() {
            docs.push(gateway_class("vestibule", CONTROLLER));
            docs.push(gateway("default", "gw", "vestibule", vec![listener("http", 80, "HTTP", json!({}))]));
            for (n, chunk) in rules.chunks(6).enumerate() {
                let rules: Vec<_> = chunk.iter().map(|r| {
                    let mut m = json!({"path": {"type": r.path.0, "value": r.path.1}, "headers": r.headers.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()});
                    if let Some(method) = r.method {
                        m["method"] = json!(method);
                    }
                    json!({"matches": [m], "backendRefs": [backend_ref("web", 1)]})
                }).collect();
                docs.push(route("HTTPRoute", "default", &format!("r{n}"), "2021-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "hostnames": ["idx.test"], "rules": rules})));
            }
        }
        let mut settings = common::compile_settings();
        if shared {
            let addr = "127.0.0.1:80".parse().unwrap();
            settings.listeners.push(vestibule::config::ListenerSpec { name: "http".into(), addr, protocol: vestibule::config::ListenerProtocol::Http, proxy_protocol: false });
        }
        let c = vestibule::compile::compile(&common::store_of(&common::manifest(docs)), &settings);
        let mut hosts = 0;
        if shared && !rules.is_empty() {
            let merged = c.config.ports.get(&80).and_then(|t| t.vhost("idx.test"));
            prop_assert!(merged.is_some_and(|v| v.gateway && v.routes.iter().any(|r| r.ingress.kind == "Ingress")), "one host for both");
        }
        for vhost in c.config.vhosts() {
            prop_assert!(vhost.routes.len() < vestibule::config::index::SCAN_BELOW || vhost.index.indexes(&vhost.routes), "{} is indexed", vhost.name);
            hosts += 1;
            agree(vhost, &reqs)?;
        }
        prop_assert!(hosts >= 1);
    }
}
