//! Gateway API status, written by the leader: GatewayClass and Gateway status, and the parent
//! entries of HTTPRoutes, GRPCRoutes and TLSRoutes.
//!
//! What to write comes from compile (`Status.gateway`); this only stamps times and writes:
//! - a condition keeps its `lastTransitionTime` when its status and reason did not change, and
//!   gets the time of the write otherwise;
//! - a Gateway's `status.addresses` are the published addresses (`--publish-status-address`,
//!   else the `--publish-service` Service's), as for Ingress status: IPs as `IPAddress`, names as
//!   `Hostname`;
//! - a route's parent entries under our `controllerName` are replaced by compile's (so an entry
//!   for a parent the route no longer attaches to is removed); entries of other controllers are
//!   kept as they are;
//! - nothing is written when the status already says it (no write per compile), and a status
//!   written is not written again until the watch has shown it.
//!
//! Writes are PUTs on the status subresource with the resourceVersion read (a 409 re-reads the
//! object once and merges again), through the API version discovery found served.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::IngressLoadBalancerIngress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Applied;
use crate::gateway_api as gw;
use crate::source::kube_gateway::{GatewayDiscovery, GatewayReaders};

/// Now, to the second (as the API server stores times).
fn now() -> Time {
    let t = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Compile's conditions with times: an unchanged condition (same type, status and reason as
/// before) keeps its time; any other gets `now`.
pub fn stamp(new: &[Condition], old: &[Condition], now: &Time) -> Vec<Condition> {
    new.iter()
        .map(|c| {
            let mut c = c.clone();
            c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
                Some(o) if o.status == c.status && o.reason == c.reason => o.last_transition_time.clone(),
                _ => now.clone(),
            };
            c
        })
        .collect()
}

/// The published addresses as Gateway addresses.
pub fn gateway_addresses(addrs: &[IngressLoadBalancerIngress]) -> Vec<gw::GatewayAddress> {
    addrs
        .iter()
        .filter_map(|a| match (&a.ip, &a.hostname) {
            (Some(ip), _) if !ip.is_empty() => Some(gw::GatewayAddress { type_: Some("IPAddress".into()), value: ip.clone() }),
            (_, Some(h)) if !h.is_empty() => Some(gw::GatewayAddress { type_: Some("Hostname".into()), value: h.clone() }),
            _ => None,
        })
        .collect()
}

pub fn gateway_class_status(computed: &gw::GatewayClassStatus, current: Option<&gw::GatewayClassStatus>, now: &Time) -> gw::GatewayClassStatus {
    let old = current.map(|c| c.conditions.as_slice()).unwrap_or(&[]);
    gw::GatewayClassStatus { conditions: stamp(&computed.conditions, old, now), supported_features: computed.supported_features.clone() }
}

pub fn gateway_status(computed: &gw::GatewayStatus, current: Option<&gw::GatewayStatus>, addresses: &[gw::GatewayAddress], now: &Time) -> gw::GatewayStatus {
    let old = current.map(|c| c.conditions.as_slice()).unwrap_or(&[]);
    let listeners = computed
        .listeners
        .iter()
        .map(|l| {
            let old = current.and_then(|c| c.listeners.iter().find(|o| o.name == l.name)).map(|o| o.conditions.as_slice()).unwrap_or(&[]);
            gw::ListenerStatus { conditions: stamp(&l.conditions, old, now), ..l.clone() }
        })
        .collect();
    gw::GatewayStatus { addresses: addresses.to_vec(), conditions: stamp(&computed.conditions, old, now), listeners }
}

/// A route's parents: other controllers' entries as they are, ours as compile gives them (an
/// entry of ours compile no longer gives is removed). Entries keep their places, and new ones
/// of ours come last, so that another controller's writes and ours never reorder each other.
pub fn route_status(ours: &[gw::RouteParentStatus], current: Option<&gw::RouteStatus>, controller: &str, now: &Time) -> gw::RouteStatus {
    let current = current.map(|c| c.parents.as_slice()).unwrap_or(&[]);
    let stamped = |p: &gw::RouteParentStatus, old: &[Condition]| gw::RouteParentStatus { parent_ref: p.parent_ref.clone(), controller_name: controller.to_string(), conditions: stamp(&p.conditions, old, now) };
    let mut parents = Vec::new();
    for c in current {
        if c.controller_name != controller {
            parents.push(c.clone());
        } else if let Some(p) = ours.iter().find(|p| p.parent_ref == c.parent_ref)
            && !parents.iter().any(|x: &gw::RouteParentStatus| x.controller_name == controller && x.parent_ref == c.parent_ref)
        {
            parents.push(stamped(p, &c.conditions));
        }
    }
    for p in ours {
        if !parents.iter().any(|x| x.controller_name == controller && x.parent_ref == p.parent_ref) {
            parents.push(stamped(p, &[]));
        }
    }
    gw::RouteStatus { parents }
}

/// One object whose status may need writing.
struct Target {
    kind: &'static str,
    ns: Option<String>,
    name: String,
    resource_version: String,
}

impl Target {
    fn describe(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What the writer last wrote: (kind, ns, name) → (resourceVersion it saw, status written).
type Written = HashMap<(&'static str, String, String), (String, serde_json::Value)>;

/// Writes `desire(current)` when it differs from `current`; on a conflict re-reads once.
/// Returns whether it wrote.
async fn write<S>(client: &Client, ar: &ApiResource, t: &Target, current: Option<&S>, desire: &(dyn Fn(Option<&S>) -> S + Sync), written: &mut Written) -> Result<bool, kube::Error>
where
    S: Serialize + DeserializeOwned + PartialEq + Default + Clone,
{
    let desired = desire(current);
    let unchanged = current.map_or(desired == S::default(), |c| *c == desired);
    let key = (t.kind, t.ns.clone().unwrap_or_default(), t.name.clone());
    if unchanged {
        written.remove(&key);
        return Ok(false);
    }
    let value = serde_json::to_value(&desired).unwrap_or_default();
    if written.get(&key).is_some_and(|(rv, v)| *rv == t.resource_version && *v == value) {
        return Ok(false);
    }
    let api: Api<DynamicObject> = match &t.ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let body = |rv: &str, status: &serde_json::Value| {
        let mut o = DynamicObject::new(&t.name, ar);
        o.metadata.namespace = t.ns.clone();
        o.metadata.resource_version = Some(rv.to_string());
        o.data = serde_json::json!({ "status": status });
        o
    };
    let put = |o: DynamicObject| {
        let api = api.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(10), api.replace_status(&t.name, &PostParams::default(), &o)).await {
                Ok(r) => r,
                Err(_) => Err(kube::Error::Service("request timed out".into())),
            }
        }
    };
    match put(body(&t.resource_version, &value)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let fresh = api.get(&t.name).await?;
            let cur: Option<S> = fresh.data.get("status").and_then(|s| serde_json::from_value(s.clone()).ok());
            let desired = desire(cur.as_ref());
            if cur.as_ref() == Some(&desired) {
                return Ok(false);
            }
            let value = serde_json::to_value(&desired).unwrap_or_default();
            put(body(fresh.metadata.resource_version.as_deref().unwrap_or(""), &value)).await?;
        }
        Err(e) => return Err(e),
    }
    written.insert(key, (t.resource_version.clone(), value));
    Ok(true)
}

/// The inputs of one pass.
struct Pass<'a> {
    client: &'a Client,
    discovery: &'a GatewayDiscovery,
    addresses: Vec<gw::GatewayAddress>,
    now: Time,
}

fn target<K: kube::Resource>(kind: &'static str, o: &K) -> Target {
    let m = o.meta();
    Target { kind, ns: m.namespace.clone(), name: m.name.clone().unwrap_or_default(), resource_version: m.resource_version.clone().unwrap_or_default() }
}

/// One pass over every Gateway API object; false when some write failed.
async fn sync(p: &Pass<'_>, app: &Applied, leader: &watch::Receiver<bool>, written: &mut Written) -> bool {
    let status = &app.status.gateway;
    let controller = app.settings.gateway_controller_name.as_str();
    let now = &p.now;
    let mut ok = true;
    let mut outcome = |t: &Target, r: Result<bool, kube::Error>| match r {
        Ok(true) => tracing::info!(object = %t.describe(), "Gateway API status updated"),
        Ok(false) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => tracing::debug!(object = %t.describe(), "gone before its status was written"),
        Err(e) => {
            tracing::warn!(object = %t.describe(), error = %e, "Gateway API status update failed; will retry");
            ok = false;
        }
    };
    if let Some(ar) = p.discovery.api_resource("GatewayClass") {
        for (name, computed) in &status.gateway_classes {
            let Some(o) = app.store.gateway_classes.get(name) else { continue };
            if !*leader.borrow() {
                return true;
            }
            let t = target("GatewayClass", &**o);
            let r = write(p.client, &ar, &t, o.status.as_ref(), &|cur| gateway_class_status(computed, cur, now), written).await;
            outcome(&t, r);
        }
    }
    if let Some(ar) = p.discovery.api_resource("Gateway") {
        for (key, computed) in &status.gateways {
            let Some(o) = app.store.gateways.get(key) else { continue };
            if !*leader.borrow() {
                return true;
            }
            let t = target("Gateway", &**o);
            let r = write(p.client, &ar, &t, o.status.as_ref(), &|cur| gateway_status(computed, cur, &p.addresses, now), written).await;
            outcome(&t, r);
        }
    }
    // Every route, ours or not: one that lost its last parent of ours loses our entries.
    macro_rules! routes {
        ($kind:literal, $store:ident, $status:ident) => {
            if let Some(ar) = p.discovery.api_resource($kind) {
                for (key, o) in &app.store.$store {
                    let ours = status.$status.get(key).map(Vec::as_slice).unwrap_or(&[]);
                    let has_ours = o.status.as_ref().is_some_and(|s| s.parents.iter().any(|p| p.controller_name == controller));
                    if ours.is_empty() && !has_ours {
                        continue;
                    }
                    if !*leader.borrow() {
                        return true;
                    }
                    let t = target($kind, &**o);
                    let r = write(p.client, &ar, &t, o.status.as_ref(), &|cur| route_status(ours, cur, controller, now), written).await;
                    outcome(&t, r);
                }
            }
        };
    }
    routes!("HTTPRoute", http_routes, http_routes);
    routes!("GRPCRoute", grpc_routes, grpc_routes);
    routes!("TLSRoute", tls_routes, tls_routes);
    ok
}

/// One pass of the writer over `app`, as the leader runs it after each change (for tools and
/// tests): writes what differs; false when some write failed.
pub async fn sync_once(client: &Client, app: &Applied, discovery: &GatewayDiscovery, addresses: &[IngressLoadBalancerIngress]) -> bool {
    let (_tx, leader) = watch::channel(true);
    let pass = Pass { client, discovery, addresses: gateway_addresses(addresses), now: now() };
    sync(&pass, app, &leader, &mut Written::new()).await
}

/// Keeps Gateway API status current while we lead. `addresses` are the published addresses
/// (an empty list when none are configured); `readers` tells which kinds and versions are served.
pub(crate) async fn run(
    client: Client,
    mut leader: watch::Receiver<bool>,
    mut applied: watch::Receiver<Option<Arc<Applied>>>,
    mut addresses: watch::Receiver<Option<Vec<IngressLoadBalancerIngress>>>,
    mut readers: watch::Receiver<Option<Arc<GatewayReaders>>>,
) {
    let mut written = Written::new();
    let mut retry = super::status::WriteRetry::new();
    loop {
        tokio::select! {
            r = leader.changed() => if r.is_err() { return },
            r = applied.changed() => if r.is_err() { return },
            r = addresses.changed() => if r.is_err() { return },
            r = readers.changed() => if r.is_err() { return },
            _ = retry.due() => {}
        }
        retry.clear();
        if !*leader.borrow_and_update() {
            written.clear();
            continue;
        }
        let Some(app) = applied.borrow_and_update().clone() else { continue };
        let Some(addrs) = addresses.borrow_and_update().clone() else { continue };
        let Some(discovery) = readers.borrow_and_update().as_ref().map(|r| r.discovery.clone()) else { continue };
        let pass = Pass { client: &client, discovery: &discovery, addresses: gateway_addresses(&addrs), now: now() };
        retry.record(sync(&pass, &app, &leader, &mut written).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn cond(type_: &str, status: &str, reason: &str, time: i64, generation: i64) -> Condition {
        Condition { type_: type_.into(), status: status.into(), reason: reason.into(), message: format!("{reason} message"), observed_generation: Some(generation), last_transition_time: at(time) }
    }

    fn parent(name: &str, controller: &str, conds: Vec<Condition>) -> gw::RouteParentStatus {
        gw::RouteParentStatus { parent_ref: gw::ParentReference { name: name.into(), ..Default::default() }, controller_name: controller.into(), conditions: conds }
    }

    #[test]
    fn times_are_kept_while_status_and_reason_stand() {
        let old = vec![cond("Accepted", "True", "Accepted", 100, 1), cond("ResolvedRefs", "True", "ResolvedRefs", 100, 1)];
        // Compile's conditions carry the epoch; the generation moved on.
        let new = vec![cond("Accepted", "True", "Accepted", 0, 2), cond("ResolvedRefs", "False", "BackendNotFound", 0, 2), cond("Programmed", "True", "Programmed", 0, 2)];
        let out = stamp(&new, &old, &at(500));
        assert_eq!(out[0].last_transition_time, at(100), "unchanged status and reason keep the time");
        assert_eq!(out[0].observed_generation, Some(2), "but take the new generation");
        assert_eq!(out[1].last_transition_time, at(500), "a changed status is stamped now");
        assert_eq!(out[2].last_transition_time, at(500), "a new condition is stamped now");
        let reason_only = stamp(&[cond("Accepted", "True", "Other", 0, 1)], &old, &at(600));
        assert_eq!(reason_only[0].last_transition_time, at(600), "a changed reason is a transition");
    }

    #[test]
    fn route_parents_keep_other_controllers_and_replace_ours() {
        let ours = "vestibule.dev/gateway-controller";
        let current = gw::RouteStatus {
            parents: vec![
                parent("foreign", "example.com/other", vec![cond("Accepted", "False", "NotAllowedByListeners", 7, 1)]),
                parent("gone", ours, vec![cond("Accepted", "True", "Accepted", 8, 1)]),
                parent("gw", ours, vec![cond("Accepted", "True", "Accepted", 9, 1)]),
            ],
        };
        let computed = vec![parent("gw", ours, vec![cond("Accepted", "True", "Accepted", 0, 1)])];
        let out = route_status(&computed, Some(&current), ours, &at(50));
        assert_eq!(out.parents.len(), 2, "{out:?}");
        assert_eq!(out.parents[0], current.parents[0], "the other controller's entry is kept as it was");
        assert_eq!(out.parents[1].parent_ref.name, "gw");
        assert_eq!(out.parents[1].conditions[0].last_transition_time, at(9));
        assert!(!out.parents.iter().any(|p| p.parent_ref.name == "gone"), "a parent compile no longer lists loses our entry");
        // Writing it again changes nothing: no write storm.
        assert_eq!(route_status(&computed, Some(&out), ours, &at(99)), out);
        // Another controller that puts its entry last is not fought over.
        let reordered = gw::RouteStatus { parents: vec![out.parents[1].clone(), out.parents[0].clone()] };
        assert_eq!(route_status(&computed, Some(&reordered), ours, &at(99)), reordered);
        // A new parent of ours comes last.
        let two = vec![computed[0].clone(), parent("second", ours, vec![cond("Accepted", "True", "Accepted", 0, 1)])];
        let out2 = route_status(&two, Some(&reordered), ours, &at(99));
        assert_eq!(out2.parents.iter().map(|p| p.parent_ref.name.as_str()).collect::<Vec<_>>(), vec!["gw", "foreign", "second"]);
        assert_eq!(out2.parents[2].conditions[0].last_transition_time, at(99));
    }

    #[test]
    fn gateway_status_stamps_listeners_by_name_and_publishes_addresses() {
        let computed = gw::GatewayStatus {
            addresses: vec![],
            conditions: vec![cond("Programmed", "True", "Programmed", 0, 3)],
            listeners: vec![gw::ListenerStatus { name: "http".into(), supported_kinds: vec![gw::RouteGroupKind::new("HTTPRoute")], attached_routes: 2, conditions: vec![cond("Accepted", "True", "Accepted", 0, 3)] }],
        };
        let current = gw::GatewayStatus { listeners: vec![gw::ListenerStatus { name: "http".into(), supported_kinds: vec![], attached_routes: 1, conditions: vec![cond("Accepted", "True", "Accepted", 40, 2)] }], ..Default::default() };
        let addrs = gateway_addresses(&[
            IngressLoadBalancerIngress { ip: Some("10.0.0.1".into()), ..Default::default() },
            IngressLoadBalancerIngress { hostname: Some("lb.example.com".into()), ..Default::default() },
        ]);
        let out = gateway_status(&computed, Some(&current), &addrs, &at(70));
        assert_eq!(out.addresses, vec![gw::GatewayAddress { type_: Some("IPAddress".into()), value: "10.0.0.1".into() }, gw::GatewayAddress { type_: Some("Hostname".into()), value: "lb.example.com".into() }]);
        assert_eq!(out.conditions[0].last_transition_time, at(70));
        assert_eq!(out.listeners[0].conditions[0].last_transition_time, at(40));
        assert_eq!(out.listeners[0].attached_routes, 2);
    }
}
