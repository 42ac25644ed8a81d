//! Hash-key expressions: `upstream-hash-by` (and `auth-cache-key`, the other expression of
//! request variables). Never panics; a key that parses hashes a request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::config::HashKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = HashKey::parse(text.trim()) {
        let req = http::Request::builder()
            .uri("/a/b?c=d&e=f")
            .header("host", "app.example.com:8080")
            .header("x-user", "alice")
            .header("cookie", "session=abc; other=1")
            .body(())
            .expect("request");
        let _ = vestibule::proxy::balance::hash_input(&key, &req, std::net::IpAddr::from([10, 0, 0, 1]));
    }
    let _ = vestibule::compile::annotations::auth::cache_key(text);
});
