//! The request path through real sockets: forwarding headers, hop-by-hop stripping, response
//! framing, body and header limits, timeouts, keep-alive and pass-through of backend answers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vestibule::serve::ServeOptions;

const MIB: usize = 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An Ingress sending `host` to `svc`.
fn host_rule(host: &str, svc: &str) -> Ingress {
    Ingress::new("default", &format!("{svc}-{}", host.replace('.', "-"))).host_path(host, "/", "Prefix", svc, 80)
}

/// One echo backend behind a catch-all Ingress, on a Vestibule with options shaped by `f`.
async fn setup_with(f: impl FnOnce(&mut ServeOptions)) -> (Echo, Harness) {
    init_tracing();
    let e = echo("echo").await;
    let m = manifest([backend_yaml("default", "echo", &[e.addr]), catch_all("echo").to_yaml()]);
    let h = start_with(&m, f).await;
    (e, h)
}

async fn setup() -> (Echo, Harness) {
    setup_with(|_| {}).await
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header names lower-cased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A raw HTTP/1.1 client connection that can read several responses in a row.
struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    async fn connect(addr: SocketAddr) -> Self {
        RawConn { stream: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes into the buffer; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk)).await.expect("response arrives in time").expect("read succeeds");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed in the middle of a response");
        }
        self.buf.drain(..n).collect()
    }

    async fn take_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await, "connection closed in the middle of a line");
        }
    }

    /// Reads one response head, and its body unless `head_only` (a HEAD request's answer).
    async fn response(&mut self, head_only: bool) -> RawResponse {
        let status_line = self.take_line().await;
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line: {status_line:?}");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.take_line().await;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or_else(|| panic!("header line: {line:?}"));
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = RawResponse { status, headers, body: Vec::new(), chunked: false };
        if head_only || status == 204 || status == 304 {
            return resp;
        }
        let te = resp.header("transfer-encoding").map(str::to_ascii_lowercase);
        if te.as_deref().is_some_and(|t| t.contains("chunked")) {
            resp.chunked = true;
            loop {
                let size_line = self.take_line().await;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap_or_else(|_| panic!("chunk size: {size_line:?}"));
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.take_line().await.is_empty() {}
                    break;
                }
                let data = self.take(size).await;
                resp.body.extend_from_slice(&data);
                assert_eq!(self.take(2).await, b"\r\n", "chunk terminator");
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            resp.body = self.take(len).await;
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Waits for the server to close: true if it did (EOF or reset) within `timeout`.
    async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn echo_json(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Forwarding headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_client_xff_replaced() {
    let (_e, h) = setup().await;
    let port = h.running.http.port();

    // The client sends an X-Forwarded-For: as in ingress-nginx (use-forwarded-headers off by
    // default) it is not trusted: X-Forwarded-For is the client address alone, and the client's
    // value travels as X-Original-Forwarded-For.
    let resp = h.client.get(h.http("/fwd")).header("host", "shop.example:8080").header("x-forwarded-for", "1.2.3.4").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let j = echo_json(resp).await;
    let hd = &j["headers"];
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-original-forwarded-for"], "1.2.3.4", "{j:#}");
    assert_eq!(hd["x-real-ip"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-host"], "shop.example:8080", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], port.to_string(), "{j:#}");

    // No X-Forwarded-For from the client: it is set to the client address.
    let j = echo_json(h.get("plain.example", "/fwd").await).await;
    let hd = &j["headers"];
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-real-ip"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-host"], "plain.example", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], port.to_string(), "{j:#}");

    // A client-supplied X-Real-IP / X-Forwarded-Proto / X-Forwarded-Host is not trusted.
    let resp = h
        .client
        .get(h.http("/fwd"))
        .header("host", "real.example")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "1")
        .send()
        .await
        .unwrap();
    let j = echo_json(resp).await;
    let hd = &j["headers"];
    assert_eq!(hd["x-real-ip"], "127.0.0.1", "{j:#}");
    assert_eq!(hd["x-forwarded-proto"], "http", "{j:#}");
    assert_eq!(hd["x-forwarded-host"], "real.example", "{j:#}");
    assert_eq!(hd["x-forwarded-port"], port.to_string(), "{j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_or_generated_and_returned() {
    let (_e, h) = setup().await;

    // Kept when the client sends one; the response carries the same ID.
    let resp = h.client.get(h.http("/id")).header("x-request-id", "client-chosen-id-42").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-id-42");
    let j = echo_json(resp).await;
    assert_eq!(j["headers"]["x-request-id"], "client-chosen-id-42", "{j:#}");

    // Generated otherwise: 32 hex characters, the same at the backend and in the response,
    // and different for each request.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let resp = h.get("", "/id").await;
        assert_eq!(resp.status(), 200);
        let returned = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(is_hex32(&returned), "generated request ID {returned:?}");
        let j = echo_json(resp).await;
        assert_eq!(j["headers"]["x-request-id"], returned.as_str(), "{j:#}");
        assert!(seen.insert(returned), "request IDs repeat");
    }

    // Vestibule's own answers carry it too (413 from the head alone, no backend involved).
    let mut c = RawConn::connect(h.running.http).await;
    c.send(format!("POST / HTTP/1.1\r\nHost: a.example\r\nX-Request-ID: own-answer-7\r\nContent-Length: {}\r\n\r\n", 2 * MIB).as_bytes()).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-request-id"), Some("own-answer-7"));
    assert!(String::from_utf8_lossy(&r.body).contains("own-answer-7"));
}

// ---------------------------------------------------------------------------------------------
// 2. Hop-by-hop headers and Host

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_host_is_kept() {
    let (_e, h) = setup().await;
    let mut c = RawConn::connect(h.running.http).await;
    c.send(
        b"GET /hop HTTP/1.1\r\n\
          Host: Shop.Example:8080\r\n\
          Connection: keep-alive, x-secret, X-Other\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers\r\n\
          Trailer: X-Checksum\r\n\
          Upgrade: h2c\r\n\
          X-Secret: 1\r\n\
          X-Other: 2\r\n\
          X-Kept: 3\r\n\
          \r\n",
    )
    .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    let hd = j["headers"].as_object().unwrap();
    for name in ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-secret", "x-other"] {
        assert!(!hd.contains_key(name), "{name} reached the backend: {j:#}");
    }
    assert_eq!(hd["x-kept"], "3", "{j:#}");
    // Host reaches the backend unchanged, port and case included.
    assert_eq!(j["host"], "Shop.Example:8080", "{j:#}");
    assert_eq!(hd["host"], "Shop.Example:8080", "{j:#}");

    // Without a port as well, on the same connection.
    c.send(b"GET /hop HTTP/1.1\r\nHost: shop.example\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["host"], "shop.example");
}

// ---------------------------------------------------------------------------------------------
// 3. Response framing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_date_and_no_server() {
    let (_e, h) = setup_with(|o| o.proxy.body_limit = 10).await;
    let check = |what: &str, resp: &reqwest::Response| {
        // ingress-nginx's default (server-tokens: false) sends no Server header at all.
        assert!(resp.headers().get("server").is_none(), "{what}: a Server header: {:?}", resp.headers());
        let date = resp.headers().get("date").unwrap_or_else(|| panic!("{what}: no Date header")).to_str().unwrap();
        httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("{what}: Date {date:?} is not an HTTP date: {e}"));
    };
    // A proxied answer.
    let resp = h.get("a.example", "/").await;
    assert_eq!(resp.status(), 200);
    check("proxied", &resp);
    // A proxied error status.
    let resp = h.get("a.example", "/?status=503").await;
    assert_eq!(resp.status(), 503);
    check("proxied 503", &resp);
    // Vestibule's own answer (body limit exceeded).
    let resp = h.client.post(h.http("/")).body(vec![b'x'; 100]).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    check("413", &resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_content_length_is_kept() {
    let (_e, h) = setup().await;
    let resp = h.get("a.example", "/?bytes=12345").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "12345");
    assert!(resp.headers().get("transfer-encoding").is_none());
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 12345);
    assert!(body.iter().all(|&b| b == b'v'));

    // On a raw socket as well: the head says exactly that length, not chunked.
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"GET /?bytes=200000 HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(!r.chunked);
    assert_eq!(r.body.len(), 200000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_without_length_is_chunked_to_http11_clients() {
    let (_e, h) = setup().await;
    let mut c = RawConn::connect(h.running.http).await;

    c.send(b"GET /chunky?chunked=1 HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")), "{:?}", r.headers);
    assert!(r.header("content-length").is_none(), "{:?}", r.headers);
    assert!(r.chunked);
    assert_eq!(r.json()["path"], "/chunky");

    // A large streamed body without length, on the same connection.
    c.send(b"GET /?bytes=300000&chunked=1 HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert!(r.chunked, "{:?}", r.headers);
    assert_eq!(r.body.len(), 300000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_keeps_length_and_sends_no_body() {
    let (_e, h) = setup().await;

    let resp = h.client.head(h.http("/?bytes=12345")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "12345");

    // Raw: a HEAD and then a GET on one connection. The GET's status line must follow the
    // HEAD's head immediately: nothing (no body, no chunk) in between.
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"HEAD /?bytes=12345 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /after HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").await;
    let first = c.response(true).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("content-length"), Some("12345"), "{:?}", first.headers);
    assert!(first.header("transfer-encoding").is_none(), "{:?}", first.headers);
    while c.buf.len() < 9 {
        assert!(c.fill().await, "connection closed before the second response");
    }
    assert!(c.buf.starts_with(b"HTTP/1.1 "), "bytes after the HEAD response: {:?}", String::from_utf8_lossy(&c.buf[..c.buf.len().min(200)]));
    let second = c.response(false).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["path"], "/after");

    // A HEAD of a JSON answer: the echo's length is kept, and the connection then closes
    // without a body being sent.
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"HEAD /json HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200);
    let len: usize = r.header("content-length").expect("content-length on HEAD").parse().unwrap();
    assert!(len > 0);
    assert!(c.closed_within(Duration::from_secs(5)).await, "connection not closed after Connection: close");
    assert!(c.buf.is_empty(), "a body followed the HEAD response: {:?}", String::from_utf8_lossy(&c.buf));
}

// ---------------------------------------------------------------------------------------------
// 4. Request body limit

/// A backend that counts the connections it accepts and never answers.
async fn counting_sink() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_over_default_limit_is_413_without_reaching_backend() {
    init_tracing();
    let (sink, accepted, task) = counting_sink().await;
    let e = echo("echo").await;
    let m = manifest([
        backend_yaml("default", "sink", &[sink]),
        backend_yaml("default", "echo", &[e.addr]),
        host_rule("sink.example", "sink").to_yaml(),
        catch_all("echo").to_yaml(),
    ]);
    let h = start(&m).await;

    // Only the head is sent: the answer must come from the head alone.
    let mut c = RawConn::connect(h.running.http).await;
    let started = Instant::now();
    c.send(format!("POST /upload HTTP/1.1\r\nHost: sink.example\r\nContent-Length: {}\r\n\r\n", MIB + 1).as_bytes()).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let id = r.header("x-request-id").expect("413 carries a request ID").to_string();
    assert!(String::from_utf8_lossy(&r.body).contains(&id), "413 page names the request ID");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the backend was contacted for a request over the limit");

    // A full 2 MiB body with its length over a real client: 413, backend untouched.
    let resp = h.client.post(h.http("/upload")).header("host", "sink.example").body(vec![b'x'; 2 * MIB]).send().await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the backend was contacted for a request over the limit");

    // The sink route does work: a small body reaches it (and it never answers).
    let _ = tokio::time::timeout(Duration::from_millis(300), h.client.post(h.http("/small")).header("host", "sink.example").body("hi").send()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the sink route never reached the sink");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_default_limit_is_413() {
    let (_e, h) = setup().await;
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"POST /upload HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n").await;
    // 1 MiB + 64 KiB in 16 KiB chunks, written while the answer is read.
    let (mut rd, mut wr) = c.stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'z'; 16 * 1024];
        for _ in 0..(MIB + 64 * 1024) / chunk.len() {
            if wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err() {
                return;
            }
            if wr.write_all(&chunk).await.is_err() || wr.write_all(b"\r\n").await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        // Keep the write half open until the test is done reading.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + IO_TIMEOUT;
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "expected 413 for a chunked body over 1 MiB, got {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_just_under_default_limit_passes() {
    let (_e, h) = setup().await;
    // Exactly at the limit, with a length.
    let resp = h.client.post(h.http("/upload")).body(vec![b'x'; MIB]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(echo_json(resp).await["body_bytes"], MIB as u64);
    // Just under it, streamed without a length (chunked).
    let n = MIB - 100;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..n.div_ceil(10_000)).map(|i| Ok(vec![b'y'; 10_000.min(n - i * 10_000)])).collect();
    let resp = h.client.post(h.http("/upload")).body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let j = echo_json(resp).await;
    assert_eq!(j["body_bytes"], n as u64, "{j:#}");
    assert_eq!(j["headers"]["transfer-encoding"], "chunked", "{j:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_body_limit_from_options_is_honoured() {
    let (_e, h) = setup_with(|o| o.proxy.body_limit = 1000).await;
    let resp = h.client.post(h.http("/")).body(vec![b'x'; 1000]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(echo_json(resp).await["body_bytes"], 1000);

    let resp = h.client.post(h.http("/")).body(vec![b'x'; 1001]).send().await.unwrap();
    assert_eq!(resp.status(), 413);

    // Chunked, over the smaller limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'a'; 600]), Ok(vec![b'b'; 600])];
    let resp = h.client.post(h.http("/")).body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).send().await;
    match resp {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => panic!("chunked body over the limit: no answer ({e})"),
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Header limits and the header read timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_is_431() {
    let (_e, h) = setup_with(|o| o.proxy.max_headers = 20).await;
    let head = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a.example\r\n");
        for i in 0..n {
            s.push_str(&format!("X-Field-{i}: v\r\n"));
        }
        s.push_str("Connection: close\r\n\r\n");
        s
    };
    // Within the limit: answered by the backend.
    let out = raw(h.running.http, head(10).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    // Over it.
    let out = raw(h.running.http, head(40).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");

    // The default (100 fields) as well.
    let (_e2, h2) = setup().await;
    let out = raw(h2.running.http, head(150).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    let out = raw(h2.running.http, head(60).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_larger_than_limit_is_431() {
    let (_e, h) = setup_with(|o| o.proxy.max_header_bytes = 16 * 1024).await;
    let head = |value_len: usize| format!("GET / HTTP/1.1\r\nHost: a.example\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "b".repeat(value_len));
    let out = raw(h.running.http, head(8 * 1024).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{}", &out[..out.len().min(200)]);
    let out = raw(h.running.http, head(24 * 1024).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{}", &out[..out.len().min(200)]);

    // The default limit (64 KiB).
    let (_e2, h2) = setup().await;
    let out = raw(h2.running.http, head(80 * 1024).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{}", &out[..out.len().min(200)]);
    let out = raw(h2.running.http, head(32 * 1024).as_bytes(), IO_TIMEOUT).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{}", &out[..out.len().min(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partial_head_is_cut_off_after_header_timeout() {
    let (_e, h) = setup_with(|o| o.proxy.header_read_timeout = Duration::from_secs(1)).await;
    let mut c = RawConn::connect(h.running.http).await;
    let started = Instant::now();
    c.send(b"GET /slow HTTP/1.1\r\nHost: a.example\r\nX-Partial: ").await;
    assert!(c.closed_within(Duration::from_secs(5)).await, "a stalled head was not cut off within 5 s");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "closed after {elapsed:?}: before the header timeout");
    let text = String::from_utf8_lossy(&c.buf);
    assert!(!text.contains(" 200 "), "a stalled head was answered: {text:?}");

    // On a kept-alive connection, a second request that stalls mid-head is cut off too.
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    assert_eq!(c.response(false).await.status, 200);
    c.send(b"GET / HTTP/1.1\r\nHost: a.ex").await;
    assert!(c.closed_within(Duration::from_secs(5)).await, "a stalled second head was not cut off within 5 s");
}

// ---------------------------------------------------------------------------------------------
// 6. Upstream read timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gives_504_with_request_id() {
    let (_e, h) = setup_with(|o| o.proxy.read_timeout = Duration::from_secs(1)).await;
    let started = Instant::now();
    let resp = h.get("a.example", "/?delay_ms=3000").await;
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(elapsed < Duration::from_millis(2800), "504 came after {elapsed:?}, not at the 1 s read timeout");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(is_hex32(&id), "{id:?}");
    let body = resp.text().await.unwrap();
    assert!(body.contains(&id), "504 body does not name the request ID {id}: {body}");

    // A client-chosen ID appears in the page too.
    let resp = h.client.get(h.http("/?delay_ms=3000")).header("x-request-id", "trace-me-504").send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert!(resp.text().await.unwrap().contains("trace-me-504"));

    // A backend quicker than the timeout is fine.
    let resp = h.get("a.example", "/?delay_ms=200").await;
    assert_eq!(resp.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// 7. Keep-alive

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_on_both_sides() {
    let (_e, h) = setup().await;
    let mut c = RawConn::connect(h.running.http).await;
    let mut peers = Vec::new();
    for i in 0..5 {
        c.send(format!("GET /ka/{i} HTTP/1.1\r\nHost: a.example\r\n\r\n").as_bytes()).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "request {i} on the kept-alive connection");
        let j = r.json();
        assert_eq!(j["path"], format!("/ka/{i}"));
        peers.push(j["peer"].as_str().unwrap().to_string());
    }
    assert!(peers.iter().all(|p| p == &peers[0]), "the upstream connection was not reused across sequential requests: {peers:?}");

    // A pooling client (one connection) sees the same.
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let resp = client.get(h.http("/pooled")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        peers.push(echo_json(resp).await["peer"].as_str().unwrap().to_string());
    }
    assert!(peers.iter().all(|p| p == &peers[0]), "{peers:?}");

    // Pipelined requests on one connection are answered in order.
    let mut c = RawConn::connect(h.running.http).await;
    c.send(b"GET /p/1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: a.example\r\n\r\n").await;
    assert_eq!(c.response(false).await.json()["path"], "/p/1");
    assert_eq!(c.response(false).await.json()["path"], "/p/2");
}

// ---------------------------------------------------------------------------------------------
// 8. Pass-through of statuses and request bodies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_status_and_body_pass_through() {
    let (_e, h) = setup().await;
    for status in [418u16, 500, 404, 201] {
        let resp = h.get("a.example", &format!("/s?status={status}")).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let j = echo_json(resp).await;
        assert_eq!(j["service"], "echo", "status {status}: the backend's body, not an error page");
        assert_eq!(j["query"], format!("status={status}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_streams_to_backend() {
    let (_e, h) = setup().await;
    // With a length.
    let resp = h.client.post(h.http("/up")).body(vec![7u8; 300_000]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let j = echo_json(resp).await;
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body_bytes"], 300_000);
    assert_eq!(j["headers"]["content-length"], "300000");

    // Streamed, chunked, with pauses between chunks.
    let stream = futures_util::stream::unfold(0usize, |i| async move {
        if i == 8 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok::<_, std::io::Error>(vec![b'c'; 12_345]), i + 1))
    });
    let resp = h.client.put(h.http("/up")).body(reqwest::Body::wrap_stream(stream)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let j = echo_json(resp).await;
    assert_eq!(j["method"], "PUT");
    assert_eq!(j["body_bytes"], 8 * 12_345);

    // An empty POST.
    let resp = h.client.post(h.http("/up")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(echo_json(resp).await["body_bytes"], 0);
}

// ---------------------------------------------------------------------------------------------
// 9. Flag parsers

mod flags {
    use std::time::Duration;
    use vestibule::cli::{parse_duration, parse_ns_name, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(1024 * 1024));
        assert_eq!(parse_size("1M"), Ok(1024 * 1024));
        assert_eq!(parse_size("8k"), Ok(8 * 1024));
        assert_eq!(parse_size("2g"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert_eq!(parse_size(" 64k "), Ok(64 * 1024));
        // 0 means no limit.
        assert_eq!(parse_size("0"), Ok(u64::MAX));
        assert_eq!(parse_size("0m"), Ok(u64::MAX));
        for bad in ["", "m", "abc", "1x", "-1", "1.5m", "k8"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted as {:?}", parse_size(bad));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "abc", "5x", "-1", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted as {:?}", parse_duration(bad));
        }
    }

    #[test]
    fn namespaced_names() {
        assert_eq!(parse_ns_name("kube-system/default-backend"), Ok(("kube-system".into(), "default-backend".into())));
        assert_eq!(parse_ns_name("fallback"), Ok(("default".into(), "fallback".into())));
        for bad in ["", "/", "ns/", "/name", "a/b/c"] {
            assert!(parse_ns_name(bad).is_err(), "{bad:?} accepted as {:?}", parse_ns_name(bad));
        }
    }

    /// An out-of-range size is refused with an error: a flag parser must not panic (which
    /// aborts startup with a backtrace instead of a usage message), wrap around, or saturate
    /// to u64::MAX, which means "no limit" (what 0 gives) and would turn a typo into none.
    #[test]
    fn overflowing_size_is_an_error() {
        // 1e11 GiB, (2^64 - 1) KiB and 2^64 bytes are all past u64::MAX.
        for input in ["100000000000g", "18446744073709551615k", "18446744073709551616"] {
            match std::panic::catch_unwind(|| parse_size(input)) {
                Ok(Ok(n)) => panic!("parse_size({input:?}) accepted an overflowing size as {n}"),
                Ok(Err(_)) => {}
                Err(_) => panic!("parse_size({input:?}) panicked instead of returning an error"),
            }
        }
    }

    /// An out-of-range duration is refused with an error, not a panic.
    #[test]
    fn overflowing_duration_is_an_error() {
        for input in ["1".to_string() + &"0".repeat(30) + "h", "9".repeat(400)] {
            let d = std::panic::catch_unwind(|| parse_duration(&input));
            let shown = match &d {
                Ok(r) => format!("{r:?}"),
                Err(_) => "a panic".into(),
            };
            assert!(matches!(d, Ok(Err(_))), "parse_duration({input:?}) should be an error, got {shown}");
        }
    }
}
