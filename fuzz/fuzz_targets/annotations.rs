//! Annotation values: `key=value` lines (a key without `/` gets the ingress-nginx prefix) on an
//! Ingress with TLS, a regex path and a ready backend, compiled with the fixed cluster. The
//! first line is the host.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, rest) = text.split_once('\n').unwrap_or(("app.example.com", text));
    let ann = common::pairs(rest, 32, true);
    let mut store = common::base_store();
    common::add_text(&mut store, "ingress.json", &common::ingress_json("app", host, &ann));
    // A second Ingress on the same host without annotations: merging and conflicts.
    common::add_text(&mut store, "other.json", &common::ingress_json("other", host, &[]));
    common::compile(&store);
});
