//! `backend-protocol`: how to speak to the backends (HTTP, HTTPS, GRPC, GRPCS, H2C).

use super::Reader;
use crate::config::BackendProtocol;

pub const KEYS: &[&str] = &["backend-protocol"];

pub fn parse(r: &mut Reader) -> BackendProtocol {
    let Some((k, v)) = r.get("backend-protocol") else { return BackendProtocol::default() };
    match BackendProtocol::parse(v) {
        Some(p) => p,
        None => {
            r.bad(&k, format!("{v:?}: must be HTTP, HTTPS, GRPC, GRPCS or H2C; HTTP is used"));
            BackendProtocol::default()
        }
    }
}
