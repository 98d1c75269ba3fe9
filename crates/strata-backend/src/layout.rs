//! Where a backend keeps things under its root.
//!
//! ```text
//! <root>/metadata.redb        the metadata store
//! <root>/snapshots/<id>/fs    a snapshot's content (overlay: its upper directory)
//! <root>/snapshots/<id>/work  overlay's work directory (active snapshots only)
//! <root>/snapshots/new-<n>    a snapshot being built, renamed to <id> when recorded
//! ```
//!
//! Directories are named by numeric id, never by key, so no key can reach a path.

use std::path::{Path, PathBuf};

/// Prefix of directories under construction.
pub const TEMP_PREFIX: &str = "new-";

/// The paths of one backend root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    snapshots: PathBuf,
}

impl Layout {
    /// The layout under `root` (an absolute path: mounts carry these paths to the client).
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
            snapshots: root.join("snapshots"),
        }
    }

    /// The backend's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata store file.
    pub fn metadata(&self) -> PathBuf {
        self.root.join("metadata.redb")
    }

    /// The directory holding every snapshot directory.
    pub fn snapshots(&self) -> &Path {
        &self.snapshots
    }

    /// Snapshot `id`'s directory.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    /// Snapshot `id`'s content directory (overlay's upper directory).
    pub fn fs(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// Snapshot `id`'s overlay work directory.
    pub fn work(&self, id: u64) -> PathBuf {
        self.dir(id).join("work")
    }

    /// What a directory name under `snapshots/` is.
    pub fn classify(name: &str) -> Entry {
        if let Ok(id) = name.parse::<u64>()
            && id.to_string() == name
        {
            return Entry::Snapshot(id);
        }
        if name.starts_with(TEMP_PREFIX) {
            return Entry::Temp;
        }
        Entry::Foreign
    }
}

/// A name found under `snapshots/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A snapshot directory with this id.
    Snapshot(u64),
    /// A directory under construction (or left by a crash during construction).
    Temp,
    /// Anything else: not ours to touch… but not ours to keep either; Cleanup removes it.
    Foreign,
}
