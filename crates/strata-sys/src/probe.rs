//! Probes of what the filesystem and kernel under a root support.

use std::io;
use std::path::Path;

use rustix::fs::{Dir, FileType};

/// Whether the filesystem holding `dir` fills in `d_type` in directory entries. overlayfs
/// needs it (xfs formatted with `ftype=0` lacks it), so the overlay backend refuses to start
/// without it.
pub fn supports_d_type(dir: &Path) -> io::Result<bool> {
    let probe = tempdir_in(dir, ".d_type-probe")?;
    let result = (|| {
        std::fs::write(probe.join("file"), b"")?;
        let fd = std::fs::File::open(&probe)?;
        for entry in Dir::read_from(&fd)? {
            let entry = entry?;
            if entry.file_name().to_bytes() == b"file" {
                return Ok(entry.file_type() != FileType::Unknown);
            }
        }
        Ok(false)
    })();
    let _ = std::fs::remove_dir_all(&probe);
    result
}

/// Whether the overlay module has an `index` parameter, i.e. whether `index=off` is a valid
/// mount option. containerd passes it so that an upper directory can be reused by another
/// mount without the "stale index" errors of the inodes index feature.
pub fn overlay_supports_index() -> bool {
    Path::new("/sys/module/overlay/parameters/index").exists()
}

/// Whether overlay mounts must use `userxattr`: only inside a user namespace, where the
/// `trusted.` xattrs overlay uses are not writable (Linux ≥ 5.11 then offers `user.`).
pub fn overlay_needs_userxattr() -> bool {
    !in_initial_user_namespace()
}

/// Whether this process runs in the initial user namespace (its uid map covers everything).
pub fn in_initial_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields == ["0", "0", "4294967295"]
        }
        Err(_) => true,
    }
}

/// Whether the kernel knows the overlay filesystem (listed in `/proc/filesystems`). The
/// module may also be loaded on first mount, so `false` is a hint, not a verdict.
pub fn overlay_registered() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.trim_end().ends_with("\toverlay")))
        .unwrap_or(false)
}

/// Creates a fresh directory named `<prefix>-<pid>-<n>` in `parent`.
fn tempdir_in(parent: &Path, prefix: &str) -> io::Result<std::path::PathBuf> {
    for n in 0..1000u32 {
        let path = parent.join(format!("{prefix}-{}-{n}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free probe directory name",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ext4, xfs (ftype=1), btrfs and tmpfs all fill d_type; the probe leaves nothing behind.
    #[test]
    fn d_type_on_tmp() {
        let dir = tempfile::tempdir().unwrap();
        assert!(supports_d_type(dir.path()).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
