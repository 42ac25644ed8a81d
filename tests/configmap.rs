//! `--configmap` in `serve`: the ConfigMap comes from the manifests like any object, its keys
//! apply over the flags, and editing it changes what is served within a second; through real
//! sockets and clients on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use vestibule::cli::{Cli, Command};

const LIVE_WITHIN: Duration = Duration::from_secs(1);
const CM: (&str, &str) = ("ingress", "vestibule");

/// The manifests: an echo backend `web`, Ingresses for `plain.test` and the TLS host
/// `secure.test` (plus `pinned.test`, which turns ssl-redirect on by annotation), and the
/// ConfigMap with `data`.
fn manifests(web: &Echo, data: &[(&str, &str)]) -> String {
    let mut cm = ConfigMap::new(CM.0, CM.1);
    for (k, v) in data {
        cm = cm.data(k, v);
    }
    manifest([
        backend_yaml("default", "web", &[web.addr]),
        Ingress::new("default", "plain").created("2020-01-01T00:00:00Z").host_path("plain.test", "/", "Prefix", "web", 80).to_yaml(),
        Ingress::new("default", "secure").created("2020-01-01T00:00:00Z").tls(&["secure.test"], "no-such-secret").host_path("secure.test", "/", "Prefix", "web", 80).to_yaml(),
        Ingress::new("default", "pinned")
            .created("2020-01-01T00:00:00Z")
            .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "true")
            .tls(&["pinned.test"], "no-such-secret")
            .host_path("pinned.test", "/", "Prefix", "web", 80)
            .to_yaml(),
        cm.to_yaml(),
    ])
}

async fn start_cm(web: &Echo, data: &[(&str, &str)]) -> Harness {
    start_with(&manifests(web, data), |o| o.configmap = Some((CM.0.into(), CM.1.into()))).await
}

/// The status of a POST announcing `len` bytes to plain.test, sent as a client that waits for
/// `100 Continue` before its body: a body over the limit is refused from its Content-Length
/// before any of it is sent, so the answer can never be lost to a reset of unread bytes.
async fn post_announced(h: &Harness, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: plain.test\r\nContent-Length: {len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("an answer in time").unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("a status line, not {line:?}"))
}

/// The status of a POST of `len` bytes to plain.test.
async fn post(h: &Harness, len: usize) -> u16 {
    let resp = h.client.post(h.http("/upload")).header("host", "plain.test").body(vec![b'x'; len]).send().await.expect("request succeeds");
    resp.status().as_u16()
}

/// Polls `probe` until it returns `want`, failing after `within`; returns how long it took.
async fn until<F, Fut, T>(what: &str, within: Duration, want: T, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let start = Instant::now();
    loop {
        let got = probe().await;
        if got == want {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("{what}: expected {want:?}, still {got:?} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn debug_config(h: &Harness) -> serde_json::Value {
    let body = h.client.get(format!("http://{}/debug/config", h.running.healthz)).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&body).unwrap()
}

/// The diagnostics in `/debug/config` about the ConfigMap's `data.KEY`.
async fn cm_diagnostics(h: &Harness, key: &str) -> Vec<serde_json::Value> {
    let v = debug_config(h).await;
    let field = format!("data.{key}");
    v["diagnostics"].as_array().unwrap().iter().filter(|d| d["object"] == format!("ConfigMap {}/{}", CM.0, CM.1) && d["field"] == field.as_str()).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_body_size_follows_the_configmap_live() {
    init_tracing();
    let web = echo("web").await;
    let h = start_cm(&web, &[("proxy-read-timeout", "30")]).await;
    assert_eq!(post(&h, 2048).await, 200, "2 KiB is under the default 1m");

    h.write("manifests.yaml", &manifests(&web, &[("proxy-body-size", "1k")]));
    let took = until("POST 2 KiB after proxy-body-size: 1k", LIVE_WITHIN, 413, || post(&h, 2048)).await;
    eprintln!("413 live after {took:?}");
    assert_eq!(post(&h, 1000).await, 200, "a body under the new limit still passes");

    h.write("manifests.yaml", &manifests(&web, &[("proxy-body-size", "4k")]));
    until("POST 2 KiB after proxy-body-size: 4k", LIVE_WITHIN, 200, || post(&h, 2048)).await;
    assert_eq!(post(&h, 5000).await, 413);

    // Removing the key falls back to the flag's value (1m).
    h.write("manifests.yaml", &manifests(&web, &[]));
    until("POST 5000 B after the key is removed", LIVE_WITHIN, 200, || post(&h, 5000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_value_is_reported_on_the_configmap_and_the_previous_value_serves() {
    init_tracing();
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    assert!(cm_diagnostics(&h, "proxy-body-size").await.is_empty());

    h.write("manifests.yaml", &manifests(&web, &[("proxy-body-size", "lots"), ("enable-brotli", "true")]));
    until("a diagnostic on data.proxy-body-size", LIVE_WITHIN, 1, || async { cm_diagnostics(&h, "proxy-body-size").await.len() }).await;
    let d = &cm_diagnostics(&h, "proxy-body-size").await[0];
    assert_eq!(d["severity"], "Warning", "{d}");
    assert_eq!(d["reason"], "InvalidField", "{d}");
    let msg = d["message"].as_str().unwrap();
    assert!(msg.contains("\"lots\"") && msg.contains("value from the flags (or the built-in default) is kept"), "{msg}");
    assert_eq!(post(&h, 2048).await, 200, "the flag's 1m still serves");
    assert_eq!(post_announced(&h, 2 * 1024 * 1024).await, 413, "and is still a limit");
    // A key Vestibule does not know is named, as Info.
    let unknown = cm_diagnostics(&h, "enable-brotli").await;
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0]["severity"], "Info");
    assert!(unknown[0]["message"].as_str().unwrap().contains("not supported by Vestibule; it is ignored"));

    // `vestibule check` reports the same, naming the ConfigMap and the key.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vestibule"))
        .args(["check", "--manifests"])
        .arg(h.dir.path())
        .args(["--configmap", "ingress/vestibule"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("warning: ConfigMap ingress/vestibule: data.proxy-body-size: \"lots\""), "{stdout}");
    assert!(stdout.contains("info: ConfigMap ingress/vestibule: data.enable-brotli"), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "warnings fail only with --strict: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_configmap_is_reported_and_the_flags_serve() {
    init_tracing();
    let web = echo("web").await;
    let m = manifests(&web, &[("proxy-body-size", "1k")]);
    let h = start_with(&m, |o| o.configmap = Some(("ingress".into(), "elsewhere".into()))).await;
    assert_eq!(post(&h, 2048).await, 200, "another ConfigMap's keys do not apply");
    let v = debug_config(&h).await;
    let d: Vec<_> = v["diagnostics"].as_array().unwrap().iter().filter(|d| d["object"] == "ConfigMap ingress/elsewhere").collect();
    assert_eq!(d.len(), 1, "{v}");
    assert_eq!(d[0]["reason"], "ConfigMapNotFound");
    // Without --configmap, no ConfigMap is read at all.
    let h = start(&m).await;
    assert_eq!(post(&h, 2048).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_redirect_follows_the_configmap_and_the_annotation_wins() {
    init_tracing();
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    assert_eq!(h.route("secure.test", "/").await.0, 308);

    h.write("manifests.yaml", &manifests(&web, &[("ssl-redirect", "false")]));
    let took = until("secure.test after ssl-redirect: false", LIVE_WITHIN, (200, Some("web".to_string())), || h.route("secure.test", "/")).await;
    eprintln!("redirect off live after {took:?}");
    assert_eq!(h.route("pinned.test", "/").await.0, 308, "the Ingress's ssl-redirect annotation wins over the ConfigMap");

    h.write("manifests.yaml", &manifests(&web, &[("ssl-redirect", "true")]));
    until("secure.test after ssl-redirect: true", LIVE_WITHIN, 308, || async { h.route("secure.test", "/").await.0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_proxy_protocol_follows_the_configmap_on_the_open_listener() {
    init_tracing();
    let web = echo("web").await;
    let h = start_cm(&web, &[]).await;
    let addr = h.running.http;
    let plain = || raw(addr, b"GET / HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n", Duration::from_secs(2));
    let proxied = || raw(addr, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n", Duration::from_secs(2));
    assert!(plain().await.starts_with("HTTP/1.1 200"));

    h.write("manifests.yaml", &manifests(&web, &[("use-proxy-protocol", "true")]));
    until("a plain connection is dropped", LIVE_WITHIN, true, || async { plain().await.is_empty() }).await;
    let answer = proxied().await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("203.0.113.7"), "the PROXY address is the client's: {answer}");
    assert_eq!(h.running.http, addr, "the listener keeps its port");

    h.write("manifests.yaml", &manifests(&web, &[("use-proxy-protocol", "false")]));
    until("plain HTTP again", LIVE_WITHIN, true, || async { plain().await.starts_with("HTTP/1.1 200") }).await;
}

#[test]
fn configmap_is_a_serve_check_and_controller_flag() {
    let cli = Cli::try_parse_from(["vestibule", "serve", "--manifests", "m", "--configmap", "ingress/vestibule"]).unwrap();
    let Command::Serve(args) = cli.command else { panic!("serve") };
    let o = args.into_options();
    assert_eq!(o.configmap, Some(("ingress".into(), "vestibule".into())));
    vestibule::tls::install_provider();
    let s = o.settings(vestibule::tls::self_signed(&["x"]).unwrap().0);
    assert_eq!(s.configmap, Some(("ingress".into(), "vestibule".into())));

    let cli = Cli::try_parse_from(["vestibule", "controller", "--configmap", "vestibule"]).unwrap();
    let Command::Controller(args) = cli.command else { panic!("controller") };
    let o = args.into_options();
    assert_eq!(o.configmap, Some(("default".into(), "vestibule".into())));
    assert_eq!(o.serve.configmap, o.configmap);

    assert!(Cli::try_parse_from(["vestibule", "check", "--manifests", "m", "--configmap", "a/b/c"]).is_err(), "NS/NAME is checked");
}
