//! Load generators for Vestibule's side-by-side benchmarks (bench/run.sh), for what wrk and
//! h2load do not do:
//!
//! - `rate`: HTTP/1.1 keep-alive requests at a fixed rate (open loop, as wrk2 does), with
//!   latency counted from when each request was due, so a stalled server is not hidden by the
//!   client waiting for it (coordinated omission).
//! - `tls`: a new TLS connection per request, never resumed: TLS handshakes per second.
//! - `ws`: WebSocket echo round trips on upgraded connections.
//! - `h3`: HTTP/3 (QUIC) connections with many requests in flight on each (see h3.rs).
//! - `tcp-stream`, `tcp-connect`, `tcp-backend`: plain TCP throughput and connection rate, and
//!   the backend they run against (see tcp.rs).
//!
//! Each run prints one JSON line: requests, errors, seconds, rate and latency percentiles (µs).
//! Runs are bounded by `--duration`; SIGTERM or SIGINT ends one early with what it has.
//!
//! Single-threaded on purpose: the harness pins it to one CPU.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

mod h3;
mod tcp;

const USAGE: &str = "usage:
  loadgen rate --addr IP:PORT --host HOST [--path /] --rate N --duration SECS [--connections 64]
  loadgen tls  --addr IP:PORT --host HOST [--sni NAME] [--path /] --duration SECS [--connections 16]
  loadgen h3   --addr IP:PORT (UDP) --host HOST [--sni NAME] [--path /] --duration SECS [--connections 4] [--streams 64]
  loadgen ws   --addr IP:PORT --host HOST [--path /ws] --duration SECS [--connections 16] [--size 64]
  loadgen tcp-stream  --addr IP:PORT --duration SECS [--connections 16]
  loadgen tcp-connect --addr IP:PORT --duration SECS [--connections 16] [--size 64]
  loadgen tcp-backend --source IP:PORT --echo IP:PORT
common: [--timeout-ms 10000] [--pause-ms 0: tls and ws workers wait this long after each request, for a light steady load]";

#[derive(Clone)]
struct Opts {
    mode: String,
    addr: SocketAddr,
    host: String,
    sni: String,
    path: String,
    rate: f64,
    duration: Duration,
    connections: usize,
    streams: usize,
    size: usize,
    timeout: Duration,
    /// tls and ws: a pause after each request (0: as fast as they go).
    pause: Duration,
    source: Option<SocketAddr>,
    echo: Option<SocketAddr>,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("missing mode")?;
    if !matches!(mode.as_str(), "rate" | "tls" | "h3" | "ws" | "tcp-stream" | "tcp-connect" | "tcp-backend") {
        return Err(format!("unknown mode {mode:?}"));
    }
    let mut o = Opts {
        path: if mode == "ws" { "/ws".into() } else { "/".into() },
        connections: match mode.as_str() {
            "rate" => 64,
            "h3" => 4,
            _ => 16,
        },
        streams: 64,
        mode,
        addr: "127.0.0.1:80".parse().unwrap(),
        host: "localhost".into(),
        sni: String::new(),
        rate: 0.0,
        duration: Duration::from_secs(10),
        size: 64,
        timeout: Duration::from_secs(10),
        pause: Duration::ZERO,
        source: None,
        echo: None,
    };
    while let Some(flag) = args.next() {
        let v = args.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--addr" => o.addr = v.parse().map_err(|_| format!("--addr: not IP:PORT: {v}"))?,
            "--host" => o.host = v,
            "--sni" => o.sni = v,
            "--path" => o.path = v,
            "--rate" => o.rate = num(&v)?,
            "--duration" => o.duration = Duration::from_secs_f64(num(&v)?),
            "--connections" => o.connections = num(&v)?.max(1.0) as usize,
            "--streams" => o.streams = num(&v)?.max(1.0) as usize,
            "--size" => o.size = num(&v)? as usize,
            "--source" => o.source = Some(v.parse().map_err(|_| format!("--source: not IP:PORT: {v}"))?),
            "--echo" => o.echo = Some(v.parse().map_err(|_| format!("--echo: not IP:PORT: {v}"))?),
            "--timeout-ms" => o.timeout = Duration::from_millis(num(&v)? as u64),
            "--pause-ms" => o.pause = Duration::from_millis(num(&v)? as u64),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.sni.is_empty() {
        o.sni = o.host.clone();
    }
    if o.mode == "rate" && o.rate <= 0.0 {
        return Err("rate: --rate N is required".into());
    }
    if o.mode == "tcp-backend" && (o.source.is_none() || o.echo.is_none()) {
        return Err("tcp-backend: --source IP:PORT and --echo IP:PORT are required".into());
    }
    Ok(o)
}

/// What every worker shares: latencies (µs) of what succeeded, and the error count.
#[derive(Default)]
struct Tally {
    samples: Mutex<Vec<u32>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn ok(&self, d: Duration) {
        self.samples.lock().unwrap().push(d.as_micros().min(u32::MAX as u128) as u32);
    }
    fn err(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if opts.mode == "tcp-backend" {
        if let Err(e) = rt.block_on(tcp::backend(opts.source.unwrap(), opts.echo.unwrap())) {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
        return;
    }
    rt.block_on(run(opts));
}

async fn run(o: Opts) {
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + o.duration;
    let mut workers = Vec::new();
    let next = Arc::new(AtomicU64::new(0));
    let tls = if o.mode == "tls" { Some(tls_connector()) } else { None };
    let bytes = Arc::new(AtomicU64::new(0));
    for _ in 0..o.connections {
        let (o, t) = (o.clone(), tally.clone());
        workers.push(match o.mode.as_str() {
            "rate" => tokio::spawn(rate_worker(o, t, start, end, next.clone())),
            "tls" => tokio::spawn(tls_worker(o, t, end, tls.clone().unwrap())),
            "tcp-stream" => tokio::spawn(tcp::stream_worker(o, t, end, bytes.clone())),
            "tcp-connect" => tokio::spawn(tcp::connect_worker(o, t, end)),
            "h3" => tokio::spawn(h3::worker(o, t, end)),
            _ => tokio::spawn(ws_worker(o, t, end)),
        });
    }
    let all = async {
        for w in workers {
            let _ = w.await;
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = all => {}
        _ = tokio::time::sleep_until((end + o.timeout + Duration::from_secs(1)).into()) => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    STOP.store(true, Ordering::Relaxed);
    let elapsed = Instant::now().min(end).duration_since(start).as_secs_f64().max(1e-9);
    report(&o, &tally, elapsed, bytes.load(Ordering::Relaxed));
}

fn report(o: &Opts, t: &Tally, secs: f64, bytes: u64) {
    let mut s = std::mem::take(&mut *t.samples.lock().unwrap());
    s.sort_unstable();
    let pct = |p: f64| -> u32 {
        if s.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * s.len() as f64).ceil() as usize;
        s[i.clamp(1, s.len()) - 1]
    };
    let mean = if s.is_empty() { 0.0 } else { s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64 };
    let first_error = t.first_error.lock().unwrap().clone().unwrap_or_default().replace('\\', "\\\\").replace('"', "'");
    println!(
        "{{\"mode\":\"{}\",\"requests\":{},\"errors\":{},\"seconds\":{:.3},\"rps\":{:.1},\"target_rate\":{},\"connections\":{},\"streams\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{:.1},\"bytes\":{},\"mbytes_s\":{:.1},\"first_error\":\"{}\"}}",
        o.mode,
        s.len(),
        t.errors.load(Ordering::Relaxed),
        secs,
        s.len() as f64 / secs,
        o.rate,
        o.connections,
        if o.mode == "h3" { o.streams } else { 1 },
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        s.last().copied().unwrap_or(0),
        mean,
        bytes,
        bytes as f64 / secs / 1e6,
        first_error
    );
}

fn done(end: Instant) -> bool {
    STOP.load(Ordering::Relaxed) || Instant::now() >= end
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn h1_connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Takes the next due request from the shared schedule, sends it when due on this worker's
/// keep-alive connection, and counts its latency from when it was due; a worker that was free
/// before then counts from when it actually sent (the timer's 1 ms resolution is the client's
/// delay, not the server's).
async fn rate_worker(o: Opts, t: Arc<Tally>, start: Instant, end: Instant, next: Arc<AtomicU64>) {
    let interval = 1.0 / o.rate;
    let mut sender: Option<Sender> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let due = start + Duration::from_secs_f64(i as f64 * interval);
        if due >= end || STOP.load(Ordering::Relaxed) {
            return;
        }
        let free_early = Instant::now() < due;
        if free_early {
            tokio::time::sleep_until(due.into()).await;
        }
        let from = if free_early { Instant::now() } else { due };
        let result = tokio::time::timeout(o.timeout, async {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = Some(h1_connect(o.addr).await?);
            }
            let s = sender.as_mut().unwrap();
            if s.ready().await.is_err() {
                // Closed by the server after its last response (keep-alive limit): reconnect.
                *s = h1_connect(o.addr).await?;
                s.ready().await.map_err(|e| format!("ready: {e}"))?;
            }
            let req = hyper::Request::get(o.path.as_str()).header("host", o.host.as_str()).body(Empty::new()).map_err(|e| e.to_string())?;
            let resp = s.send_request(req).await.map_err(|e| format!("request: {e}"))?;
            let status = resp.status();
            resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 {
                return Err(format!("status {status}"));
            }
            Ok::<(), String>(())
        })
        .await;
        match result {
            Ok(Ok(())) => t.ok(from.elapsed()),
            Ok(Err(e)) => {
                sender = None;
                t.err(e)
            }
            Err(_) => {
                sender = None;
                t.err("timeout")
            }
        }
    }
}

/// Reads an HTTP/1.1 response with a Content-Length (or up to EOF), returns its status.
async fn read_response<S: AsyncRead + Unpin>(io: &mut S) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = io.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or("bad status line")?;
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
    match length {
        Some(len) => {
            let mut have = buf.len() - head_end;
            while have < len {
                let n = io.read(&mut chunk).await.map_err(|e| format!("read body: {e}"))?;
                if n == 0 {
                    return Err("closed in the body".into());
                }
                have += n;
            }
        }
        None => loop {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        },
    }
    Ok(status)
}

/// Accepts any certificate and skips signature checks: the server still does all of its
/// handshake work, and the client's share on the load generator's CPU stays small.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, _: &[u8], _: &rustls::pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(&self, _: &[u8], _: &rustls::pki_types::CertificateDer<'_>, _: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that never resumes and offers X25519 (then P-256) only, as OpenSSL 3.0 clients do,
/// so every server does the same full handshake (no post-quantum hybrid).
fn tls_connector() -> tokio_rustls::TlsConnector {
    use rustls::crypto::aws_lc_rs as p;
    let mut provider = p::default_provider();
    provider.kx_groups = vec![p::kx_group::X25519, p::kx_group::SECP256R1];
    let provider = Arc::new(provider);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Connect, full handshake, one request with `Connection: close`, read the answer, wait for the
/// server to close (so TIME_WAIT stays on the server's side), repeat.
async fn tls_worker(o: Opts, t: Arc<Tally>, end: Instant, connector: tokio_rustls::TlsConnector) {
    let name = match rustls::pki_types::ServerName::try_from(o.sni.clone()) {
        Ok(n) => n,
        Err(e) => return t.err(format!("SNI {:?}: {e}", o.sni)),
    };
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", o.path, o.host).into_bytes();
    while !done(end) {
        let started = Instant::now();
        let result = tokio::time::timeout(o.timeout, async {
            let tcp = connect(o.addr).await.map_err(|e| format!("connect: {e}"))?;
            let mut tls = connector.connect(name.clone(), tcp).await.map_err(|e| format!("handshake: {e}"))?;
            tls.write_all(&request).await.map_err(|e| format!("write: {e}"))?;
            let status = read_response(&mut tls).await?;
            let took = started.elapsed();
            // Let the server close first; ignore how (close_notify or plain FIN).
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(n) = tls.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            if status != 200 {
                return Err(format!("status {status}"));
            }
            Ok::<Duration, String>(took)
        })
        .await;
        match result {
            Ok(Ok(took)) => t.ok(took),
            Ok(Err(e)) => t.err(e),
            Err(_) => t.err("timeout"),
        }
        pause(&o, end).await;
    }
}

/// `--pause-ms` after a request, cut short at the end of the run.
async fn pause(o: &Opts, end: Instant) {
    if !o.pause.is_zero() {
        tokio::time::sleep(o.pause.min(end.saturating_duration_since(Instant::now()))).await;
    }
}

/// One WebSocket connection: upgrade, then send a masked binary message and wait for its echo,
/// as fast as the round trips go.
async fn ws_worker(o: Opts, t: Arc<Tally>, end: Instant) {
    while !done(end) {
        let r = tokio::time::timeout(o.timeout, ws_open(&o)).await;
        let mut io = match r {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                t.err(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                t.err("upgrade timeout");
                continue;
            }
        };
        let frame = ws_frame(o.size);
        let mut payload = vec![0u8; o.size];
        while !done(end) {
            let started = Instant::now();
            let r = tokio::time::timeout(o.timeout, async {
                io.write_all(&frame).await.map_err(|e| format!("write: {e}"))?;
                ws_read(&mut io, &mut payload).await
            })
            .await;
            match r {
                Ok(Ok(())) => {
                    t.ok(started.elapsed());
                    pause(&o, end).await;
                }
                Ok(Err(e)) => {
                    t.err(e);
                    break;
                }
                Err(_) => {
                    t.err("round trip timeout");
                    break;
                }
            }
        }
        let _ = io.write_all(&[0x88, 0x80, 0, 0, 0, 0]).await;
    }
}

async fn ws_open(o: &Opts) -> Result<TcpStream, String> {
    let mut io = connect(o.addr).await.map_err(|e| format!("connect: {e}"))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        o.path, o.host
    );
    io.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    // Read the 101 head byte by byte so nothing after it is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut b).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("closed during the upgrade".into());
        }
        head.push(b[0]);
        if head.len() > 16384 {
            return Err("upgrade response head too long".into());
        }
    }
    let line = String::from_utf8_lossy(&head);
    if line.split_whitespace().nth(1) != Some("101") {
        return Err(format!("upgrade refused: {}", line.lines().next().unwrap_or("")));
    }
    Ok(io)
}

/// A masked binary frame of `size` bytes (the mask and payload are fixed: it is a benchmark).
fn ws_frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x82u8];
    match size {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend((0..size).map(|i| b'x' ^ mask[i % 4]));
    f
}

async fn ws_read<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, payload: &mut [u8]) -> Result<(), String> {
    let mut h = [0u8; 2];
    io.read_exact(&mut h).await.map_err(|e| format!("read: {e}"))?;
    let len = match h[1] & 0x7f {
        126 => io.read_u16().await.map_err(|e| e.to_string())? as usize,
        127 => io.read_u64().await.map_err(|e| e.to_string())? as usize,
        n => n as usize,
    };
    if h[0] & 0x0f == 0x8 {
        return Err("closed by the server".into());
    }
    if len != payload.len() {
        return Err(format!("echo of {len} bytes, sent {}", payload.len()));
    }
    io.read_exact(payload).await.map_err(|e| format!("read: {e}"))?;
    Ok(())
}
