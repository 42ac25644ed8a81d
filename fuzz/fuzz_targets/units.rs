//! nginx sizes and durations, and the annotation value parsers built on them. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::compile::annotations::{canary, errors, proxy};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = std::str::from_utf8(data) else { return };
    let _ = vestibule::units::parse_duration(v);
    let _ = vestibule::units::parse_size(v);
    let _ = proxy::body_size(v);
    let _ = proxy::whole_seconds(v);
    let _ = proxy::next_upstream(v);
    let _ = proxy::tries(v);
    let _ = proxy::retry_window(v);
    let _ = proxy::http10(v);
    let _ = errors::codes(v);
    let _ = canary::atoi(v);
    let _ = vestibule::compile::annotations::auth::cache_duration(v);
});
