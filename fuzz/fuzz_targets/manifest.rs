//! The manifest parser: bytes → objects, as the file source reads a file. Never panics; every
//! error renders.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = if text.trim_start().starts_with('{') { "objects.json" } else { "objects.yaml" };
    let parsed = vestibule::source::parse::parse_text(std::path::Path::new(file), text);
    for e in &parsed.errors {
        let _ = e.to_string();
    }
    let mut store = vestibule::store::Store::default();
    for obj in parsed.objects {
        let _ = obj.obj_ref();
        store.insert(obj);
    }
});
