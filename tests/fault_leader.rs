//! The leader killed with SIGKILL: two `vestibule controller` processes share a Lease on the
//! fake API server and both serve traffic. The leader is killed without any chance to release
//! the Lease or clear status; the other replica takes over status once the Lease expires, and
//! the traffic it serves never fails.

mod common;
mod fakeapi;
#[path = "common/child.rs"]
mod child;
#[path = "common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::{Ingress, IngressClass};
use fakeapi::FakeApi;
use serde_json::Value;

const ADDRESS: &str = "192.0.2.10";

fn status_addresses(api: &FakeApi, name: &str) -> Vec<String> {
    let ing = api.get("Ingress", "default", name).unwrap();
    ing["status"]["loadBalancer"]["ingress"].as_array().map(|a| a.iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn holder(api: &FakeApi) -> Option<String> {
    api.get("Lease", "vestibule", "vestibule-leader").and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not true after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn ingress(name: &str, host: &str) -> Value {
    Ingress::new("default", name).class("vestibule").host_path(host, "/", "Prefix", "coffee", 80).to_json()
}

fn replica(api: &FakeApi, dir: &std::path::Path, id: &str) -> child::Proc {
    let kubeconfig = api.kubeconfig(dir, &format!("token-{id}"));
    let args = [
        "controller",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--bind-address",
        "127.0.0.1",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--healthz-port",
        "0",
        "--http3",
        "false",
        "--access-log",
        "off",
        "--publish-status-address",
        ADDRESS,
    ];
    child::Proc::start(&args, &[("POD_NAME", id), ("POD_NAMESPACE", "vestibule")], None, "vestibule controller started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_with_sigkill_the_other_takes_over_status_and_its_traffic_never_fails() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let coffee = common::echo("coffee").await;
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply(ingress("cafe", "cafe.example.com"));

    let mut a = replica(&api, dir.path(), "ctrl-a");
    wait_for("ctrl-a leads", Duration::from_secs(10), || holder(&api).as_deref() == Some("ctrl-a")).await;
    let b = replica(&api, dir.path(), "ctrl-b");
    wait_for("status written", Duration::from_secs(10), || status_addresses(&api, "cafe") == [ADDRESS]).await;
    let lease_secs = api.get("Lease", "vestibule", "vestibule-leader").unwrap()["spec"]["leaseDurationSeconds"].as_u64().expect("leaseDurationSeconds");

    // Traffic through both replicas.
    let to_leader = load::Load::get(a.http, "cafe.example.com", "/", 2, Duration::from_millis(5), &["coffee"]);
    let to_survivor = load::Load::get(b.http, "cafe.example.com", "/", 2, Duration::from_millis(5), &["coffee"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(to_leader.ok() > 10 && to_survivor.ok() > 10, "both replicas serve");
    assert_eq!(holder(&api).as_deref(), Some("ctrl-a"));

    a.sigkill();
    let killed = Instant::now();
    let leader_served = to_leader.stop().await;
    // A new Ingress while nobody leads: its status can only come from the new leader.
    api.apply(ingress("cafe2", "cafe2.example.com"));
    let puts_before = api.requests().iter().filter(|r| r.method == "PUT" && r.path.ends_with("/status")).count();
    wait_for("ctrl-b holds the Lease", Duration::from_secs(lease_secs + 10), || holder(&api).as_deref() == Some("ctrl-b")).await;
    let lease_taken = killed.elapsed();
    wait_for("status of the new Ingress", Duration::from_secs(10), || status_addresses(&api, "cafe2") == [ADDRESS]).await;
    let status_taken = killed.elapsed();
    let puts: Vec<_> = api.requests().into_iter().filter(|r| r.method == "PUT" && r.path.ends_with("/status")).skip(puts_before).collect();
    assert!(!puts.is_empty() && puts.iter().all(|r| r.token == "token-ctrl-b"), "status after the kill written by ctrl-b only");
    // What the killed leader wrote stays: it cleared nothing, and nobody cleared it.
    assert_eq!(status_addresses(&api, "cafe"), [ADDRESS]);
    // The survivor served the new Ingress all along; a second more of traffic.
    assert_eq!(load::get_echo(load::client(Duration::from_secs(5)), b.http, "cafe2.example.com", "/", &["coffee"]).await, Ok(()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let survivor = to_survivor.stop().await;

    println!(
        "lease {lease_secs} s: ctrl-b held the Lease {lease_taken:?} after the SIGKILL and wrote status {status_taken:?} after it; \
         survivor: {} requests, {} failed; killed leader: {} requests before the kill (its loops stop there)",
        survivor.total(),
        survivor.failed,
        leader_served.total()
    );
    assert_eq!(survivor.failed, 0, "traffic to the surviving replica failed: {:?}", survivor.failures);
    assert!(survivor.ok > 100, "only {} requests to the survivor", survivor.ok);
    // The Lease expires `lease_secs` after the last renewal, which was before the kill; the
    // survivor tries to acquire it every few seconds.
    assert!(lease_taken <= Duration::from_secs(lease_secs + 3), "takeover took {lease_taken:?} with a {lease_secs} s lease");
    assert!(status_taken <= lease_taken + Duration::from_secs(2), "status {status_taken:?} after the kill, the Lease at {lease_taken:?}");
    drop(b);
}
