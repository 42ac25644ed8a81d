//! `controller --configmap`: the ConfigMap is watched from the (fake) API server and its
//! settings change what is served live, as in `serve`. Real sockets on 127.0.0.1.

mod common;
mod fakeapi;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ConfigMap, Ingress, IngressClass};
use fakeapi::FakeApi;
use vestibule::controller::{self, ControllerOptions};

fn options(api: &FakeApi, dir: &std::path::Path) -> ControllerOptions {
    fakeapi::options::controller(api, dir, "token", "ctrl", fakeapi::options::serve())
}

/// The status of a POST of `len` bytes to `host` (0 when the request fails).
async fn post(http: SocketAddr, host: &str, len: usize) -> u16 {
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    match client.post(format!("http://{http}/upload")).header("host", host).body(vec![b'x'; len]).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn wait_post(http: SocketAddr, len: usize, want: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = post(http, "cm.example.com", len).await;
        if got == want {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("POST {len} B: expected {want}, still {got} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn configmap(body_size: &str) -> serde_json::Value {
    ConfigMap::new("vestibule", "vestibule-controller").data("proxy-body-size", body_size).to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_change_changes_the_body_limit_live() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let web = common::echo("web").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml("default", "web", &[web.addr]));
    api.apply(Ingress::new("default", "cm").class("vestibule").host_path("cm.example.com", "/", "Prefix", "web", 80).to_json());
    api.apply(configmap("4k"));
    let mut o = options(&api, dir.path());
    // As `--configmap` sets it: on the routing flags, shared with `serve`.
    o.serve.configmap = Some(("vestibule".into(), "vestibule-controller".into()));
    let run = controller::start(o).await.unwrap();

    wait_post(run.http, 2048, 200, Duration::from_secs(10)).await;
    assert_eq!(post(run.http, "cm.example.com", 5000).await, 413, "the ConfigMap's 4k applies, not the flag's 1m");

    api.apply(configmap("1k"));
    let took = wait_post(run.http, 2048, 413, Duration::from_secs(5)).await;
    eprintln!("proxy-body-size: 1k live after {took:?}");

    // An invalid value: reported on the ConfigMap, and the flag's 1m serves.
    api.apply(configmap("lots"));
    wait_post(run.http, 5000, 200, Duration::from_secs(5)).await;
    let applied = run.applied().unwrap();
    let d = applied.diagnostics.iter().find(|d| d.field == "data.proxy-body-size").expect("a diagnostic on data.proxy-body-size");
    assert!(d.to_string().starts_with("ConfigMap vestibule/vestibule-controller: data.proxy-body-size: \"lots\""), "{d}");

    // Deleted: the flags serve, and the missing ConfigMap is reported.
    api.apply(configmap("1k"));
    wait_post(run.http, 2048, 413, Duration::from_secs(5)).await;
    api.delete("ConfigMap", "vestibule", "vestibule-controller");
    wait_post(run.http, 2048, 200, Duration::from_secs(5)).await;
    assert!(run.applied().unwrap().diagnostics.iter().any(|d| d.reason == vestibule::compile::Reason::ConfigMapNotFound));
    run.shutdown().await;
}
