//! Hardening at the edge, through real sockets: request smuggling is refused before anything
//! reaches a backend, HTTP/2 abuse (rapid reset, CONTINUATION flood) is bounded, connection and
//! stream limits hold, and the PROXY protocol (v1, v2, over TLS) carries the client address.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vestibule::serve::ServeOptions;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

async fn setup_with(f: impl FnOnce(&mut ServeOptions)) -> (Echo, Harness) {
    init_tracing();
    let e = echo("echo").await;
    let m = manifest([backend_yaml("default", "echo", &[e.addr]), catch_all("echo").to_yaml()]);
    let h = start_with(&m, f).await;
    (e, h)
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1

/// What a raw exchange showed: the bytes received, and whether the server closed the connection
/// (end of stream or reset) before the timeout.
struct Exchange {
    text: String,
    closed: bool,
}

impl Exchange {
    fn status_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    fn status(&self) -> Option<u16> {
        self.status_line().split(' ').nth(1).and_then(|s| s.parse().ok())
    }
    /// Header values of `name` (case-insensitive) in the first response head.
    fn header(&self, name: &str) -> Vec<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .collect()
    }
    fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }
}

/// Sends `request` on a new connection and reads until the server closes or `timeout` passes.
async fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before everything is written; that is fine.
    let _ = s.write_all(request).await;
    let (out, closed) = read_until_closed(&mut s, timeout).await;
    Exchange { text: String::from_utf8_lossy(&out).into_owned(), closed }
}

async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one response (head and Content-Length body) off a keep-alive connection.
async fn read_one_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk)).await.ok()?.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned()));
        }
        let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A backend that counts the connections and requests it gets, and the request bodies' bytes.
struct Counting {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn counting_backend() -> Counting {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (c, r, b) = (connections.clone(), requests.clone(), bodies.clone());
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (r, b) = (r.clone(), b.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (r, b) = (r.clone(), b.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let body = req.into_body().collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
                        let len = body.len();
                        b.lock().unwrap().push(body);
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(format!("got {len} bytes")))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(s), svc).await;
            });
        }
    });
    Counting { addr, connections, requests, bodies, task }
}

async fn counting_setup() -> (Counting, Harness) {
    init_tracing();
    let b = counting_backend().await;
    let m = manifest([backend_yaml("default", "counted", &[b.addr]), catch_all("counted").to_yaml()]);
    let h = start(&m).await;
    (b, h)
}

// ---------------------------------------------------------------------------------------------
// 1. Request smuggling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_with_400_and_close_before_any_backend_sees_it() {
    let (backend, h) = counting_setup().await;
    let cases: &[(&str, &str)] = &[
        ("Content-Length with Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("Transfer-Encoding with Content-Length", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        ("two equal Content-Length headers", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"),
        ("two different Content-Length headers", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("signed Content-Length", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +4\r\n\r\nabcd"),
        ("Content-Length list", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4, 4\r\n\r\nabcd"),
        ("bad chunk size", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a.test\r\nX-Folded: one\r\n two\r\n\r\n"),
        ("obs-fold of Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
        ("Transfer-Encoding gzip", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nabcd"),
        ("Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
        ("Transfer-Encoding chunked, gzip", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
        ("two Transfer-Encoding headers", "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
        ("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"),
    ];
    let mut failures = Vec::new();
    for (name, request) in cases {
        let before = backend.requests.load(Ordering::SeqCst);
        let x = exchange(h.running.http, request.as_bytes(), Duration::from_secs(2)).await;
        let after = backend.requests.load(Ordering::SeqCst);
        let mut problems = Vec::new();
        if x.status() != Some(400) {
            problems.push(format!("status line {:?}", x.status_line()));
        }
        if !x.header("connection").iter().any(|v| v.split(',').any(|t| t.trim() == "close")) {
            problems.push(format!("Connection headers {:?}", x.header("connection")));
        }
        if !x.closed {
            problems.push("connection left open".into());
        }
        if after != before {
            problems.push(format!("the backend saw {} request(s)", after - before));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n    response: {:?}", problems.join("; "), x.text.chars().take(300).collect::<String>()));
        }
    }
    assert!(failures.is_empty(), "smuggling attempts not refused as required:\n{}", failures.join("\n"));
    assert_eq!(backend.requests.load(Ordering::SeqCst), 0, "no smuggling attempt reaches the backend");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 0, "nor even opens a connection to it");

    // A well-formed chunked request still goes through, body intact.
    let ok = exchange(h.running.http, b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n", IO_TIMEOUT).await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    assert_eq!(ok.body(), "got 7 bytes");
    assert_eq!(backend.requests.load(Ordering::SeqCst), 1);
    assert_eq!(backend.bodies.lock().unwrap().last().map(|b| b.as_slice()), Some(&b"abcdefg"[..]));
    // And so does one with a plain Content-Length.
    let ok = exchange(h.running.http, b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nwxyz", IO_TIMEOUT).await;
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    assert_eq!(ok.body(), "got 4 bytes");
}

// ---------------------------------------------------------------------------------------------
// 2. HTTP/2 abuse

/// A raw HTTP/2 frame.
fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// An HPACK string literal (no Huffman coding), length with a 7-bit prefix.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A GET request's header block: `:method GET`, `:scheme http`, `:path`, `:authority`.
fn get_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    // Literal without indexing, indexed name (:path is 4, :authority is 1).
    hpack_int(&mut b, 0x00, 4, 4);
    hpack_string(&mut b, path.as_bytes());
    hpack_int(&mut b, 0x00, 4, 1);
    hpack_string(&mut b, authority.as_bytes());
    b
}

/// A literal header field with a new name, not indexed.
fn literal_field(name: &str, value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00];
    hpack_string(&mut b, name.as_bytes());
    hpack_string(&mut b, value);
    b
}

struct RawFrame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Reads one frame; None at end of stream, on error or after `timeout`.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, timeout: Duration) -> Option<RawFrame> {
    let fut = async {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.ok()?;
        Some(RawFrame { ty: head[3], flags: head[4], stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff, payload })
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

/// The server's SETTINGS parameters, read from the first non-ACK SETTINGS frame.
async fn server_settings(s: &mut TcpStream) -> Vec<(u16, u32)> {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let f = read_frame(s, deadline.saturating_duration_since(Instant::now())).await.expect("the server sends SETTINGS");
        if f.ty == SETTINGS && f.flags & 0x1 == 0 {
            return f.payload.chunks_exact(6).map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]]))).collect();
        }
    }
}

/// A plain HTTP/1.1 request through a fresh connection works, quickly.
async fn still_serving(h: &Harness) {
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(3), h.client.get(h.http("/after")).send())
        .await
        .expect("a new connection is served within 3 s")
        .expect("the request succeeds");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["path"], "/after");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_is_bounded_and_the_server_keeps_serving() {
    let (_e, h) = setup_with(|_| {}).await;
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let (mut client, conn) = h2::client::Builder::new().handshake::<_, Bytes>(tcp).await.expect("h2c handshake with prior knowledge");
    let conn_task = tokio::spawn(conn);

    let attack = async {
        let mut opened = 0usize;
        let mut refused: Option<h2::Error> = None;
        for i in 0..5000 {
            client = match client.clone().ready().await {
                Ok(c) => c,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            };
            let req = http::Request::get(format!("http://a.test/?i={i}")).body(()).unwrap();
            match client.send_request(req, true) {
                Ok((resp, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(resp);
                    opened += 1;
                }
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        (opened, refused)
    };
    let started = Instant::now();
    let (opened, refused) = tokio::time::timeout(Duration::from_secs(20), attack).await.expect("the reset flood ends in bounded time");
    tracing::info!(opened, ?refused, elapsed = ?started.elapsed(), "rapid reset flood done");
    assert!(opened > 0, "at least some streams were opened before the server reacted");

    // Either the server ended the connection (GOAWAY), or it still serves on it.
    if refused.is_none() {
        let on_same = async {
            let mut c = client.clone().ready().await?;
            let (resp, _) = c.send_request(http::Request::get("http://a.test/same").body(()).unwrap(), true)?;
            resp.await
        };
        match tokio::time::timeout(Duration::from_secs(3), on_same).await {
            Ok(Ok(resp)) => assert_eq!(resp.status(), 200),
            Ok(Err(e)) => assert!(e.is_go_away() || e.is_io() || e.is_reset(), "unexpected error on the flooded connection: {e}"),
            Err(_) => panic!("the flooded connection neither answers nor closes within 3 s"),
        }
    } else {
        // The connection future ends once the server has closed it.
        let ended = tokio::time::timeout(Duration::from_secs(5), conn_task).await;
        assert!(ended.is_ok(), "after GOAWAY the connection closes within 5 s");
    }
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_closes_the_connection() {
    let (_e, h) = setup_with(|_| {}).await;
    let mut s = TcpStream::connect(h.running.http).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let (mut rd, mut wr) = s.into_split();

    // HEADERS without END_HEADERS, then CONTINUATION frames adding up to far more than the
    // header list limit (64 KiB by default), never ending the block.
    let writer = tokio::spawn(async move {
        let mut first = get_block("/flood", "a.test");
        first.extend(literal_field("x-flood-0", &[b'a'; 512]));
        let mut out = frame(HEADERS, END_STREAM, 1, &first);
        if wr.write_all(&out).await.is_err() {
            return 0usize;
        }
        let mut sent = 0usize;
        for i in 1..2000 {
            out = frame(CONTINUATION, 0, 1, &literal_field(&format!("x-flood-{i}"), &[b'a'; 1000]));
            if wr.write_all(&out).await.is_err() {
                break;
            }
            sent += out.len();
        }
        sent
    });

    // The server must say why it ends the connection: a GOAWAY within 5 s, with
    // ENHANCE_YOUR_CALM (RFC 9113 §7) for a header block that never ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let goaway = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match read_frame(&mut rd, left).await {
            Some(f) if f.ty == GOAWAY => break f,
            Some(f) => seen.push(f.ty),
            None if Instant::now() >= deadline => panic!("no GOAWAY within 5 s of a CONTINUATION flood (frame types seen: {seen:?})"),
            None => panic!("the connection ended without a GOAWAY (frame types seen: {seen:?})"),
        }
    };
    assert_eq!(goaway.stream, 0, "GOAWAY is a connection frame");
    assert!(goaway.payload.len() >= 8, "a GOAWAY payload has a last stream ID and an error code: {:?}", goaway.payload);
    let code = u32::from_be_bytes([goaway.payload[4], goaway.payload[5], goaway.payload[6], goaway.payload[7]]);
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    assert_eq!(code, ENHANCE_YOUR_CALM, "the GOAWAY's error code (debug data {:?})", String::from_utf8_lossy(&goaway.payload[8..]));
    let sent = tokio::time::timeout(Duration::from_secs(10), writer).await.expect("the flooding writer stops").unwrap();
    tracing::info!(sent, code, "continuation flood done");
    still_serving(&h).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_settings_advertise_and_enforce_the_stream_and_header_limits() {
    let (_e, h) = setup_with(|o| {
        o.proxy.max_concurrent_streams = 7;
        o.proxy.max_header_bytes = 16 * 1024;
    })
    .await;

    // What an h2 client learns from the server's SETTINGS.
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let (client, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let mut c = client.clone();
    let resp = tokio::time::timeout(IO_TIMEOUT, async {
        let req = http::Request::get("http://a.test/settings").body(()).unwrap();
        let (resp, _) = c.send_request(req, true).unwrap();
        tokio::select! {
            r = resp => r,
            _ = &mut conn => panic!("connection ended"),
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(conn.max_concurrent_send_streams(), 7, "SETTINGS_MAX_CONCURRENT_STREAMS as configured");
    drop(client);

    // Raw: the advertised values, then an eighth concurrent stream is refused.
    let mut s = TcpStream::connect(h.running.http).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let settings = server_settings(&mut s).await;
    assert!(settings.contains(&(0x3, 7)), "MAX_CONCURRENT_STREAMS 7 in {settings:?}");
    assert!(settings.contains(&(0x6, 16 * 1024)), "MAX_HEADER_LIST_SIZE 16384 in {settings:?}");
    s.write_all(&frame(SETTINGS, 0x1, 0, &[])).await.unwrap();
    let mut burst = Vec::new();
    for k in 0..8u32 {
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * k, &get_block("/?delay_ms=400", "a.test")));
    }
    s.write_all(&burst).await.unwrap();
    let mut answered = std::collections::BTreeSet::new();
    let mut reset = std::collections::BTreeMap::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    while answered.len() + reset.len() < 8 {
        let f = read_frame(&mut s, deadline.saturating_duration_since(Instant::now())).await.unwrap_or_else(|| panic!("answers so far {answered:?}, resets {reset:?}"));
        match f.ty {
            HEADERS if f.stream != 0 => {
                answered.insert(f.stream);
            }
            RST_STREAM => {
                reset.insert(f.stream, u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]));
            }
            GOAWAY => panic!("unexpected GOAWAY; answered {answered:?}, resets {reset:?}"),
            _ => {}
        }
    }
    assert_eq!(answered, (0..7u32).map(|k| 1 + 2 * k).collect(), "the first 7 streams are served");
    assert_eq!(reset.into_iter().collect::<Vec<_>>(), vec![(15, 0x7)], "the 8th concurrent stream is refused (REFUSED_STREAM)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_http2_header_list_is_refused() {
    let (_e, h) = setup_with(|o| o.proxy.max_header_bytes = 16 * 1024).await;
    let tcp = TcpStream::connect(h.running.http).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut c = client.ready().await.unwrap();
    let ok = http::Request::get("http://a.test/small").header("x-small", "a".repeat(1000)).body(()).unwrap();
    let (resp, _) = c.send_request(ok, true).unwrap();
    assert_eq!(tokio::time::timeout(IO_TIMEOUT, resp).await.unwrap().unwrap().status(), 200);
    // 32 KiB of headers against a 16 KiB limit: refused (431, or a stream/connection error),
    // never forwarded.
    let mut c = c.ready().await.unwrap();
    let mut big = http::Request::get("http://a.test/big");
    for i in 0..8 {
        big = big.header(format!("x-big-{i}"), "b".repeat(4096));
    }
    let outcome = match c.send_request(big.body(()).unwrap(), true) {
        Err(e) => Err(e.to_string()),
        Ok((resp, _)) => match tokio::time::timeout(IO_TIMEOUT, resp).await.expect("an answer within 5 s") {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(e.to_string()),
        },
    };
    assert!(matches!(outcome, Ok(431) | Err(_)), "a header list over the limit is refused, got {outcome:?}");
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_address_are_limited() {
    let (_e, h) = setup_with(|o| o.proxy.max_connections_per_ip = 2).await;
    let req = b"GET /keep HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let mut a = TcpStream::connect(h.running.http).await.unwrap();
    let mut b = TcpStream::connect(h.running.http).await.unwrap();
    for s in [&mut a, &mut b] {
        s.write_all(req).await.unwrap();
        assert_eq!(read_one_response(s).await.map(|r| r.0), Some(200), "the first two connections are served");
    }
    // A third while two are open: closed without a response.
    let third = exchange(h.running.http, req, Duration::from_secs(3)).await;
    assert!(third.closed, "the third connection is closed");
    assert!(third.text.is_empty(), "the third connection gets no response: {:?}", third.text);
    // The two admitted connections still work.
    for s in [&mut a, &mut b] {
        s.write_all(req).await.unwrap();
        assert_eq!(read_one_response(s).await.map(|r| r.0), Some(200));
    }
    // Once one closes, a new connection is admitted again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let x = exchange(h.running.http, b"GET /again HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", Duration::from_secs(3)).await;
        if x.status() == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "a slot is free again after a connection closed; last answer {:?}", x.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.write_all(req).await.unwrap();
    assert_eq!(read_one_response(&mut b).await.map(|r| r.0), Some(200));
}

// ---------------------------------------------------------------------------------------------
// 4. PROXY protocol

async fn proxied_request(h: &Harness, header: &[u8]) -> Exchange {
    let mut req = header.to_vec();
    req.extend_from_slice(b"GET /pp HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    exchange(h.running.http, &req, IO_TIMEOUT).await
}

fn echoed(x: &Exchange) -> Value {
    serde_json::from_str(x.body()).unwrap_or_else(|e| panic!("not an echo answer ({e}): {:?}", x.text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_give_the_client_address() {
    let (_e, h) = setup_with(|o| o.proxy.proxy_protocol = true).await;

    let v1 = proxied_request(&h, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n").await;
    assert_eq!(v1.status(), Some(200), "{}", v1.text);
    let v = echoed(&v1);
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(v["headers"]["x-real-ip"], "203.0.113.7");

    let header = vestibule::proxy::proxy_protocol::encode_v2("198.51.100.9:4444".parse().unwrap(), "10.0.0.1:80".parse().unwrap());
    let v2 = proxied_request(&h, &header).await;
    assert_eq!(v2.status(), Some(200), "{}", v2.text);
    let v = echoed(&v2);
    assert_eq!(v["headers"]["x-forwarded-for"], "198.51.100.9");
    assert_eq!(v["headers"]["x-real-ip"], "198.51.100.9");

    let header6 = vestibule::proxy::proxy_protocol::encode_v2("[2001:db8::7]:4444".parse().unwrap(), "[2001:db8::1]:80".parse().unwrap());
    let v6 = proxied_request(&h, &header6).await;
    assert_eq!(v6.status(), Some(200), "{}", v6.text);
    let v = echoed(&v6);
    assert_eq!(v["headers"]["x-forwarded-for"], "2001:db8::7");
    assert_eq!(v["headers"]["x-real-ip"], "2001:db8::7");

    // v1 over TCP6 as well.
    let v16 = proxied_request(&h, b"PROXY TCP6 2001:db8::8 2001:db8::1 5555 80\r\n").await;
    assert_eq!(echoed(&v16)["headers"]["x-real-ip"], "2001:db8::8");

    // A client's own X-Forwarded-For is not trusted (ingress-nginx's default): X-Forwarded-For
    // is the PROXY address alone; the client's value travels as X-Original-Forwarded-For.
    let mut req = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n".to_vec();
    req.extend_from_slice(b"GET /pp HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.1\r\nConnection: close\r\n\r\n");
    let x = exchange(h.running.http, &req, IO_TIMEOUT).await;
    assert_eq!(echoed(&x)["headers"]["x-forwarded-for"], "203.0.113.7");
    assert_eq!(echoed(&x)["headers"]["x-original-forwarded-for"], "192.0.2.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_required_drops_connections_without_a_header() {
    let (_e, h) = setup_with(|o| o.proxy.proxy_protocol = true).await;
    let plain = exchange(h.running.http, b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", IO_TIMEOUT).await;
    assert!(plain.closed, "a connection without a PROXY header is closed");
    assert!(plain.text.is_empty(), "and gets no HTTP answer: {:?}", plain.text);
    let garbage = exchange(h.running.http, b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n", IO_TIMEOUT).await;
    assert!(garbage.closed && garbage.text.is_empty(), "a malformed PROXY header is dropped: {:?}", garbage.text);
    // Valid ones still work afterwards.
    let ok = proxied_request(&h, b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n").await;
    assert_eq!(ok.status(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_before_the_tls_client_hello() {
    let (_e, h) = setup_with(|o| o.proxy.proxy_protocol = true).await;
    vestibule::tls::install_provider();
    let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
    let cfg = Arc::new(rustls::ClientConfig::builder().dangerous().with_custom_certificate_verifier(rec).with_no_client_auth());

    for (header, want) in [
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 443\r\n".to_vec(), "203.0.113.7"),
        (vestibule::proxy::proxy_protocol::encode_v2("[2001:db8::9]:1".parse().unwrap(), "[2001:db8::1]:443".parse().unwrap()), "2001:db8::9"),
    ] {
        let mut tcp = TcpStream::connect(h.running.https).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
        let mut tls = tokio::time::timeout(IO_TIMEOUT, tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("TLS handshake after the PROXY header succeeds");
        tls.write_all(b"GET /tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
        let (out, _) = read_until_closed(&mut tls, IO_TIMEOUT).await;
        let x = Exchange { text: String::from_utf8_lossy(&out).into_owned(), closed: true };
        assert_eq!(x.status(), Some(200), "{}", x.text);
        let v = echoed(&x);
        assert_eq!(v["headers"]["x-forwarded-for"], want);
        assert_eq!(v["headers"]["x-real-ip"], want);
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }

    // A TLS ClientHello with no PROXY header first is dropped.
    let tcp = TcpStream::connect(h.running.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
    let r = tokio::time::timeout(IO_TIMEOUT, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp)).await.expect("the server reacts in time");
    assert!(r.is_err(), "a TLS connection without a PROXY header is dropped");
}
