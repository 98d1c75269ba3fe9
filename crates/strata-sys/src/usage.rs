//! Disk usage of a directory tree, counted the way containerd's `fs.DiskUsage` does.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes and inodes under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// `st_blocks * 512` summed over every inode, hard links once.
    pub bytes: u64,
    /// Number of distinct inodes, the root directory included.
    pub inodes: u64,
}

/// Walks `root` without following symlinks or crossing into other entries' targets, counting
/// each inode once (hard links share an inode). A file that vanishes during the walk is
/// skipped: an active snapshot can change under us.
pub fn disk_usage(root: &Path) -> io::Result<DiskUsage> {
    disk_usage_until(root, &|| false)
}

/// [`disk_usage`], giving up with `ErrorKind::Interrupted` as soon as `stop` returns true
/// (polled every few hundred entries), so an abandoned request does not keep walking a
/// huge tree.
pub fn disk_usage_until(root: &Path, stop: &dyn Fn() -> bool) -> io::Result<DiskUsage> {
    let mut polled = 0u32;
    let mut seen = HashSet::new();
    let mut usage = DiskUsage::default();
    let meta = std::fs::symlink_metadata(root)?;
    account(&meta, &mut seen, &mut usage);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            polled += 1;
            if polled.is_multiple_of(256) && stop() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "walk abandoned"));
            }
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            account(&meta, &mut seen, &mut usage);
        }
    }
    Ok(usage)
}

fn account(meta: &std::fs::Metadata, seen: &mut HashSet<(u64, u64)>, usage: &mut DiskUsage) {
    // Only multiply-linked inodes can be met twice; keeping the others out of the set keeps
    // the walk's memory proportional to hard links, not to files.
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    usage.inodes += 1;
    usage.bytes += meta.blocks() * 512;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hard links are counted once; every file, directory and symlink is an inode.
    #[test]
    fn counts_inodes_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("a", root.join("d/l")).unwrap();
        let usage = disk_usage(root).unwrap();
        assert_eq!(usage.inodes, 4, "root, a (=b), d, d/l");
        let a_blocks = std::fs::metadata(root.join("a")).unwrap().blocks() * 512;
        assert!(usage.bytes >= a_blocks, "{usage:?}");
        assert!(
            usage.bytes < 2 * a_blocks,
            "hard link counted twice? {usage:?}"
        );
    }
}
