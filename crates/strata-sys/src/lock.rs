//! An exclusive, process-lifetime lock on a root directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::FlockOperation;

/// An exclusive `flock(2)` on a lock file, held until dropped. The kernel releases it when the
/// process dies, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock on `path` (creating the file, mode 0600) without waiting. Returns
    /// `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<RootLock>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(RootLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second holder is refused while the first lives, and admitted once it is dropped.
    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = RootLock::try_acquire(&path).unwrap();
        assert!(first.is_some());
        assert!(RootLock::try_acquire(&path).unwrap().is_none());
        drop(first);
        assert!(RootLock::try_acquire(&path).unwrap().is_some());
    }
}
