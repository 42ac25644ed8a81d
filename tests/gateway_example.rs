//! examples/gateway as users run it: `vestibule check` reads it cleanly and shows the Gateway
//! API status, `explain` names the HTTPRoute, and `serve` routes it (with the example's
//! endpoint ports and listener port swapped for ones free here).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::free_port;
use common::*;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway")
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vestibule")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn check_and_explain_show_the_routes_and_their_conditions() {
    let dir = example();
    let (code, text) = run(&["check", "--manifests", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("GatewayClass vestibule: Accepted=True (Accepted), SupportedVersion=True (SupportedVersion)"), "{text}");
    assert!(text.contains("Gateway default/store: Accepted=True (Accepted), Programmed=True (Programmed)"), "{text}");
    assert!(text.contains("  listener http: 1 route(s) attached, kinds [HTTPRoute, GRPCRoute];"), "{text}");
    assert!(text.contains("HTTPRoute default/store -> Gateway default/store listener http: Accepted=True (Accepted), ResolvedRefs=True (ResolvedRefs)"), "{text}");
    let (code, text) = run(&["explain", "--manifests", dir.to_str().unwrap(), "http://store.example.com:8081/tea/menu"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("-> HTTPRoute default/store: host store.example.com, path /tea (PathPrefix)"), "{text}");
    assert!(text.contains("status: HTTPRoute default/store -> Gateway default/store listener http: Accepted=True"), "{text}");
}

#[tokio::test]
async fn serve_routes_the_example() {
    let names = ["coffee-svc", "coffee-beta-svc", "tea-svc", "tea-canary-svc"];
    let mut echoes = Vec::new();
    for n in names {
        echoes.push(echo(n).await);
    }
    let port = free_port();
    let mut text = manifest(["gateway.yaml", "routes.yaml", "backends.yaml"].map(|f| std::fs::read_to_string(example().join(f)).unwrap()));
    text = text.replace("port: 8081", &format!("port: {port}"));
    for (i, e) in echoes.iter().enumerate() {
        text = text.replace(&format!("port: {}", 19091 + i), &format!("port: {}", e.addr.port()));
    }
    let h = start(&text).await;
    let get = |path: &str, beta: bool| {
        let mut req = h.client.get(format!("http://127.0.0.1:{port}{path}")).header("host", "store.example.com");
        if beta {
            req = req.header("x-beta", "on");
        }
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    assert_eq!(get("/coffee", false).await["service"], "coffee-svc");
    assert_eq!(get("/coffee", true).await["service"], "coffee-beta-svc");
    assert_eq!(get("/", false).await["service"], "coffee-svc");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let body = get("/tea/menu", false).await;
        assert_eq!(body["path"], "/v2/menu", "{body}");
        seen.insert(body["service"].as_str().unwrap().to_string());
    }
    assert!(seen.contains("tea-svc"), "{seen:?}");
}
