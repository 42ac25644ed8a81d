//! Which objects the watches changed since the store was last read, so that the engine
//! compiles only what they reach (`Engine::apply_changes`).
//!
//! Each watch writes an event into its reflector store and then notes the objects it touched,
//! both while holding the log's lock; the apply loop takes the notes under that lock, and then
//! reads the reflector stores without it, so a watch (on a thread that also serves requests)
//! never waits for a read of the whole store. An event noted before the take was written before
//! the read; one noted after it is taken with the next read, which a change notice after the
//! note asks for. So every object that differs between two reads is in the notes taken with the
//! second or with the next, and until then its hosts keep the configuration they had. A re-list (the start of
//! a watch, after an error or a `410 Gone`) notes only what it really changed: the objects
//! added, removed, or with another `resourceVersion` than before the re-list.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use kube::Resource;
use kube::runtime::reflector::Store as Reader;

use crate::store::{Key, ObjRef};

/// The objects changed since the last `take`.
#[derive(Debug, Default)]
pub struct ChangeLog {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
pub struct Pending {
    refs: HashSet<(&'static str, String, String)>,
}

impl Pending {
    pub fn note(&mut self, refs: impl IntoIterator<Item = ObjRef>) {
        self.refs.extend(refs.into_iter().map(|r| (r.kind, r.namespace, r.name)));
    }
}

impl ChangeLog {
    /// Held while a watch writes an event and notes what it touched.
    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What changed since the last call, and `read()` (the store) as of then or later.
    pub fn take<S>(&self, read: impl FnOnce() -> S) -> (S, Vec<ObjRef>) {
        let refs = std::mem::take(&mut self.lock().refs);
        let store = read();
        let mut refs: Vec<ObjRef> = refs.into_iter().map(|(kind, namespace, name)| ObjRef { kind, namespace, name }).collect();
        refs.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        (store, refs)
    }
}

/// The kind as `ObjRef` spells it: the kinds compile tells apart by name, and `Other` for the
/// rest (any of which makes the next apply a full compile).
pub fn static_kind(kind: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "Ingress", "IngressClass", "Service", "EndpointSlice", "Secret", "ConfigMap", "Namespace", "GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "ReferenceGrant",
    ];
    KINDS.iter().find(|k| **k == kind).copied().unwrap_or("Other")
}

/// The reference of one object of `kind`.
pub fn obj_ref<K: Resource>(kind: &'static str, o: &K) -> ObjRef {
    ObjRef { kind, namespace: o.meta().namespace.clone().unwrap_or_default(), name: o.meta().name.clone().unwrap_or_default() }
}

/// Each object a reflector holds, with its `resourceVersion`.
pub fn versions<K>(reader: &Reader<K>) -> HashMap<Key, Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    reader.state().iter().map(|o| ((o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default()), o.meta().resource_version.clone())).collect()
}

/// What a re-list changed: the objects in only one of `before` and `after`, and those whose
/// version differs (or is unknown).
pub fn relisted(kind: &'static str, before: &HashMap<Key, Option<String>>, after: &HashMap<Key, Option<String>>) -> Vec<ObjRef> {
    let changed = |k: &Key, v: &Option<String>, other: &HashMap<Key, Option<String>>| v.is_none() || other.get(k) != Some(v);
    let mut out: Vec<ObjRef> = before.iter().filter(|(k, v)| changed(k, v, after)).map(|(k, _)| ObjRef::new(kind, &k.0, &k.1)).collect();
    out.extend(after.iter().filter(|(k, v)| !before.contains_key(*k) && changed(k, v, before)).map(|(k, _)| ObjRef::new(kind, &k.0, &k.1)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, Option<&str>)]) -> HashMap<Key, Option<String>> {
        items.iter().map(|(n, v)| (("ns".to_string(), n.to_string()), v.map(str::to_string))).collect()
    }

    #[test]
    fn a_relist_notes_what_was_added_removed_or_changed_only() {
        let before = map(&[("same", Some("1")), ("gone", Some("2")), ("edited", Some("3")), ("unversioned", None)]);
        let after = map(&[("same", Some("1")), ("edited", Some("9")), ("new", Some("4")), ("unversioned", None)]);
        let mut got: Vec<String> = relisted("Ingress", &before, &after).iter().map(|r| r.to_string()).collect();
        got.sort();
        assert_eq!(got, ["Ingress ns/edited", "Ingress ns/gone", "Ingress ns/new", "Ingress ns/unversioned"]);
        assert!(relisted("Ingress", &before, &before.iter().filter(|(_, v)| v.is_some()).map(|(k, v)| (k.clone(), v.clone())).collect()).len() == 1);
    }

    #[test]
    fn take_empties_the_log_and_reads_under_its_lock() {
        let log = ChangeLog::default();
        log.lock().note([ObjRef::new("Service", "a", "web"), ObjRef::new("Service", "a", "web"), ObjRef::new("Ingress", "a", "x")]);
        let (read, refs) = log.take(|| 7);
        assert_eq!(read, 7);
        assert_eq!(refs.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["Ingress a/x", "Service a/web"]);
        assert!(log.take(|| ()).1.is_empty());
        assert_eq!(static_kind("EndpointSlice"), "EndpointSlice");
        assert_eq!(static_kind("Lease"), "Other");
    }
}
