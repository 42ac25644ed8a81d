//! Sources of objects. They only observe, and fill the store.

pub mod files;
pub mod kube;
pub mod kube_changes;
pub mod kube_gateway;
mod kube_health;
pub mod kube_secrets;
mod legacy;
mod locate;
pub mod parse;
