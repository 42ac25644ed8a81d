//! Change to live in controller mode, as bench/harness.py measures it in file mode: N Ingresses
//! (one host each, 5 paths to 5 of 50 Services) in the fake API server, then one object
//! changed at a time through the API, and a new connection every ~1 ms until the proxy answers
//! as the change says. Three kinds of change: an Ingress rewritten with a new path, a Service
//! created that a path already names, an EndpointSlice moved to another endpoint. It checks
//! every change goes live and prints p50 / max per kind:
//!
//! ```sh
//! VESTIBULE_BENCH_INGRESSES=1000 VESTIBULE_BENCH_CHANGES=20 cargo test --test controller_bench -- --nocapture
//! ```

mod common;
mod fakeapi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Ingress;
use fakeapi::FakeApi;
use serde_json::Value;
use vestibule::controller::{self, ApiConfig, ControllerOptions};
use vestibule::serve::{AccessLogTarget, ServeOptions};

const SERVICES: usize = 50;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn route(http: SocketAddr, host: &str, path: &str) -> (u16, Option<String>) {
    // One client, no pooled connections: a new connection per request, as the file-mode bench.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap());
    let Ok(resp) = client.get(format!("http://{http}{path}")).header("host", host).send().await else { return (0, None) };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str::<Value>(&text).ok().and_then(|v| v["service"].as_str().map(str::to_string)))
}

async fn wait_route(http: SocketAddr, host: &str, path: &str, expect: (u16, &str)) -> Duration {
    let start = Instant::now();
    loop {
        let (s, svc) = route(http, host, path).await;
        if s == expect.0 && svc.as_deref() == Some(expect.1) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{host}{path}: expected {expect:?}, still ({s}, {svc:?})");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn ingress(i: usize, extra: &[(String, String)]) -> Value {
    let host = format!("h{i}.example.com");
    let mut ing = Ingress::new("default", &format!("ing-{i}")).class("vestibule");
    for k in 0..5 {
        ing = ing.host_path(&host, &format!("/p{k}"), "Prefix", &format!("svc-{}", (i * 5 + k) % SERVICES), 80);
    }
    for (path, svc) in extra {
        ing = ing.host_path(&host, path, "Prefix", svc, 80);
    }
    ing.to_json()
}

fn summary(kind: &str, mut t: Vec<Duration>) -> String {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!("{kind}: {} changes, p50 {:.1} ms, max {:.1} ms", t.len(), ms(t[t.len() / 2]), ms(t[t.len() - 1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_to_live_at_scale() {
    common::init_tracing();
    let (n, changes) = (env("VESTIBULE_BENCH_INGRESSES", 200), env("VESTIBULE_BENCH_CHANGES", 3));
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let (a, b, late) = (common::echo("a").await, common::echo("b").await, common::echo("late").await);
    api.apply(common::IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    for s in 0..SERVICES {
        api.apply_yaml(&common::backend_yaml("default", &format!("svc-{s}"), &[a.addr]));
    }
    api.apply_yaml(&common::backend_yaml("default", "stable", &[a.addr]));
    // Ingress j (j < changes) also names `late-j`, which has endpoints and no Service yet.
    for i in 0..n {
        let extra: Vec<(String, String)> = if i < changes { vec![("/late".into(), format!("late-{i}"))] } else { vec![] };
        api.apply(ingress(i, &extra));
    }
    for j in 0..changes {
        api.apply(common::backend_slice("default", &format!("late-{j}"), &[late.addr]).to_json());
    }
    let opts = ControllerOptions {
        serve: ServeOptions { bind: "127.0.0.1".parse().unwrap(), http_port: 0, https_port: 0, healthz_port: 0, access_log: AccessLogTarget::Off, shutdown_delay: Duration::ZERO, ..ServeOptions::default() },
        api: ApiConfig::Kubeconfig(api.kubeconfig(dir.path(), "token-a")),
        namespace: Some("vestibule".into()),
        identity: Some("bench".into()),
        update_status: false,
        ..ControllerOptions::default()
    };
    let started = Instant::now();
    let run = controller::start(opts).await.unwrap();
    wait_route(run.http, &format!("h{}.example.com", n - 1), "/p0", (200, "a")).await;
    eprintln!("{n} Ingresses ready after {:?}", started.elapsed());

    let (mut ing_t, mut svc_t, mut eps_t) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..changes {
        let i = n / 2 + j;
        api.apply(ingress(i, &[(format!("/new-{j}"), "stable".into())]));
        ing_t.push(wait_route(run.http, &format!("h{i}.example.com"), &format!("/new-{j}"), (200, "a")).await);

        api.apply_yaml(&common::service_yaml("default", &format!("late-{j}")));
        svc_t.push(wait_route(run.http, &format!("h{j}.example.com"), "/late", (200, "late")).await);

        // svc-s moves from a to b (and back, the next time round the 10 services).
        let s = (j * 5) % SERVICES;
        let (to, name) = if (j / 10) % 2 == 0 { (b.addr, "b") } else { (a.addr, "a") };
        api.apply(common::backend_slice("default", &format!("svc-{s}"), &[to]).to_json());
        // Ingress i serves svc-s on /p0 when i*5 % 50 == s, i.e. i = s/5 (+ 10 k).
        eps_t.push(wait_route(run.http, &format!("h{}.example.com", s / 5), "/p0", (200, name)).await);
        // Wait out the debounce so the next change is a batch of its own.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let metrics = reqwest::get(format!("http://{}/metrics", run.healthz)).await.unwrap().text().await.unwrap();
    let applies: Vec<&str> = metrics.lines().filter(|l| l.starts_with("vestibule_config_applies_total") || l.starts_with("vestibule_change_to_live_seconds_sum") || l.starts_with("vestibule_change_to_live_seconds_count") || l.starts_with("vestibule_compile_duration_seconds_sum") || l.starts_with("vestibule_compile_duration_seconds_count")).collect();
    eprintln!("{}\n{}\n{}\n{}", summary("Ingress", ing_t), summary("Service", svc_t), summary("EndpointSlice", eps_t), applies.join("\n"));
    run.shutdown().await;
}
