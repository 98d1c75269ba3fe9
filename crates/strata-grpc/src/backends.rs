//! The backends a daemon serves, and which `snapshotter` names reach each of them.

use std::collections::HashMap;
use std::sync::Arc;

use strata_core::{Error, Snapshotter};

/// The backends a daemon serves and the names that reach them.
///
/// The `snapshotter` field of a request is mapped as follows: empty or `strata` → the
/// default backend; `<backend>` or `strata-<backend>` → that backend (e.g. `overlay`,
/// `strata-native`); `overlayfs` → overlay. Any other name is `InvalidArgument`, as containerd's
/// own snapshots service answers for a snapshotter it has not loaded.
pub struct Backends {
    by_name: HashMap<String, Arc<dyn Snapshotter>>,
    all: Vec<Arc<dyn Snapshotter>>,
}

impl Backends {
    /// The set of `backends`, the first of which is the default.
    pub fn new(backends: Vec<Arc<dyn Snapshotter>>) -> Backends {
        let mut by_name = HashMap::new();
        if let Some(default) = backends.first() {
            by_name.insert(String::new(), Arc::clone(default));
            by_name.insert("strata".to_owned(), Arc::clone(default));
        }
        for backend in &backends {
            let name = backend.name().to_owned();
            by_name.insert(format!("strata-{name}"), Arc::clone(backend));
            if name == "overlay" {
                by_name.insert("overlayfs".to_owned(), Arc::clone(backend));
            }
            by_name.insert(name, Arc::clone(backend));
        }
        Backends {
            by_name,
            all: backends,
        }
    }

    /// The backend a request's `snapshotter` field names.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Snapshotter>, Error> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownSnapshotter(name.to_owned()))
    }

    /// Every backend, the default first.
    pub fn all(&self) -> &[Arc<dyn Snapshotter>] {
        &self.all
    }

    /// Closes every backend.
    pub fn close(&self) {
        for backend in &self.all {
            if let Err(e) = backend.close() {
                tracing::warn!(backend = backend.name(), error = %e, "closing backend failed");
            }
        }
    }
}
