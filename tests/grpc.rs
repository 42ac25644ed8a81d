//! gRPC through Vestibule end to end: a real tonic client, a real tonic server, and Vestibule in
//! between with `backend-protocol: GRPC` (HTTP/2 cleartext to the backend) or `GRPCS` (HTTP/2
//! over TLS to the backend).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::uri::PathAndQuery;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{NamedService, ServerStreamingService, StreamingService, UnaryService};
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;

// ---------------------------------------------------------------------------------------------
// The service: hand-written messages and handlers, no code generation.

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub n: u32,
    #[prost(uint32, tag = "3")]
    pub delay_ms: u32,
}

fn msg(text: &str, n: u32) -> Msg {
    Msg { text: text.to_string(), n, delay_ms: 0 }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Feed = Arc<Mutex<Option<mpsc::Receiver<Result<Msg, Status>>>>>;

/// `test.Echo`: which server answered (`tag`) is part of every answer.
#[derive(Clone)]
struct EchoSvc {
    tag: &'static str,
    /// Messages for a server stream the test drives itself (`Stream` with text "feed").
    feed: Feed,
}

impl EchoSvc {
    fn new(tag: &'static str) -> Self {
        EchoSvc { tag, feed: Arc::new(Mutex::new(None)) }
    }
}

impl NamedService for EchoSvc {
    const NAME: &'static str = "test.Echo";
}

fn ascii(v: &str) -> MetadataValue<tonic::metadata::Ascii> {
    v.parse().unwrap()
}

/// `/test.Echo/Unary`: answers `tag:text`, waits `delay_ms` first, reports the request's
/// metadata back as response metadata; text "not-found" fails with NotFound.
struct Unary(&'static str);

impl UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<tonic::Response<Msg>, Status>;
    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let tag = self.0;
        Box::pin(async move {
            let (meta, _, m) = req.into_parts();
            if m.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(m.delay_ms as u64)).await;
            }
            if m.text == "not-found" {
                return Err(Status::not_found("no such thing: x"));
            }
            let mut resp = tonic::Response::new(Msg { text: format!("{tag}:{}", m.text), n: m.n + 1, delay_ms: 0 });
            for key in ["x-client-meta", "x-forwarded-for", "x-forwarded-proto", "x-request-id"] {
                if let Some(v) = meta.get(key) {
                    resp.metadata_mut().insert(format!("x-saw-{key}").parse::<tonic::metadata::MetadataKey<_>>().unwrap(), v.clone());
                }
            }
            resp.metadata_mut().insert("x-server", ascii(tag));
            Ok(resp)
        })
    }
}

/// `/test.Echo/Stream`: `n` messages `delay_ms` apart. Text "abort" ends the stream with an
/// Aborted status that carries custom trailing metadata; text "feed" streams what the test
/// pushes into the service's feed.
struct ServerStream(EchoSvc);

impl ServerStreamingService<Msg> for ServerStream {
    type Response = Msg;
    type ResponseStream = ReceiverStream<Result<Msg, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;
    fn call(&mut self, req: tonic::Request<Msg>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let m = req.into_inner();
            if m.text == "feed" {
                let rx = svc.feed.lock().unwrap().take().ok_or_else(|| Status::failed_precondition("no feed"))?;
                return Ok(tonic::Response::new(ReceiverStream::new(rx)));
            }
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..m.n {
                    if m.delay_ms > 0 && i > 0 {
                        tokio::time::sleep(Duration::from_millis(m.delay_ms as u64)).await;
                    }
                    if tx.send(Ok(Msg { text: format!("{}:{}#{i}", svc.tag, m.text), n: i, delay_ms: 0 })).await.is_err() {
                        return;
                    }
                }
                if m.text == "abort" {
                    let mut trailers = MetadataMap::new();
                    trailers.insert("x-trailer", ascii(&format!("sent-{}", m.n)));
                    let _ = tx.send(Err(Status::with_metadata(Code::Aborted, "aborted after the last message", trailers))).await;
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// `/test.Echo/Bidi`: answers every message as it arrives.
struct Bidi(&'static str);

impl StreamingService<Msg> for Bidi {
    type Response = Msg;
    type ResponseStream = ReceiverStream<Result<Msg, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;
    fn call(&mut self, req: tonic::Request<Streaming<Msg>>) -> Self::Future {
        let tag = self.0;
        Box::pin(async move {
            let mut inbound = req.into_inner();
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                loop {
                    match inbound.message().await {
                        Ok(Some(m)) => {
                            if tx.send(Ok(Msg { text: format!("{tag}:{}", m.text.to_uppercase()), n: m.n, delay_ms: 0 })).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(s) => {
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

impl<B> Service<http::Request<B>> for EchoSvc
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            let resp = match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary(svc.tag), req).await,
                "/test.Echo/Stream" => grpc.server_streaming(ServerStream(svc), req).await,
                "/test.Echo/Bidi" => grpc.streaming(Bidi(svc.tag), req).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and clients.

struct Backend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service behind tonic's own server (HTTP/2 cleartext).
async fn grpc_backend(svc: EchoSvc) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder().add_service(svc).serve_with_incoming(TcpListenerStream::new(l)).await.unwrap();
    });
    Backend { addr, task }
}

/// The service behind a bare hyper HTTP/2 server: the same handlers, without tonic's server
/// middleware (which would enforce `grpc-timeout` itself).
async fn grpc_backend_bare(svc: EchoSvc) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            let svc = svc.clone();
            tokio::spawn(async move {
                let hsvc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let mut svc = svc.clone();
                    async move { svc.call(req).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), hsvc)
                    .await;
            });
        }
    });
    Backend { addr, task }
}

/// A server-side TLS stream that tonic's server accepts as a connection.
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The service behind tonic's server over TLS only (self-signed certificate, ALPN h2).
async fn grpcs_backend(svc: EchoSvc) -> Backend {
    vestibule::tls::install_provider();
    let (ck, _, _) = vestibule::tls::self_signed(&["grpc-backend.internal"]).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(vestibule::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(vestibule::tls::Single(ck)));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<Result<TlsIo, std::io::Error>>(16);
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                // Anything that is not a TLS handshake is dropped here: plain HTTP/2 never
                // reaches the service.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(TlsIo(tls))).await;
                }
            });
        }
    });
    let task = tokio::spawn(async move {
        let serve = tonic::transport::Server::builder().add_service(svc).serve_with_incoming(ReceiverStream::new(rx));
        let _accept = AbortOnDrop(accept);
        serve.await.unwrap();
    });
    Backend { addr, task }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Client = tonic::client::Grpc<tonic::transport::Channel>;

/// A tonic client connected to Vestibule's plain HTTP port (HTTP/2 with prior knowledge).
async fn client(h: &Harness) -> Client {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.running.http)).unwrap().connect().await.expect("connect to Vestibule");
    tonic::client::Grpc::new(channel)
}

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

const UNARY: &str = "/test.Echo/Unary";
const STREAM: &str = "/test.Echo/Stream";
const BIDI: &str = "/test.Echo/Bidi";

async fn unary(c: &mut Client, req: tonic::Request<Msg>) -> Result<tonic::Response<Msg>, Status> {
    c.ready().await.unwrap();
    c.unary(req, PathAndQuery::from_static(UNARY), codec()).await
}

/// A gRPC client over one bare HTTP/2 connection: no client-side deadline enforcement, so a
/// deadline status can only come from the other end.
#[derive(Clone)]
struct BareH2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl Service<http::Request<tonic::body::Body>> for BareH2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Self::Response, hyper::Error>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

async fn bare_client(h: &Harness) -> tonic::client::Grpc<BareH2> {
    let tcp = tokio::net::TcpStream::connect(h.running.http).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let origin: http::Uri = format!("http://{}", h.running.http).parse().unwrap();
    tonic::client::Grpc::with_origin(BareH2(send), origin)
}

// ---------------------------------------------------------------------------------------------
// Manifests.

/// A host-less Ingress (every host) with one Prefix path to `svc`, with a backend protocol.
/// An Ingress for every host, `path` (Prefix) to `svc`, with `backend-protocol: {protocol}`.
fn ingress(name: &str, svc: &str, protocol: &str, path: &str) -> String {
    let ing = Ingress::new("default", name).annotation("nginx.ingress.kubernetes.io/backend-protocol", protocol).path(path, "Prefix", svc, 80);
    format!("{}---\n", ing.to_yaml())
}

fn hosted_ingress(name: &str, host: &str, svc: &str) -> String {
    format!("{}---\n", Ingress::new("default", name).host_path(host, "/", "Prefix", svc, 80).to_yaml())
}

fn backend(svc: &str, addrs: &[SocketAddr]) -> String {
    format!("{}\n---\n", backend_yaml("default", svc, addrs))
}

async fn start_grpc(tag: &'static str) -> (Backend, EchoSvc, Harness) {
    let svc = EchoSvc::new(tag);
    let b = grpc_backend(svc.clone()).await;
    let h = start(&format!("{}{}", backend("grpc", &[b.addr]), ingress("grpc", "grpc", "GRPC", "/"))).await;
    (b, svc, h)
}

fn with_timeout<T>(r: tonic::Request<T>, d: Duration) -> tonic::Request<T> {
    let mut r = r;
    r.set_timeout(d);
    r
}

const STEP: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_call_and_metadata_pass_through() {
    init_tracing();
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    for i in 0..3u32 {
        let mut req = tonic::Request::new(msg(&format!("hello {i}"), i));
        req.metadata_mut().insert("x-client-meta", ascii(&format!("token-{i}")));
        let resp = bounded("unary", unary(&mut c, req)).await.expect("unary call succeeds through Vestibule");
        let meta = resp.metadata().clone();
        let m = resp.into_inner();
        assert_eq!(m, Msg { text: format!("plain:hello {i}"), n: i + 1, delay_ms: 0 });
        // Request metadata reached the server, response metadata reached the client.
        assert_eq!(meta.get("x-saw-x-client-meta").unwrap(), &format!("token-{i}"));
        assert_eq!(meta.get("x-server").unwrap(), "plain");
        // And Vestibule added its forwarding headers on the way.
        assert_eq!(meta.get("x-saw-x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(meta.get("x-saw-x-forwarded-proto").unwrap(), "http");
        assert!(meta.get("x-saw-x-request-id").is_some_and(|v| v.len() == 32), "{meta:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_delivers_every_message_in_order() {
    init_tracing();
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    c.ready().await.unwrap();
    let req = tonic::Request::new(Msg { text: "s".into(), n: 25, delay_ms: 2 });
    let mut stream = bounded("stream call", c.server_streaming(req, PathAndQuery::from_static(STREAM), codec())).await.expect("stream opens").into_inner();
    let mut got = Vec::new();
    while let Some(m) = bounded("stream message", stream.message()).await.expect("stream ends with OK") {
        got.push(m);
    }
    assert_eq!(got.len(), 25);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.text, format!("plain:s#{i}"));
        assert_eq!(m.n, i as u32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_streaming_is_interleaved() {
    init_tracing();
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    c.ready().await.unwrap();
    let (tx, rx) = mpsc::channel::<Msg>(1);
    let mut replies = bounded("bidi call", c.streaming(tonic::Request::new(ReceiverStream::new(rx)), PathAndQuery::from_static(BIDI), codec()))
        .await
        .expect("bidi stream opens")
        .into_inner();
    // Each message is sent only after the previous answer came back: nothing is buffered
    // whole in either direction.
    for i in 0..20u32 {
        tx.send(msg(&format!("ping {i}"), i)).await.unwrap();
        let r = bounded("bidi reply", replies.message()).await.expect("no error").expect("a reply per message");
        assert_eq!(r, Msg { text: format!("plain:PING {i}"), n: i, delay_ms: 0 });
    }
    drop(tx);
    assert_eq!(bounded("bidi end", replies.message()).await.expect("ends with OK"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_status_reaches_the_client() {
    init_tracing();
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    // A trailers-only error from the handler.
    let err = bounded("unary", unary(&mut c, tonic::Request::new(msg("not-found", 0)))).await.expect_err("the handler fails");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no such thing: x");
    // The connection is still good afterwards.
    let ok = bounded("unary", unary(&mut c, tonic::Request::new(msg("after", 1)))).await.unwrap();
    assert_eq!(ok.into_inner().text, "plain:after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_metadata_after_messages_arrives() {
    init_tracing();
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    c.ready().await.unwrap();
    let req = tonic::Request::new(Msg { text: "abort".into(), n: 3, delay_ms: 0 });
    let mut stream = bounded("stream call", c.server_streaming(req, PathAndQuery::from_static(STREAM), codec())).await.expect("stream opens").into_inner();
    for i in 0..3 {
        let m = bounded("message", stream.message()).await.expect("no error before the trailers").expect("a message");
        assert_eq!(m.text, format!("plain:abort#{i}"));
    }
    // The status and the custom metadata come in HTTP/2 trailers, after the DATA frames.
    let err = bounded("trailers", stream.message()).await.expect_err("the stream ends with the handler's status");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(err.message(), "aborted after the last message");
    assert_eq!(err.metadata().get("x-trailer").expect("custom trailing metadata"), "sent-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_bounds_the_wait_for_a_slow_handler() {
    init_tracing();
    // A server without deadline handling of its own, and a client that does not enforce the
    // deadline either: only Vestibule can end this call early.
    let b = grpc_backend_bare(EchoSvc::new("bare")).await;
    let h = start(&format!("{}{}", backend("grpc", &[b.addr]), ingress("grpc", "grpc", "GRPC", "/"))).await;
    let mut c = bare_client(&h).await;
    c.ready().await.unwrap();

    // Sanity: without a deadline the same server answers.
    let ok = bounded("quick call", c.unary(tonic::Request::new(msg("quick", 0)), PathAndQuery::from_static(UNARY), codec())).await.expect("quick call works");
    assert_eq!(ok.into_inner().text, "bare:quick");

    let slow = Msg { text: "slow".into(), n: 0, delay_ms: 2000 };
    let started = Instant::now();
    c.ready().await.unwrap();
    let err = bounded("slow call", c.unary(with_timeout(tonic::Request::new(slow), Duration::from_millis(300)), PathAndQuery::from_static(UNARY), codec()))
        .await
        .expect_err("the deadline passes before the handler answers");
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(!err.message().contains("HTTP status code"), "a real grpc-status, not one mapped from an HTTP error: {err:?}");
    assert!(took < Duration::from_millis(1500), "answered after {took:?}, not near the 300 ms deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_deadline_with_a_standard_client_and_server() {
    init_tracing();
    // tonic on both sides, each also enforcing the deadline: the call still ends early.
    let (_b, _svc, h) = start_grpc("plain").await;
    let mut c = client(&h).await;
    let started = Instant::now();
    let slow = Msg { text: "slow".into(), n: 0, delay_ms: 2000 };
    let err = bounded("slow call", unary(&mut c, with_timeout(tonic::Request::new(slow), Duration::from_millis(300)))).await.expect_err("deadline");
    let took = started.elapsed();
    // tonic's client reports its own expiry as Cancelled; an answer from Vestibule is
    // DeadlineExceeded.
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");
    assert!(took < Duration::from_millis(1500), "answered after {took:?}");
    // The server's late answer does not disturb the next call on the same connection.
    let ok = bounded("next call", unary(&mut c, tonic::Request::new(msg("next", 0)))).await.unwrap();
    assert_eq!(ok.into_inner().text, "plain:next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_endpoints_answer_unavailable_as_grpc_status() {
    init_tracing();
    let h = start(&format!("{}{}", backend("grpc", &[]), ingress("grpc", "grpc", "GRPC", "/"))).await;
    let mut c = client(&h).await;
    let err = bounded("unary", unary(&mut c, tonic::Request::new(msg("anyone?", 0)))).await.expect_err("no endpoint to answer");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // tonic maps a bare HTTP 503 to Unavailable as well, saying so in the message; Vestibule
    // must answer with a gRPC status (HTTP 200, grpc-status 14), not an HTML error page.
    assert!(!err.message().contains("HTTP status code"), "an HTTP error page instead of a gRPC status: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_answers_unavailable_as_grpc_status() {
    init_tracing();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let h = start(&format!("{}{}", backend("grpc", &[closed]), ingress("grpc", "grpc", "GRPC", "/"))).await;
    let mut c = client(&h).await;
    let err = bounded("unary", unary(&mut c, tonic::Request::new(msg("anyone?", 0)))).await.expect_err("the endpoint refuses");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(!err.message().contains("HTTP status code"), "an HTTP error page instead of a gRPC status: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_grpc_call_answers_unimplemented_as_grpc_status() {
    init_tracing();
    let svc = EchoSvc::new("plain");
    let b = grpc_backend(svc).await;
    // Only the streaming method is routed.
    let h = start(&format!("{}{}", backend("grpc", &[b.addr]), ingress("grpc", "grpc", "GRPC", "/test.Echo/Stream"))).await;
    let mut c = client(&h).await;
    let err = bounded("unary", unary(&mut c, tonic::Request::new(msg("lost", 0)))).await.expect_err("no route");
    // 404 → UNIMPLEMENTED (12), as a gRPC status.
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(!err.message().contains("HTTP status code"), "an HTTP error page instead of a gRPC status: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_stream_survives_config_rewrites() {
    init_tracing();
    let svc = EchoSvc::new("plain");
    let (feed_tx, feed_rx) = mpsc::channel(4);
    *svc.feed.lock().unwrap() = Some(feed_rx);
    let b = grpc_backend(svc.clone()).await;
    let web = echo("web").await;
    let base = format!("{}{}", backend("grpc", &[b.addr]), backend("web", &[web.addr]));
    let manifests = |rev: usize| {
        let mut m = base.clone();
        // The gRPC Ingress itself is rewritten too (another annotation, another path), and
        // one more unrelated Ingress appears each time.
        m.push_str(&ingress("grpc", "grpc", "GRPC", "/"));
        if rev > 0 {
            m = m.replace("    nginx.ingress.kubernetes.io/backend-protocol", &format!("    vestibule.dev/revision-{rev}: \"x\"\n    nginx.ingress.kubernetes.io/backend-protocol"));
            m.push_str(&ingress("grpc-extra", "grpc", "GRPC", &format!("/extra-{rev}")));
        }
        for i in 1..=rev {
            m.push_str(&hosted_ingress(&format!("r{i}"), &format!("r{i}.example"), "web"));
        }
        m
    };
    let h = start(&manifests(0)).await;
    let mut c = client(&h).await;
    c.ready().await.unwrap();
    let mut stream = bounded("stream call", c.server_streaming(tonic::Request::new(msg("feed", 0)), PathAndQuery::from_static(STREAM), codec()))
        .await
        .expect("stream opens")
        .into_inner();

    let mut sent = 0u32;
    let mut send_and_check = async |burst: u32, stream: &mut Streaming<Msg>| {
        for _ in 0..burst {
            feed_tx.send(Ok(msg(&format!("m{sent}"), sent))).await.unwrap();
            let m = bounded("fed message", stream.message()).await.expect("the stream is not cut").expect("a message");
            assert_eq!(m, msg(&format!("m{sent}"), sent));
            sent += 1;
        }
    };
    send_and_check(5, &mut stream).await;
    for rev in 1..=5 {
        h.write("manifests.yaml", &manifests(rev));
        // The new configuration is live before the stream is used again.
        h.wait_route(&format!("r{rev}.example"), "/", (200, Some("web")), Duration::from_secs(5)).await;
        send_and_check(5, &mut stream).await;
        // New calls work alongside the old stream.
        let ok = bounded("unary", unary(&mut c, tonic::Request::new(msg(&format!("rev {rev}"), 0)))).await.unwrap();
        assert_eq!(ok.into_inner().text, format!("plain:rev {rev}"));
    }
    drop(feed_tx);
    assert_eq!(bounded("stream end", stream.message()).await.expect("ends with OK"), None);
    assert_eq!(sent, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_backend_over_tls() {
    init_tracing();
    let tls_backend = grpcs_backend(EchoSvc::new("tls")).await;
    let h = start(&format!("{}{}", backend("grpcs", &[tls_backend.addr]), ingress("grpcs", "grpcs", "GRPCS", "/"))).await;
    let mut c = client(&h).await;
    let mut req = tonic::Request::new(msg("secure", 7));
    req.metadata_mut().insert("x-client-meta", ascii("over-tls"));
    let resp = bounded("unary", unary(&mut c, req)).await.expect("gRPC to a TLS backend works");
    assert_eq!(resp.metadata().get("x-saw-x-client-meta").unwrap(), "over-tls");
    assert_eq!(resp.into_inner(), Msg { text: "tls:secure".into(), n: 8, delay_ms: 0 });

    c.ready().await.unwrap();
    let mut stream = bounded("stream", c.server_streaming(tonic::Request::new(Msg { text: "t".into(), n: 10, delay_ms: 0 }), PathAndQuery::from_static(STREAM), codec()))
        .await
        .expect("stream opens")
        .into_inner();
    let mut n = 0;
    while let Some(m) = bounded("message", stream.message()).await.expect("OK") {
        assert_eq!(m.text, format!("tls:t#{n}"));
        n += 1;
    }
    assert_eq!(n, 10);

    // The same backend declared as cleartext GRPC cannot be reached: the TLS really is used.
    let h2 = start(&format!("{}{}", backend("grpcs", &[tls_backend.addr]), ingress("grpcs", "grpcs", "GRPC", "/"))).await;
    let mut c2 = client(&h2).await;
    let err = bounded("unary", unary(&mut c2, tonic::Request::new(msg("plain to tls", 0)))).await.expect_err("cleartext to a TLS-only backend fails");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
