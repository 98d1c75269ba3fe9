//! Doctor's storage checks: btrfs (the btrfs backend's filesystem, its quotas and the qgroups
//! of its snapshots) and whether this machine could give overlay snapshots XFS/ext4 project
//! quotas.

use std::path::Path;

use strata_sys::btrfs::{self, QuotaStatus};
use strata_sys::fsinfo::FsType;

use super::{Check, Status, check};
use crate::cli::format::human_size;
use crate::config::{BtrfsQuota, Config};

/// The `btrfs`, `btrfs quota` and `qgroups` checks. `fs` is the type of the filesystem
/// holding `dir`, the root or its nearest existing ancestor.
pub fn btrfs_checks(
    config: &Config,
    served: bool,
    fs: Option<FsType>,
    dir: &Path,
    kernel: Option<(u32, u32)>,
) -> Vec<Check> {
    let on_btrfs = fs.is_some_and(|t| t.magic == btrfs::BTRFS_MAGIC);
    let fs_name = fs.map_or_else(|| "an unknown filesystem".to_owned(), |t| t.to_string());
    let registered = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|s| s.lines().any(|l| l.trim_end().ends_with("\tbtrfs")));
    if !on_btrfs {
        let status = if served { Status::Fail } else { Status::Ok };
        let what = if served {
            "the btrfs backend is served but cannot start"
        } else {
            "the btrfs backend is not served"
        };
        let kernel_note = if registered {
            "the kernel has btrfs"
        } else {
            "btrfs is not in /proc/filesystems"
        };
        return vec![check(
            "btrfs",
            status,
            format!(
                "{} is on {fs_name}, not btrfs: {what} ({kernel_note}; mount a btrfs there to \
                 use it)",
                dir.display()
            ),
        )];
    }
    let mut checks = vec![check(
        "btrfs",
        Status::Ok,
        if served {
            format!(
                "{} is on btrfs: the btrfs backend keeps each snapshot as a subvolume",
                dir.display()
            )
        } else {
            format!(
                "{} is on btrfs: the btrfs backend could be served (--backend btrfs)",
                dir.display()
            )
        },
    )];
    let simple_ok = kernel.is_some_and(|k| k >= (6, 7));
    let simple_note = if simple_ok {
        "this kernel offers simple quotas (6.7+)"
    } else {
        "simple quotas need Linux 6.7"
    };
    let wants_limit = config.btrfs.default_max_size > 0;
    let status = match btrfs::quota_status(dir) {
        Ok(s) => s,
        Err(e) => {
            checks.push(check(
                "btrfs quota",
                Status::Warn,
                format!(
                    "cannot read the quota status of {} ({e}; it needs root)",
                    dir.display()
                ),
            ));
            return checks;
        }
    };
    checks.push(match status {
        QuotaStatus::Off => {
            let enabling = match config.btrfs.quota {
                BtrfsQuota::Keep => None,
                BtrfsQuota::Qgroups => Some("full qgroups"),
                BtrfsQuota::Simple => Some("simple quotas"),
            };
            match enabling {
                Some(mode) => check(
                    "btrfs quota",
                    if mode == "simple quotas" && !simple_ok {
                        Status::Fail
                    } else {
                        Status::Ok
                    },
                    format!("off; the daemon enables {mode} at start ({simple_note})"),
                ),
                None if wants_limit && served => check(
                    "btrfs quota",
                    Status::Fail,
                    "off, but [btrfs] default_max_size needs them: set quota = \"simple\" or \
                     \"qgroups\", or run `btrfs quota enable`",
                ),
                None => check(
                    "btrfs quota",
                    if served { Status::Warn } else { Status::Ok },
                    format!(
                        "off: no size limits (containerd.io/snapshot/max-size is refused) and \
                         Usage walks files; set quota = \"simple\" in [btrfs] ({simple_note})"
                    ),
                ),
            }
        }
        QuotaStatus::On {
            simple,
            inconsistent,
            rescanning,
        } => {
            let mode = if simple {
                "simple quotas"
            } else {
                "full qgroup accounting"
            };
            if inconsistent || rescanning {
                check(
                    "btrfs quota",
                    Status::Warn,
                    format!(
                        "{mode}, {}: limits hold but Usage walks files until the numbers are \
                         right again (`btrfs quota rescan -w`)",
                        if rescanning {
                            "rescanning"
                        } else {
                            "flagged inconsistent"
                        }
                    ),
                )
            } else {
                check(
                    "btrfs quota",
                    Status::Ok,
                    format!("{mode}, consistent: size limits enforced, Usage from qgroups (O(1))"),
                )
            }
        }
    });
    if status != QuotaStatus::Off {
        checks.push(qgroups_check(&config.root.join("btrfs"), dir));
    }
    checks
}

/// How the btrfs backend's snapshots stand in quota groups: how many subvolumes, how many
/// with a limit, how many lack a qgroup.
fn qgroups_check(backend_root: &Path, fs_dir: &Path) -> Check {
    let snapshots = backend_root.join("snapshots");
    let Ok(entries) = std::fs::read_dir(&snapshots) else {
        return check(
            "qgroups",
            Status::Ok,
            format!("{} does not exist yet", snapshots.display()),
        );
    };
    let (mut subvolumes, mut limited, mut missing, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for entry in entries.flatten() {
        let fs = entry.path().join("fs");
        if !btrfs::is_subvolume(&fs).unwrap_or(false) {
            continue;
        }
        subvolumes += 1;
        let Ok(id) = btrfs::subvolume_id(&fs) else {
            continue;
        };
        match btrfs::qgroup_usage(fs_dir, id) {
            Ok(Some(u)) => bytes += u.exclusive,
            _ => missing += 1,
        }
        if btrfs::qgroup_limit(fs_dir, id).ok().flatten().is_some() {
            limited += 1;
        }
    }
    let detail = format!(
        "{subvolumes} snapshot subvolumes, {limited} with a size limit, {} exclusive",
        human_size(i64::try_from(bytes).unwrap_or(i64::MAX))
    );
    if missing > 0 {
        check(
            "qgroups",
            Status::Warn,
            format!("{detail}; {missing} without a qgroup (their Usage walks files)"),
        )
    } else {
        check("qgroups", Status::Ok, detail)
    }
}

/// Whether overlay snapshots could get size limits here from XFS or ext4 project quotas.
/// ext4's need the kernel's generic quota support (`CONFIG_QUOTA`, which registers
/// `/proc/sys/fs/quota`); XFS's need `CONFIG_XFS_QUOTA` (which adds `/proc/fs/xfs/xqmstat`);
/// either way the root's filesystem must be mounted with project quotas (`prjquota`).
pub fn project_quota_check(overlay: bool, fs: Option<FsType>, dir: &Path) -> Check {
    let generic = Path::new("/proc/sys/fs/quota").is_dir();
    let xfs = if Path::new("/proc/fs/xfs/xqmstat").exists() {
        Some(true)
    } else if Path::new("/proc/fs/xfs").is_dir() {
        Some(false)
    } else {
        None
    };
    let kernel = format!(
        "kernel: ext4 project quotas {}, XFS project quotas {}",
        if generic {
            "possible (CONFIG_QUOTA on)"
        } else {
            "impossible (CONFIG_QUOTA off: no /proc/sys/fs/quota)"
        },
        match xfs {
            Some(true) => "possible (CONFIG_XFS_QUOTA on)",
            Some(false) => "impossible (CONFIG_XFS_QUOTA off: no /proc/fs/xfs/xqmstat)",
            None => "unknown (xfs not loaded)",
        }
    );
    let fs_name = fs.and_then(|t| t.name()).unwrap_or("unknown");
    let options = mount_options(dir).unwrap_or_default();
    let prj = options
        .split(',')
        .any(|o| matches!(o, "prjquota" | "pquota" | "pqnoenforce"));
    let kernel_ok = match fs_name {
        "ext4" => generic,
        "xfs" => xfs == Some(true),
        _ => false,
    };
    let (possible, root) = match fs_name {
        "ext4" | "xfs" if prj => (kernel_ok, format!("{fs_name} mounted with project quotas")),
        "ext4" | "xfs" => (
            false,
            format!(
                "{fs_name} mounted without project quotas (xfs needs prjquota; ext4 the \
                 project and quota features and prjquota)"
            ),
        ),
        other => (false, format!("{other}: project quotas need XFS or ext4")),
    };
    let verdict = if possible {
        "overlay snapshots could get project-quota limits here"
    } else {
        "overlay snapshots cannot get size limits here (the btrfs backend's qgroups can)"
    };
    check(
        "project quotas",
        if possible || !overlay {
            Status::Ok
        } else {
            Status::Warn
        },
        format!("{verdict}; {kernel}; root: {root}"),
    )
}

/// The superblock options (`rw,prjquota,…`) of the mount holding `dir`, from
/// `/proc/self/mountinfo`: the mount with the longest mount point that is a prefix of `dir`.
fn mount_options(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let point = point.replace("\\040", " ");
        if !dir.starts_with(&point) {
            continue;
        }
        let superopts = fields.get(dash + 3).copied().unwrap_or_default();
        let mount_opts = fields.get(5).copied().unwrap_or_default();
        if best.as_ref().is_none_or(|(len, _)| point.len() >= *len) {
            best = Some((point.len(), format!("{mount_opts},{superopts}")));
        }
    }
    best.map(|(_, o)| o)
}
