//! What compile decided about each object, for the status writer, Events and `explain` to read
//! instead of deciding it again.

use std::collections::BTreeSet;

use crate::gateway_api as gw;
use crate::store::{Key, Map};

/// Per-object results of one compile. Its maps are persistent, like the store's: an
/// incremental compile starts from a copy of the previous status that costs a pointer copy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Every Ingress in the store, by namespace and name.
    pub ingresses: Map<Key, IngressStatus>,
    /// The Gateway API objects that are ours, with the status compile gives them.
    pub gateway: GatewayApiStatus,
}

/// Gateway API status as compile decides it: the leader writes it, `explain` and `check` show
/// it. Compile has no clock, so every condition's `lastTransitionTime` is the epoch; the writer
/// keeps the time of a condition whose status did not change and stamps the others.
/// `observedGeneration` is the object's `metadata.generation`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayApiStatus {
    /// GatewayClasses whose `spec.controllerName` is ours, by name.
    pub gateway_classes: Map<String, gw::GatewayClassStatus>,
    /// Gateways of our classes.
    pub gateways: Map<Key, gw::GatewayStatus>,
    /// For each route, the parent entries for parents that are ours (under our
    /// `controllerName`); entries of other controllers are the writer's to keep.
    pub http_routes: Map<Key, Vec<gw::RouteParentStatus>>,
    pub grpc_routes: Map<Key, Vec<gw::RouteParentStatus>>,
    pub tls_routes: Map<Key, Vec<gw::RouteParentStatus>>,
}

/// Whether an object is ours to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    /// Another class's (or no class): why not, in words for people.
    NotOurs(String),
}

/// What compile decided about one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressStatus {
    pub ownership: Ownership,
    /// The first invalid field, as `FIELD: MESSAGE`, when the Ingress is ours but skipped as
    /// invalid.
    pub invalid: Option<String>,
    /// Hosts where at least one of its paths or its defaultBackend is live: lowercase as in the
    /// rules (`*.foo.com` for wildcards), `*` for rules without host.
    pub hosts: BTreeSet<String>,
    /// Whether its defaultBackend answers for hosts no rule matches.
    pub default_backend: bool,
}

impl IngressStatus {
    pub fn new(ownership: Ownership) -> Self {
        IngressStatus { ownership, invalid: None, hosts: BTreeSet::new(), default_backend: false }
    }

    pub fn is_ours(&self) -> bool {
        self.ownership == Ownership::Ours
    }

    /// Why it is not ours, if it is not.
    pub fn not_ours(&self) -> Option<&str> {
        match &self.ownership {
            Ownership::Ours => None,
            Ownership::NotOurs(why) => Some(why),
        }
    }
}

impl Status {
    pub fn ingress(&self, namespace: &str, name: &str) -> Option<&IngressStatus> {
        self.ingresses.get(&(namespace.to_string(), name.to_string()))
    }

    /// Whether the Ingress `key` is ours by its class (valid or not).
    pub fn owns_ingress(&self, key: &Key) -> bool {
        self.ingresses.get(key).is_some_and(IngressStatus::is_ours)
    }
}
