//! htpasswd lines: the fuzzed text is the `auth` file of a basic-auth Secret, compiled into an
//! Ingress's users, and each line's hash is parsed on its own. Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vestibule::config::auth::PasswordHash;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines().take(16) {
        let Some((_, hash)) = line.split_once(':') else { continue };
        let _ = PasswordHash::parse(hash);
    }
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users", "namespace": "default"}, "stringData": {"auth": text}});
    let mut store = common::base_store();
    common::add_text(&mut store, "secret.json", &secret.to_string());
    let ann = [
        ("nginx.ingress.kubernetes.io/auth-type".to_string(), "basic".to_string()),
        ("nginx.ingress.kubernetes.io/auth-secret".to_string(), "users".to_string()),
    ];
    common::add_text(&mut store, "ingress.json", &common::ingress_json("app", "app.example.com", &ann));
    common::compile(&store);
});
