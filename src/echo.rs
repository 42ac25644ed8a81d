//! `vestibule echo`: a backend for demos, tests and benchmarks. It answers every request with
//! JSON describing what it received, and echoes WebSocket messages.
//!
//! Query parameters shape the answer: `bytes=N` sends N bytes instead of JSON (streamed),
//! `chunked=1` omits Content-Length, `status=N` sets the status, `delay_ms=N` waits first.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub type EchoBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// Who this echo says it is.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Identity {
    pub service: String,
    pub namespace: String,
    pub pod: String,
}

#[derive(Debug, Clone, serde::Serialize)]
struct TlsInfo {
    version: String,
    cipher: String,
    sni: Option<String>,
    alpn: Option<String>,
}

#[derive(serde::Serialize)]
struct Echoed<'a> {
    path: &'a str,
    query: Option<&'a str>,
    host: Option<&'a str>,
    method: &'a str,
    proto: String,
    headers: BTreeMap<String, String>,
    body_bytes: u64,
    service: &'a str,
    namespace: &'a str,
    pod: &'a str,
    peer: String,
    tls: Option<&'a TlsInfo>,
}

static CHUNK: [u8; 64 * 1024] = [b'v'; 64 * 1024];

/// `n` bytes of filler, produced as they are read: constant memory whatever the size.
struct Filler {
    remaining: u64,
    exact: bool,
}

impl Body for Filler {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
    fn size_hint(&self) -> SizeHint {
        if self.exact { SizeHint::with_exact(self.remaining) } else { SizeHint::default() }
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn ws_accept(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

async fn handle(id: Arc<Identity>, peer: SocketAddr, tls: Option<Arc<TlsInfo>>, mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    // WebSocket: answer the handshake and echo every message back.
    let wants_ws = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_ws {
        if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let _ = ws_echo(TokioIo::new(upgraded)).await;
                }
            });
            let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert("sec-websocket-accept", HeaderValue::from_str(&ws_accept(key.as_bytes())).expect("base64 is a valid header value"));
            return Ok(resp);
        }
    }

    let query = req.uri().query().map(str::to_string);
    let q = query.as_deref();
    if let Some(ms) = query_param(q, "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    let status = query_param(q, "status").and_then(|v| v.parse::<u16>().ok()).and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    let chunked = query_param(q, "chunked").is_some_and(|v| v == "1" || v == "true");

    let (parts, mut body) = req.into_parts();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_bytes += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }

    if let Some(n) = query_param(q, "bytes").and_then(|v| v.parse::<u64>().ok()) {
        let mut resp = Response::new(Filler { remaining: n, exact: !chunked }.boxed_unsync());
        *resp.status_mut() = status;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if !chunked {
            resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        return Ok(resp);
    }

    let headers = parts
        .headers
        .iter()
        .fold(BTreeMap::<String, String>::new(), |mut m, (k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            m.entry(k.as_str().to_string()).and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            }).or_insert(v);
            m
        });
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(parts.uri.authority().map(|a| a.as_str()));
    let echoed = Echoed {
        path: parts.uri.path(),
        query: q,
        host,
        method: parts.method.as_str(),
        proto: format!("{:?}", parts.version),
        headers,
        body_bytes,
        service: &id.service,
        namespace: &id.namespace,
        pod: &id.pod,
        peer: peer.to_string(),
        tls: tls.as_deref(),
    };
    let mut json = serde_json::to_vec_pretty(&echoed).expect("echo JSON serializes");
    json.push(b'\n');
    let len = json.len();
    let body: EchoBody = if chunked {
        // Two frames and no length: the client sees chunked transfer encoding.
        let second = json.split_off(len / 2);
        Chunks([Bytes::from(json), Bytes::from(second)].into()).boxed_unsync()
    } else {
        Full::new(Bytes::from(json)).boxed_unsync()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if !chunked {
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(resp)
}

/// A body of a few ready chunks and no declared length (sent chunked).
struct Chunks(std::collections::VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// Echoes WebSocket frames: data frames come back as sent (unmasked), pings get pongs, a close
/// is answered with a close.
async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    const MAX_PAYLOAD: u64 = 64 * 1024 * 1024;
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let (fin_op, masked, len7) = (head[0], head[1] & 0x80 != 0, head[1] & 0x7f);
        let len = match len7 {
            126 => io.read_u16().await? as u64,
            127 => io.read_u64().await?,
            n => n as u64,
        };
        if len > MAX_PAYLOAD {
            return Ok(());
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        let opcode = fin_op & 0x0f;
        let reply_head = match opcode {
            0x9 => 0x80 | 0xA,
            0xA => continue,
            _ => fin_op,
        };
        let mut frame = Vec::with_capacity(payload.len() + 10);
        frame.push(reply_head);
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&payload);
        io.write_all(&frame).await?;
        io.flush().await?;
        if opcode == 0x8 {
            return io.shutdown().await;
        }
    }
}

/// Options of `vestibule echo`.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    pub identity: Identity,
    /// Serve TLS with a generated self-signed certificate.
    pub tls: bool,
}

/// Serves the echo backend on `listener` until the task is dropped.
pub fn spawn(listener: TcpListener, opts: EchoOptions) -> tokio::task::JoinHandle<()> {
    let id = Arc::new(opts.identity);
    let acceptor = if opts.tls {
        let (ck, _, _) = crate::tls::self_signed(&["localhost", "echo"]).expect("generate echo certificate");
        let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(crate::tls::Single(ck)));
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    } else {
        None
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let id = id.clone();
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => {
                        let svc = service_fn(move |req| handle(id.clone(), peer, None, req));
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let (_, conn) = tls.get_ref();
                        let info = Arc::new(TlsInfo {
                            version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                            cipher: conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default(),
                            sni: conn.server_name().map(str::to_string),
                            alpn: conn.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned()),
                        });
                        let svc = service_fn(move |req| handle(id.clone(), peer, Some(info.clone()), req));
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await;
                    }
                }
            });
        }
    })
}
