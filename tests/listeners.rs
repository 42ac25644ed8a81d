//! The listeners are part of the configuration: a swap opens the new ones, keeps those whose
//! spec is unchanged (same socket, connections untouched), and closes the ones gone, while
//! connections already accepted on a closed listener finish.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vestibule::config::{Config, ListenerProtocol, ListenerSpec, TlsCert};
use vestibule::proxy::{ProxyOptions, Shared};

fn spec(name: &str, port: u16) -> ListenerSpec {
    ListenerSpec { name: name.into(), addr: SocketAddr::from(([127, 0, 0, 1], port)), protocol: ListenerProtocol::Http, proxy_protocol: false }
}

fn config(listeners: Vec<ListenerSpec>) -> Config {
    vestibule::tls::install_provider();
    let (key, _, _) = vestibule::tls::self_signed(&["listeners.test"]).unwrap();
    let mut c = Config::new(TlsCert { key, secret: None });
    c.listeners = listeners;
    c
}

/// One request on a fresh connection: the status line, or None when the connection is refused.
async fn status(addr: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).lines().next().map(str::to_string)
}

#[tokio::test]
async fn swaps_open_keep_and_close_listeners() {
    let shared = Shared::new(config(Vec::new()), ProxyOptions::default());
    assert!(shared.swap(config(vec![spec("a", 0)])).is_empty());
    let a = shared.listeners.local_addr("a").expect("a is open");
    assert_eq!(status(a).await.as_deref(), Some("HTTP/1.1 404 Not Found"));

    // An unchanged spec keeps its socket (port 0 is not re-picked); a new one opens beside it.
    let keep_a = spec("a", 0);
    assert!(shared.swap(config(vec![keep_a.clone(), spec("b", 0)])).is_empty());
    assert_eq!(shared.listeners.local_addr("a"), Some(a), "the kept listener has the same socket");
    let b = shared.listeners.local_addr("b").expect("b is open");
    assert_eq!(status(b).await.as_deref(), Some("HTTP/1.1 404 Not Found"));

    // A connection accepted on b stays usable after b is removed; new ones are refused.
    let mut held = tokio::net::TcpStream::connect(b).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(shared.swap(config(vec![keep_a])).is_empty());
    assert_eq!(shared.listeners.local_addr("b"), None);
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(b).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the removed listener no longer accepts");
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut out)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 404"), "the held connection was served");
    assert_eq!(status(a).await.as_deref(), Some("HTTP/1.1 404 Not Found"), "a is untouched");
}

#[tokio::test]
async fn a_taken_port_is_reported_and_the_others_open() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let shared = Shared::new(config(Vec::new()), ProxyOptions::default());
    let errors = shared.swap(config(vec![spec("taken", port), spec("free", 0)]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].name, "taken");
    assert!(errors[0].to_string().contains(&port.to_string()), "{}", errors[0]);
    let free = shared.listeners.local_addr("free").expect("the other listener opened");
    assert_eq!(status(free).await.as_deref(), Some("HTTP/1.1 404 Not Found"));
}
