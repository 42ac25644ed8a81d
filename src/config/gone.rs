//! The routes a new configuration no longer has, for their statistics to leave /metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Config, RouteLabels, VirtualHost};

type Hosts = HashMap<String, Arc<VirtualHost>>;

/// The virtual hosts of two configurations, paired by table and host.
#[derive(Default)]
struct Diff<'a> {
    /// Hosts only the old one has, or whose old version the new one replaced.
    left: Vec<&'a VirtualHost>,
    /// Their replacements, and hosts only the new one has.
    came: Vec<&'a VirtualHost>,
    /// Hosts both share (the same allocation).
    kept: Vec<&'a VirtualHost>,
}

impl<'a> Diff<'a> {
    fn hosts(&mut self, old: &'a Hosts, new: &'a Hosts) {
        let mut matched = 0;
        for (host, v) in old {
            match new.get(host) {
                Some(n) if Arc::ptr_eq(n, v) => {
                    self.kept.push(v);
                    matched += 1;
                }
                Some(n) => {
                    self.left.push(v);
                    self.came.push(n);
                    matched += 1;
                }
                None => self.left.push(v),
            }
        }
        if matched < new.len() {
            self.came.extend(new.iter().filter(|(host, _)| !old.contains_key(*host)).map(|(_, v)| &**v));
        }
    }

    fn one(&mut self, old: Option<&'a Arc<VirtualHost>>, new: Option<&'a Arc<VirtualHost>>) {
        match (old, new) {
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) => self.kept.push(o),
            _ => {
                self.left.extend(old.map(|v| &**v));
                self.came.extend(new.map(|v| &**v));
            }
        }
    }
}

fn labels(v: &VirtualHost) -> impl Iterator<Item = &RouteLabels> {
    v.routes.iter().map(|r| &r.labels).chain(v.default.iter().map(|d| &d.labels))
}

impl Config {
    /// The labels `prev` had that this configuration no longer has. Hosts are paired by table
    /// and name and compared by pointer (an incremental compile shares every host it did not
    /// touch), and only the routes of hosts that differ are read: a change costs in proportion
    /// to what it touched, where comparing every label cost more than compiling the change at
    /// 10,000 Ingresses.
    pub fn route_labels_gone(&self, prev: &Config) -> Vec<RouteLabels> {
        let mut d = Diff::default();
        d.hosts(&prev.exact, &self.exact);
        d.hosts(&prev.wildcard, &self.wildcard);
        d.one(prev.hostless.as_ref(), self.hostless.as_ref());
        let empty = Arc::default();
        for (port, old) in &prev.ports {
            let new = self.ports.get(port).unwrap_or(&empty);
            if Arc::ptr_eq(old, new) {
                d.kept.extend(old.vhosts().map(|v| &**v));
                continue;
            }
            d.hosts(&old.exact, &new.exact);
            d.hosts(&old.wildcard, &new.wildcard);
            d.one(old.hostless.as_ref(), new.hostless.as_ref());
        }
        for (port, new) in &self.ports {
            if !prev.ports.contains_key(port) {
                d.came.extend(new.vhosts().map(|v| &**v));
            }
        }
        let mut gone: HashSet<&RouteLabels> = d.left.iter().flat_map(|v| labels(v)).chain(prev.default_backend.iter().map(|x| &x.labels)).collect();
        for l in d.came.iter().flat_map(|v| labels(v)).chain(self.default_backend.iter().map(|x| &x.labels)) {
            gone.remove(l);
        }
        if gone.is_empty() {
            return Vec::new();
        }
        // A host can be in more than one table (listener ports), and one of those unchanged.
        let hosts: Vec<&str> = gone.iter().map(|l| &*l.host).collect::<HashSet<_>>().into_iter().collect();
        for l in d.kept.iter().flat_map(|v| labels(v)).filter(|l| hosts.contains(&&*l.host)) {
            gone.remove(l);
        }
        gone.into_iter().cloned().collect()
    }
}
