//! WebSocket upgrades: the request goes on a fresh connection and, on a `101` that switches to
//! `websocket`, the two upgraded connections are spliced together.

use std::net::SocketAddr;

use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use super::context::Ctx;
use super::forward::Upstream;
use super::forwarded::strip_hop_by_hop;
use super::respond::{self, RespBody, error_page, finish_headers};
use super::upstream::{BoxError, ReqBody};

pub async fn proxy_upgrade(ctx: &Ctx<'_>, up: &Upstream<'_>, addr: SocketAddr, req: Request<ReqBody>, client_upgrade: hyper::upgrade::OnUpgrade) -> Response<RespBody> {
    let (shared, backend, request_id) = (ctx.shared, up.backend, &ctx.request_id);
    let mut sender = match shared.pool.connect_upgradable(addr, backend.protocol, backend.tls.as_ref(), up.proxy.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(request_id = ?request_id, error = %e, "upstream connect failed");
            return error_page(StatusCode::BAD_GATEWAY, request_id, false);
        }
    };
    let mut resp = match tokio::time::timeout(up.proxy.read_timeout, sender.send_request(req)).await {
        Err(_) => return error_page(StatusCode::GATEWAY_TIMEOUT, request_id, false),
        Ok(Err(e)) => {
            tracing::warn!(request_id = ?request_id, error = %e, "upstream upgrade request failed");
            return error_page(StatusCode::BAD_GATEWAY, request_id, false);
        }
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        finish_headers(&mut parts.headers, request_id);
        return Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync());
    }
    let websocket = resp.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        // Only the WebSocket upgrade that was asked for is tunnelled.
        tracing::warn!(request_id = ?request_id, "upstream switched to a protocol other than websocket");
        return error_page(StatusCode::BAD_GATEWAY, request_id, false);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    // The tunnel counts as an open connection, and closes cleanly on shutdown.
    let active = shared.drain.track();
    let stop = shared.drain.subscribe();
    tokio::spawn(async move {
        let _active = active;
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            _ => return,
        };
        super::tunnel::splice(TokioIo::new(client), TokioIo::new(upstream), stop, websocket).await;
    });
    let (mut parts, _) = resp.into_parts();
    finish_headers(&mut parts.headers, request_id);
    Response::from_parts(parts, respond::empty())
}

