//! Where a backend keeps things under its root.
//!
//! ```text
//! <root>/metadata.redb        the metadata store
//! <root>/metadata.log         its intent log (see strata-meta)
//! <root>/snapshots/<id>/fs    a snapshot's content (overlay: its upper directory)
//! <root>/snapshots/<id>/work  overlay's work directory (active snapshots only)
//! <root>/snapshots/new-<n>    a snapshot half-built by an earlier version (which built
//!                             aside and renamed): removed at start-up
//! ```
//!
//! Directories are named by numeric id, never by key, so no key can reach a path. Above the
//! backends, the daemon's root holds the lock that says one process serves it
//! ([`lock_root`]).

use std::path::{Path, PathBuf};

pub use strata_sys::lock::RootLock;

/// Prefix of directories under construction.
pub const TEMP_PREFIX: &str = "new-";

/// The lock file under the daemon's root (`<root>/strata.lock`), held by the daemon and by
/// `strata fsck`, so neither runs beside the other.
pub fn lock_path(root: &Path) -> PathBuf {
    root.join("strata.lock")
}

/// Takes the lock of the daemon root `root`; `None` if another process holds it.
pub fn lock_root(root: &Path) -> std::io::Result<Option<RootLock>> {
    RootLock::try_acquire(&lock_path(root))
}

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

    /// Every entry under `snapshots/`, sorted by name; none if the directory is absent.
    pub fn entries(&self) -> std::io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.snapshots) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push(DirEntry {
                entry: Layout::classify(&name),
                path: entry.path(),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
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

/// An entry found under `snapshots/`.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// Its path.
    pub path: PathBuf,
    /// What its name makes it.
    pub entry: Entry,
}

/// Why an entry under `snapshots/` belongs to no snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// A snapshot directory whose id the metadata does not know (a crash between creating
    /// it and recording it, or a removal whose directory was not yet deleted).
    UnknownId,
    /// A `new-*` directory: a snapshot half-built when the process died. Start-up recovery
    /// removes these at once.
    Leftover,
    /// A name Strata never gives.
    Foreign,
}

impl Entry {
    /// Why this entry is an orphan, given which ids the metadata knows; `None` for the
    /// directory of a known snapshot.
    pub fn orphan(self, known: impl Fn(u64) -> bool) -> Option<Orphan> {
        match self {
            Entry::Snapshot(id) if known(id) => None,
            Entry::Snapshot(_) => Some(Orphan::UnknownId),
            Entry::Temp => Some(Orphan::Leftover),
            Entry::Foreign => Some(Orphan::Foreign),
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
