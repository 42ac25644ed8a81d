//! Diagnostics: what compile found wrong, and what it did about it.

use std::fmt;

use crate::store::ObjRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Why something does not route the way its author may think. Stable names: they are the
/// `reason` of Kubernetes Events and a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Reason {
    /// The Ingress belongs to another class (or none) and is ignored.
    ClassIgnored,
    /// A field has a value the spec does not allow; the object is skipped.
    InvalidField,
    /// A field uses something Vestibule does not support yet; that part is skipped.
    Unsupported,
    /// The backend Service does not exist; requests answer 503.
    ServiceNotFound,
    /// The Service has no such port; requests answer 503.
    ServicePortNotFound,
    /// The Service has no ready endpoint; requests answer 503.
    NoReadyEndpoints,
    /// An EndpointSlice port or address cannot be dialled (port outside 1-65535, not an IP of
    /// the slice's family, unspecified, multicast); that port or address is not used.
    InvalidEndpoint,
    /// A TLS Secret is missing; the default certificate is served.
    SecretNotFound,
    /// A TLS Secret is not a usable certificate and key; the default certificate is served.
    SecretInvalid,
    /// Another Ingress claims the same host, path and type and is older; this one is not used.
    PathConflict,
    /// Another Ingress already provides the default backend or certificate for this host.
    DefaultConflict,
    /// An object was converted from an older API version.
    Deprecated,
    /// The ConfigMap `--configmap` names does not exist; flags and defaults are used.
    ConfigMapNotFound,
    /// An annotation under `nginx.ingress.kubernetes.io/` or `vestibule.dev/` that Vestibule
    /// does not implement; it is ignored.
    AnnotationNotSupported,
    /// A canary Ingress has no mainline Ingress with the same host, path and pathType (or the
    /// mainline already has a canary); that canary path serves nothing.
    CanaryWithoutMainline,
    /// A snippet annotation (`*-snippet`): Vestibule never executes text from an object, so it
    /// has no effect; the rest of the Ingress is served.
    SnippetRefused,
    /// A TCP or UDP service's port could not be opened (taken, or not permitted).
    PortUnavailable,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::ClassIgnored => "ClassIgnored",
            Reason::InvalidField => "InvalidField",
            Reason::Unsupported => "Unsupported",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::NoReadyEndpoints => "NoReadyEndpoints",
            Reason::InvalidEndpoint => "InvalidEndpoint",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretInvalid => "SecretInvalid",
            Reason::PathConflict => "PathConflict",
            Reason::DefaultConflict => "DefaultConflict",
            Reason::Deprecated => "Deprecated",
            Reason::ConfigMapNotFound => "ConfigMapNotFound",
            Reason::AnnotationNotSupported => "AnnotationNotSupported",
            Reason::CanaryWithoutMainline => "CanaryWithoutMainline",
            Reason::SnippetRefused => "SnippetRefused",
            Reason::PortUnavailable => "PortUnavailable",
        }
    }
}

/// One finding about one object: which object, which field, what is wrong and what was done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub object: ObjRef,
    /// The field path inside the object, e.g. `spec.rules[0].http.paths[1].backend`.
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

impl Diagnostic {
    pub fn new(severity: Severity, object: &ObjRef, field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Diagnostic { severity, object: object.clone(), field: field.into(), reason, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.object)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {} ({})", self.message, self.reason.as_str())
    }
}
