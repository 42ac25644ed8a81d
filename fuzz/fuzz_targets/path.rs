//! Path normalisation: never panics, and normalising twice gives what normalising once gave.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::config::path::{normalize_path, strip_port};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let once = normalize_path(text);
    let twice = normalize_path(&once);
    assert_eq!(once, twice, "normalising {text:?} is not idempotent");
    let _ = strip_port(text);
});
