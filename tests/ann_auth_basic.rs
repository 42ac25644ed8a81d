//! Basic authentication (`auth-type: basic`, `auth-secret`, `auth-secret-type`, `auth-realm`)
//! through real sockets on 127.0.0.1: every htpasswd format against real hashes, the 401 and
//! its realm, the Authorization header reaching the backend, and failing closed (503).

mod common;

use base64::Engine;
use common::*;

const N: &str = "nginx.ingress.kubernetes.io/";
const CREATED: &str = "2020-01-01T00:00:00Z";

fn ing(name: &str, host: &str, ann: &[(&str, &str)]) -> String {
    let mut i = Ingress::new("default", name).created(CREATED);
    for (k, v) in ann {
        i = i.annotation(&format!("{N}{k}"), v);
    }
    i.host_path(host, "/", "Prefix", "web", 80).to_yaml()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut y = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: Opaque\ndata:\n");
    for (k, v) in data {
        y.push_str(&format!("  {k}: {}\n", b64(v)));
    }
    y
}

/// A hash made by `openssl passwd` (apr1, -5, -6), when openssl is installed.
fn openssl(kind: &str, pw: &str) -> Option<String> {
    let out = std::process::Command::new("openssl").args(["passwd", kind, pw]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn get(h: &Harness, host: &str, auth: Option<(&str, &str)>) -> (u16, Option<String>, serde_json::Value) {
    let mut req = h.client.get(h.http("/x")).header("host", host);
    if let Some((u, p)) = auth {
        req = req.header("authorization", format!("Basic {}", b64(&format!("{u}:{p}"))));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let www = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (status, www, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_htpasswd_format_verifies_and_wrong_passwords_get_401_with_the_realm() {
    let web = echo("web").await;
    let mut lines = vec![
        format!("bc:{}", bcrypt::hash("bc-pw", 4).unwrap()),
        format!("bc2a:{}", bcrypt::hash_with_result("bc-pw", 4).unwrap().format_for_version(bcrypt::Version::TwoA)),
        // {SHA} of "password" (base64 of its SHA-1), as htpasswd -s writes it.
        "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_string(),
        // The published example of the SHA-crypt specification.
        "s5:$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5".to_string(),
        "s6:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1".to_string(),
        // Apache's documented example: "myPassword" with salt r31.....
        "apr:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/".to_string(),
    ];
    let mut generated = Vec::new();
    for (kind, user) in [("-apr1", "gapr"), ("-5", "g5"), ("-6", "g6")] {
        if let Some(h) = openssl(kind, "gen-pw") {
            lines.push(format!("{user}:{h}"));
            generated.push(user);
        }
    }
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        secret("users", &[("auth", &lines.join("\n"))]),
        ing("basic", "basic.test", &[("auth-type", "basic"), ("auth-secret", "users"), ("auth-realm", "Members only")]),
    ]))
    .await;
    for (user, pw) in [("bc", "bc-pw"), ("bc2a", "bc-pw"), ("sha", "password"), ("s5", "Hello world!"), ("s6", "Hello world!"), ("apr", "myPassword")] {
        let (status, _, v) = get(&h, "basic.test", Some((user, pw))).await;
        assert_eq!(status, 200, "{user}");
        assert_eq!(v["service"], "web");
        // The Authorization header goes on to the backend.
        assert_eq!(v["headers"]["authorization"], format!("Basic {}", b64(&format!("{user}:{pw}"))), "{user}");
        // Again: served from the cache of verified credentials, same answer.
        assert_eq!(get(&h, "basic.test", Some((user, pw))).await.0, 200, "{user} cached");
        let (status, www, _) = get(&h, "basic.test", Some((user, "wrong"))).await;
        assert_eq!((status, www.as_deref()), (401, Some("Basic realm=\"Members only\"")), "{user} wrong password");
    }
    for user in generated {
        assert_eq!(get(&h, "basic.test", Some((user, "gen-pw"))).await.0, 200, "openssl-made {user}");
        assert_eq!(get(&h, "basic.test", Some((user, "gen-px"))).await.0, 401, "openssl-made {user}");
    }
    let (status, www, _) = get(&h, "basic.test", None).await;
    assert_eq!((status, www.as_deref()), (401, Some("Basic realm=\"Members only\"")));
    assert_eq!(get(&h, "basic.test", Some(("nobody", "bc-pw"))).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_map_and_namespaced_secret_names() {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        secret("map", &[("alice", &bcrypt::hash("a-pw", 4).unwrap()), ("bob", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")]),
        ing("map", "map.test", &[("auth-type", "basic"), ("auth-secret", "default/map"), ("auth-secret-type", "auth-map")]),
    ]))
    .await;
    assert_eq!(get(&h, "map.test", Some(("alice", "a-pw"))).await.0, 200);
    assert_eq!(get(&h, "map.test", Some(("bob", "password"))).await.0, 200);
    let (status, www, _) = get(&h, "map.test", Some(("alice", "password"))).await;
    assert_eq!((status, www.as_deref()), (401, Some("Basic realm=\"\"")), "no auth-realm: an empty realm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_protection_fails_closed_with_503() {
    let web = echo("web").await;
    let h = start(&manifest([
        backend_yaml("default", "web", &[web.addr]),
        secret("nokey", &[("users", "x:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")]),
        ing("missing", "missing.test", &[("auth-type", "basic"), ("auth-secret", "absent")]),
        ing("nokey", "nokey.test", &[("auth-type", "basic"), ("auth-secret", "nokey")]),
        ing("nosecret", "nosecret.test", &[("auth-type", "basic")]),
        ing("digest", "digest.test", &[("auth-type", "digest"), ("auth-secret", "nokey")]),
        ing("badtype", "badtype.test", &[("auth-type", "basic"), ("auth-secret", "nokey"), ("auth-secret-type", "ldap")]),
        ing("open", "open.test", &[]),
    ]))
    .await;
    for host in ["missing.test", "nokey.test", "nosecret.test", "digest.test", "badtype.test"] {
        let (status, _, v) = get(&h, host, Some(("x", "password"))).await;
        assert_eq!(status, 503, "{host}");
        assert!(v.is_null(), "{host}: the backend was never reached");
    }
    assert_eq!(get(&h, "open.test", None).await.0, 200, "an Ingress without auth still serves");
}
