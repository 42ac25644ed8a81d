//! Bounds on state that grows with outside input, driven end to end (docs/limits.md lists every
//! bound and the test that reaches it).

mod common;

use std::time::Duration;

use common::*;

async fn metrics(h: &Harness) -> String {
    let resp = h.client.get(format!("http://{}/metrics", h.running.healthz)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The `ingress` label values of the request counter (requests no rule matched have none).
fn counted_ingresses(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("nginx_ingress_controller_requests{"))
        .filter_map(|l| l.split("ingress=\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect()
}

/// Preview environments come and go under new names: the statistics of Ingresses that are gone
/// leave /metrics, so the series (and the map behind them) track what is live, not history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_statistics_of_removed_ingresses_leave_metrics() {
    init_tracing();
    let app = echo("app").await;
    let backend = backend_yaml("default", "app", &[app.addr]);
    let h = start(&backend).await;
    let rounds = 20;
    for i in 0..rounds {
        let ing = Ingress::new("default", &format!("preview-{i}")).host_path(&format!("pr-{i}.example.com"), "/", "Prefix", "app", 80);
        h.write("preview.yaml", &manifest([ing.to_yaml()]));
        h.wait_route(&format!("pr-{i}.example.com"), "/", (200, Some("app")), Duration::from_secs(10)).await;
        // Scraped after each round: counted so far is only what is live now.
        let seen = counted_ingresses(&metrics(&h).await);
        assert!(seen.len() <= 2, "round {i}: the statistics of gone Ingresses stayed: {seen:?}");
    }
    // One more change settles any request that was still in flight on an older configuration.
    h.write("other.yaml", &manifest([Ingress::new("default", "other").host_path("other.example.com", "/", "Prefix", "app", 80).to_yaml()]));
    h.wait_route("other.example.com", "/", (200, Some("app")), Duration::from_secs(10)).await;
    let seen = counted_ingresses(&metrics(&h).await);
    let last = format!("preview-{}", rounds - 1);
    assert!(seen.contains(&last), "the live Ingress keeps its series: {seen:?}");
    assert!(seen.iter().all(|n| n == &last || n == "other"), "only live Ingresses are counted: {seen:?}");
}
