//! Large bodies stream through Vestibule in both directions with bounded memory: the real binary
//! proxies 1 GiB up and 1 GiB down while its peak resident memory stays far below that.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

const GIB: u64 = 1024 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
static FILLER: [u8; CHUNK] = [b'u'; CHUNK];

/// The `vestibule serve` child process, killed when dropped (also when a test panics).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of `field=` in a tracing text log line, without colour codes.
fn log_field(line: &str, field: &str) -> Option<String> {
    let mut clean = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI escape sequence: ESC [ ... letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            clean.push(c);
        }
    }
    let prefix = format!("{field}=");
    clean.split_whitespace().find_map(|t| t.strip_prefix(&prefix)).map(str::to_string)
}

/// Starts `vestibule serve` on ephemeral loopback ports without a body limit and returns it with
/// its HTTP address, read from its "vestibule serving" log line.
fn spawn_vestibule(manifests: &std::path::Path) -> (ChildGuard, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vestibule"))
        .args(["serve", "--manifests"])
        .arg(manifests)
        .args(["--bind-address", "127.0.0.1", "--http-port", "0", "--https-port", "0", "--healthz-port", "0", "--proxy-body-size", "0"])
        .env("VESTIBULE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the vestibule binary starts");
    let stderr = child.stderr.take().unwrap();
    let guard = ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Keep draining stderr for the child's whole life so its logging never blocks.
    std::thread::spawn(move || {
        let mut found = false;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !found {
                found = line.contains("vestibule serving");
                let _ = tx.send(line);
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("vestibule: {line}");
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("vestibule serving") => {
                let http = log_field(&line, "http").unwrap_or_else(|| panic!("no http= field in {line:?}"));
                return (guard, http.parse().unwrap_or_else(|e| panic!("http={http:?}: {e}")));
            }
            Ok(line) => seen.push(line),
            Err(e) => panic!("no \"vestibule serving\" line within 30 s ({e}); stderr so far:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_bounded_memory() {
    init_tracing();
    let backend = echo("bulk").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bulk.yaml"),
        manifest([backend_yaml("default", "bulk", &[backend.addr]), Ingress::new("default", "bulk").host_path("bulk.test", "/", "Prefix", "bulk", 80).to_yaml()]),
    )
    .unwrap();
    let (child, http) = spawn_vestibule(dir.path());
    let pid = child.0.id();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The route works before the big transfers start.
    let resp = client.get(format!("http://{http}/")).header("host", "bulk.test").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["service"], "bulk");
    let rss_idle = peak_rss_kib(pid);

    // 1 GiB up: generated on the fly, sent chunked (no Content-Length).
    let started = Instant::now();
    let chunks = (GIB / CHUNK as u64) as usize;
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter((0..chunks).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&FILLER)))));
    let upload = async {
        let resp = client.post(format!("http://{http}/upload")).header("host", "bulk.test").body(body).send().await.expect("upload request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("upload answer");
        (status, text)
    };
    let (status, text) = tokio::time::timeout(Duration::from_secs(120), upload).await.expect("1 GiB upload within 120 s");
    let up = started.elapsed();
    assert_eq!(status, 200, "upload answered {status}: {text:.300}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not an echo answer: {text:.300}"));
    assert_eq!(v["body_bytes"].as_u64(), Some(GIB), "the backend received every byte of the upload, and no more");
    assert_eq!(v["method"], "POST");
    let rss_after_up = peak_rss_kib(pid);

    // 1 GiB down, counted as it streams; the Content-Length is passed on.
    let started = Instant::now();
    let download = async {
        let mut resp = client.get(format!("http://{http}/download?bytes={GIB}")).header("host", "bulk.test").send().await.expect("download request");
        assert_eq!(resp.status().as_u16(), 200);
        let length = resp.headers().get("content-length").map(|v| v.to_str().unwrap().to_string());
        let mut total = 0u64;
        let mut first = true;
        while let Some(chunk) = resp.chunk().await.expect("the download streams without error") {
            if first && !chunk.is_empty() {
                assert!(chunk.iter().all(|&b| b == b'v'), "the body is the backend's filler");
                first = false;
            }
            total += chunk.len() as u64;
        }
        (length, total)
    };
    let (length, total) = tokio::time::timeout(Duration::from_secs(120), download).await.expect("1 GiB download within 120 s");
    let down = started.elapsed();
    assert_eq!(length.as_deref(), Some(GIB.to_string().as_str()), "Content-Length preserved");
    assert_eq!(total, GIB, "exactly 1 GiB arrived");

    let peak = peak_rss_kib(pid);
    let mib_s = |d: Duration| 1024.0 / d.as_secs_f64();
    eprintln!(
        "upload 1 GiB in {up:.2?} ({:.0} MiB/s), download 1 GiB in {down:.2?} ({:.0} MiB/s); vestibule peak RSS: idle {} KiB, after upload {} KiB, after download {} KiB",
        mib_s(up),
        mib_s(down),
        rss_idle,
        rss_after_up,
        peak
    );
    assert!(peak < 200 * 1024, "vestibule's peak RSS {peak} KiB is not bounded (limit 200 MiB for 1 GiB bodies)");
    drop(child);
}
