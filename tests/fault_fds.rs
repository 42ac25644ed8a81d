//! Out of file descriptors: `vestibule serve` under a low `ulimit -n`, flooded with connections
//! that stay open. It keeps answering the keep-alive connections it has, defers new ones (they
//! wait in the backlog) without spinning in its accept loop, and serves new connections again
//! once the flood ends.

mod common;
#[path = "common/child.rs"]
mod child;
#[path = "common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::*;

/// The open file limit the proxy runs with.
const NOFILE: u64 = 64;
/// Connections the flood opens (more than the limit and the backlog together).
const FLOOD: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_it_keeps_serving_defers_new_connections_and_recovers() {
    init_tracing();
    let (web, fresh) = (echo("web").await, echo("fresh").await);
    let dir = tempfile::tempdir().unwrap();
    let app = manifest([
        backend_yaml("default", "web", &[web.addr]),
        Ingress::new("default", "web").host_path("fd.test", "/", "Prefix", "web", 80).to_yaml(),
        backend_yaml("default", "fresh", &[fresh.addr]),
        Ingress::new("default", "fresh").host_path("fresh.test", "/", "Prefix", "fresh", 80).to_yaml(),
    ]);
    std::fs::write(dir.path().join("app.yaml"), app).unwrap();
    let args = ["serve", "--manifests", dir.path().to_str().unwrap(), "--bind-address", "127.0.0.1", "--http-port", "0", "--https-port", "0", "--healthz-port", "0", "--access-log", "off", "--http3", "false"];
    let proc = child::Proc::start(&args, &[], Some(NOFILE), "vestibule serving");
    let (pid, http) = (proc.pid(), proc.http);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("64")), "{limits}");

    // Two keep-alive clients, a request every 50 ms each; their connections (and the proxy's
    // pooled connections to the backend) are open before the flood.
    let steady = load::Load::get(http, "fd.test", "/", 2, Duration::from_millis(50), &["web"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_flood = steady.ok();
    assert!(before_flood >= 4, "the steady clients are served");
    // Four requests at once that each take 200 ms leave four pooled connections to the backend:
    // the steady clients' requests, should two overlap while saturated, each find one instead of
    // needing a socket that no free descriptor allows.
    let warm = load::client(Duration::from_secs(5));
    let warmed = futures_util::future::join_all((0..4).map(|_| load::get_echo(warm.clone(), http, "fd.test", "/?delay_ms=200", &["web"]))).await;
    assert!(warmed.iter().all(|r| r.is_ok()), "{warmed:?}");
    drop(warm);
    let idle_fds = load::open_fds(pid);
    // A keep-alive client that will ask, while no descriptor is free, for a backend the proxy
    // has no connection to yet.
    let probe = load::client(Duration::from_secs(3));
    assert_eq!(load::get_echo(probe.clone(), http, "fd.test", "/", &["web"]).await, Ok(()));

    // The flood: connections that send nothing and stay open.
    let flood: Vec<tokio::net::TcpStream> = futures_util::future::join_all((0..FLOOD).map(|_| async move { tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(http)).await.ok().and_then(|r| r.ok()) })).await.into_iter().flatten().collect();
    let until = Instant::now() + Duration::from_secs(5);
    while (load::open_fds(pid) as u64) < NOFILE - 2 {
        assert!(Instant::now() < until, "the proxy did not run out of descriptors: {} open", load::open_fds(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("flood: {} connections opened; the proxy had {idle_fds} descriptors open before, {} now (limit {NOFILE})", flood.len(), load::open_fds(pid));

    // A new client now: deferred, not refused.
    let deferred_started = Instant::now();
    let deferred = tokio::spawn(async move {
        let c = load::client(Duration::from_secs(20));
        let r = load::get_echo(c, http, "fd.test", "/", &["web"]).await;
        (r, deferred_started.elapsed())
    });

    // Saturated: the steady clients keep being answered, and the accept loop does not spin.
    let (cpu0, ok0, t0) = (load::cpu_time(pid), steady.ok(), Instant::now());
    // The new backend cannot be connected to (no descriptor for the socket): that says nothing
    // about the endpoint, which must not be ejected for it.
    let mut probed = Vec::new();
    for _ in 0..4 {
        let r = probe.get(format!("http://{http}/")).header("host", "fresh.test").send().await;
        probed.push(r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()));
    }
    println!("requests for a backend not connected yet, while saturated: {probed:?}");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed())).await;
    let (cpu, served, wall) = (load::cpu_time(pid) - cpu0, steady.ok() - ok0, t0.elapsed());
    println!("saturated for {wall:?}: {served} steady requests answered, proxy CPU {cpu:?} ({:.1}% of one core)", cpu.as_secs_f64() * 100.0 / wall.as_secs_f64());
    assert!(served >= 40, "the connections it has are served while saturated: {served} answers in {wall:?}");
    assert_eq!(steady.failed(), 0, "a steady client failed while saturated");
    assert!(cpu < wall / 4, "the proxy used {cpu:?} of CPU in {wall:?} while out of descriptors: the accept loop spins");
    assert!(!deferred.is_finished(), "a new connection was answered while no descriptor was free");

    // The flood ends: the deferred client is answered, and new connections are served.
    drop(flood);
    let (r, took) = tokio::time::timeout(Duration::from_secs(10), deferred).await.expect("the deferred client is answered").unwrap();
    assert_eq!(r, Ok(()), "the deferred client");
    println!("the deferred client was answered after {took:?}");
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(load::get_echo(load::client(Duration::from_secs(5)), http, "fd.test", "/", &["web"]).await, Ok(()), "a new connection after the flood");
    }
    println!("20 new connections served in {:?} after the flood", t.elapsed());
    let live: serde_json::Value = load::client(Duration::from_secs(5)).get(format!("http://{}/debug/live", proc.healthz)).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["endpoints"][fresh.addr.to_string()]["ejected"], false, "an endpoint was ejected for our own lack of descriptors: {live}");
    assert_eq!(load::get_echo(load::client(Duration::from_secs(5)), http, "fresh.test", "/", &["fresh"]).await, Ok(()));
    let stats = steady.stop().await;
    println!("steady clients: {} requests, {} failed", stats.total(), stats.failed);
    assert_eq!(stats.failed, 0, "failures: {:?}", stats.failures);
    // Logged, but once per period, not once per failed accept.
    let lines = proc.count_log("accept failed");
    assert!((1..=3).contains(&lines), "{lines} log lines about failed accepts:\n{}", proc.log());
}
