//! GRPCRoute end to end: a real tonic client through a Gateway HTTP listener to real tonic
//! servers, routed by service and method (and headers), spoken to over h2c.

mod common;

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::gateway::*;
use common::*;
use http::uri::PathAndQuery;
use serde_json::json;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::UnaryService;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers every method of every service with `tag:/path`.
#[derive(Clone)]
struct Tagged(&'static str);

struct Unary(&'static str, String);

impl UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<tonic::Response<Msg>, Status>;
    fn call(&mut self, _req: tonic::Request<Msg>) -> Self::Future {
        let text = format!("{}:{}", self.0, self.1);
        Box::pin(async move { Ok(tonic::Response::new(Msg { text })) })
    }
}

impl<B> Service<http::Request<B>> for Tagged
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
        let tag = self.0;
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(grpc.unary(Unary(tag, path), req).await)
        })
    }
}

struct Server {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(tag: &'static str) -> Server {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // A bare HTTP/2 server: tonic's router would only take one service name.
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let hsvc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move { Tagged(tag).call(req).await });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new()).serve_connection(hyper_util::rt::TokioIo::new(tcp), hsvc).await;
            });
        }
    });
    Server { addr, task }
}

async fn call(port: u16, path: &'static str, header: Option<(&'static str, &'static str)>) -> Result<String, Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.expect("connect");
    let mut c = tonic::client::Grpc::new(channel);
    c.ready().await.unwrap();
    let mut req = tonic::Request::new(Msg { text: "hi".into() });
    if let Some((k, v)) = header {
        req.metadata_mut().insert(k, v.parse().unwrap());
    }
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), c.unary(req, PathAndQuery::from_static(path), ProstCodec::<Msg, Msg>::default())).await.expect("answered in time")?;
    Ok(resp.into_inner().text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcroute_routes_by_service_method_and_header_over_h2c() {
    init_tracing();
    let (orders, users, canary) = (server("orders").await, server("users").await, server("canary").await);
    let port = free_port();
    let rule = |method: serde_json::Value, svc: &str| json!({"matches": [method], "backendRefs": [backend_ref(svc, 1)]});
    let manifests = manifest([
        gateway_class("vestibule", CONTROLLER),
        gateway("default", "gw", "vestibule", vec![listener("http", port, "HTTP", json!({}))]),
        route("GRPCRoute", "default", "rpc", "2024-01-01T00:00:00Z", json!({
            "parentRefs": [{"name": "gw"}],
            "rules": [
                rule(json!({"method": {"service": "shop.Orders"}}), "orders"),
                rule(json!({"method": {"service": "shop.Users", "method": "Get"}}), "users"),
                rule(json!({"method": {"service": "shop.Users", "method": "Get"}, "headers": [{"name": "x-track", "value": "canary"}]}), "canary"),
                rule(json!({"method": {"type": "RegularExpression", "service": "admin\\..*", "method": "List.*"}}), "users"),
            ],
        })),
        backend_yaml("default", "orders", &[orders.addr]),
        backend_yaml("default", "users", &[users.addr]),
        backend_yaml("default", "canary", &[canary.addr]),
    ]);
    let _h = start(&manifests).await;
    assert_eq!(call(port, "/shop.Orders/Create", None).await.unwrap(), "orders:/shop.Orders/Create");
    assert_eq!(call(port, "/shop.Users/Get", None).await.unwrap(), "users:/shop.Users/Get");
    assert_eq!(call(port, "/shop.Users/Get", Some(("x-track", "canary"))).await.unwrap(), "canary:/shop.Users/Get", "a header match ranks first");
    assert_eq!(call(port, "/admin.Accounts/ListAll", None).await.unwrap(), "users:/admin.Accounts/ListAll");
    let missing = call(port, "/shop.Users/Delete", None).await.expect_err("no rule matches");
    assert_ne!(missing.code(), Code::Ok);
}
