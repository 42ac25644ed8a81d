//! Compile over arbitrary small stores: the fuzzed text's objects over the fixed cluster, then
//! `compile::compile`, which must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut store = common::base_store();
    common::add_text(&mut store, "objects.yaml", text);
    common::compile(&store);
});
