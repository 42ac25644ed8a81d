//! HTTPRoute and GRPCRoute filters → `config::Filter`s.
//!
//! A placeholder with the interface the filters implementation provides: no filters yet.

use std::sync::Arc;

use crate::config::{Backend, Filter, PathMatch};
use crate::gateway_api as gw;

pub struct FilterProblem {
    pub field: String,
    pub message: String,
    pub reason: &'static str,
}

/// The filters of one HTTPRoute rule (or backendRef), for one of its matches, in order.
pub fn http_filters(
    filters: &[gw::HTTPRouteFilter],
    field: &str,
    matched: &PathMatch,
    resolve: &mut dyn FnMut(&gw::BackendRef, &str) -> Result<Arc<Backend>, FilterProblem>,
) -> Result<Vec<Filter>, FilterProblem> {
    let _ = (filters, field, matched, resolve);
    Ok(Vec::new())
}

/// The filters of one GRPCRoute rule (or backendRef), in order.
pub fn grpc_filters(
    filters: &[gw::GRPCRouteFilter],
    field: &str,
    resolve: &mut dyn FnMut(&gw::BackendRef, &str) -> Result<Arc<Backend>, FilterProblem>,
) -> Result<Vec<Filter>, FilterProblem> {
    let _ = (filters, field, resolve);
    Ok(Vec::new())
}
