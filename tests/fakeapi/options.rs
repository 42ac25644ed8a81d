//! The controller options every fake-API test starts from: loopback, ephemeral ports, no
//! access log, a quick shutdown, a short lease and quick retries. Each test overrides what it
//! is about.

use std::path::Path;
use std::time::Duration;

use vestibule::controller::{ApiConfig, ControllerOptions};
use vestibule::source::kube::Backoff;
use vestibule::serve::{AccessLogTarget, ServeOptions};

use super::FakeApi;

pub fn serve() -> ServeOptions {
    ServeOptions {
        bind: "127.0.0.1".parse().unwrap(),
        http_port: 0,
        https_port: 0,
        healthz_port: 0,
        access_log: AccessLogTarget::Off,
        shutdown_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(1),
        ..ServeOptions::default()
    }
}

/// As `serve`, and Ingresses without a class are not taken.
pub fn serve_by_class() -> ServeOptions {
    ServeOptions { watch_without_class: false, ..serve() }
}

pub fn controller(api: &FakeApi, dir: &Path, token: &str, identity: &str, serve: ServeOptions) -> ControllerOptions {
    ControllerOptions {
        serve,
        api: ApiConfig::Kubeconfig(api.kubeconfig(dir, token)),
        namespace: Some("vestibule".into()),
        identity: Some(identity.into()),
        lease_duration_secs: 2,
        lease_grace_secs: 1,
        backoff: Backoff { min: Duration::from_millis(100), max: Duration::from_millis(400) },
        ..ControllerOptions::default()
    }
}
