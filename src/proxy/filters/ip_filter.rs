//! `whitelist-source-range` / `denylist-source-range`: a client address the route's filter does
//! not admit is answered 403 (the deny list wins over the allow list).

use http::{Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::RespBody;
use crate::config::limits::IpFilter;

pub fn on_request(f: &IpFilter, ctx: &Ctx<'_>) -> Option<Response<RespBody>> {
    (!f.admits(ctx.client_ip)).then(|| ctx.fail(StatusCode::FORBIDDEN))
}
