//! HTTP/3: QUIC on the HTTPS port's UDP twin, with the same certificates by SNI and the same
//! request pipeline (`handler::handle`, generic over the body) as HTTP/1.1 and HTTP/2.
//!
//! 0-RTT is off unless `--http3-0rtt`: early data can be replayed, so even then only GET, HEAD
//! and OPTIONS are answered from it (with `Early-Data: 1` upstream, RFC 8470); any other method
//! that arrives before the handshake completes answers 425 Too Early, and the client retries. Hosts that need what QUIC here cannot give (client
//! certificates) answer 421 over HTTP/3, so clients retry over TCP, and are not advertised in
//! `Alt-Svc`. Shutdown sends GOAWAY and lets the requests in flight finish.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode, header};
use hyper::body::{Body, Frame};
use http_body_util::BodyExt;

use super::Shared;
use super::handler::{ConnInfo, handle};
use super::sni::SniResolver;
use super::upstream::BoxError;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
type SendHalf = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// Limits of one HTTP/3 connection.
#[derive(Debug, Clone)]
pub struct H3Limits {
    /// Requests (bidirectional streams) open at once.
    pub max_streams: u32,
    /// Flow-control window of one request body, and of the whole connection.
    pub stream_window: u32,
    pub connection_window: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// The largest request head, in bytes.
    pub max_header_bytes: u64,
    /// Accept 0-RTT (early data), for idempotent methods only.
    pub early_data: bool,
}

impl H3Limits {
    pub fn from_opts(opts: &super::ProxyOptions) -> Self {
        H3Limits {
            max_streams: opts.max_concurrent_streams.max(1),
            stream_window: 1024 * 1024,
            connection_window: 8 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: opts.max_header_bytes as u64,
            early_data: false,
        }
    }
}

/// The QUIC endpoint's TLS: TLS 1.3 only (QUIC requires it), ALPN `h3`, certificates by SNI
/// from the live configuration, no early data.
fn tls_config(shared: Arc<Shared>, early_data: bool) -> anyhow::Result<quinn::crypto::rustls::QuicServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { shared }));
    cfg.alpn_protocols = vec![b"h3".to_vec()];
    // QUIC takes 0 (off) or u32::MAX (on); the amount is bounded by the transport's windows.
    cfg.max_early_data_size = if early_data { u32::MAX } else { 0 };
    Ok(quinn::crypto::rustls::QuicServerConfig::try_from(cfg)?)
}

/// Binds the HTTP/3 endpoint on `addr` (UDP).
pub fn bind(shared: Arc<Shared>, addr: SocketAddr, limits: &H3Limits) -> anyhow::Result<quinn::Endpoint> {
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls_config(shared, limits.early_data)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams.into())
        // The client's control stream and its two QPACK streams, with room for grease.
        .max_concurrent_uni_streams(8u32.into())
        .stream_receive_window(limits.stream_window.into())
        .receive_window(limits.connection_window.into())
        .max_idle_timeout(Some(limits.idle_timeout.try_into()?));
    server.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(server, addr).map_err(|e| anyhow::anyhow!("binding HTTP/3 (UDP) {addr}: {e}"))?;
    Ok(endpoint)
}

/// Accepts QUIC connections until shutdown begins; each is served on its own task.
pub fn spawn(shared: Arc<Shared>, endpoint: quinn::Endpoint, limits: H3Limits) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let local = endpoint.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut stop = shared.drain.subscribe();
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => {
                        tokio::spawn(connection(shared.clone(), incoming, local, limits.clone()));
                    }
                    None => break,
                },
                _ = stop.changed() => {}
            }
        }
        // New connections are refused from here on; open ones finish on their tasks.
        endpoint.set_server_config(None);
        endpoint.wait_idle().await;
    })
}

async fn connection(shared: Arc<Shared>, incoming: quinn::Incoming, local: SocketAddr, limits: H3Limits) {
    let _active = shared.drain.track();
    // With 0-RTT on, a resumed client's requests may arrive before the handshake completes:
    // `confirmed` turns true once it has, and requests before that are early data.
    let confirmed = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let conn = if limits.early_data {
        let Ok(connecting) = incoming.accept() else { return };
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                confirmed.store(false, std::sync::atomic::Ordering::Release);
                let flag = confirmed.clone();
                tokio::spawn(async move {
                    accepted.await;
                    flag.store(true, std::sync::atomic::Ordering::Release);
                });
                conn
            }
            Err(connecting) => match connecting.await {
                Ok(c) => c,
                Err(_) => return,
            },
        }
    } else {
        match incoming.await {
            Ok(c) => c,
            Err(_) => return,
        }
    };
    let info = Arc::new(ConnInfo { peer: conn.remote_address(), local, tls: true, proxied_client: None, verdicts: None, client_cert: None });
    let quic = conn.clone();
    let built: Result<H3Conn, _> = h3::server::builder().max_field_section_size(limits.max_header_bytes).build(h3_quinn::Connection::new(conn)).await;
    let Ok(mut h3) = built else { return };
    let mut stop = shared.drain.subscribe();
    let mut requests = tokio::task::JoinSet::new();
    let mut draining = false;
    loop {
        if !draining && *stop.borrow() {
            draining = true;
            // GOAWAY: no new requests; those in flight finish.
            let _ = h3.shutdown(0).await;
        }
        if draining && requests.is_empty() {
            break;
        }
        tokio::select! {
            r = h3.accept(), if !draining => match r {
                Ok(Some(resolver)) => {
                    let (shared, info, confirmed) = (shared.clone(), info.clone(), confirmed.clone());
                    requests.spawn(async move {
                        if let Ok((req, stream)) = resolver.resolve_request().await {
                            let early = !confirmed.load(std::sync::atomic::Ordering::Acquire);
                            request(shared, info, req, stream, early).await;
                        }
                    });
                }
                Ok(None) | Err(_) => break,
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = stop.changed(), if !draining => {}
        }
    }
    // The client closed, or shutdown drained every request: answers in flight still finish.
    while requests.join_next().await.is_some() {}
    if draining {
        quic.close(quinn::VarInt::from_u32(0x100), b"shutting down"); // H3_NO_ERROR
    }
}

/// Whether requests for `host` may be served over HTTP/3 (and so advertised in `Alt-Svc`):
/// not when its policy needs a client certificate, which this endpoint does not ask for.
pub fn serves_host(config: &crate::config::Config, host: &str) -> bool {
    config.client_auth.hosts.is_empty() || config.client_auth.get(host).is_none()
}

/// Methods early data may carry: safe and idempotent, so a replay changes nothing.
fn early_safe(m: &http::Method) -> bool {
    matches!(*m, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS)
}

async fn request(shared: Arc<Shared>, info: Arc<ConnInfo>, mut req: Request<()>, stream: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>, early: bool) {
    let (mut send, recv) = stream.split();
    let host = super::router::request_host(&req);
    let refuse = if !serves_host(&shared.config(), &host) {
        Some(StatusCode::MISDIRECTED_REQUEST)
    } else if early && !early_safe(req.method()) {
        Some(StatusCode::TOO_EARLY)
    } else {
        None
    };
    if let Some(status) = refuse {
        let mut resp = Response::new(());
        *resp.status_mut() = status;
        let _ = send.send_response(resp).await;
        let _ = send.finish().await;
        return;
    }
    if early {
        req.headers_mut().insert(http::HeaderName::from_static("early-data"), http::HeaderValue::from_static("1"));
    }
    let (parts, ()) = req.into_parts();
    let req = Request::from_parts(parts, RequestBody { recv, data_done: false, done: false });
    let Ok(resp) = handle(shared, info, req, ()).await;
    respond(&mut send, resp).await;
}

/// Headers that name connection-level semantics: not sent on an HTTP/3 stream (RFC 9114 §4.2).
const CONNECTION_SPECIFIC: [header::HeaderName; 5] = [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::HeaderName::from_static("keep-alive"), header::HeaderName::from_static("proxy-connection")];

async fn respond(send: &mut SendHalf, resp: Response<super::respond::RespBody>) {
    let (mut parts, mut body) = resp.into_parts();
    for h in &CONNECTION_SPECIFIC {
        parts.headers.remove(h);
    }
    parts.version = http::Version::HTTP_3;
    if send.send_response(Response::from_parts(parts, ())).await.is_err() {
        return;
    }
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => match f.into_data() {
                Ok(data) => {
                    if !data.is_empty() && send.send_data(data).await.is_err() {
                        return;
                    }
                }
                Err(f) => {
                    if let Ok(trailers) = f.into_trailers() {
                        let _ = send.send_trailers(trailers).await;
                        return;
                    }
                }
            },
            Err(_) => {
                // The answer broke off (the upstream went away mid-body): say so, not "done".
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return;
            }
        }
    }
    let _ = send.finish().await;
}

/// A request body read from its HTTP/3 stream: DATA frames, then trailers.
pub struct RequestBody {
    recv: RecvHalf,
    data_done: bool,
    done: bool,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match this.recv.poll_recv_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Ok(Some(mut buf))) => return Poll::Ready(Some(Ok(Frame::data(buf.copy_to_bytes(buf.remaining()))))),
                Poll::Ready(Ok(None)) => this.data_done = true,
            }
        }
        match this.recv.poll_recv_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.done = true;
                match r {
                    Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                    Ok(None) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The `Alt-Svc` value that advertises HTTP/3 on `port`.
pub fn alt_svc(port: u16) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).expect("digits are a valid header value")
}
