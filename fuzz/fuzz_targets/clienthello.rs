//! ClientHello SNI extraction, as SSL passthrough peeks at a connection's first bytes. Never
//! panics; a complete ClientHello's answer does not change when more bytes follow it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::proxy::l4::clienthello::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(sni)) = parse(data) {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(parse(&more).ok(), Some(Some(sni)));
    }
});
