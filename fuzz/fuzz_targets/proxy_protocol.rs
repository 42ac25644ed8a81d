//! PROXY protocol v1 and v2 headers. Never panics; a complete header's length fits the input;
//! every shorter prefix of a complete header asks for more bytes (a header split across reads is
//! not refused); the address it carries encodes and parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::proxy::proxy_protocol::{encode_v1, encode_v2, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(h)) = parse(data) else { return };
    assert!(h.len > 0 && h.len <= data.len(), "header length {} of {} bytes", h.len, data.len());
    if h.len <= 600 {
        for n in 1..h.len {
            assert_eq!(parse(&data[..n]), Ok(None), "prefix of {n} bytes of a complete {}-byte header", h.len);
        }
    }
    if let Some(src) = h.source {
        let v2 = encode_v2(src, src);
        assert_eq!(parse(&v2).map(|h| h.and_then(|h| h.source)), Ok(Some(src)));
        let v1 = encode_v1(src, src);
        assert_eq!(parse(v1.as_bytes()).map(|h| h.and_then(|h| h.source)), Ok(Some(src)));
    }
});
