//! Per-thread helpers of the request path: a fast random number, request IDs, the Date header.

use std::cell::{Cell, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
        h.finish() | 1
    });
    static DATE: RefCell<(u64, HeaderValue)> = RefCell::new((0, HeaderValue::from_static("")));
}

/// A fast pseudo-random number (request IDs, balancing choices); not for secrets.
pub fn random_u64() -> u64 {
    RNG.with(|s| {
        // wyrand: fast and good enough for request IDs (not for secrets).
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = (x as u128).wrapping_mul((x ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A new request ID: 32 hex characters, like nginx's `$request_id`.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (half, r) in [random_u64(), random_u64()].into_iter().enumerate() {
        for i in 0..16 {
            out[half * 16 + i] = HEX[((r >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    // Owned where it is made: one allocation, and clones (the upstream header, the answer's,
    // the log's) only count references, where a copied value is allocated again when first
    // cloned.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(out)).expect("hex is a valid header value")
}

/// The `Date` header value, formatted once per second per thread.
pub fn date_value() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("http date is a valid header value"));
        }
        d.1.clone()
    })
}

