//! Backends that fail in the ways real ones do: one that accepts and never answers, one that
//! resets the connection, one that answers a line that is not HTTP, one that closes in the
//! middle of its head, and an address where nothing listens. Alone, each gives the client
//! Vestibule's error page (504 after the read timeout, 502 otherwise). Beside a good endpoint,
//! idempotent requests never fail (`proxy-next-upstream: error timeout` tries the next
//! endpoint) and the bad endpoint is ejected after three failures in a row, so it stops costing
//! every request a failed try.

mod common;
#[path = "common/load.rs"]
mod load;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::echo::{self, EchoOptions, Identity};

const N: &str = "nginx.ingress.kubernetes.io/";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bad {
    /// Reads the request and never answers.
    Hang,
    /// Reads the request and resets the connection.
    Reset,
    /// Answers a line that is not HTTP, then closes.
    Garbage,
    /// Sends part of a response head, then closes.
    MidHead,
    /// Nothing listens: the connection is refused.
    Refused,
}

const KINDS: [(Bad, &str, u16); 5] = [(Bad::Hang, "hang", 504), (Bad::Reset, "reset", 502), (Bad::Garbage, "garbage", 502), (Bad::MidHead, "midhead", 502), (Bad::Refused, "refused", 502)];

/// Reads until the end of a request head (or the connection ends).
async fn read_head(s: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A bad backend on `listener`; counts the requests it was sent.
fn spawn_bad(listener: tokio::net::TcpListener, kind: Bad, seen: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                seen.fetch_add(1, Ordering::Relaxed);
                match kind {
                    Bad::Hang => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Bad::Reset => {
                        // Linger 0 on a non-blocking socket: the close sends a reset at once.
                        #[allow(deprecated)]
                        let _ = s.set_linger(Some(Duration::ZERO));
                        drop(s);
                    }
                    Bad::Garbage => {
                        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                    }
                    Bad::MidHead => {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl").await;
                    }
                    Bad::Refused => unreachable!(),
                }
            });
        }
    })
}

/// The backends: a good echo at 127.0.0.2:P and each bad kind at 127.0.0.(3+i):P, one port P
/// for all, since an EndpointSlice gives all its endpoints one port.
struct Backends {
    port: u16,
    seen: Vec<Arc<AtomicU64>>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

impl Backends {
    async fn start() -> Backends {
        'port: for _ in 0..20 {
            let good = tokio::net::TcpListener::bind((ip(2), 0)).await.unwrap();
            let port = good.local_addr().unwrap().port();
            let mut listeners = Vec::new();
            for (i, (kind, _, _)) in KINDS.iter().enumerate() {
                if *kind == Bad::Refused {
                    continue;
                }
                match tokio::net::TcpListener::bind((ip(3 + i as u8), port)).await {
                    Ok(l) => listeners.push((l, *kind)),
                    Err(_) => continue 'port,
                }
            }
            let identity = Identity { service: "good".into(), namespace: "default".into(), pod: "good-pod".into() };
            let mut tasks = vec![echo::spawn(good, EchoOptions { identity, tls: false })];
            let mut seen = Vec::new();
            for (l, kind) in listeners {
                let s = Arc::new(AtomicU64::new(0));
                seen.push(s.clone());
                tasks.push(spawn_bad(l, kind, s));
            }
            return Backends { port, seen, _tasks: tasks };
        }
        panic!("no port free on 127.0.0.2-7");
    }

    fn good(&self) -> SocketAddr {
        (ip(2), self.port).into()
    }

    fn bad(&self, i: usize) -> SocketAddr {
        (ip(3 + i as u8), self.port).into()
    }
}

fn ingress(name: &str, host: &str, svc: &str) -> String {
    Ingress::new("default", name).annotation(&format!("{N}proxy-read-timeout"), "1").annotation(&format!("{N}proxy-connect-timeout"), "1").host_path(host, "/", "Prefix", svc, 80).to_yaml()
}

async fn manifests(b: &Backends) -> Harness {
    let mut docs = Vec::new();
    for (i, (_, name, _)) in KINDS.iter().enumerate() {
        docs.push(backend_yaml("default", &format!("{name}-only"), &[b.bad(i)]));
        docs.push(ingress(&format!("{name}-only"), &format!("{name}-only.test"), &format!("{name}-only")));
        docs.push(backend_yaml("default", &format!("{name}-pair"), &[b.good(), b.bad(i)]));
        docs.push(ingress(&format!("{name}-pair"), &format!("{name}-pair.test"), &format!("{name}-pair")));
    }
    start(&manifest(docs)).await
}

/// Alone, a bad endpoint gives the client Vestibule's error page: the status, a text/html
/// body naming it, and the request ID the response header carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_backend_alone_gives_the_documented_error_page() {
    init_tracing();
    let b = Backends::start().await;
    let h = manifests(&b).await;
    for (_, name, status) in KINDS {
        let host: &'static str = Box::leak(format!("{name}-only.test").into_boxed_str());
        let t = Instant::now();
        let resp = h.get(host, "/").await;
        let took = t.elapsed();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let id = resp.headers().get("x-request-id").expect("x-request-id").to_str().unwrap().to_string();
        assert_eq!(resp.headers().get("content-type").unwrap(), "text/html", "{name}");
        let body = resp.text().await.unwrap();
        let reason = if status == 504 { "504 Gateway Time-out" } else { "502 Bad Gateway" };
        let expected = format!(
            "<html>\r\n<head><title>{reason}</title></head>\r\n<body>\r\n<center><h1>{reason}</h1></center>\r\n<hr><center>vestibule</center>\r\n<p>request id: {id}</p>\r\n</body>\r\n</html>\r\n"
        );
        assert_eq!(body, expected, "{name}: the error page");
        if status == 504 {
            assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "{name}: 504 after {took:?}, expected the 1 s read timeout");
        } else {
            assert!(took < Duration::from_millis(1500), "{name}: 502 took {took:?}");
        }
        println!("{name} alone: {status} in {took:?}");
    }
}

/// Beside a good endpoint, GETs never fail: a failed try goes to the other endpoint, and after
/// three failures in a row the bad one is ejected, so later requests do not try it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_good_endpoint_idempotent_requests_never_fail_and_the_bad_one_is_ejected() {
    init_tracing();
    let b = Backends::start().await;
    let h = manifests(&b).await;
    let mut total = 0;
    for (i, (kind, name, _)) in KINDS.iter().enumerate() {
        let host: &'static str = Box::leak(format!("{name}-pair.test").into_boxed_str());
        let ejections_before = h.running.shared.metrics.endpoint_ejections.get();
        let load_started = Instant::now();
        let load = load::Load::get(h.running.http, host, "/", 3, Duration::ZERO, &["good"]);
        // Until the bad endpoint is ejected (a hanging one costs a read timeout per try).
        let until = Instant::now() + Duration::from_secs(10);
        while !h.running.shared.registry.health(b.bad(i)).is_some_and(|s| s.ejected) {
            assert!(Instant::now() < until, "{name}: the bad endpoint was not ejected; health {:?}", h.running.shared.registry.health(b.bad(i)));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ejected_after = load_started.elapsed();
        let sent_to_bad = b.seen.get(i).map(|s| s.load(Ordering::Relaxed));
        // Ejected: the next second of requests never goes there, and none waits for a timeout.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stats = load.stop().await;
        total += stats.total();
        println!("{name} pair: {} requests, {} failed, bad endpoint ejected after {ejected_after:?}", stats.total(), stats.failed);
        assert_eq!(stats.failed, 0, "{name}: failed requests: {:?}", stats.failures);
        assert!(stats.ok >= 10, "{name}: only {} requests", stats.ok);
        assert!(h.running.shared.metrics.endpoint_ejections.get() > ejections_before, "{name}: the ejection is counted");
        if let (Some(before), Some(s)) = (sent_to_bad, b.seen.get(i)) {
            // The loops' requests in flight when it was ejected may still reach it.
            let after = s.load(Ordering::Relaxed);
            assert!(after <= before + 3, "{name}: {} requests reached the ejected endpoint", after - before);
        }
        if *kind == Bad::Hang {
            // Once ejected, a request is answered at once.
            let t = Instant::now();
            assert_eq!(h.route(host, "/").await, (200, Some("good".into())));
            assert!(t.elapsed() < Duration::from_millis(500), "a request after the ejection took {:?}", t.elapsed());
        }
    }
    println!("pairs: {total} requests, 0 failed");
}

/// What is not retried: a POST that was sent to an endpoint that then failed is not sent
/// again (it may have had an effect), so the client gets the 502; one that was never sent
/// (connection refused) moves on to the good endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_only_when_it_was_never_sent() {
    init_tracing();
    let b = Backends::start().await;
    let h = manifests(&b).await;
    let post = |host: &'static str| {
        let c = h.client.clone();
        let url = h.http("/");
        async move { c.post(url).header("host", host).body("x").send().await.unwrap().status().as_u16() }
    };
    for _ in 0..6 {
        assert_eq!(post("refused-pair.test").await, 200, "a POST never sent moves on");
    }
    let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|_| post("reset-pair.test"))).await;
    assert!(statuses.contains(&502), "a POST sent to the resetting endpoint is not sent again: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 502), "{statuses:?}");
}
