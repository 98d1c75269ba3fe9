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

    /// The id of the snapshot whose content directory is `path` (`<root>/snapshots/<id>/fs`),
    /// if it is one. `path` is compared as given: Strata hands out absolute, normal paths.
    pub fn id_of_fs(&self, path: &Path) -> Option<u64> {
        if path.file_name()? != "fs" {
            return None;
        }
        let dir = path.parent()?;
        if dir.parent()? != self.snapshots {
            return None;
        }
        match Layout::classify(dir.file_name()?.to_str()?) {
            Entry::Snapshot(id) => Some(id),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `<root>/snapshots/<id>/fs` is a snapshot's content directory.
    #[test]
    fn id_of_fs() {
        let l = Layout::new(Path::new("/r"));
        assert_eq!(l.id_of_fs(Path::new("/r/snapshots/12/fs")), Some(12));
        assert_eq!(l.id_of_fs(&l.fs(7)), Some(7));
        for other in [
            "/r/snapshots/12",
            "/r/snapshots/12/work",
            "/r/snapshots/012/fs",
            "/x/snapshots/1/fs",
            "/r/snapshots/new-1/fs",
            "/r/snapshots/1/fs/a",
        ] {
            assert_eq!(l.id_of_fs(Path::new(other)), None, "{other}");
        }
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
