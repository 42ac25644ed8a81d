//! Table-driven tests of the filter mapping: Gateway API filters in, `config::Filter`s (or the
//! problem and its field) out.

use super::*;
use crate::config::cors::OriginPattern;

fn prefix(p: &str) -> PathMatch {
    PathMatch { path: p.trim_end_matches('/').to_string(), kind: PathKind::Prefix, regex: None }
}

fn exact(p: &str) -> PathMatch {
    PathMatch { path: p.to_string(), kind: PathKind::Exact, regex: None }
}

fn filters(yaml: &str) -> Vec<gw::HTTPRouteFilter> {
    serde_saphyr::from_str(yaml).unwrap()
}

fn mirror_backend() -> Arc<Backend> {
    Arc::new(Backend::new(7, "ns", "mirror", "80", vec!["127.0.0.1:9".parse().unwrap()], None))
}

fn map(yaml: &str, matched: &PathMatch) -> Result<Vec<Filter>, FilterProblem> {
    let mut resolve = |r: &gw::BackendRef, field: &str| -> Result<Arc<Backend>, FilterProblem> {
        if r.name == "missing" {
            Err(FilterProblem { field: field.to_string(), message: "no such Service".into(), reason: "BackendNotFound" })
        } else {
            Ok(mirror_backend())
        }
    };
    http_filters(&filters(yaml), "spec.rules[0].filters", matched, &mut resolve)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

fn hn(s: &str) -> HeaderName {
    HeaderName::from_bytes(s.as_bytes()).unwrap()
}

#[test]
fn header_modifiers() {
    let got = map(
        r#"
- type: RequestHeaderModifier
  requestHeaderModifier:
    set: [{name: X-Header-Set, value: set-overwrites-values}]
    add: [{name: X-Header-Add, value: add-appends-values}]
    remove: [X-Header-Remove]
- type: ResponseHeaderModifier
  responseHeaderModifier:
    set: [{name: X-Header-Set, value: v}]
"#,
        &prefix("/"),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            Filter::RequestHeaderEdit(Arc::new(HeaderEdit { set: vec![(hn("x-header-set"), hv("set-overwrites-values"))], add: vec![(hn("x-header-add"), hv("add-appends-values"))], remove: vec![hn("x-header-remove")] })),
            Filter::ResponseHeaderEdit(Arc::new(HeaderEdit { set: vec![(hn("x-header-set"), hv("v"))], ..Default::default() })),
        ]
    );
}

#[test]
fn redirects() {
    let cases: &[(&str, Redirect)] = &[
        ("{}", Redirect { scheme: None, hostname: None, port: None, path: None, status: 302 }),
        ("{scheme: https, statusCode: 301}", Redirect { scheme: Some("https".into()), hostname: None, port: None, path: None, status: 301 }),
        ("{hostname: Example.ORG, port: 8443, statusCode: 308}", Redirect { scheme: None, hostname: Some("example.org".into()), port: Some(8443), path: None, status: 308 }),
        ("{path: {type: ReplaceFullPath, replaceFullPath: /full}}", Redirect { scheme: None, hostname: None, port: None, path: Some(PathRewrite::Full("/full".into())), status: 302 }),
        (
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /new/}, statusCode: 303}",
            Redirect { scheme: None, hostname: None, port: None, path: Some(PathRewrite::Prefix { matched: "/old".into(), replacement: "/new".into() }), status: 303 },
        ),
        ("{statusCode: 307}", Redirect { scheme: None, hostname: None, port: None, path: None, status: 307 }),
    ];
    for (spec, want) in cases {
        let yaml = format!("- type: RequestRedirect\n  requestRedirect: {spec}\n");
        assert_eq!(map(&yaml, &prefix("/old/")).unwrap(), vec![Filter::Redirect(Box::new(want.clone()))], "{spec}");
    }
}

#[test]
fn rewrites() {
    let got = map("- type: URLRewrite\n  urlRewrite: {hostname: one.example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}\n", &prefix("/prefix/one")).unwrap();
    let want = UrlRewrite { hostname: Some(hv("one.example.org")), path: Some(PathRewrite::Prefix { matched: "/prefix/one".into(), replacement: "/one".into() }) };
    assert_eq!(got, vec![Filter::UrlRewrite(Box::new(want))]);
}

#[test]
fn replace_prefix_match_paths() {
    // The spec's table, plus the conformance suite's cases.
    let cases = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
        ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
        ("/strip-prefix", "/strip-prefix", "/", "/"),
        ("/anything/x", "/", "/prefix", "/prefix/anything/x"),
    ];
    for (path, matched, replacement, want) in cases {
        let yaml = format!("- type: URLRewrite\n  urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: \"{replacement}\"}}}}\n");
        let got = map(&yaml, &prefix(matched)).unwrap();
        let Filter::UrlRewrite(r) = &got[0] else { panic!("{got:?}") };
        assert_eq!(r.path.as_ref().unwrap().apply(path), want, "{path} {matched} {replacement}");
    }
}

#[test]
fn mirrors_and_fractions() {
    let m = |spec: &str| map(&format!("- type: RequestMirror\n  requestMirror: {spec}\n"), &prefix("/"));
    let got = m("{backendRef: {name: mirror, port: 80}}").unwrap();
    assert_eq!(got, vec![Filter::Mirror(Arc::new(Mirror { backend: mirror_backend(), numerator: 1, denominator: 1 }))]);
    let Filter::Mirror(p) = &m("{backendRef: {name: mirror, port: 80}, percent: 35}").unwrap()[0] else { panic!() };
    assert_eq!((p.numerator, p.denominator), (35, 100));
    let Filter::Mirror(f) = &m("{backendRef: {name: mirror, port: 80}, fraction: {numerator: 1, denominator: 3}}").unwrap()[0] else { panic!() };
    assert_eq!((f.numerator, f.denominator), (1, 3));
    let Filter::Mirror(f) = &m("{backendRef: {name: mirror, port: 80}, fraction: {numerator: 20}}").unwrap()[0] else { panic!() };
    assert_eq!((f.numerator, f.denominator), (20, 100), "the denominator defaults to 100");
    let e = m("{backendRef: {name: missing, port: 80}}").unwrap_err();
    assert_eq!((e.field.as_str(), e.reason), ("spec.rules[0].filters[0].requestMirror.backendRef", "BackendNotFound"));
}

#[test]
fn cors_gateway_semantics() {
    let got = map(
        r#"
- type: CORS
  cors:
    allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
    allowMethods: [GET, OPTIONS]
    allowHeaders: [x-header-1, x-header-2]
    exposeHeaders: [x-header-3, x-header-4]
    allowCredentials: true
    maxAge: 3600
"#,
        &prefix("/"),
    )
    .unwrap();
    let Filter::Cors(p) = &got[0] else { panic!("{got:?}") };
    assert!(p.gateway && p.allow_credentials);
    assert_eq!((p.allow_methods.as_str(), p.allow_headers.as_str(), p.expose_headers.as_str(), p.max_age), ("GET, OPTIONS", "x-header-1, x-header-2", "x-header-3, x-header-4", 3600));
    assert_eq!(p.allow_origin(Some("https://xpto.www.bar.com")), Some("https://xpto.www.bar.com"), "a wildcard covers any number of labels");
    assert_eq!(p.allow_origin(Some("https://www.foo.com")), Some("https://www.foo.com"));
    assert_eq!(p.allow_origin(Some("https://foobar.com")), None);
    let CorsOrigins::List(l) = &p.origins else { panic!() };
    assert_eq!(l[1], OriginPattern { prefix: "https://".into(), rest: ".bar.com".into(), wildcard: true, multi_label: true });
    let Filter::Cors(d) = &map("- type: CORS\n  cors: {allowOrigins: ['*'], allowMethods: ['*']}\n", &prefix("/")).unwrap()[0] else { panic!() };
    assert_eq!((d.max_age, d.allow_credentials, &d.origins, d.allow_methods.as_str()), (5, false, &CorsOrigins::Any, "*"), "maxAge defaults to 5");
}

#[test]
fn problems_name_their_field() {
    let cases: &[(&str, &PathMatch, &str, &str)] = &[
        ("- type: ExtensionRef\n  extensionRef: {group: example.com, kind: Foo, name: bar}\n", &prefix("/"), "spec.rules[0].filters[0].extensionRef", "not supported"),
        ("- type: Frobnicate\n", &prefix("/"), "spec.rules[0].filters[0].type", "not supported"),
        ("- type: RequestRedirect\n", &prefix("/"), "spec.rules[0].filters[0].requestRedirect", "required"),
        ("- type: RequestRedirect\n  requestRedirect: {statusCode: 304}\n", &prefix("/"), "spec.rules[0].filters[0].requestRedirect.statusCode", "301, 302"),
        ("- type: RequestRedirect\n  requestRedirect: {scheme: ftp}\n", &prefix("/"), "spec.rules[0].filters[0].requestRedirect.scheme", "http or https"),
        ("- type: RequestRedirect\n  requestRedirect: {port: 70000}\n", &prefix("/"), "spec.rules[0].filters[0].requestRedirect.port", "65535"),
        ("- type: RequestRedirect\n  requestRedirect: {hostname: '*.x.com'}\n", &prefix("/"), "spec.rules[0].filters[0].requestRedirect.hostname", "hostname"),
        ("- type: URLRewrite\n  urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}\n", &exact("/a"), "spec.rules[0].filters[0].urlRewrite.path.type", "PathPrefix"),
        ("- type: URLRewrite\n  urlRewrite: {path: {type: ReplaceFullPath}}\n", &prefix("/"), "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath", "required"),
        ("- type: URLRewrite\n  urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: 'no-slash'}}\n", &prefix("/"), "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath", "absolute path"),
        ("- type: RequestHeaderModifier\n  requestHeaderModifier: {set: [{name: 'bad name', value: v}]}\n", &prefix("/"), "spec.rules[0].filters[0].requestHeaderModifier.set[0].name", "header name"),
        ("- type: RequestHeaderModifier\n  requestHeaderModifier: {add: [{name: A, value: '1'}, {name: a, value: '2'}]}\n", &prefix("/"), "spec.rules[0].filters[0].requestHeaderModifier.add[1].name", "twice"),
        ("- type: RequestHeaderModifier\n  requestHeaderModifier: {}\n- type: RequestHeaderModifier\n  requestHeaderModifier: {}\n", &prefix("/"), "spec.rules[0].filters[1].type", "only once"),
        ("- type: URLRewrite\n  urlRewrite: {}\n- type: RequestRedirect\n  requestRedirect: {}\n", &prefix("/"), "spec.rules[0].filters[1].type", "both"),
        ("- type: RequestMirror\n  requestMirror: {backendRef: {name: m}, percent: 101}\n", &prefix("/"), "spec.rules[0].filters[0].requestMirror.percent", "0 to 100"),
        ("- type: RequestMirror\n  requestMirror: {backendRef: {name: m}, fraction: {numerator: 5, denominator: 4}}\n", &prefix("/"), "spec.rules[0].filters[0].requestMirror.fraction", "numerator"),
        ("- type: CORS\n  cors: {allowOrigins: ['ftp://x']}\n", &prefix("/"), "spec.rules[0].filters[0].cors.allowOrigins[0]", "http(s)"),
        ("- type: CORS\n  cors: {allowMethods: ['*', GET]}\n", &prefix("/"), "spec.rules[0].filters[0].cors.allowMethods", "only entry"),
    ];
    for (yaml, matched, field, words) in cases {
        let e = map(yaml, matched).unwrap_err();
        assert_eq!(e.field, *field, "{yaml}");
        assert!(e.message.contains(words), "{yaml}: {}", e.message);
        assert_eq!(e.reason, UNSUPPORTED, "{yaml}");
    }
    assert_eq!(unusable(), vec![Filter::LocationDenied { status: 500 }]);
}

#[test]
fn grpc_filter_types() {
    let f: Vec<gw::GRPCRouteFilter> = serde_saphyr::from_str(
        "- type: RequestHeaderModifier\n  requestHeaderModifier: {add: [{name: x-a, value: '1'}]}\n- type: RequestMirror\n  requestMirror: {backendRef: {name: m, port: 80}}\n",
    )
    .unwrap();
    let mut resolve = |_: &gw::BackendRef, _: &str| Ok(mirror_backend());
    let got = grpc_filters(&f, "spec.rules[0].filters", &mut resolve).unwrap();
    assert!(matches!(&got[..], [Filter::RequestHeaderEdit(_), Filter::Mirror(_)]), "{got:?}");
    let bad: Vec<gw::GRPCRouteFilter> = serde_saphyr::from_str("- type: ExtensionRef\n").unwrap();
    assert_eq!(grpc_filters(&bad, "spec.rules[2].filters", &mut resolve).unwrap_err().field, "spec.rules[2].filters[0].extensionRef");
}

#[test]
fn durations() {
    let ok = [("0s", 0), ("1s", 1000), ("500ms", 500), ("1m30s", 90_000), ("1h", 3_600_000), ("1h2m3s4ms", 3_723_004), ("99999ms", 99_999)];
    for (s, ms) in ok {
        assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
    }
    for s in ["", "1", "1.5s", "100000s", "1d", "s", "1s1s1s1s1s", "-1s", "1 s", "1S"] {
        assert!(parse_duration(s).is_err(), "{s}");
    }
}

#[test]
fn timeouts_into_proxy_settings() {
    let t = |request: Option<&str>, backend: Option<&str>| gw::HTTPRouteTimeouts { request: request.map(Into::into), backend_request: backend.map(Into::into) };
    let mut p = ProxySettings::default();
    apply_timeouts(&t(Some("10s"), Some("2s")), "spec.rules[0].timeouts", &mut p).unwrap();
    assert_eq!((p.request_timeout, p.try_timeout), (Some(Duration::from_secs(10)), Some(Duration::from_secs(2))));
    apply_timeouts(&t(Some("0s"), None), "spec.rules[0].timeouts", &mut p).unwrap();
    assert_eq!(p.request_timeout, None, "0s is no timeout");
    let mut q = ProxySettings::default();
    apply_timeouts(&t(Some("0s"), Some("1h")), "f", &mut q).unwrap();
    assert_eq!(q.try_timeout, Some(Duration::from_secs(3600)), "no request limit: any backendRequest");
    let e = apply_timeouts(&t(Some("1s"), Some("2s")), "spec.rules[1].timeouts", &mut q).unwrap_err();
    assert_eq!(e.field, "spec.rules[1].timeouts.backendRequest");
    let e = apply_timeouts(&t(Some("soon"), None), "spec.rules[1].timeouts", &mut q).unwrap_err();
    assert_eq!(e.field, "spec.rules[1].timeouts.request");
}
