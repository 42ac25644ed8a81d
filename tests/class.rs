//! Which Ingresses are Vestibule's: `spec.ingressClassName` and IngressClasses, the legacy
//! `kubernetes.io/ingress.class` annotation, class-less Ingresses and the default class, with
//! default and custom class flags; through real sockets, and through `compile` directly.

mod common;


use clap::Parser;
use common::*;
use vestibule::compile::{self, Reason, Settings};
use vestibule::store::ObjRef;

const OURS: &str = "vestibule.dev/ingress-controller";
const NGINX: &str = "k8s.io/ingress-nginx";

fn ingress_class(name: &str, controller: &str, default: bool) -> String {
    let class = IngressClass::new(name, controller);
    format!("{}---\n", if default { class.default_class() } else { class }.to_yaml())
}

/// An Ingress for `host` → Service `web`, with an optional `ingressClassName` and legacy annotation.
fn ingress(name: &str, host: &str, class_name: Option<&str>, annotation: Option<&str>) -> String {
    let mut ing = Ingress::new("default", name).created("2020-01-01T00:00:00Z");
    if let Some(a) = annotation {
        ing = ing.legacy_class(a);
    }
    if let Some(c) = class_name {
        ing = ing.class(c);
    }
    format!("{}---\n", ing.host_path(host, "/", "Prefix", "web", 80).to_yaml())
}

/// Asserts, for every (host, served?) pair, that the host is served by `web` or answers 404.
async fn expect_served(h: &Harness, cases: &[(&str, bool)]) {
    let mut failures = Vec::new();
    for (host, served) in cases {
        let got = h.route(host, "/").await;
        let want = if *served { (200, Some("web".to_string())) } else { (404, None) };
        if got != want {
            failures.push(format!("{host}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "class mismatches:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_class_name_selects_by_ingress_class_controller_or_by_our_name() {
    init_tracing();
    let web = echo("web").await;
    let m = [
        backend_yaml("default", "web", &[web.addr]),
        "\n---\n".into(),
        ingress_class("ours", OURS, false),
        ingress_class("nginx", NGINX, false),
        ingress("by-class", "ours.example.com", Some("ours"), None),
        ingress("foreign", "nginx.example.com", Some("nginx"), None),
        ingress("by-name", "name.example.com", Some("vestibule"), None),
        ingress("unknown", "unknown.example.com", Some("traefik"), None),
    ]
    .concat();
    let h = start(&m).await;
    expect_served(&h, &[("ours.example.com", true), ("nginx.example.com", false), ("name.example.com", true), ("unknown.example.com", false)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_class_named_like_us_but_of_another_controller_is_not_ours() {
    init_tracing();
    let web = echo("web").await;
    // The IngressClass called "vestibule" exists and belongs to another controller: the
    // Ingresses that name it are that controller's.
    let m = [
        backend_yaml("default", "web", &[web.addr]),
        "\n---\n".into(),
        ingress_class("vestibule", NGINX, false),
        ingress("taken", "taken.example.com", Some("vestibule"), None),
    ]
    .concat();
    let h = start(&m).await;
    expect_served(&h, &[("taken.example.com", false)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_annotation_wins_over_the_field() {
    init_tracing();
    let web = echo("web").await;
    let m = [
        backend_yaml("default", "web", &[web.addr]),
        "\n---\n".into(),
        ingress_class("ours", OURS, false),
        ingress_class("nginx", NGINX, false),
        ingress("ann-ours", "ann-ours.example.com", Some("nginx"), Some("vestibule")),
        ingress("ann-nginx", "ann-nginx.example.com", Some("ours"), Some("nginx")),
        ingress("ann-only", "ann-only.example.com", None, Some("vestibule")),
        ingress("ann-other", "ann-other.example.com", None, Some("nginx")),
    ]
    .concat();
    // Even where class-less Ingresses are served, an annotation naming another class is not ours.
    let h = start(&m).await;
    expect_served(
        &h,
        &[("ann-ours.example.com", true), ("ann-nginx.example.com", false), ("ann-only.example.com", true), ("ann-other.example.com", false)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_less_ingresses_follow_watch_without_class_and_the_default_class() {
    init_tracing();
    let web = echo("web").await;
    let base = [backend_yaml("default", "web", &[web.addr]), "\n---\n".into(), ingress("plain", "plain.example.com", None, None), ingress("classed", "classed.example.com", Some("vestibule"), None)].concat();

    // The serve default watches class-less Ingresses.
    assert!(vestibule::serve::ServeOptions::default().watch_without_class);
    let h = start(&base).await;
    expect_served(&h, &[("plain.example.com", true), ("classed.example.com", true)]).await;

    let h = start_with(&base, |o| o.watch_without_class = false).await;
    expect_served(&h, &[("plain.example.com", false), ("classed.example.com", true)]).await;

    // Our IngressClass marked as the cluster default makes class-less Ingresses ours again.
    let with_default = format!("{base}{}", ingress_class("ours", OURS, true));
    let h = start_with(&with_default, |o| o.watch_without_class = false).await;
    expect_served(&h, &[("plain.example.com", true), ("classed.example.com", true)]).await;

    // Another controller's default class does not.
    let other_default = format!("{base}{}{}", ingress_class("ours", OURS, false), ingress_class("nginx", NGINX, true));
    let h = start_with(&other_default, |o| o.watch_without_class = false).await;
    expect_served(&h, &[("plain.example.com", false), ("classed.example.com", true)]).await;

    // The annotation must say "true".
    let not_true = format!("{base}{}---\n", IngressClass::new("ours", OURS).annotation("ingressclass.kubernetes.io/is-default-class", "false").to_yaml());
    let h = start_with(&not_true, |o| o.watch_without_class = false).await;
    expect_served(&h, &[("plain.example.com", false)]).await;

    // Marking our class default later, in a new file, applies live.
    h.write("class.yaml", &ingress_class("ours-default", OURS, true));
    h.wait_route("plain.example.com", "/", (200, Some("web")), std::time::Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_ingress_class_and_controller_class_flags() {
    init_tracing();
    let web = echo("web").await;
    let m = [
        backend_yaml("default", "web", &[web.addr]),
        "\n---\n".into(),
        ingress_class("edge-class", "example.com/edge", false),
        ingress_class("vestibule-class", OURS, false),
        ingress("by-name", "name.example.com", Some("edge"), None),
        ingress("by-class", "class.example.com", Some("edge-class"), None),
        ingress("by-annotation", "ann.example.com", None, Some("edge")),
        ingress("default-name", "default-name.example.com", Some("vestibule"), None),
        ingress("default-class", "default-class.example.com", Some("vestibule-class"), None),
        ingress("default-annotation", "default-ann.example.com", None, Some("vestibule")),
        ingress("plain", "plain.example.com", None, None),
    ]
    .concat();
    let h = start_with(&m, |o| {
        // The flags as a user passes them.
        let cli = vestibule::cli::Cli::try_parse_from([
            "vestibule",
            "serve",
            "--manifests",
            o.manifests[0].to_str().unwrap(),
            "--ingress-class",
            "edge",
            "--controller-class",
            "example.com/edge",
            "--watch-ingress-without-class=false",
        ])
        .expect("flags parse");
        let vestibule::cli::Command::Serve(args) = cli.command else { panic!("serve") };
        let parsed = args.into_options();
        assert_eq!((parsed.ingress_class.as_str(), parsed.controller_class.as_str(), parsed.watch_without_class), ("edge", "example.com/edge", false));
        o.ingress_class = parsed.ingress_class;
        o.controller_class = parsed.controller_class;
        o.watch_without_class = parsed.watch_without_class;
    })
    .await;
    expect_served(
        &h,
        &[
            ("name.example.com", true),
            ("class.example.com", true),
            ("ann.example.com", true),
            ("default-name.example.com", false),
            ("default-class.example.com", false),
            ("default-ann.example.com", false),
            ("plain.example.com", false),
        ],
    )
    .await;
}

// ---- compile, directly ----


fn settings() -> Settings {
    compile_settings()
}

#[test]
fn compile_reports_ignored_ingresses_by_name() {
    let text = [
        format!("{}---\n", Service::new("", "web").port("http", 80).to_yaml()),
        ingress_class("nginx", NGINX, false),
        ingress("mine", "mine.example.com", Some("vestibule"), None),
        ingress("foreign", "foreign.example.com", Some("nginx"), None),
        ingress("annotated", "annotated.example.com", None, Some("nginx")),
        ingress("plain", "plain.example.com", None, None),
    ]
    .concat();
    let store = store_of(&text);

    let compiled = compile::compile(&store, &settings());
    let (config, diags) = (&compiled.config, &compiled.diagnostics);
    let ignored: Vec<&ObjRef> = diags.iter().filter(|d| d.reason == Reason::ClassIgnored).map(|d| &d.object).collect();
    assert_eq!(ignored, vec![&ObjRef::new("Ingress", "default", "annotated"), &ObjRef::new("Ingress", "default", "foreign")], "{diags:#?}");
    let foreign = diags.iter().find(|d| d.object.name == "foreign").unwrap();
    assert!(foreign.message.contains("nginx"), "the reason names the other class: {foreign}");
    assert!(foreign.to_string().contains("Ingress default/foreign"), "{foreign}");
    assert!(config.vhost("mine.example.com").is_some_and(|v| v.name == "mine.example.com"));
    assert!(config.vhost("foreign.example.com").is_none_or(|v| v.name != "foreign.example.com"), "an ignored Ingress adds no host");
    // The status says the same, for the status writer, Events and explain to read.
    let mine = compiled.status.ingress("default", "mine").expect("every Ingress has a status");
    assert!(mine.is_ours(), "{mine:?}");
    assert_eq!(mine.hosts.iter().collect::<Vec<_>>(), vec!["mine.example.com"], "{mine:?}");
    let foreign = compiled.status.ingress("default", "foreign").expect("every Ingress has a status");
    assert!(foreign.not_ours().is_some_and(|why| why.contains("nginx")), "{foreign:?}");
    assert!(foreign.hosts.is_empty(), "an ignored Ingress serves no host: {foreign:?}");
    assert_eq!(compiled.status.ingresses.len(), store.ingresses.len());

    let mut strict = settings();
    strict.watch_without_class = false;
    let compiled = compile::compile(&store, &strict);
    let diags = &compiled.diagnostics;
    assert!(
        diags.iter().any(|d| d.reason == Reason::ClassIgnored && d.object == ObjRef::new("Ingress", "default", "plain")),
        "a class-less Ingress is ignored without --watch-ingress-without-class: {diags:#?}"
    );
    assert!(!diags.iter().any(|d| d.reason == Reason::ClassIgnored && d.object.name == "mine"), "{diags:#?}");
    assert!(!compiled.status.owns_ingress(&("default".into(), "plain".into())));
}

#[test]
fn compile_reports_the_newer_ingress_in_a_path_conflict() {
    // The newer Ingress sorts first by name: age, not name, decides. `newer_type` is the
    // pathType of its path.
    let text = |newer_type: &str| {
        manifest([
            Service::new("", "web").port("http", 80).to_yaml(),
            Ingress::new("", "a-newer").created("2023-05-01T00:00:00Z").host_path("shared.example.com", "/api", newer_type, "web-new", 80).to_yaml(),
            Ingress::new("", "z-older").created("2021-05-01T00:00:00Z").host_path("shared.example.com", "/api", "Prefix", "web", 80).to_yaml(),
        ])
    };
    let store = store_of(&text("Prefix"));
    let compile::Compiled { config, diagnostics: diags, status } = compile::compile(&store, &settings());
    let conflicts: Vec<_> = diags.iter().filter(|d| d.reason == Reason::PathConflict).collect();
    assert_eq!(conflicts.len(), 1, "{diags:#?}");
    let c = conflicts[0];
    assert_eq!(c.object, ObjRef::new("Ingress", "default", "a-newer"));
    assert_eq!(c.field, "spec.rules[0].http.paths[0]");
    assert!(c.message.contains("z-older"), "the message names the winner: {c}");
    let vestibule::config::Target::Route { route, .. } = config.route_path("shared.example.com", "/api/x") else { panic!("the path routes") };
    assert_eq!(*route.ingress, ObjRef::new("Ingress", "default", "z-older"), "the older Ingress serves the path");
    assert_eq!(route.backend().service, "web");
    assert!(status.ingress("default", "a-newer").is_some_and(|s| s.is_ours() && s.hosts.is_empty()), "the loser serves no host: {status:?}");

    // A different pathType on the same path is no conflict.
    let diags = compile::compile(&store_of(&text("Exact")), &settings()).diagnostics;
    assert!(!diags.iter().any(|d| d.reason == Reason::PathConflict), "{diags:#?}");
}
