//! `controller --tcp-services-configmap`: the ConfigMap is watched from the (fake) API server
//! and its ports open and close live, as in `serve`.

mod common;
mod fakeapi;

use std::time::Duration;

use common::{ConfigMap, free_port};
use fakeapi::FakeApi;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::controller;

async fn echo_tcp() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

async fn round_trip(port: u16, msg: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(msg.as_bytes()).await.ok()?;
    s.shutdown().await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.ok()?.ok()?;
    Some(out)
}

async fn wait_serves(port: u16) {
    for _ in 0..500 {
        if round_trip(port, "ping").await.as_deref() == Some("ping") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("port {port} never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_services_configmap_is_watched_live() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let backend = echo_tcp().await;
    api.apply_yaml(&common::backend_yaml("default", "db", &[backend]));
    let (a, b) = (free_port(), free_port());
    api.apply(ConfigMap::new("vestibule", "tcp-services").data(&a.to_string(), "default/db:80").to_json());
    let mut o = fakeapi::options::controller(&api, dir.path(), "token", "ctrl", fakeapi::options::serve());
    o.serve.tcp_services = Some(("vestibule".into(), "tcp-services".into()));
    let run = controller::start(o).await.unwrap();
    wait_serves(a).await;

    api.apply(ConfigMap::new("vestibule", "tcp-services").data(&b.to_string(), "default/db:80").to_json());
    wait_serves(b).await;
    let mut closed = false;
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", a)).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the removed key stopped listening");
    run.shutdown().await;
}
