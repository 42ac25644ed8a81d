//! Gateway listeners whose port could not be opened. Compile cannot know this (it is pure);
//! the apply engine learns it when the listeners are reconciled, and marks the status here
//! before anyone reads it: the listener is not Accepted (`PortUnavailable`) nor Programmed
//! (`Pending`: opening is tried again at every change), and a Gateway none of whose listeners
//! is served is not Programmed either.

use crate::compile::Status;
use crate::store::Store;

use super::conditions::{cond, get, set};

/// Marks in `status` every listener of our Gateways on one of `down` (port, why).
pub fn ports_unavailable(status: &mut Status, store: &Store, down: &[(u16, String)]) {
    if down.is_empty() {
        return;
    }
    let keys: Vec<_> = status.gateway.gateways.keys().cloned().collect();
    for key in keys {
        let Some(g) = store.gateways.get(&key) else { continue };
        let Some(gs) = status.gateway.gateways.get_mut(&key) else { continue };
        let m = &g.metadata;
        let mut hit = Vec::new();
        for l in &mut gs.listeners {
            let port = g.spec.listeners.iter().find(|s| s.name == l.name).and_then(|s| u16::try_from(s.port).ok());
            let Some((port, why)) = down.iter().find(|(p, _)| Some(*p) == port) else { continue };
            let msg = format!("port {port} cannot be opened: {why}; tried again at the next change");
            set(&mut l.conditions, cond("Accepted", false, "PortUnavailable", msg.clone(), m));
            set(&mut l.conditions, cond("Programmed", false, "Pending", msg, m));
            hit.push(l.name.clone());
        }
        if hit.is_empty() {
            continue;
        }
        let served = gs.listeners.iter().any(|l| get(&l.conditions, "Programmed").is_some_and(|c| c.status == "True"));
        if !served {
            let msg = format!("no listener is served; ports that cannot be opened: {}", hit.join(", "));
            set(&mut gs.conditions, cond("Programmed", false, "Pending", msg, m));
        }
    }
}
