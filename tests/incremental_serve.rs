//! One change in `serve --manifests`: only the file written is read, only the host it touches
//! is compiled again, and every other host keeps serving from the same virtual host.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

fn app(name: &str, host: &str, path: &str, e: &Echo) -> String {
    let ing = Ingress::new("default", name).host_path(host, path, "Prefix", name, 80);
    format!("{}\n---\n{}", backend_yaml("default", name, &[e.addr]), ing.to_yaml())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_or_endpoint_change_recompiles_only_its_host() {
    init_tracing();
    let (one, two, moved) = (echo("one").await, echo("two").await, echo("moved").await);
    let h = start(&app("one", "one.test", "/", &one)).await;
    h.write("two.yaml", &app("two", "two.test", "/", &two));
    h.wait_route("two.test", "/", (200, Some("two")), Duration::from_secs(5)).await;
    let before = h.running.shared.config();

    // A new path on two.test: live, and one.test is still the very same virtual host.
    h.write("two.yaml", &app("two", "two.test", "/new", &two));
    // `/` matched `/new` too, so the change is live once `/` is gone.
    h.wait_route("two.test", "/", (404, None), Duration::from_secs(5)).await;
    assert_eq!(h.route("two.test", "/new").await, (200, Some("two".into())));
    let after = h.running.shared.config();
    assert!(Arc::ptr_eq(&before.exact["one.test"], &after.exact["one.test"]), "one.test was compiled again");
    assert!(!Arc::ptr_eq(&before.exact["two.test"], &after.exact["two.test"]));

    // The Service's endpoint moves to another backend: two.test follows, one.test untouched.
    let ing = Ingress::new("default", "two").host_path("two.test", "/new", "Prefix", "two", 80);
    h.write("two.yaml", &format!("{}\n---\n{}", backend_yaml("default", "two", &[moved.addr]), ing.to_yaml()));
    h.wait_route("two.test", "/new", (200, Some("moved")), Duration::from_secs(5)).await;
    let last = h.running.shared.config();
    assert!(Arc::ptr_eq(&before.exact["one.test"], &last.exact["one.test"]));
    assert_eq!(h.route("one.test", "/").await, (200, Some("one".into())));

    // What is served equals a full compile of the same objects.
    let snapshot = h.running.snapshot.load();
    let full = vestibule::compile::compile(&snapshot.store, &compile_settings());
    let shown = |c: &vestibule::config::Config| {
        let mut hosts: Vec<String> = c.exact.values().map(|v| format!("{} {:?}", v.name, v.routes.iter().map(|r| (&r.rule_path, &r.backend().endpoints)).collect::<Vec<_>>())).collect();
        hosts.sort();
        hosts
    };
    assert_eq!(shown(&last), shown(&full.config));
    assert_eq!(snapshot.diagnostics, full.diagnostics);
}
