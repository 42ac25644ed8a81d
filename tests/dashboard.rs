//! The dashboard: served from the binary on the healthz port, read-only, off with
//! `--enable-dashboard=false`, and live in a real browser (headless Chromium driven over the
//! DevTools protocol): a route added to the manifests shows in the page without a reload.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn manifests(addr: std::net::SocketAddr) -> String {
    manifest([
        Ingress::new("default", "cafe").host_path("cafe.example.com", "/tea", "Prefix", "tea", 80).to_yaml(),
        backend_yaml("default", "tea", &[addr]),
    ])
}

fn healthz(h: &Harness, path: &str) -> String {
    format!("http://{}{path}", h.running.healthz)
}

#[tokio::test]
async fn the_dashboard_is_embedded_read_only_and_can_be_turned_off() {
    let tea = echo("tea").await;
    let h = start(&manifests(tea.addr)).await;
    let resp = h.client.get(healthz(&h, "/dashboard")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let page = resp.text().await.unwrap();
    assert!(page.contains("/dashboard/app.js"));
    for asset in ["/dashboard/app.js", "/dashboard/style.css"] {
        assert_eq!(h.client.get(healthz(&h, asset)).send().await.unwrap().status(), 200, "{asset}");
    }
    assert_eq!(h.client.post(healthz(&h, "/dashboard")).send().await.unwrap().status(), 405);

    // Endpoint health and route totals, after one request.
    assert_eq!(h.route("cafe.example.com", "/tea").await, (200, Some("tea".into())));
    let live: Value = h.client.get(healthz(&h, "/debug/live")).send().await.unwrap().json().await.unwrap();
    let ep = &live["endpoints"][tea.addr.to_string()];
    assert_eq!(ep["ejected"], false, "{live}");
    let route = live["routes"].as_array().unwrap().iter().find(|r| r["host"] == "cafe.example.com").expect("route totals");
    assert_eq!(route["requests"], 1);
    assert_eq!(route["errors"], 0);

    let off = start_with(&manifests(tea.addr), |o| o.enable_dashboard = false).await;
    assert_eq!(off.client.get(healthz(&off, "/dashboard")).send().await.unwrap().status(), 404);
    assert_eq!(off.client.get(healthz(&off, "/healthz")).send().await.unwrap().status(), 200);
}

/// Headless Chromium with a DevTools port, on its own empty profile.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"] {
        if std::path::Path::new(c).exists() {
            return c.into();
        }
    }
    panic!("headless Chromium is needed for this test: install Debian's `chromium` (.ci/run does)");
}

fn launch(url: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions", "--window-size=1280,900", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    // Chromium writes the port it picked into the profile.
    let file = profile.path().join("DevToolsActivePort");
    let start = Instant::now();
    let devtools = loop {
        if let Some(port) = std::fs::read_to_string(&file).ok().and_then(|s| s.lines().next().and_then(|l| l.parse().ok())) {
            break port;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "chromium did not open its DevTools port");
        std::thread::sleep(Duration::from_millis(50));
    };
    Browser { child, _profile: profile, devtools }
}

/// One DevTools session on the page showing `url`.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
}

impl Page {
    async fn attach(browser: &Browser, url: &str) -> Page {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let ws_url = loop {
            let list: Value = client.get(format!("http://127.0.0.1:{}/json/list", browser.devtools)).send().await.unwrap().json().await.unwrap();
            let page = list.as_array().unwrap().iter().find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)));
            if let Some(p) = page {
                break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no page for {url}: {list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("DevTools websocket");
        Page { ws, next: 1 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.ws.send(Message::Text(json!({ "id": id, "method": method, "params": params }).to_string().into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.expect("DevTools answers").unwrap().unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true })).await;
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is true; returns how long that took.
    async fn wait_for(&mut self, expr: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(expr).await == Value::Bool(true) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let body = self.eval("document.body.innerText").await;
                panic!("after {timeout:?}, still not {expr}; the page shows:\n{}", body.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const ROWS: &str = "Array.from(document.querySelectorAll('#routes tbody tr')).map(t => (t.dataset.host || '') + (t.dataset.path || ''))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_routes_live_and_explains_a_url_in_a_real_browser() {
    let tea = echo("tea").await;
    let h = start(&manifests(tea.addr)).await;
    let url = healthz(&h, "/dashboard");
    let browser = launch(&url);
    let mut page = Page::attach(&browser, &url).await;

    page.wait_for(&format!("{ROWS}.includes('cafe.example.com/tea')"), Duration::from_secs(20)).await;
    // Backend and its endpoint as text.
    let text = page.eval("document.querySelector('#routes').innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("default/tea:80") && text.contains(&tea.addr.to_string()), "{text}");

    // A route added to the manifests shows up without reloading the page.
    let coffee = echo("coffee").await;
    let started = Instant::now();
    h.write(
        "more.yaml",
        &manifest([Ingress::new("default", "coffee").host_path("coffee.example.com", "/beans", "Exact", "coffee", 80).to_yaml(), backend_yaml("default", "coffee", &[coffee.addr])]),
    );
    page.wait_for(&format!("{ROWS}.includes('coffee.example.com/beans')"), Duration::from_secs(2)).await;
    let shown_after = started.elapsed();
    assert!(shown_after < Duration::from_secs(2), "shown after {shown_after:?}");
    assert_eq!(page.eval("performance.getEntriesByType('navigation').length").await, json!(1), "no reload");

    // A hostile path is shown as text, never run as markup.
    h.write(
        "hostile.yaml",
        &manifest([Ingress::new("default", "hostile").host_path("x.example.com", "/<img/src=x/onerror=window.pwned=1>", "Prefix", "coffee", 80).to_yaml()]),
    );
    page.wait_for(&format!("{ROWS}.some(r => r.startsWith('x.example.com'))"), Duration::from_secs(10)).await;
    assert_eq!(page.eval("typeof window.pwned").await, json!("undefined"));
    assert_eq!(page.eval("document.querySelectorAll('#routes img').length").await, json!(0));

    // The explain box says what `vestibule explain` says.
    page.eval("document.getElementById('explain-url').value = 'http://coffee.example.com/beans'; document.getElementById('explain-form').requestSubmit(); true").await;
    page.wait_for("document.getElementById('explain-out').textContent.includes('coffee')", Duration::from_secs(10)).await;
    let out = page.eval("document.getElementById('explain-out').textContent").await;
    let cli = h.client.get(healthz(&h, "/debug/explain?format=text&url=http%3A%2F%2Fcoffee.example.com%2Fbeans")).send().await.unwrap().text().await.unwrap();
    assert_eq!(out.as_str().unwrap(), cli);

    if let Ok(path) = std::env::var("VESTIBULE_DASHBOARD_SCREENSHOT") {
        h.write("hostile.yaml", "");
        page.wait_for(&format!("!{ROWS}.some(r => r.startsWith('x.example.com'))"), Duration::from_secs(10)).await;
        for _ in 0..20 {
            let _ = h.route("cafe.example.com", "/tea").await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let shot = page.call("Page.captureScreenshot", json!({ "format": "png" })).await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }
}
