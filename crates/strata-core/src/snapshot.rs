//! The data a snapshotter deals in: kinds, info records, usage figures and mounts.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// The three kinds of snapshot containerd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Read-only, made by `View`; can never be committed or be a parent.
    View,
    /// Writable, made by `Prepare`; becomes `Committed` by `Commit`.
    Active,
    /// Immutable, made by `Commit`; the only kind that can be a parent.
    Committed,
}

impl Kind {
    /// The word containerd's filters use for this kind (`kind==active`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels of a snapshot: ordered so that listings and encodings are deterministic.
pub type Labels = BTreeMap<String, String>;

/// What `Stat` returns: everything known about one snapshot except its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The snapshot's key (for an active or view snapshot) or name (for a committed one).
    pub name: String,
    /// Name of the committed parent, empty for none.
    pub parent: String,
    /// Its kind.
    pub kind: Kind,
    /// User labels, the only mutable part.
    pub labels: Labels,
    /// When it was created (for a committed snapshot: when it was committed).
    pub created: SystemTime,
    /// When its labels last changed; equal to `created` until the first Update.
    pub updated: SystemTime,
}

/// A snapshot's [`Info`] borrowed from where it is stored: what a long listing encodes
/// without building an `Info`, and its label map, for every snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoRef<'a> {
    /// The snapshot's key or name.
    pub name: &'a str,
    /// Name of the committed parent, empty for none.
    pub parent: &'a str,
    /// Its kind.
    pub kind: Kind,
    /// User labels, in key order.
    pub labels: &'a [(&'a str, &'a str)],
    /// When it was created.
    pub created: SystemTime,
    /// When its labels last changed.
    pub updated: SystemTime,
}

impl Info {
    /// Calls `f` with this info borrowed as an [`InfoRef`].
    pub fn with_ref<T>(&self, f: impl FnOnce(&InfoRef<'_>) -> T) -> T {
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        f(&InfoRef {
            name: &self.name,
            parent: &self.parent,
            kind: self.kind,
            labels: &labels,
            created: self.created,
            updated: self.updated,
        })
    }
}

/// Disk usage of one snapshot alone, without its parents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of storage used (`st_blocks * 512`, hard links once).
    pub size: i64,
    /// Number of inodes.
    pub inodes: i64,
}

impl Usage {
    /// Adds another figure to this one.
    pub fn add(&mut self, other: Usage) {
        self.size += other.size;
        self.inodes += other.inodes;
    }
}

/// A mount the client performs: containerd's `types.Mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Filesystem type: `bind` or `overlay`.
    pub kind: String,
    /// Source: a directory for binds, the word `overlay` for overlays.
    pub source: String,
    /// Mount options, e.g. `ro`, `rbind`, `lowerdir=…`.
    pub options: Vec<String>,
}
