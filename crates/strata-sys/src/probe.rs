//! Probes of what the filesystem and kernel under a root support.

use std::io;
use std::path::Path;

use rustix::fs::{Dir, FileType};

/// Whether the filesystem holding `dir` fills in `d_type` in directory entries. overlayfs
/// needs it (xfs formatted with `ftype=0` lacks it), so the overlay backend refuses to start
/// without it.
///
/// The entries already in `dir` answer without writing anything, which lets a daemon start
/// on a full disk; only an empty `dir` (a first start) gets a scratch directory with a file in
/// it, removed again, as are the scratch directories of a probe that died half-way.
pub fn supports_d_type(dir: &Path) -> io::Result<bool> {
    remove_stale_probes(dir, D_TYPE_PROBE);
    if let Some(known) = d_type_of_entries(dir)? {
        return Ok(known);
    }
    let probe = tempdir_in(dir, D_TYPE_PROBE)?;
    let result = (|| {
        std::fs::write(probe.join("file"), b"")?;
        Ok(d_type_of_entries(&probe)?.unwrap_or(false))
    })();
    let _ = std::fs::remove_dir_all(&probe);
    result
}

const D_TYPE_PROBE: &str = ".d_type-probe";
const REFLINK_PROBE: &str = ".reflink-probe";

/// Whether the entries of `dir` (other than `.` and `..`) carry their type: `None` when
/// there are none. A filesystem fills `d_type` for every entry or for none.
fn d_type_of_entries(dir: &Path) -> io::Result<Option<bool>> {
    let fd = std::fs::File::open(dir)?;
    for entry in Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        return Ok(Some(entry.file_type() != FileType::Unknown));
    }
    Ok(None)
}

/// Removes the scratch directories `<prefix>-<pid>-<n>` in `parent` whose probing process
/// is gone (it was killed half-way): a probe leaves nothing behind, even across a crash.
fn remove_stale_probes(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
    remove_stale_probes(dir, REFLINK_PROBE);
    let probe = tempdir_in(dir, REFLINK_PROBE)?;
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

    /// An existing entry answers without writing (so the probe works on a full disk), and
    /// the scratch directory of a probe killed half-way is removed.
    #[test]
    fn d_type_reads_existing_entries_and_removes_stale_probes() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 0x7fffffff (above pid_max).
        let stale = dir.path().join(format!("{D_TYPE_PROBE}-2147483647-0"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("file"), b"").unwrap();
        std::fs::write(dir.path().join("metadata.redb"), b"").unwrap();
        assert!(supports_d_type(dir.path()).unwrap());
        assert!(!stale.exists(), "a dead probe's directory is removed");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
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
