//! A location that cannot be served as configured (its `custom-headers` were refused): every
//! request is answered with the status (503), failing closed rather than serving without them.

use http::{Response, StatusCode};

use super::super::context::Ctx;
use super::super::respond::RespBody;

pub fn on_request(status: u16, ctx: &Ctx<'_>) -> Option<Response<RespBody>> {
    Some(ctx.fail(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)))
}
