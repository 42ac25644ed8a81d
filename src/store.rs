//! The typed object store: the current Kubernetes objects by kind, namespace and name.
//!
//! Sources (files, the Kubernetes API) only fill it; `compile` only reads it. A `Store` is a
//! plain value: a source hands compile a copy per change, so compile always sees a consistent
//! snapshot. The maps are persistent ([`Map`]): that copy shares every node with the source's,
//! and a change then copies only the few nodes on the paths it touches. With whole-copy maps,
//! copying and freeing 100,000 keys per change cost more than compiling the change.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::gateway_api::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant, TLSRoute};

mod service;
mod slice;
pub use service::{Svc, SvcPort};
pub use slice::{Slice, SliceEndpoint, SlicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Namespace and name of a namespaced object.
pub type Key = (String, String);

/// An ordered map whose clones share their nodes: a clone is a pointer copy.
pub type Map<K, V> = imbl::OrdMap<K, V>;

/// One object of a kind Vestibule understands.
#[derive(Clone, Debug)]
pub enum Object {
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Namespace(Namespace),
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HTTPRoute(HTTPRoute),
    GRPCRoute(GRPCRoute),
    TLSRoute(TLSRoute),
    ReferenceGrant(ReferenceGrant),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Namespace(_) => "Namespace",
            Object::GatewayClass(_) => "GatewayClass",
            Object::Gateway(_) => "Gateway",
            Object::HTTPRoute(_) => "HTTPRoute",
            Object::GRPCRoute(_) => "GRPCRoute",
            Object::TLSRoute(_) => "TLSRoute",
            Object::ReferenceGrant(_) => "ReferenceGrant",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HTTPRoute(o) => &o.metadata,
            Object::GRPCRoute(o) => &o.metadata,
            Object::TLSRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(&self) -> bool {
        !matches!(self, Object::IngressClass(_) | Object::Namespace(_) | Object::GatewayClass(_))
    }

    pub fn obj_ref(&self) -> ObjRef {
        let meta = self.meta();
        ObjRef {
            kind: self.kind(),
            namespace: if self.namespaced() { meta.namespace.clone().unwrap_or_default() } else { String::new() },
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// An object already shared: building a store from these is only reference counting.
#[derive(Clone, Debug)]
pub enum SharedObject {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Svc>),
    EndpointSlice(Arc<Slice>),
    Secret(Arc<Secret>),
    ConfigMap(Arc<ConfigMap>),
    Namespace(Arc<Namespace>),
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    HTTPRoute(Arc<HTTPRoute>),
    GRPCRoute(Arc<GRPCRoute>),
    TLSRoute(Arc<TLSRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
}

impl From<Object> for SharedObject {
    fn from(o: Object) -> Self {
        match o {
            Object::Ingress(o) => SharedObject::Ingress(Arc::new(o)),
            Object::IngressClass(o) => SharedObject::IngressClass(Arc::new(o)),
            Object::Service(o) => SharedObject::Service(Arc::new(Svc::from(&o))),
            Object::EndpointSlice(o) => SharedObject::EndpointSlice(Arc::new(Slice::from(&o))),
            Object::Secret(o) => SharedObject::Secret(Arc::new(o)),
            Object::ConfigMap(o) => SharedObject::ConfigMap(Arc::new(o)),
            Object::Namespace(o) => SharedObject::Namespace(Arc::new(o)),
            Object::GatewayClass(o) => SharedObject::GatewayClass(Arc::new(o)),
            Object::Gateway(o) => SharedObject::Gateway(Arc::new(o)),
            Object::HTTPRoute(o) => SharedObject::HTTPRoute(Arc::new(o)),
            Object::GRPCRoute(o) => SharedObject::GRPCRoute(Arc::new(o)),
            Object::TLSRoute(o) => SharedObject::TLSRoute(Arc::new(o)),
            Object::ReferenceGrant(o) => SharedObject::ReferenceGrant(Arc::new(o)),
        }
    }
}

impl SharedObject {
    /// The same object (not an equal copy): both hold the one allocation.
    pub fn same(&self, other: &SharedObject) -> bool {
        fn addr<T>(a: &Arc<T>) -> *const () {
            Arc::as_ptr(a) as *const ()
        }
        let p = |o: &SharedObject| match o {
            SharedObject::Ingress(a) => addr(a),
            SharedObject::IngressClass(a) => addr(a),
            SharedObject::Service(a) => addr(a),
            SharedObject::EndpointSlice(a) => addr(a),
            SharedObject::Secret(a) => addr(a),
            SharedObject::ConfigMap(a) => addr(a),
            SharedObject::Namespace(a) => addr(a),
            SharedObject::GatewayClass(a) => addr(a),
            SharedObject::Gateway(a) => addr(a),
            SharedObject::HTTPRoute(a) => addr(a),
            SharedObject::GRPCRoute(a) => addr(a),
            SharedObject::TLSRoute(a) => addr(a),
            SharedObject::ReferenceGrant(a) => addr(a),
        };
        p(self) == p(other)
    }

    /// Whether both hold equal objects (the same allocation or not); objects of the Gateway
    /// API kinds only when they are the same allocation.
    pub fn same_content(&self, other: &SharedObject) -> bool {
        use SharedObject as S;
        if self.same(other) {
            return true;
        }
        match (self, other) {
            (S::Ingress(a), S::Ingress(b)) => a == b,
            (S::IngressClass(a), S::IngressClass(b)) => a == b,
            (S::Service(a), S::Service(b)) => a == b,
            (S::EndpointSlice(a), S::EndpointSlice(b)) => a == b,
            (S::Secret(a), S::Secret(b)) => a == b,
            (S::ConfigMap(a), S::ConfigMap(b)) => a == b,
            (S::Namespace(a), S::Namespace(b)) => a == b,
            // The Gateway API kinds have no equality: taken as changed.
            _ => false,
        }
    }

    pub fn obj_ref(&self) -> ObjRef {
        fn named(kind: &'static str, meta: &ObjectMeta, namespaced: bool) -> ObjRef {
            let namespace = if namespaced { meta.namespace.clone().unwrap_or_default() } else { String::new() };
            ObjRef { kind, namespace, name: meta.name.clone().unwrap_or_default() }
        }
        match self {
            SharedObject::Ingress(o) => named("Ingress", &o.metadata, true),
            SharedObject::IngressClass(o) => named("IngressClass", &o.metadata, false),
            SharedObject::Service(o) => ObjRef { kind: "Service", namespace: o.namespace.clone(), name: o.name.clone() },
            SharedObject::EndpointSlice(o) => ObjRef { kind: "EndpointSlice", namespace: o.namespace.clone(), name: o.name.clone() },
            SharedObject::Secret(o) => named("Secret", &o.metadata, true),
            SharedObject::ConfigMap(o) => named("ConfigMap", &o.metadata, true),
            SharedObject::Namespace(o) => named("Namespace", &o.metadata, false),
            SharedObject::GatewayClass(o) => named("GatewayClass", &o.metadata, false),
            SharedObject::Gateway(o) => named("Gateway", &o.metadata, true),
            SharedObject::HTTPRoute(o) => named("HTTPRoute", &o.metadata, true),
            SharedObject::GRPCRoute(o) => named("GRPCRoute", &o.metadata, true),
            SharedObject::TLSRoute(o) => named("TLSRoute", &o.metadata, true),
            SharedObject::ReferenceGrant(o) => named("ReferenceGrant", &o.metadata, true),
        }
    }
}

/// A reference to an object, for diagnostics and logs: `Kind ns/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjRef {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjRef {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        ObjRef { kind, namespace: namespace.to_string(), name: name.to_string() }
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Every object the sources currently know, by kind.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub ingresses: Map<Key, Arc<Ingress>>,
    pub ingress_classes: Map<String, Arc<IngressClass>>,
    pub services: Map<Key, Arc<Svc>>,
    pub endpoint_slices: Map<Key, Arc<Slice>>,
    pub secrets: Map<Key, Arc<Secret>>,
    pub config_maps: Map<Key, Arc<ConfigMap>>,
    pub namespaces: Map<String, Arc<Namespace>>,
    pub gateway_classes: Map<String, Arc<GatewayClass>>,
    pub gateways: Map<Key, Arc<Gateway>>,
    pub http_routes: Map<Key, Arc<HTTPRoute>>,
    pub grpc_routes: Map<Key, Arc<GRPCRoute>>,
    pub tls_routes: Map<Key, Arc<TLSRoute>>,
    pub reference_grants: Map<Key, Arc<ReferenceGrant>>,
}

fn key(meta: &ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl Store {
    /// Adds or replaces an object. The object's namespace must already be set for namespaced
    /// kinds (sources default it).
    pub fn insert(&mut self, obj: Object) {
        match obj {
            Object::Ingress(o) => {
                self.ingresses.insert(key(&o.metadata), Arc::new(o));
            }
            Object::IngressClass(o) => {
                self.ingress_classes.insert(o.metadata.name.clone().unwrap_or_default(), Arc::new(o));
            }
            Object::Service(o) => {
                self.services.insert(key(&o.metadata), Arc::new(Svc::from(&o)));
            }
            Object::EndpointSlice(o) => {
                self.endpoint_slices.insert(key(&o.metadata), Arc::new(Slice::from(&o)));
            }
            Object::Secret(o) => {
                self.secrets.insert(key(&o.metadata), Arc::new(o));
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key(&o.metadata), Arc::new(o));
            }
            Object::Namespace(o) => {
                self.namespaces.insert(o.metadata.name.clone().unwrap_or_default(), Arc::new(o));
            }
            Object::GatewayClass(o) => {
                self.gateway_classes.insert(o.metadata.name.clone().unwrap_or_default(), Arc::new(o));
            }
            Object::Gateway(o) => {
                self.gateways.insert(key(&o.metadata), Arc::new(o));
            }
            Object::HTTPRoute(o) => {
                self.http_routes.insert(key(&o.metadata), Arc::new(o));
            }
            Object::GRPCRoute(o) => {
                self.grpc_routes.insert(key(&o.metadata), Arc::new(o));
            }
            Object::TLSRoute(o) => {
                self.tls_routes.insert(key(&o.metadata), Arc::new(o));
            }
            Object::ReferenceGrant(o) => {
                self.reference_grants.insert(key(&o.metadata), Arc::new(o));
            }
        }
    }

    /// Adds or replaces an already shared object (no copy).
    pub fn insert_shared(&mut self, obj: &SharedObject) {
        fn k<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(o: &T) -> Key {
            key(o.metadata())
        }
        match obj {
            SharedObject::Ingress(o) => {
                self.ingresses.insert(k(o.as_ref()), o.clone());
            }
            SharedObject::IngressClass(o) => {
                self.ingress_classes.insert(o.metadata.name.clone().unwrap_or_default(), o.clone());
            }
            SharedObject::Service(o) => {
                self.services.insert((o.namespace.clone(), o.name.clone()), o.clone());
            }
            SharedObject::EndpointSlice(o) => {
                self.endpoint_slices.insert((o.namespace.clone(), o.name.clone()), o.clone());
            }
            SharedObject::Secret(o) => {
                self.secrets.insert(k(o.as_ref()), o.clone());
            }
            SharedObject::ConfigMap(o) => {
                self.config_maps.insert(k(o.as_ref()), o.clone());
            }
            SharedObject::Namespace(o) => {
                self.namespaces.insert(o.metadata.name.clone().unwrap_or_default(), o.clone());
            }
            SharedObject::GatewayClass(o) => {
                self.gateway_classes.insert(o.metadata.name.clone().unwrap_or_default(), o.clone());
            }
            SharedObject::Gateway(o) => {
                self.gateways.insert(key(&o.metadata), o.clone());
            }
            SharedObject::HTTPRoute(o) => {
                self.http_routes.insert(key(&o.metadata), o.clone());
            }
            SharedObject::GRPCRoute(o) => {
                self.grpc_routes.insert(key(&o.metadata), o.clone());
            }
            SharedObject::TLSRoute(o) => {
                self.tls_routes.insert(key(&o.metadata), o.clone());
            }
            SharedObject::ReferenceGrant(o) => {
                self.reference_grants.insert(key(&o.metadata), o.clone());
            }
        }
    }

    /// Removes the object `r` names, if present.
    pub fn remove(&mut self, r: &ObjRef) {
        let key = (r.namespace.clone(), r.name.clone());
        match r.kind {
            "Ingress" => drop(self.ingresses.remove(&key)),
            "IngressClass" => drop(self.ingress_classes.remove(&r.name)),
            "Service" => drop(self.services.remove(&key)),
            "EndpointSlice" => drop(self.endpoint_slices.remove(&key)),
            "Secret" => drop(self.secrets.remove(&key)),
            "ConfigMap" => drop(self.config_maps.remove(&key)),
            "Namespace" => drop(self.namespaces.remove(&r.name)),
            "GatewayClass" => drop(self.gateway_classes.remove(&r.name)),
            "Gateway" => drop(self.gateways.remove(&key)),
            "HTTPRoute" => drop(self.http_routes.remove(&key)),
            "GRPCRoute" => drop(self.grpc_routes.remove(&key)),
            "TLSRoute" => drop(self.tls_routes.remove(&key)),
            "ReferenceGrant" => drop(self.reference_grants.remove(&key)),
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.config_maps.len()
            + self.namespaces.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.tls_routes.len()
            + self.reference_grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
