//! Which Ingresses are ours: IngressClass, the legacy annotation, and class-less Ingresses.

use k8s_openapi::api::networking::v1::Ingress;

use super::Settings;
use crate::store::Store;

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether one of our IngressClasses is marked as the cluster default.
pub fn we_are_default(store: &Store, settings: &Settings) -> bool {
    store.ingress_classes.values().any(|c| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(settings.controller_class.as_str())
            && c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).map(|v| v == "true").unwrap_or(false)
    })
}

/// `Ok(())` when the Ingress is ours, else why not, in words for the log.
pub fn owns(ing: &Ingress, store: &Store, settings: &Settings, default_class: bool) -> Result<(), String> {
    if let Some(value) = ing.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION)) {
        // The legacy annotation takes precedence over spec.ingressClassName.
        if *value == settings.ingress_class {
            return Ok(());
        }
        return Err(format!(
            "annotation {LEGACY_CLASS_ANNOTATION}={value:?} names another class than {:?}",
            settings.ingress_class
        ));
    }
    let class_name = ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref());
    match class_name {
        Some(name) => {
            // The bare class name is ours only while no IngressClass of that name says otherwise.
            match store.ingress_classes.get(name) {
                Some(class) => {
                    let controller = class.spec.as_ref().and_then(|s| s.controller.as_deref()).unwrap_or("");
                    if controller == settings.controller_class {
                        Ok(())
                    } else {
                        Err(format!(
                            "spec.ingressClassName {name:?} is an IngressClass of controller {controller:?}, not {:?}",
                            settings.controller_class
                        ))
                    }
                }
                None if name == settings.ingress_class => Ok(()),
                None => Err(format!(
                    "spec.ingressClassName {name:?} names no known IngressClass, and is not {:?}",
                    settings.ingress_class
                )),
            }
        }
        None => {
            if settings.watch_without_class || default_class {
                Ok(())
            } else {
                Err(format!(
                    "no ingress class; set spec.ingressClassName: {}, mark our IngressClass with {DEFAULT_CLASS_ANNOTATION}: \"true\", or run with --watch-ingress-without-class",
                    settings.ingress_class
                ))
            }
        }
    }
}
