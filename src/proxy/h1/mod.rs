//! HTTP/1.1 without hyper, for the common case (`--http1-fast-path`): a client connection's
//! requests without a body (`server`), and the upstream exchange of a request without a body
//! with a cleartext HTTP/1.1 endpoint (`client`), with the chunked framing they read
//! (`chunked`). Everything else goes through hyper, and every phase between the two is the
//! general path's: the same handler, filters, retries, logs and metrics.

pub mod chunked;
pub mod client;
pub mod server;
