//! The webhook's HTTPS server: POST an AdmissionReview to `/networking/v1/ingresses` (the path
//! ingress-nginx serves), get one back. Bodies are read with a bound (the API server's own 3 MiB
//! request limit) and never buffered past it; a bad request is answered and the server goes
//! on. Each review compiles on the blocking pool, a few at a time, so the proxy's threads never
//! wait on a review.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::review::{self, AdmissionReview};
use crate::compile::Settings;
use crate::engine::Snapshot;
use crate::metrics::{Metrics, ResultLabels};

/// Where ingress-nginx's webhook answers (its ValidatingWebhookConfiguration's `path`).
pub const PATH: &str = "/networking/v1/ingresses";
/// The largest review read: the API server refuses larger requests itself.
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Reviews compiling at once; the others wait their turn.
const CONCURRENT_REVIEWS: usize = 4;
/// A TLS handshake, or a request body, that takes longer is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every review reads.
pub struct Context {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The flag settings, until the first configuration is live.
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub permits: Semaphore,
}

impl Context {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, settings: Settings, metrics: Arc<Metrics>) -> Arc<Context> {
        Arc::new(Context { snapshot, settings, metrics, permits: Semaphore::new(CONCURRENT_REVIEWS) })
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

enum ReadError {
    TooLarge,
    Broken,
}

/// The whole body, or `TooLarge` as soon as it would pass `limit` (nothing more is read).
async fn read_bounded(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn count(ctx: &Context, result: &str) {
    ctx.metrics.admission_reviews.get_or_create(&ResultLabels { result: result.into() }).inc();
}

async fn handle(ctx: Arc<Context>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    if req.uri().path() != PATH {
        return text(StatusCode::NOT_FOUND, format!("not found: AdmissionReviews go to {PATH}\n"));
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n".into());
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        count(&ctx, "too_large");
        return text(StatusCode::PAYLOAD_TOO_LARGE, format!("an AdmissionReview is at most {MAX_BODY} bytes\n"));
    }
    let body = match tokio::time::timeout(IO_TIMEOUT, read_bounded(req.into_body(), MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(ReadError::TooLarge)) => {
            count(&ctx, "too_large");
            return text(StatusCode::PAYLOAD_TOO_LARGE, format!("an AdmissionReview is at most {MAX_BODY} bytes\n"));
        }
        Ok(Err(ReadError::Broken)) | Err(_) => {
            count(&ctx, "bad_request");
            return text(StatusCode::BAD_REQUEST, "the request body could not be read\n".into());
        }
    };
    let review: AdmissionReview = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            count(&ctx, "bad_request");
            return text(StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {e}\n"));
        }
    };
    let Some(uid) = review.request.as_ref().map(|r| r.uid.clone()) else {
        count(&ctx, "bad_request");
        return text(StatusCode::BAD_REQUEST, "the AdmissionReview has no request\n".into());
    };
    let snapshot = ctx.snapshot.load_full();
    let settings = snapshot.settings.clone().unwrap_or_else(|| ctx.settings.clone());
    let Ok(permit) = ctx.permits.acquire().await else { return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()) };
    let tested = Instant::now();
    let job = tokio::task::spawn_blocking(move || review::review(&review, &snapshot.store, &settings, &snapshot.diagnostics));
    let verdict = match job.await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "an admission review failed");
            count(&ctx, "error");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "the review failed\n".into());
        }
    };
    drop(permit);
    if verdict.compiled {
        let m = &ctx.metrics;
        m.admission_tested_ingresses.set(verdict.ingresses as f64);
        m.admission_tested_duration.set(tested.elapsed().as_secs_f64());
        m.admission_render_ingresses.set(verdict.ingresses as f64);
        m.admission_render_duration.set(verdict.render_seconds);
        m.admission_config_size.set(body.len() as f64);
        m.admission_roundtrip_duration.set(started.elapsed().as_secs_f64());
    }
    count(&ctx, if verdict.allowed { "allowed" } else { "denied" });
    if !verdict.allowed {
        tracing::info!(uid = %uid, reasons = %verdict.denials.join("; "), "admission denied");
    }
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&verdict.answer(&uid)).unwrap_or_default())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Accepts TLS connections on `listener` and answers reviews, HTTP/1.1 or HTTP/2.
pub fn spawn(listener: TcpListener, tls: Arc<rustls::ServerConfig>, ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(stream)).await else { return };
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(ctx, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    })
}
