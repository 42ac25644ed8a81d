//! CIDR lists (`whitelist-source-range`, `denylist-source-range` and the ConfigMap's lists).
//! Never panics; a list that parses prints and parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::config::limits::{contains, parse_nets};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(nets) = parse_nets(text) else { return };
    let printed = nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(parse_nets(&printed).as_ref(), Ok(&nets), "{text:?} printed as {printed:?}");
    for ip in ["10.0.0.1", "::1", "192.168.1.1", "::ffff:10.0.0.1", "2001:db8::1"] {
        let _ = contains(&nets, ip.parse().expect("address"));
    }
});
