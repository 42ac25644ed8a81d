//! The TCP and UDP services ConfigMaps as compile reads them: each documented form of value,
//! and each malformed one with the diagnostic it gets (naming the ConfigMap and key), while
//! the good entries beside it are still served.

mod common;


use common::*;
use vestibule::compile::{self, Reason, Settings, Severity};
use vestibule::config::L4Protocol;


fn settings() -> Settings {
    let mut s = compile_settings();
    s.tcp_services = Some(("ingress".into(), "tcp".into()));
    s.udp_services = Some(("ingress".into(), "udp".into()));
    s.l4_bind = "127.0.0.1".parse().unwrap();
    s
}

#[test]
fn value_syntax() {
    let db = manifest([
        Service::new("default", "db").port("postgres", 5432).to_yaml(),
        EndpointSlice::new("default", "db-abc", "db").port("postgres", 15432).ready("10.0.0.9").to_yaml(),
    ]);
    // (key, value, expected: Ok((decode, encode)) or Err(diagnostic reason)).
    let rows: &[(&str, &str, Result<(bool, bool), Reason>)] = &[
        ("9000", "default/db:5432", Ok((false, false))),
        ("9001", "default/db:postgres", Ok((false, false))),
        ("9002", "default/db:5432:PROXY", Ok((true, false))),
        ("9003", "default/db:5432:PROXY:PROXY", Ok((true, true))),
        ("9004", "default/db:5432::PROXY", Ok((false, true))),
        ("9005", "default/db:5432:proxy", Ok((true, false))),
        ("9010", "default/db", Err(Reason::InvalidField)),
        ("9011", "db:5432", Err(Reason::InvalidField)),
        ("9012", "default/db:", Err(Reason::InvalidField)),
        ("9013", "default/db:0", Err(Reason::InvalidField)),
        ("9014", "default/db:99999", Err(Reason::InvalidField)),
        ("9015", "default/db:5432:SSL", Err(Reason::InvalidField)),
        ("9016", "default/db:5432:PROXY:PROXY:PROXY", Err(Reason::InvalidField)),
        ("9017", "Default/DB:5432", Err(Reason::InvalidField)),
        ("9018", "", Err(Reason::InvalidField)),
        ("http", "default/db:5432", Err(Reason::InvalidField)),
        ("0", "default/db:5432", Err(Reason::InvalidField)),
        ("70000", "default/db:5432", Err(Reason::InvalidField)),
        // The same port twice ("9000" above): the second key is refused.
        ("09000", "default/db:5432", Err(Reason::InvalidField)),
    ];
    let mut tcp = ConfigMap::new("ingress", "tcp");
    for (k, v, _) in rows {
        tcp = tcp.data(k, v);
    }
    let udp = ConfigMap::new("ingress", "udp").data("5353", "default/db:5432").data("5354", "default/db:5432:PROXY");
    let store = store_of(&manifest([db, tcp.to_yaml(), udp.to_yaml()]));
    let out = compile::compile(&store, &settings());

    let mut failures = Vec::new();
    for (k, v, want) in rows {
        let svc = out.config.l4.iter().find(|s| s.protocol == L4Protocol::Tcp && s.source.2 == *k);
        let diag = out.diagnostics.iter().find(|d| d.field == format!("data.{k}") && d.object.to_string() == "ConfigMap ingress/tcp");
        match (want, svc, diag) {
            (Ok((dec, enc)), Some(s), None) => {
                if (s.decode_proxy, s.encode_proxy) != (*dec, *enc) || s.backend.endpoints != ["10.0.0.9:15432".parse().unwrap()] || s.addr.port().to_string() != k.trim_start_matches('0') {
                    failures.push(format!("{k}={v:?}: got {s:?}"));
                }
            }
            (Err(reason), None, Some(d)) if d.reason == *reason && d.severity == Severity::Error => {}
            _ => failures.push(format!("{k}={v:?}: want {want:?}, got service {:?} and diagnostic {:?}", svc.map(|s| &s.name), diag.map(|d| d.to_string()))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // UDP: the same syntax; PROXY does not apply and is reported, the service still served.
    let udp: Vec<_> = out.config.l4.iter().filter(|s| s.protocol == L4Protocol::Udp).map(|s| (s.name.as_str(), s.decode_proxy)).collect();
    assert_eq!(udp, [("udp-5353", false), ("udp-5354", false)]);
    assert!(out.diagnostics.iter().any(|d| d.field == "data.5354" && d.reason == Reason::Unsupported), "{:#?}", out.diagnostics);
}

#[test]
fn missing_objects_and_reserved_ports() {
    let tcp = ConfigMap::new("ingress", "tcp").data("9000", "default/nope:80").data("8080", "default/nope:80");
    let store = store_of(&tcp.to_yaml());
    let mut s = settings();
    s.listeners = vec![vestibule::config::ListenerSpec { name: "http".into(), addr: "127.0.0.1:8080".parse().unwrap(), protocol: vestibule::config::ListenerProtocol::Http, proxy_protocol: false }];
    let out = compile::compile(&store, &s);
    let shown: Vec<String> = out.diagnostics.iter().map(|d| d.to_string()).collect();
    // A Service that does not exist yet: the port listens (so it works once it appears).
    assert_eq!(out.config.l4.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["tcp-9000"]);
    assert!(shown.iter().any(|d| d.starts_with("ConfigMap ingress/tcp: data.9000: Service default/nope not found; connections are closed at once")), "{shown:#?}");
    assert!(shown.iter().any(|d| d.starts_with("ConfigMap ingress/tcp: data.8080: port 8080 is reserved")), "{shown:#?}");
    assert!(shown.iter().any(|d| d.starts_with("ConfigMap ingress/udp: ") && d.contains("not found")), "the UDP ConfigMap is missing: {shown:#?}");
}

#[test]
fn proxy_stream_timeout_is_the_idle_timeout() {
    let store = store_of(&manifest([
        ConfigMap::new("ingress", "tcp").data("9000", "default/db:80").to_yaml(),
        ConfigMap::new("ingress", "vestibule").data("proxy-stream-timeout", "30").to_yaml(),
    ]));
    let mut s = settings();
    let out = compile::compile(&store, &s);
    assert_eq!(out.config.l4[0].idle_timeout, std::time::Duration::from_secs(600), "the default is 600s");
    s.configmap = Some(("ingress".into(), "vestibule".into()));
    let out = compile::compile(&store, &s);
    assert_eq!(out.config.l4[0].idle_timeout, std::time::Duration::from_secs(30));
}

/// `vestibule explain tcp://HOST:PORT` says which Service and endpoints a TCP port reaches, and
/// why a port reaches nothing.
#[test]
fn explain_names_the_service_behind_a_tcp_port() {
    let dir = tempfile::tempdir().unwrap();
    let ep: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let cm = common::ConfigMap::new("ingress", "tcp").data("9000", "db/postgres:5432:PROXY").data("9001", "db/missing:5432").to_yaml();
    let svc = common::Service::new("db", "postgres").port("pg", 5432).to_yaml();
    let slice = common::EndpointSlice::new("db", "postgres-1", "postgres").port("pg", 5432).ready(&ep.ip().to_string()).to_yaml();
    std::fs::write(dir.path().join("m.yaml"), common::manifest(vec![cm, svc, slice])).unwrap();
    let run = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vestibule"))
            .args(["explain", url, "--tcp-services-configmap", "ingress/tcp", "--manifests"])
            .arg(dir.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = run("tcp://front.example:9000");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Service db/postgres port 5432") && text.contains("127.0.0.1:5432"), "{text}");
    assert!(text.contains("from clients read, to endpoints no"), "{text}");
    let (code, text) = run("tcp://front.example:9001");
    assert_eq!(code, Some(0), "the port listens; its Service is missing: {text}");
    assert!(text.contains("no ready endpoints"), "{text}");
    let (code, text) = run("tcp://front.example:9002");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no tcp service on port 9002"), "{text}");
}
