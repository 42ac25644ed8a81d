//! The API server away for 30 s under load: first the network path hangs (connections accepted,
//! nothing answered, open watches frozen), then the server is down (refused, connections cut),
//! then it is back on the same address. The data plane serves the last configuration
//! throughout; what changed meanwhile (an Ingress's rules, and its status overwritten by
//! someone else) is picked up once it is back, the status is written again, and the return
//! brings no storm of Events.

mod common;
mod fakeapi;
#[path = "common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::{Ingress, IngressClass};
use fakeapi::FakeApi;
use fakeapi::outage::{Gate, Mode};
use serde_json::{Value, json};
use vestibule::controller::{self, ApiConfig, ControllerOptions};
use vestibule::source::kube::Backoff;

const ADDRESS: &str = "192.0.2.10";
const HANG: Duration = Duration::from_secs(12);
const DOWN: Duration = Duration::from_secs(18);
/// Ingresses that do not change during the outage: each would get an Event again in a storm.
const QUIET: usize = 6;

fn ingress(name: &str, host: &str, svc: &str) -> Value {
    Ingress::new("default", name).class("vestibule").host_path(host, "/", "Prefix", svc, 80).to_json()
}

fn status_addresses(api: &FakeApi, name: &str) -> Vec<String> {
    let ing = api.get("Ingress", "default", name).unwrap();
    ing["status"]["loadBalancer"]["ingress"].as_array().map(|a| a.iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "{what}: not true after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn event_posts_since(api: &FakeApi, since: Instant) -> Vec<String> {
    api.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/events") && r.at >= since).map(|r| format!("{} {}", r.body["reason"].as_str().unwrap_or(""), r.body["regarding"]["name"].as_str().unwrap_or(""))).collect()
}

async fn healthz(addr: std::net::SocketAddr) -> u16 {
    load::client(Duration::from_secs(2)).get(format!("http://{addr}/healthz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seconds_without_the_api_server_lose_no_request_and_resync_without_an_event_storm() {
    common::init_tracing();
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start().await;
    let gate = Gate::start(api.addr).await;
    let (coffee, tea) = (common::echo("coffee").await, common::echo("tea").await);
    api.apply(IngressClass::new("vestibule", "vestibule.dev/ingress-controller").to_json());
    api.apply_yaml(&common::backend_yaml("default", "coffee", &[coffee.addr]));
    api.apply_yaml(&common::backend_yaml("default", "tea", &[tea.addr]));
    api.apply(ingress("cafe", "cafe.example.com", "coffee"));
    for i in 0..QUIET {
        api.apply(ingress(&format!("quiet{i}"), &format!("quiet{i}.example.com"), "coffee"));
    }
    let opts = ControllerOptions {
        serve: fakeapi::options::serve(),
        api: ApiConfig::Kubeconfig(gate.kubeconfig(dir.path(), "token-a")),
        namespace: Some("vestibule".into()),
        identity: Some("ctrl-a".into()),
        lease_duration_secs: 2,
        lease_grace_secs: 1,
        backoff: Backoff { min: Duration::from_millis(100), max: Duration::from_millis(400) },
        publish_status_address: vec![ADDRESS.into()],
        ..ControllerOptions::default()
    };
    let run = controller::start(opts).await.unwrap();
    wait_for("status written", Duration::from_secs(10), || (0..QUIET).all(|i| status_addresses(&api, &format!("quiet{i}")) == [ADDRESS]) && status_addresses(&api, "cafe") == [ADDRESS]).await;
    // The first Events (one Sync per Ingress) are out before the outage.
    wait_for("first Events", Duration::from_secs(10), || event_posts_since(&api, began).len() > QUIET).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_before = api.list("Event").len();

    // Load on a host that changes during the outage and on one that does not.
    let quiet = load::Load::get(run.http, "quiet0.example.com", "/", 2, Duration::from_millis(2), &["coffee"]);
    let cafe = load::Load::get(run.http, "cafe.example.com", "/", 2, Duration::from_millis(2), &["coffee", "tea"]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let outage = Instant::now();
    gate.set(Mode::Hang).await;
    tokio::time::sleep(HANG / 2).await;
    assert_eq!(healthz(run.healthz).await, 200, "ready while the API server hangs");
    // Meanwhile in the cluster: cafe now goes to tea, and someone wrote another address into
    // its status. Nobody watching can see either.
    let mut changed = ingress("cafe", "cafe.example.com", "tea");
    changed["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.99"}]}});
    api.set_silently(changed);
    tokio::time::sleep(HANG / 2).await;
    gate.set(Mode::Down).await;
    wait_for("stale flag", Duration::from_secs(5), || run.health.is_stale()).await;
    tokio::time::sleep(DOWN / 2).await;
    assert_eq!(healthz(run.healthz).await, 200, "ready while the API server is down");
    assert_eq!(load::get_echo(load::client(Duration::from_secs(2)), run.http, "cafe.example.com", "/", &["coffee"]).await, Ok(()), "the last configuration serves");
    tokio::time::sleep(DOWN / 2).await;
    let away = outage.elapsed();

    gate.set(Mode::Pass).await;
    let back = Instant::now();
    let rules = wait_for("the change made during the outage is served", Duration::from_secs(15), || run.applied().is_some_and(|a| format!("{:?}", a.store.ingresses.get(&("default".to_string(), "cafe".to_string()))).contains("tea"))).await;
    wait_for("the overwritten status is written again", Duration::from_secs(15), || status_addresses(&api, "cafe") == [ADDRESS]).await;
    let status = back.elapsed();
    wait_for("stale flag cleared", Duration::from_secs(10), || !run.health.is_stale()).await;
    assert_eq!(load::get_echo(load::client(Duration::from_secs(2)), run.http, "cafe.example.com", "/", &["tea"]).await, Ok(()));
    // A change after the return applies too.
    api.apply(ingress("after", "after.example.com", "tea"));
    wait_for("status of an Ingress made after the return", Duration::from_secs(10), || status_addresses(&api, "after") == [ADDRESS]).await;
    assert_eq!(load::get_echo(load::client(Duration::from_secs(2)), run.http, "after.example.com", "/", &["tea"]).await, Ok(()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (quiet, cafe) = (quiet.stop().await, cafe.stop().await);

    let events = event_posts_since(&api, back);
    println!(
        "API server away {away:?} ({HANG:?} hanging, then down); back: rules applied {rules:?} and status rewritten {status:?} after the return; \
         {} requests ({} + {}), {} failed; {} Events posted after the return: {events:?}",
        quiet.total() + cafe.total(),
        quiet.total(),
        cafe.total(),
        quiet.failed + cafe.failed,
        events.len()
    );
    assert_eq!(quiet.failed, 0, "failures: {:?}", quiet.failures);
    assert_eq!(cafe.failed, 0, "failures: {:?}", cafe.failures);
    assert!(quiet.ok > 1000, "only {} requests", quiet.ok);
    // At most: a Sync for the Ingress that changed and one for the new one; none for the
    // Ingresses that did not change.
    assert!(events.len() <= 3, "an Event storm after the return: {events:?}");
    assert!(events.iter().all(|e| !e.contains("quiet")), "Events again for unchanged Ingresses: {events:?}");
    assert!(api.list("Event").len() <= events_before + 3);
    run.shutdown().await;
}
