//! HTTP/1.1 without hyper, for the common case (`--http1-fast-path`): a client connection's
//! requests without a body (`server`), and the upstream exchange of a request without a body
//! with a cleartext HTTP/1.1 endpoint (`client`), with the chunked framing they read
//! (`chunked`). Everything else goes through hyper, and every phase between the two is the
//! general path's: the same handler, filters, retries, logs and metrics.

pub mod chunked;
pub mod client;
pub mod server;

/// Appends `name: value` CRLF for every field.
fn put_fields(out: &mut Vec<u8>, headers: &http::HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}
