//! The Gateway API half of the Kubernetes source: which `gateway.networking.k8s.io` kinds the
//! cluster serves, and reflectors over those into the same `Store` as the Ingress side.
//!
//! At start, API discovery (`/apis`, then `/apis/gateway.networking.k8s.io/VERSION`) tells
//! which kinds are served, and in which version: GatewayClass, Gateway, HTTPRoute and GRPCRoute
//! in v1; ReferenceGrant in v1beta1 (else v1); TLSRoute in v1 (else v1alpha2). The kinds that
//! are missing are logged once, in one line, and not watched: the Ingress side works the same
//! without them, and readiness waits only for the kinds that are served. While some are
//! missing, discovery is asked again now and then (every minute by default): kinds installed
//! later are watched from then on, without a restart. (A CRD removed while watched makes its
//! watch fail, as an unreachable API server would: restart to stop watching it.)
//!
//! Discovery that fails for a transient reason (the API server unreachable, a 5xx) is retried
//! with the watches' backoff; a 4xx answer (discovery refused) means no Gateway API kind is
//! watched, with a warning.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::Store as Reader;
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use super::kube::{Change, Watches};
use crate::gateway_api::{self as gw, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute};
use crate::store::{Key, Store};

/// A Gateway API kind and the versions Vestibule can read it in, preferred first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayKind {
    pub kind: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
    pub namespaced: bool,
}

/// The six kinds, in the order they are reported.
pub const GATEWAY_KINDS: &[GatewayKind] = &[
    GatewayKind { kind: "GatewayClass", plural: "gatewayclasses", versions: &["v1"], namespaced: false },
    GatewayKind { kind: "Gateway", plural: "gateways", versions: &["v1"], namespaced: true },
    GatewayKind { kind: "HTTPRoute", plural: "httproutes", versions: &["v1"], namespaced: true },
    GatewayKind { kind: "GRPCRoute", plural: "grpcroutes", versions: &["v1"], namespaced: true },
    GatewayKind { kind: "ReferenceGrant", plural: "referencegrants", versions: &["v1beta1", "v1"], namespaced: true },
    GatewayKind { kind: "TLSRoute", plural: "tlsroutes", versions: &["v1", "v1alpha2"], namespaced: true },
];

/// What discovery found: the version each served kind is read in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayDiscovery {
    /// Kind → the version watched.
    pub served: BTreeMap<&'static str, &'static str>,
}

impl GatewayDiscovery {
    /// Every kind, each in its preferred version (for tests and file mode).
    pub fn all() -> GatewayDiscovery {
        GatewayDiscovery { served: GATEWAY_KINDS.iter().map(|k| (k.kind, k.versions[0])).collect() }
    }

    pub fn version(&self, kind: &str) -> Option<&'static str> {
        self.served.get(kind).copied()
    }

    /// The kinds not served, as `Kind (versions)`.
    pub fn missing(&self) -> Vec<String> {
        GATEWAY_KINDS.iter().filter(|k| !self.served.contains_key(k.kind)).map(|k| format!("{} ({})", k.kind, k.versions.join(" or "))).collect()
    }

    /// The API resource of a served kind, for dynamic requests (the status writer's).
    pub fn api_resource(&self, kind: &str) -> Option<ApiResource> {
        let k = GATEWAY_KINDS.iter().find(|k| k.kind == kind)?;
        let version = self.version(kind)?;
        Some(ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gw::GROUP, version, k.kind), k.plural))
    }
}

/// Asks the API server which Gateway API kinds it serves.
pub async fn discover(client: &Client) -> Result<GatewayDiscovery, kube::Error> {
    let groups = client.list_api_groups().await?;
    let mut found = GatewayDiscovery::default();
    let Some(group) = groups.groups.iter().find(|g| g.name == gw::GROUP) else { return Ok(found) };
    let mut plurals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in &group.versions {
        if !GATEWAY_KINDS.iter().any(|k| k.versions.contains(&v.version.as_str())) {
            continue;
        }
        let resources = match client.list_api_group_resources(&v.group_version).await {
            Ok(r) => r,
            // A version listed in the group but not answering: treat it as not served.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        };
        for r in resources.resources.iter().filter(|r| !r.name.contains('/')) {
            plurals.entry(r.name.clone()).or_default().push(v.version.clone());
        }
    }
    for k in GATEWAY_KINDS {
        let served = plurals.get(k.plural);
        if let Some(v) = k.versions.iter().find(|v| served.is_some_and(|s| s.iter().any(|x| x == *v))) {
            found.served.insert(k.kind, v);
        }
    }
    Ok(found)
}

/// TLSRoute as served in v1alpha2 (clusters with an older experimental bundle); the fields
/// Vestibule reads are the same as in v1.
pub mod v1alpha2 {
    use super::gw;
    use kube::CustomResource;
    use serde::{Deserialize, Serialize};

    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
    #[kube(group = "gateway.networking.k8s.io", version = "v1alpha2", kind = "TLSRoute", namespaced, status = "gw::RouteStatus", schema = "disabled")]
    pub struct TLSRouteSpec {
        #[serde(flatten)]
        pub spec: gw::TLSRouteSpec,
    }
}

/// ReferenceGrant as served in v1 (where v1beta1 is not).
pub mod v1 {
    use super::gw;
    use kube::CustomResource;
    use serde::{Deserialize, Serialize};

    #[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
    #[kube(group = "gateway.networking.k8s.io", version = "v1", kind = "ReferenceGrant", namespaced, schema = "disabled")]
    pub struct ReferenceGrantSpec {
        #[serde(flatten)]
        pub spec: gw::ReferenceGrantSpec,
    }
}

/// The reflectors of the served kinds.
#[derive(Default)]
pub struct GatewayReaders {
    pub discovery: GatewayDiscovery,
    classes: Option<Reader<GatewayClass>>,
    gateways: Option<Reader<Gateway>>,
    http_routes: Option<Reader<HTTPRoute>>,
    grpc_routes: Option<Reader<GRPCRoute>>,
    tls_routes: Option<Reader<TLSRoute>>,
    tls_routes_alpha: Option<Reader<v1alpha2::TLSRoute>>,
    grants: Option<Reader<ReferenceGrant>>,
    grants_v1: Option<Reader<v1::ReferenceGrant>>,
}

type WatchFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl GatewayReaders {
    /// These readers with those of `more` (kinds discovery found later) added.
    fn with(&self, more: GatewayReaders) -> GatewayReaders {
        let mut discovery = self.discovery.clone();
        discovery.served.extend(more.discovery.served);
        macro_rules! pick {
            ($($f:ident),*) => { GatewayReaders { discovery, $($f: self.$f.clone().or(more.$f)),* } };
        }
        pick!(classes, gateways, http_routes, grpc_routes, tls_routes, tls_routes_alpha, grants, grants_v1)
    }

    /// Builds the reflectors of the kinds `discovery` found, and the watch futures that fill them.
    fn build(client: &Client, ns: Option<&str>, discovery: GatewayDiscovery, w: &Watches) -> (GatewayReaders, Vec<WatchFuture>) {
        let mut r = GatewayReaders { discovery, ..Default::default() };
        let mut futs: Vec<WatchFuture> = Vec::new();
        let cfg = kube::runtime::watcher::Config::default;
        let d = r.discovery.clone();
        let scope = |kind: &str| match ns {
            Some(ns) => format!("{kind} in namespace {ns}"),
            None => format!("{kind} in all namespaces"),
        };
        fn scoped<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(client: &Client, ns: Option<&str>) -> Api<K> {
            match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            }
        }
        macro_rules! watch_kind {
            ($field:ident, $name:expr, $api:expr) => {{
                let (reader, fut) = w.prepare($name, $api, cfg(), Change::Objects);
                r.$field = Some(reader);
                futs.push(Box::pin(fut));
            }};
        }
        if d.version("GatewayClass").is_some() {
            watch_kind!(classes, "GatewayClass".to_string(), Api::<GatewayClass>::all(client.clone()));
        }
        if d.version("Gateway").is_some() {
            watch_kind!(gateways, scope("Gateway"), scoped::<Gateway>(client, ns));
        }
        if d.version("HTTPRoute").is_some() {
            watch_kind!(http_routes, scope("HTTPRoute"), scoped::<HTTPRoute>(client, ns));
        }
        if d.version("GRPCRoute").is_some() {
            watch_kind!(grpc_routes, scope("GRPCRoute"), scoped::<GRPCRoute>(client, ns));
        }
        match d.version("TLSRoute") {
            Some("v1") => watch_kind!(tls_routes, scope("TLSRoute"), scoped::<TLSRoute>(client, ns)),
            Some(_) => watch_kind!(tls_routes_alpha, scope("TLSRoute (v1alpha2)"), scoped::<v1alpha2::TLSRoute>(client, ns)),
            None => {}
        }
        match d.version("ReferenceGrant") {
            Some("v1beta1") => watch_kind!(grants, scope("ReferenceGrant"), scoped::<ReferenceGrant>(client, ns)),
            Some(_) => watch_kind!(grants_v1, scope("ReferenceGrant (v1)"), scoped::<v1::ReferenceGrant>(client, ns)),
            None => {}
        }
        (r, futs)
    }

    async fn wait_until_ready(&self) {
        macro_rules! wait {
            ($($f:ident),*) => {$(
                if let Some(r) = &self.$f {
                    let _ = r.wait_until_ready().await;
                }
            )*};
        }
        wait!(classes, gateways, http_routes, grpc_routes, tls_routes, tls_routes_alpha, grants, grants_v1);
    }

    fn fill(&self, s: &mut Store) {
        fn key<K: Resource>(o: &K) -> Key {
            (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
        }
        for o in self.classes.iter().flat_map(|r| r.state()) {
            s.gateway_classes.insert(o.metadata.name.clone().unwrap_or_default(), o);
        }
        for o in self.gateways.iter().flat_map(|r| r.state()) {
            s.gateways.insert(key(&*o), o);
        }
        for o in self.http_routes.iter().flat_map(|r| r.state()) {
            s.http_routes.insert(key(&*o), o);
        }
        for o in self.grpc_routes.iter().flat_map(|r| r.state()) {
            s.grpc_routes.insert(key(&*o), o);
        }
        for o in self.tls_routes.iter().flat_map(|r| r.state()) {
            s.tls_routes.insert(key(&*o), o);
        }
        for o in self.tls_routes_alpha.iter().flat_map(|r| r.state()) {
            let v1 = TLSRoute { metadata: o.metadata.clone(), spec: o.spec.spec.clone(), status: o.status.clone() };
            s.tls_routes.insert(key(&*o), Arc::new(v1));
        }
        for o in self.grants.iter().flat_map(|r| r.state()) {
            s.reference_grants.insert(key(&*o), o);
        }
        for o in self.grants_v1.iter().flat_map(|r| r.state()) {
            let v1beta1 = ReferenceGrant { metadata: o.metadata.clone(), spec: o.spec.spec.clone() };
            s.reference_grants.insert(key(&*o), Arc::new(v1beta1));
        }
    }
}

/// The Gateway API watches: started after discovery, by one task that runs them all (so that
/// aborting it stops them).
pub struct GatewaySource {
    readers: watch::Receiver<Option<Arc<GatewayReaders>>>,
}

impl GatewaySource {
    /// No discovery yet (replaced by `start`).
    pub(crate) fn empty() -> GatewaySource {
        GatewaySource { readers: watch::channel(None).1 }
    }

    /// Spawns discovery and then the watches of the served kinds; returns the source and the
    /// task to abort on stop.
    pub fn start(client: Client, ns: Option<String>, w: Watches, rediscover: Duration) -> (GatewaySource, tokio::task::AbortHandle) {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut retry = w.backoff_iter();
            let discovery = loop {
                match discover(&client).await {
                    Ok(d) => break d,
                    Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                        tracing::warn!(code = s.code, error = %s.message, "API discovery of gateway.networking.k8s.io refused: no Gateway API kind is watched; Ingress is unaffected");
                        break GatewayDiscovery::default();
                    }
                    Err(e) => {
                        let delay = retry.next().unwrap_or(w.backoff.max);
                        tracing::warn!(error = %e, retry_in = ?delay, "API discovery of gateway.networking.k8s.io failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            let missing = discovery.missing();
            let served: Vec<String> = discovery.served.iter().map(|(k, v)| format!("{k} ({v})")).collect();
            if missing.is_empty() {
                tracing::info!(served = %served.join(", "), "Gateway API: every kind is served");
            } else if served.is_empty() {
                tracing::warn!(missing = %missing.join(", "), "Gateway API CRDs are not installed: Gateway API objects are not served (Ingress is unaffected); they are once the Gateway API bundle is installed");
            } else {
                tracing::warn!(missing = %missing.join(", "), served = %served.join(", "), "some Gateway API CRDs are not installed: those kinds are not served until they are");
            }
            let (readers, futs) = GatewayReaders::build(&client, ns.as_deref(), discovery, &w);
            let mut current = Arc::new(readers);
            let _ = tx.send(Some(current.clone()));
            // The watches run here, so that aborting this task stops them.
            let mut running: FuturesUnordered<WatchFuture> = futs.into_iter().collect();
            let mut tick = tokio::time::interval(rediscover.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = running.next(), if !running.is_empty() => {}
                    _ = tick.tick() => {
                        if current.discovery.missing().is_empty() {
                            continue;
                        }
                        let found = match discover(&client).await {
                            Ok(d) => d,
                            Err(e) => {
                                tracing::debug!(error = %e, "API discovery of gateway.networking.k8s.io failed; trying again later");
                                continue;
                            }
                        };
                        let new = GatewayDiscovery { served: found.served.into_iter().filter(|(k, _)| !current.discovery.served.contains_key(k)).collect() };
                        if new.served.is_empty() {
                            continue;
                        }
                        let names: Vec<String> = new.served.iter().map(|(k, v)| format!("{k} ({v})")).collect();
                        tracing::info!(served = %names.join(", "), "Gateway API CRDs installed: these kinds are watched from now on");
                        let (more, futs) = GatewayReaders::build(&client, ns.as_deref(), new, &w);
                        running.extend(futs);
                        current = Arc::new(current.with(more));
                        let _ = tx.send(Some(current.clone()));
                    }
                }
            }
        });
        (GatewaySource { readers: rx }, task.abort_handle())
    }

    /// What discovery found, once it has run.
    pub fn discovery(&self) -> Option<GatewayDiscovery> {
        self.readers.borrow().as_ref().map(|r| r.discovery.clone())
    }

    /// A receiver of the readers, for those (the status writer) that need the discovery.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<GatewayReaders>>> {
        self.readers.clone()
    }

    /// Waits for discovery, then for the first list of every served kind.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.readers.clone();
        let readers = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone(),
            Err(_) => return,
        };
        if let Some(r) = readers {
            r.wait_until_ready().await;
        }
    }

    pub fn fill(&self, s: &mut Store) {
        if let Some(r) = self.readers.borrow().as_ref() {
            r.fill(s);
        }
    }
}
