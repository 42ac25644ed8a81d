//! Kubernetes Events (events.k8s.io/v1) on our Ingresses, from the leader only.
//!
//! - Each compile diagnostic on an Ingress becomes one Event (reason = `Reason::as_str()`, a
//!   note saying what to fix). Deduplicated: the same object, reason and message are not sent
//!   again while the diagnostic stands; once it is gone, its return is news again.
//! - An Ingress that compiled without errors gets one `Sync` Event per change (its generation
//!   or annotations).
//! - Rate-limited: a token bucket (`burst`, then `rate` per second) over a bounded queue; past
//!   1000 queued, the oldest are dropped with a log line.
//!
//! A replica that is not leader keeps nothing; when it becomes leader it reports what stands.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use super::Applied;
use crate::compile::{Diagnostic, Reason, Severity};
use crate::store::ObjRef;

const QUEUE_LIMIT: usize = 1000;
/// events.k8s.io/v1 limits `note` to 1 kB.
const NOTE_LIMIT: usize = 1024;

pub(crate) struct EventOptions {
    /// `reportingController`.
    pub controller: String,
    /// `reportingInstance`.
    pub instance: String,
    pub burst: u32,
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Diagnostic(ObjRef, Reason, String),
    Sync(ObjRef, String),
}

struct Pending {
    key: Key,
    ingress: Arc<Ingress>,
    warning: bool,
    reason: String,
    note: String,
}

/// What to do about each reason, appended to the diagnostic's message.
fn hint(reason: Reason) -> &'static str {
    match reason {
        Reason::ClassIgnored => "Set spec.ingressClassName to our IngressClass if this Ingress is meant for Vestibule.",
        Reason::InvalidField => "Correct the field.",
        Reason::Unsupported => "Use a Service backend (service.name and service.port).",
        Reason::ServiceNotFound => "Create the Service in the Ingress's namespace, or correct the backend's service.name.",
        Reason::ServicePortNotFound => "Use a port number or name that the Service defines.",
        Reason::NoReadyEndpoints => "Check that the Service's selector matches Pods that are running and ready.",
        Reason::InvalidEndpoint => "Correct the EndpointSlice's port or address.",
        Reason::SecretNotFound => "Create the kubernetes.io/tls Secret in the Ingress's namespace, or correct spec.tls[].secretName.",
        Reason::SecretInvalid => "Put a PEM certificate chain in tls.crt and its matching private key in tls.key.",
        Reason::PathConflict => "Use another host or path here, or remove the rule from one of the two Ingresses.",
        Reason::DefaultConflict => "Keep the catch-all defaultBackend on one Ingress only.",
        Reason::Deprecated => "Use networking.k8s.io/v1.",
        Reason::ConfigMapNotFound => "Create the ConfigMap, or correct --configmap.",
        Reason::AnnotationNotSupported => "Remove the annotation, or check the README for the annotations Vestibule implements.",
        Reason::CanaryWithoutMainline => "Give the canary the same host, path and pathType as a non-canary Ingress, with one canary per rule.",
        Reason::SnippetRefused => "Remove the snippet and express it with annotations Vestibule implements (docs/annotations.md).",
        Reason::PortUnavailable => "Free the port, or use another key in the TCP or UDP services ConfigMap.",
    }
}

fn note_of(d: &Diagnostic) -> String {
    let mut note = if d.field.is_empty() { format!("{}. {}", d.message, hint(d.reason)) } else { format!("{}: {}. {}", d.field, d.message, hint(d.reason)) };
    if note.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// What counts as a change of an Ingress for `Sync`: its spec (generation) and annotations.
fn version_of(ing: &Ingress) -> String {
    let mut h = DefaultHasher::new();
    ing.metadata.annotations.hash(&mut h);
    match ing.metadata.generation {
        Some(g) => format!("{g}/{:x}", h.finish()),
        None => format!("rv{}/{:x}", ing.metadata.resource_version.as_deref().unwrap_or(""), h.finish()),
    }
}

#[derive(Default)]
struct Recorder {
    /// Diagnostics standing and already reported.
    emitted: HashSet<Key>,
    /// The version of each Ingress last reported as synced.
    synced: HashMap<ObjRef, String>,
    queue: VecDeque<Pending>,
}

impl Recorder {
    fn reset(&mut self) {
        *self = Recorder::default();
    }

    fn push(&mut self, p: Pending) {
        if self.queue.len() >= QUEUE_LIMIT
            && let Some(old) = self.queue.pop_front()
        {
            tracing::warn!(object = %format!("Ingress {}/{}", old.ingress.metadata.namespace.as_deref().unwrap_or(""), old.ingress.metadata.name.as_deref().unwrap_or("")), reason = %old.reason, "event dropped: too many events queued");
            self.forget(&old.key);
        }
        self.queue.push_back(p);
    }

    /// Makes a key news again (its event was dropped or failed).
    fn forget(&mut self, key: &Key) {
        match key {
            Key::Diagnostic(..) => {
                self.emitted.remove(key);
            }
            Key::Sync(o, v) => {
                if self.synced.get(o) == Some(v) {
                    self.synced.remove(o);
                }
            }
        }
    }

    fn observe(&mut self, app: &Applied) {
        let mut standing = HashSet::new();
        let mut failed: HashSet<ObjRef> = HashSet::new();
        for d in &app.diagnostics {
            if d.object.kind != "Ingress" || d.reason == Reason::ClassIgnored {
                continue;
            }
            let Some(ing) = app.store.ingresses.get(&(d.object.namespace.clone(), d.object.name.clone())) else { continue };
            if d.severity == Severity::Error {
                failed.insert(d.object.clone());
            }
            let key = Key::Diagnostic(d.object.clone(), d.reason, d.message.clone());
            if standing.insert(key.clone()) && !self.emitted.contains(&key) {
                self.push(Pending { key, ingress: ing.clone(), warning: d.severity != Severity::Info, reason: d.reason.as_str().to_string(), note: note_of(d) });
            }
        }
        // Queued events of diagnostics that no longer stand are moot.
        self.queue.retain(|p| !matches!(&p.key, Key::Diagnostic(..)) || standing.contains(&p.key));
        self.emitted = standing;

        for (key, ing) in &app.store.ingresses {
            if !app.status.owns_ingress(key) {
                continue;
            }
            let (ns, name) = key;
            let oref = ObjRef::new("Ingress", ns, name);
            if failed.contains(&oref) {
                continue;
            }
            let version = version_of(ing);
            if self.synced.get(&oref) == Some(&version) {
                continue;
            }
            self.synced.insert(oref.clone(), version.clone());
            self.push(Pending {
                key: Key::Sync(oref, version),
                ingress: ing.clone(),
                warning: false,
                reason: "Sync".into(),
                note: format!("Ingress {ns}/{name} is part of the live configuration"),
            });
        }
        self.synced.retain(|o, _| app.store.ingresses.contains_key(&(o.namespace.clone(), o.name.clone())));
    }
}

struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: tokio::time::Instant,
}

impl Bucket {
    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    fn take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_in(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / self.rate).max(0.001))
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

async fn publish(client: &Client, opts: &EventOptions, p: &Pending) -> Result<(), kube::Error> {
    let ns = p.ingress.metadata.namespace.clone().unwrap_or_default();
    let name = p.ingress.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let event = Event {
        metadata: ObjectMeta { name: Some(format!("{name}.{:x}{:x}", now.as_nanosecond().max(0) as u128, seq % 4096)), namespace: Some(ns.clone()), ..Default::default() },
        event_time: Some(MicroTime(now)),
        action: Some("Sync".into()),
        reason: Some(p.reason.clone()),
        note: Some(p.note.clone()),
        type_: Some(if p.warning { "Warning" } else { "Normal" }.into()),
        regarding: Some(ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            namespace: Some(ns.clone()),
            name: Some(name),
            uid: p.ingress.metadata.uid.clone(),
            resource_version: p.ingress.metadata.resource_version.clone(),
            field_path: None,
        }),
        reporting_controller: Some(opts.controller.clone()),
        reporting_instance: Some(opts.instance.clone()),
        ..Default::default()
    };
    let api = Api::<Event>::namespaced(client.clone(), &ns);
    match tokio::time::timeout(Duration::from_secs(10), api.create(&PostParams::default(), &event)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(kube::Error::Service("request timed out".into())),
    }
}

pub(crate) async fn run(client: Client, opts: EventOptions, mut leader: watch::Receiver<bool>, mut applied: watch::Receiver<Option<Arc<Applied>>>) {
    let mut rec = Recorder::default();
    let mut bucket = Bucket { tokens: opts.burst as f64, burst: opts.burst as f64, rate: opts.rate, last: tokio::time::Instant::now() };
    // After a failed send (the API server away), sending pauses, doubling up to 30 s.
    let mut paused_until: Option<tokio::time::Instant> = None;
    let mut pause = Duration::from_millis(500);
    loop {
        if paused_until.is_some_and(|t| t <= tokio::time::Instant::now()) {
            paused_until = None;
        }
        while paused_until.is_none() && *leader.borrow() && !rec.queue.is_empty() && bucket.take() {
            let Some(p) = rec.queue.pop_front() else { break };
            let object = format!("Ingress {}/{}", p.ingress.metadata.namespace.as_deref().unwrap_or(""), p.ingress.metadata.name.as_deref().unwrap_or(""));
            match publish(&client, &opts, &p).await {
                Ok(()) => {
                    tracing::debug!(%object, reason = %p.reason, "event sent");
                    pause = Duration::from_millis(500);
                }
                Err(kube::Error::Api(s)) if s.code != 429 && s.code < 500 => {
                    // Refused for good (e.g. RBAC, validation): not retried.
                    tracing::warn!(%object, reason = %p.reason, error = %s, "event refused by the API server");
                }
                Err(e) => {
                    tracing::warn!(%object, reason = %p.reason, error = %e, retry_in = ?pause, "event not sent; retrying");
                    rec.queue.push_front(p);
                    paused_until = Some(tokio::time::Instant::now() + pause);
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
        let wait = match paused_until {
            Some(t) => Some(t.saturating_duration_since(tokio::time::Instant::now())),
            None => (*leader.borrow() && !rec.queue.is_empty()).then(|| bucket.next_in()),
        };
        tokio::select! {
            r = leader.changed() => {
                if r.is_err() {
                    return;
                }
                let is_leader = *leader.borrow_and_update();
                rec.reset();
                if is_leader {
                    let app = applied.borrow_and_update().clone();
                    if let Some(app) = app {
                        rec.observe(&app);
                    }
                }
            }
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                let app = applied.borrow_and_update().clone();
                if *leader.borrow()
                    && let Some(app) = app
                {
                    rec.observe(&app);
                }
            }
            _ = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3600))), if wait.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_keeps_the_newest_events_at_its_bound_and_forgets_the_dropped() {
        let mut r = Recorder::default();
        let ingress = Arc::new(Ingress::default());
        let key = |i: usize| Key::Sync(ObjRef::new("Ingress", "default", &format!("ing-{i}")), "1".into());
        for i in 0..QUEUE_LIMIT + 10 {
            r.synced.insert(ObjRef::new("Ingress", "default", &format!("ing-{i}")), "1".into());
            r.push(Pending { key: key(i), ingress: ingress.clone(), warning: false, reason: "Sync".into(), note: String::new() });
        }
        assert_eq!(r.queue.len(), QUEUE_LIMIT);
        assert!(matches!(&r.queue.front().unwrap().key, Key::Sync(o, _) if o.name == "ing-10"), "the oldest ten went first");
        // A dropped event is news again, so it is sent when its object next syncs.
        assert!(!r.synced.contains_key(&ObjRef::new("Ingress", "default", "ing-0")));
        assert!(r.synced.contains_key(&ObjRef::new("Ingress", "default", "ing-10")));
    }
}
