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

/// The value of an overlay module parameter (`/sys/module/overlay/parameters/<name>`, e.g.
/// `redirect_dir` or `metacopy`), trimmed; `None` when the module or the parameter is absent.
/// These are the defaults for mounts that do not set the option themselves.
pub fn overlay_parameter(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/module/overlay/parameters").join(name))
        .ok()
        .map(|v| v.trim().to_owned())
}

/// The running kernel's release string (`uname -r`), e.g. `6.1.0-18-amd64`.
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Whether the filesystem holding `dir` can share extents between files (`FICLONE`, as
/// btrfs and xfs with `reflink=1` can): tries it on two fresh files in `dir`.
pub fn supports_reflink(dir: &Path) -> io::Result<bool> {
    let probe = tempdir_in(dir, ".reflink-probe")?;
    let result = (|| {
        let src_path = probe.join("src");
        std::fs::write(&src_path, [0x5a_u8; 4096])?;
        let src = std::fs::File::open(&src_path)?;
        let dst = std::fs::File::create(probe.join("dst"))?;
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => Ok(true),
            // What filesystems without reflinks answer.
            Err(
                rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::NOTTY,
            ) => Ok(false),
            Err(e) => Err(e.into()),
        }
    })();
    let _ = std::fs::remove_dir_all(&probe);
    result
}

/// Mounts a two-layer overlay with an upper directory in a scratch directory under `dir`,
/// writes a file through it and unmounts it: the test containerd's own overlay snapshotter
/// makes before trusting a filesystem. `options` are added to the mount (`index=off`,
/// `userxattr`, …), so a wrong option fails here rather than on the first container.
/// Needs `CAP_SYS_ADMIN`; the scratch directory is removed in every case.
pub fn overlay_mount_works(dir: &Path, options: &[String]) -> io::Result<()> {
    let probe = tempdir_in(dir, ".overlay-probe")?;
    let result = (|| {
        for d in ["lower1", "lower2", "upper", "work", "merged"] {
            std::fs::create_dir(probe.join(d))?;
        }
        std::fs::write(probe.join("lower2/file"), b"lower")?;
        let mut opts = options.to_vec();
        opts.push(format!(
            "lowerdir={}:{}",
            probe.join("lower1").display(),
            probe.join("lower2").display()
        ));
        opts.push(format!("upperdir={}", probe.join("upper").display()));
        opts.push(format!("workdir={}", probe.join("work").display()));
        let merged = probe.join("merged");
        crate::mount::mount("overlay", "overlay", &opts, &merged)?;
        let used = (|| {
            if std::fs::read(merged.join("file"))? != b"lower" {
                return Err(io::Error::other(
                    "the overlay does not show its lower layer",
                ));
            }
            std::fs::write(merged.join("file"), b"upper")
        })();
        let unmounted = crate::mount::unmount(&merged, false);
        used.and(unmounted)
    })();
    if let Err(e) = std::fs::remove_dir_all(&probe) {
        // Still mounted (the unmount failed): detach it so the directory can go.
        let _ = crate::mount::unmount(&probe.join("merged"), true);
        if std::fs::remove_dir_all(&probe).is_err() && result.is_ok() {
            return Err(e);
        }
    }
    result
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

    /// The reflink probe answers either way without leaving files behind.
    #[test]
    fn reflink_probe_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        supports_reflink(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The kernel release looks like one (`6.1.0-…`).
    #[test]
    fn kernel_release_has_a_version() {
        let release = kernel_release();
        assert!(
            release.split('.').next().unwrap().parse::<u32>().is_ok(),
            "{release}"
        );
    }
}
