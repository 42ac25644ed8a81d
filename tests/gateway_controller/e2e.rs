//! End to end: Gateway API objects created through the fake API server are served through
//! real sockets by the controller, and the leader writes the conditions compile decides.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn gateway_on(ns: &str, name: &str, port: u16) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
           "spec": {"gatewayClassName": "vestibule", "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}})
}

fn condition<'a>(conds: &'a Value, type_: &str) -> &'a Value {
    conds.as_array().and_then(|a| a.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// Our parent entry in a route's status.
fn our_parent(api: &FakeApi, kind: &str, ns: &str, name: &str) -> Value {
    let r = api.get(kind, ns, name).unwrap();
    r["status"]["parents"].as_array().and_then(|a| a.iter().find(|p| p["controllerName"] == CONTROLLER).cloned()).unwrap_or(Value::Null)
}

/// An HTTPRoute created through the API is served within a second; the GatewayClass and the
/// Gateway get Accepted/Programmed with observedGeneration and the published address; a
/// route to a missing Service gets ResolvedRefs=False BackendNotFound (and answers 500), then
/// True once the Service exists, with Accepted keeping its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_are_served_and_their_status_follows_compile() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let web = common::echo("web").await;
    let port = free_port();
    api.apply(gateway_class("vestibule", CONTROLLER));
    api.apply(gateway_on("default", "gw", port));
    api.apply_yaml(&common::backend_yaml("default", "web", &[web.addr]));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    wait_for("leadership", Duration::from_secs(10), || run.is_leader()).await;
    let gw_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    api.apply(http_route("default", "web", "gw", "web.example.com", "web"));
    let t = wait_route(gw_addr, "web.example.com", "/", (200, Some("web")), Duration::from_secs(5)).await;
    assert!(t < Duration::from_secs(1), "an HTTPRoute took {t:?} to be served");

    wait_for("GatewayClass Accepted", Duration::from_secs(5), || condition(&api.get("GatewayClass", "", "vestibule").unwrap()["status"]["conditions"], "Accepted")["status"] == "True").await;
    let class = api.get("GatewayClass", "", "vestibule").unwrap();
    assert_eq!(condition(&class["status"]["conditions"], "SupportedVersion")["status"], "True");
    wait_for("Gateway Programmed", Duration::from_secs(5), || condition(&api.get("Gateway", "default", "gw").unwrap()["status"]["conditions"], "Programmed")["status"] == "True").await;
    let g = api.get("Gateway", "default", "gw").unwrap();
    assert_eq!(condition(&g["status"]["conditions"], "Accepted")["status"], "True");
    assert_eq!(condition(&g["status"]["conditions"], "Accepted")["observedGeneration"], 1);
    assert_eq!(g["status"]["addresses"], json!([{"type": "IPAddress", "value": "203.0.113.7"}]));
    assert_eq!(g["status"]["listeners"][0]["name"], "http");
    wait_for("attachedRoutes 1", Duration::from_secs(5), || api.get("Gateway", "default", "gw").unwrap()["status"]["listeners"][0]["attachedRoutes"] == 1).await;
    wait_for("route Accepted", Duration::from_secs(5), || condition(&our_parent(&api, "HTTPRoute", "default", "web")["conditions"], "ResolvedRefs")["status"] == "True").await;

    // A route to a Service that does not exist.
    api.apply(http_route("default", "broken", "gw", "broken.example.com", "missing"));
    wait_route(gw_addr, "broken.example.com", "/", (500, None), Duration::from_secs(5)).await;
    wait_for("ResolvedRefs False", Duration::from_secs(5), || condition(&our_parent(&api, "HTTPRoute", "default", "broken")["conditions"], "ResolvedRefs")["reason"] == "BackendNotFound").await;
    let before = our_parent(&api, "HTTPRoute", "default", "broken");
    assert_eq!(condition(&before["conditions"], "ResolvedRefs")["status"], "False");
    assert_eq!(condition(&before["conditions"], "Accepted")["status"], "True", "still accepted: {before}");
    assert_eq!(before["parentRef"]["name"], "gw");

    // The Service appears: ResolvedRefs turns True; Accepted keeps its time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let missing = common::echo("missing").await;
    api.apply_yaml(&common::backend_yaml("default", "missing", &[missing.addr]));
    wait_route(gw_addr, "broken.example.com", "/", (200, Some("missing")), Duration::from_secs(5)).await;
    wait_for("ResolvedRefs True", Duration::from_secs(5), || condition(&our_parent(&api, "HTTPRoute", "default", "broken")["conditions"], "ResolvedRefs")["status"] == "True").await;
    let after = our_parent(&api, "HTTPRoute", "default", "broken");
    assert_eq!(condition(&after["conditions"], "Accepted")["lastTransitionTime"], condition(&before["conditions"], "Accepted")["lastTransitionTime"]);
    assert_ne!(condition(&after["conditions"], "ResolvedRefs")["lastTransitionTime"], condition(&before["conditions"], "ResolvedRefs")["lastTransitionTime"]);

    // A spec change is a new generation, and the conditions observe it.
    let mut changed = http_route("default", "broken", "gw", "broken.example.com", "missing");
    changed["spec"]["hostnames"] = json!(["broken.example.com", "also.example.com"]);
    api.apply(changed);
    wait_for("observedGeneration 2", Duration::from_secs(5), || condition(&our_parent(&api, "HTTPRoute", "default", "broken")["conditions"], "Accepted")["observedGeneration"] == 2).await;

    // Detached: the route now names a Gateway that is not ours, and loses our entry.
    let mut detached = http_route("default", "broken", "elsewhere", "broken.example.com", "missing");
    detached["spec"]["hostnames"] = json!(["broken.example.com"]);
    api.apply(detached);
    wait_for("our entry removed", Duration::from_secs(5), || our_parent(&api, "HTTPRoute", "default", "broken").is_null()).await;
    wait_route(gw_addr, "broken.example.com", "/", (404, None), Duration::from_secs(5)).await;

    // Quiet: with nothing changing, nothing is written.
    let writes = || api.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("gateway.networking.k8s.io")).count();
    let n = writes();
    api.apply_yaml(&common::backend_yaml("default", "unrelated", &[web.addr]));
    wait_for("a new configuration", Duration::from_secs(5), || applied(&run).is_some_and(|a| a.store.services.contains_key(&key("default", "unrelated")))).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(writes(), n, "no status write when nothing changed");
    run.stop();
}

/// Conditions appear and clear as the cluster changes: a route from another namespace is
/// NotAllowedByListeners until the listener allows all namespaces, then RefNotPermitted for
/// its Service in another namespace until a ReferenceGrant allows it; the listener counts it
/// once attached. A TLSRoute served only as v1alpha2 gets its parent entry through v1alpha2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_clear_when_their_cause_goes_away() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    api.serve_only_crds(&[("GatewayClass", "v1"), ("Gateway", "v1"), ("HTTPRoute", "v1"), ("GRPCRoute", "v1"), ("ReferenceGrant", "v1beta1"), ("TLSRoute", "v1alpha2")]);
    let web = common::echo("web").await;
    let (port, tls_port) = (free_port(), free_port());
    let gw = |from: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"gatewayClassName": "vestibule", "listeners": [
                   {"name": "http", "port": port, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": from}}},
                   {"name": "tls", "port": tls_port, "protocol": "TLS", "tls": {"mode": "Passthrough"}, "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    };
    api.apply(gateway_class("vestibule", CONTROLLER));
    api.apply(gw("Same"));
    api.apply_yaml(&common::backend_yaml("default", "web", &[web.addr]));
    let mut route = http_route("apps", "cross", "gw", "cross.example.com", "web");
    route["spec"]["parentRefs"][0]["namespace"] = json!("default");
    route["spec"]["rules"][0]["backendRefs"][0]["namespace"] = json!("default");
    api.apply(route);
    api.apply(json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute", "metadata": {"name": "tls", "namespace": "default"},
                     "spec": {"parentRefs": [{"name": "gw", "sectionName": "tls"}], "hostnames": ["tls.example.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    let gw_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let parent = || our_parent(&api, "HTTPRoute", "apps", "cross");
    let attached = || api.get("Gateway", "default", "gw").unwrap()["status"]["listeners"].as_array().and_then(|l| l.iter().find(|l| l["name"] == "http").cloned()).unwrap_or(Value::Null)["attachedRoutes"].clone();

    wait_for("NotAllowedByListeners", Duration::from_secs(10), || condition(&parent()["conditions"], "Accepted")["reason"] == "NotAllowedByListeners").await;
    assert_eq!(condition(&parent()["conditions"], "Accepted")["status"], "False");
    assert_eq!(attached(), json!(0));
    assert_eq!(route_status(gw_addr, "cross.example.com").await, 404, "not attached, not served");

    // The listener allows every namespace: accepted, but the Service in another namespace is
    // not permitted (and answers 500).
    api.apply(gw("All"));
    wait_for("Accepted", Duration::from_secs(5), || condition(&parent()["conditions"], "Accepted")["status"] == "True").await;
    wait_for("RefNotPermitted", Duration::from_secs(5), || condition(&parent()["conditions"], "ResolvedRefs")["reason"] == "RefNotPermitted").await;
    wait_for("attachedRoutes 1", Duration::from_secs(5), || attached() == json!(1)).await;
    wait_route(gw_addr, "cross.example.com", "/", (500, None), Duration::from_secs(5)).await;

    // A ReferenceGrant in the Service's namespace allows it.
    api.apply(json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "apps-to-web", "namespace": "default"},
                     "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "apps"}], "to": [{"group": "", "kind": "Service"}]}}));
    wait_for("ResolvedRefs True", Duration::from_secs(5), || condition(&parent()["conditions"], "ResolvedRefs")["status"] == "True").await;
    wait_route(gw_addr, "cross.example.com", "/", (200, Some("web")), Duration::from_secs(5)).await;
    // And its removal takes the permission back.
    api.delete("ReferenceGrant", "default", "apps-to-web");
    wait_for("RefNotPermitted again", Duration::from_secs(5), || condition(&parent()["conditions"], "ResolvedRefs")["reason"] == "RefNotPermitted").await;

    // The TLSRoute's entry went through the version the cluster serves.
    wait_for("TLSRoute parent", Duration::from_secs(5), || !our_parent(&api, "TLSRoute", "default", "tls").is_null()).await;
    assert_eq!(condition(&our_parent(&api, "TLSRoute", "default", "tls")["conditions"], "Accepted")["status"], "True", "{}", our_parent(&api, "TLSRoute", "default", "tls"));
    let puts: Vec<String> = api.requests().iter().filter(|r| r.method == "PUT" && r.path.contains("tlsroutes")).map(|r| r.path.clone()).collect();
    assert!(!puts.is_empty() && puts.iter().all(|p| p == "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/default/tlsroutes/tls/status"), "{puts:?}");
    run.stop();
}

async fn route_status(addr: SocketAddr, host: &str) -> u16 {
    route(addr, host, "/").await.0
}

/// An HTTPRoute change through the API is live within a second, and requests sent meanwhile
/// all succeed (the old backend until the switch, the new one after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_changes_are_live_within_a_second_without_failed_requests() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (v1, v2) = (common::echo("v1").await, common::echo("v2").await);
    let port = free_port();
    api.apply(gateway_class("vestibule", CONTROLLER));
    api.apply(gateway_on("default", "gw", port));
    api.apply_yaml(&common::backend_yaml("default", "v1", &[v1.addr]));
    api.apply_yaml(&common::backend_yaml("default", "v2", &[v2.addr]));
    api.apply(http_route("default", "app", "gw", "app.example.com", "v1"));
    let run = controller::start(options(&api, dir.path(), "token-a", "ctrl-a")).await.unwrap();
    let gw_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_route(gw_addr, "app.example.com", "/", (200, Some("v1")), Duration::from_secs(10)).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match route(gw_addr, "app.example.com", "/").await {
                    (200, Some(s)) if s == "v1" || s == "v2" => ok += 1,
                    other => failed.push(other),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.apply(http_route("default", "app", "gw", "app.example.com", "v2"));
    let t = wait_route(gw_addr, "app.example.com", "/", (200, Some("v2")), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in load {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(t < Duration::from_secs(1), "the change took {t:?}");
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), ok as usize + failed.len(), &failed[..failed.len().min(5)]);
    assert!(ok > 20, "the load ran ({ok} requests)");
    run.stop();
}
