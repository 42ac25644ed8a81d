//! HTTPRoutes served end to end in file mode: a GatewayClass of ours, a Gateway with an HTTP
//! listener on its own port, and routes by path, header, query and method to real backends.

mod common;

use std::time::Duration;

use common::gateway::*;
use common::*;
use serde_json::json;

/// GET on `port` with a Host header (and extra headers): the status and the answering service.
async fn get_on(client: &reqwest::Client, port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = client.get(format!("http://127.0.0.1:{port}{path}")).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let service = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string));
    (status, service)
}

#[tokio::test]
async fn an_httproute_routes_by_path_on_its_listener_port_only() {
    let (web, api) = (echo("web").await, echo("api").await);
    let port = free_port();
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "shop", "2024-01-01T00:00:00Z", json!({
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [backend_ref("api", 1)]},
                {"backendRefs": [backend_ref("web", 1)]},
            ],
        })),
        backend_yaml("default", "web", &[web.addr]),
        backend_yaml("default", "api", &[api.addr]),
    ]);
    let h = start(&manifests).await;
    let c = &h.client;
    assert_eq!(get_on(c, port, "shop.example.com", "/api/items", &[]).await, (200, Some("api".into())));
    assert_eq!(get_on(c, port, "shop.example.com", "/apiary", &[]).await, (200, Some("web".into())), "prefixes match whole segments");
    assert_eq!(get_on(c, port, "shop.example.com", "/", &[]).await, (200, Some("web".into())));
    assert_eq!(get_on(c, port, "other.example.com", "/api", &[]).await.0, 404, "another host");
    // The Ingress listener does not serve Gateway routes.
    assert_eq!(h.route("shop.example.com", "/api").await.0, 404);
}

#[tokio::test]
async fn headers_query_and_method_pick_the_route_by_precedence() {
    let (a, b, c_, d) = (echo("exact").await, echo("header").await, echo("query").await, echo("method").await);
    let port = free_port();
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "r", "2024-01-01T00:00:00Z", json!({
            "parentRefs": [{"name": "gw", "sectionName": "http"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "POST"}], "backendRefs": [backend_ref("method", 1)]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "queryParams": [{"name": "v", "value": "2"}]}], "backendRefs": [backend_ref("query", 1)]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "X-Env", "type": "RegularExpression", "value": "can(ary|dy)"}]}], "backendRefs": [backend_ref("header", 1)]},
                {"matches": [{"path": {"type": "Exact", "value": "/exact"}}], "backendRefs": [backend_ref("exact", 1)]},
            ],
        })),
        backend_yaml("default", "exact", &[a.addr]),
        backend_yaml("default", "header", &[b.addr]),
        backend_yaml("default", "query", &[c_.addr]),
        backend_yaml("default", "method", &[d.addr]),
    ]);
    let h = start(&manifests).await;
    let c = &h.client;
    assert_eq!(get_on(c, port, "x", "/exact", &[("x-env", "canary")]).await.1.as_deref(), Some("exact"), "an exact path first");
    assert_eq!(get_on(c, port, "x", "/a?v=2", &[("x-env", "candy")]).await.1.as_deref(), Some("header"), "a header match before a query match");
    assert_eq!(get_on(c, port, "x", "/a?v=2", &[("x-env", "canaryx")]).await.1.as_deref(), Some("query"), "regular expressions match the whole value");
    assert_eq!(get_on(c, port, "x", "/a?v=3", &[]).await.0, 404, "nothing else matches");
    let post = c.post(format!("http://127.0.0.1:{port}/a?v=2")).header("host", "x").header("x-env", "canary").send().await.unwrap();
    let body: serde_json::Value = post.json().await.unwrap();
    assert_eq!(body["service"], "method", "a method match ranks above header and query matches");
}

#[tokio::test]
async fn an_httproute_change_is_live_within_a_second() {
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    let port = free_port();
    let base = [
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        backend_yaml("default", "v1", &[v1.addr]),
        backend_yaml("default", "v2", &[v2.addr]),
    ];
    let r = |svc: &str| route("HTTPRoute", "default", "r", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [backend_ref(svc, 1)]}]}));
    let h = start(&manifest(base.iter().cloned().chain([r("v1")]))).await;
    assert_eq!(get_on(&h.client, port, "x", "/", &[]).await, (200, Some("v1".into())));
    // Load while the route changes: every request must succeed, on one backend or the other.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (h.client.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get_on(&client, port, "x", "/", &[]).await {
                    (200, Some(_)) => ok += 1,
                    other => failed.push(other),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.write("manifests.yaml", &manifest(base.iter().cloned().chain([r("v2")])));
    let started = std::time::Instant::now();
    loop {
        if get_on(&h.client, port, "x", "/", &[]).await == (200, Some("v2".into())) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the change was not live within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(ok > 0 && failed.is_empty(), "{ok} ok, failed: {failed:?}");
    }
}

#[tokio::test]
async fn ingress_and_httproute_share_the_ingress_port_with_ties_to_the_oldest() {
    let (ing, rt) = (echo("ing").await, echo("rt").await);
    let port = free_port();
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "older", "2019-01-01T00:00:00Z", json!({
            "parentRefs": [{"name": "gw"}], "hostnames": ["shop.example.com"],
            "rules": [{"matches": [{"path": {"value": "/cart"}}], "backendRefs": [backend_ref("rt", 1)]},
                      {"matches": [{"path": {"value": "/"}, "headers": [{"name": "x-beta", "value": "1"}]}], "backendRefs": [backend_ref("rt", 1)]}],
        })),
        Ingress::new("default", "shop").created("2020-01-01T00:00:00Z").host_path("shop.example.com", "/", "Prefix", "ing", 80).host_path("shop.example.com", "/cart", "Prefix", "ing", 80).to_yaml(),
        backend_yaml("default", "ing", &[ing.addr]),
        backend_yaml("default", "rt", &[rt.addr]),
    ]);
    let h = start_with(&manifests, |o| o.http_port = port).await;
    assert_eq!(h.running.http.port(), port);
    let c = &h.client;
    assert_eq!(get_on(c, port, "shop.example.com", "/cart/1", &[]).await.1.as_deref(), Some("rt"), "the HTTPRoute is older: it wins the tie");
    assert_eq!(get_on(c, port, "shop.example.com", "/", &[]).await.1.as_deref(), Some("ing"));
    assert_eq!(get_on(c, port, "shop.example.com", "/x", &[("x-beta", "1")]).await.1.as_deref(), Some("rt"), "a header match ranks above a bare prefix");
}

#[tokio::test]
async fn a_backend_ref_that_cannot_be_resolved_answers_500() {
    let web = echo("web").await;
    let port = free_port();
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "r", "2024-01-01T00:00:00Z", json!({
            "parentRefs": [{"name": "gw"}],
            "rules": [{"matches": [{"path": {"value": "/missing"}}], "backendRefs": [backend_ref("nope", 1)]},
                      {"matches": [{"path": {"value": "/other-ns"}}], "backendRefs": [{"name": "web", "namespace": "other", "port": 80}]},
                      {"backendRefs": [backend_ref("web", 1)]}],
        })),
        backend_yaml("default", "web", &[web.addr]),
        backend_yaml("other", "web", &[web.addr]),
    ]);
    let h = start(&manifests).await;
    assert_eq!(get_on(&h.client, port, "x", "/missing", &[]).await.0, 500);
    assert_eq!(get_on(&h.client, port, "x", "/other-ns", &[]).await.0, 500, "no ReferenceGrant");
    assert_eq!(get_on(&h.client, port, "x", "/", &[]).await, (200, Some("web".into())));
}

/// The conditions of a Gateway (`None`) or of one of its listeners, as `type=status (reason)`.
fn conditions(h: &Harness, gateway: &str, listener: Option<&str>) -> Vec<String> {
    let snap = h.running.snapshot.load();
    let gs = &snap.status.gateway.gateways[&("default".to_string(), gateway.to_string())];
    let list = match listener {
        None => &gs.conditions,
        Some(name) => &gs.listeners.iter().find(|l| l.name == name).expect("the listener has a status").conditions,
    };
    list.iter().map(|c| format!("{}={} ({})", c.type_, c.status, c.reason)).collect()
}

/// A Gateway listener whose port is taken does not stop the start: the Ingress listener and the
/// Gateway's other listener serve, the Gateway's status names the port that cannot be opened,
/// and once the port is free the next change opens it.
#[tokio::test]
async fn a_gateway_listener_on_a_taken_port_is_reported_and_the_rest_serves() {
    let web = echo("web").await;
    let taken = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let (busy, open) = (taken.local_addr().unwrap().port(), free_port());
    let docs = |note: &str| manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("busy", busy, "HTTP", json!({})), listener("open", open, "HTTP", json!({}))]),
        route("HTTPRoute", "default", "shop", "2024-01-01T00:00:00Z", json!({"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example.com"], "rules": [{"backendRefs": [backend_ref("web", 1)]}]})),
        backend_yaml("default", "web", &[web.addr]),
        Ingress::new("default", note).created("2020-01-01T00:00:00Z").host_path("ing.example.com", "/", "Prefix", "web", 80).to_yaml(),
    ]);
    let h = start(&docs("first")).await;
    assert_eq!(h.route("ing.example.com", "/").await, (200, Some("web".into())), "the Ingress listener serves");
    assert_eq!(get_on(&h.client, open, "shop.example.com", "/", &[]).await, (200, Some("web".into())), "the free Gateway port serves");
    let busy_now = conditions(&h, "gw", Some("busy"));
    assert!(busy_now.contains(&"Accepted=False (PortUnavailable)".to_string()) && busy_now.contains(&"Programmed=False (Pending)".to_string()), "{busy_now:?}");
    assert!(conditions(&h, "gw", Some("open")).contains(&"Programmed=True (Programmed)".to_string()));
    assert!(conditions(&h, "gw", None).contains(&"Programmed=True (Programmed)".to_string()), "one listener is served");

    drop(taken);
    h.write("manifests.yaml", &docs("second"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !conditions(&h, "gw", Some("busy")).contains(&"Accepted=True (Accepted)".to_string()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(conditions(&h, "gw", Some("busy")).contains(&"Programmed=True (Programmed)".to_string()), "{:?}", conditions(&h, "gw", Some("busy")));
    assert_eq!(get_on(&h.client, busy, "shop.example.com", "/", &[]).await, (200, Some("web".into())), "the port opened at the next change");
}
