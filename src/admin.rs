//! The health port: `/healthz`, `/metrics`, the dashboard (`/dashboard`), and the read-only
//! `/debug/config`, `/debug/live` and `/debug/explain?url=` endpoints.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::compile::explain;
use arc_swap::ArcSwap;

use crate::engine::Snapshot;
use crate::proxy::Shared;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn respond(shared: &Shared, snapshots: &ArcSwap<Snapshot>, dashboard: bool, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "read-only endpoint\n".into());
    }
    let query = req.uri().query().unwrap_or("");
    if dashboard && let Some((content_type, body)) = crate::dashboard::asset(req.uri().path()) {
        let mut resp = text(StatusCode::OK, content_type, body.to_string());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(crate::dashboard::CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    match req.uri().path() {
        "/healthz" if shared.is_ready() => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no configuration applied yet\n".into()),
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(shared.pool.idle_count()),
        ),
        "/debug/config" => {
            let config = shared.config();
            let snapshot = snapshots.load();
            let v = crate::debug::config_json(&config, &snapshot);
            text(StatusCode::OK, "application/json", serde_json::to_string_pretty(&v).unwrap_or_default() + "\n")
        }
        "/debug/live" => text(StatusCode::OK, "application/json", serde_json::to_string(&crate::dashboard::live_json(shared)).unwrap_or_default() + "\n"),
        "/debug/explain" => {
            let Some(url) = crate::debug::query_value(query, "url") else {
                return text(StatusCode::BAD_REQUEST, "text/plain", "usage: /debug/explain?url=http://HOST/PATH[&format=text]\n".into());
            };
            let snapshot = snapshots.load();
            if snapshot.settings.is_none() {
                return text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no configuration applied yet\n".into());
            };
            let config = shared.config();
            match explain::explain_with(&snapshot.store, &config, &snapshot.diagnostics, &snapshot.status, &url, shared.https_port()) {
                Err(e) => text(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
                Ok(x) if crate::debug::query_value(query, "format").as_deref() == Some("text") => text(StatusCode::OK, "text/plain", x.text()),
                Ok(x) => text(StatusCode::OK, "application/json", serde_json::to_string_pretty(&x).unwrap_or_default() + "\n"),
            }
        }
        // Only in builds with the `count-allocations` feature (the benchmark's).
        "/debug/allocations" => match crate::alloc_count::counts() {
            Some((n, bytes)) => text(StatusCode::OK, "application/json", format!("{{\"allocations\":{n},\"bytes\":{bytes}}}\n")),
            None => text(StatusCode::NOT_FOUND, "text/plain", "built without the count-allocations feature\n".into()),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz, /metrics, /dashboard, /debug/config, /debug/live, /debug/explain?url=\n".into()),
    }
}

/// Serves the health port; `dashboard` adds `/dashboard` (`--enable-dashboard`).
pub fn spawn(listener: TcpListener, shared: Arc<Shared>, snapshots: Arc<ArcSwap<Snapshot>>, dashboard: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut errors = crate::proxy::listener::AcceptErrors::new("healthz");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    errors.failed(&e).await;
                    continue;
                }
            };
            let (shared, snapshots) = (shared.clone(), snapshots.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let resp = respond(&shared, &snapshots, dashboard, &req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
