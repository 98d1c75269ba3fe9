//! The btrfs backend: every snapshot's `fs` is a btrfs subvolume. A snapshot of any depth
//! is one O(1) `snapshot` ioctl of its parent's subvolume (writable for Prepare, read-only for
//! View), a parentless Prepare creates an empty subvolume, and Commit only sets the
//! read-only flag: the data never moves and there is no layer limit.
//!
//! Mounts are binds of the snapshot's own subvolume (`rw` when active, `ro` otherwise), the
//! shape of the native backend. containerd's own btrfs snapshotter returns a `btrfs` mount
//! of the root's device with `subvolid=`; a bind reaches the same subvolume without
//! depending on the device's path and also works inside a user namespace.
//!
//! With btrfs quotas enabled, each subvolume's quota group gives two things the other
//! backends lack: a size limit per writable snapshot ([`crate::limits`]; writers past it get
//! `EDQUOT`, "Disk quota exceeded"), and the Usage of an active snapshot without walking its
//! files. Usage then reports the bytes exclusive to the snapshot as of the last btrfs
//! transaction commit (every 30 s by default, or at `sync`), and no inode count (quota
//! groups count bytes only). When quotas are off, or the kernel flags the numbers
//! inconsistent or is rescanning, Usage walks the snapshot and counts what differs from its
//! parent, as containerd's btrfs snapshotter does.

use std::path::Path;

use strata_core::{Ctx, Error, Kind, Mount, Result, Usage};
use strata_meta::Snapshot;
use strata_sys::btrfs::{self, QuotaStatus};

use crate::check::SnapshotFault;
use crate::layout::Layout;
use crate::{BackendKind, Driver, LimitPolicy, OpenError};

/// What the daemon does about btrfs quotas at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuotaSetting {
    /// Leave the filesystem as it is: limits and O(1) Usage work if quotas are on.
    #[default]
    Keep,
    /// Enable full qgroup accounting if quotas are off (a rescan of existing data follows).
    Qgroups,
    /// Enable simple quotas (Linux 6.7+) if quotas are off: cheaper accounting, where each
    /// extent is charged to the subvolume that wrote it.
    Simple,
}

/// Settings of the btrfs backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BtrfsOptions {
    /// Whether to enable quotas at start-up.
    pub quota: QuotaSetting,
    /// The size limit, in bytes, of writable snapshots that carry no
    /// `containerd.io/snapshot/max-size` label (extraction snapshots excepted).
    pub default_max_size: Option<u64>,
}

/// The btrfs driver.
#[derive(Debug, Clone)]
pub struct Btrfs {
    options: BtrfsOptions,
    root: std::path::PathBuf,
}

impl Btrfs {
    /// A btrfs driver for a backend root at `root` (created if absent). Refuses a root that
    /// is not on btrfs, enables quotas as `options.quota` says, and refuses a default limit
    /// while quotas are off (every Prepare would fail).
    pub fn new(root: &Path, options: BtrfsOptions) -> Result<Btrfs, OpenError> {
        std::fs::create_dir_all(root).map_err(|e| OpenError::io("mkdir", root, e))?;
        let fs = strata_sys::fsinfo::fs_type(root).map_err(|e| OpenError::io("statfs", root, e))?;
        if fs.magic != btrfs::BTRFS_MAGIC {
            return Err(OpenError::NotBtrfs {
                path: root.to_owned(),
                filesystem: fs.to_string(),
            });
        }
        let status = quota_status(root)?;
        let wanted = match options.quota {
            QuotaSetting::Keep => None,
            QuotaSetting::Qgroups => Some(false),
            QuotaSetting::Simple => Some(true),
        };
        if let (QuotaStatus::Off, Some(simple)) = (status, wanted) {
            btrfs::enable_quota(root, simple)
                .map_err(|e| OpenError::io("enable quota", root, e))?;
            tracing::info!(root = %root.display(), simple, "enabled btrfs quotas");
        }
        if options.default_max_size.is_some() && quota_status(root)? == QuotaStatus::Off {
            return Err(OpenError::QuotasOff {
                path: root.to_owned(),
            });
        }
        Ok(Btrfs {
            options,
            root: root.to_owned(),
        })
    }
}

fn quota_status(root: &Path) -> Result<QuotaStatus> {
    btrfs::quota_status(root).map_err(|e| Error::io("btrfs quota status", root, e))
}

impl Driver for Btrfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Btrfs
    }

    fn populate(&self, layout: &Layout, dir: &Path, kind: Kind, parent_ids: &[u64]) -> Result<()> {
        let fs = dir.join("fs");
        let readonly = kind != Kind::Active;
        match parent_ids.first() {
            Some(&parent) => {
                let source = layout.fs(parent);
                btrfs::snapshot(&source, &fs, readonly)
                    .map_err(|e| Error::io("btrfs snapshot", &fs, e))?;
            }
            None => {
                btrfs::create_subvolume(&fs)
                    .map_err(|e| Error::io("btrfs subvolume create", &fs, e))?;
                // The kernel applies the daemon's umask (077); containerd's roots are 0755.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Error::io("chmod", &fs, e))?;
                if readonly {
                    btrfs::set_readonly(&fs, true)
                        .map_err(|e| Error::io("btrfs set read-only", &fs, e))?;
                }
            }
        }
        Ok(())
    }

    fn mounts(&self, layout: &Layout, snapshot: &Snapshot) -> Vec<Mount> {
        btrfs_mounts(layout, snapshot)
    }

    fn can_rebase(&self) -> bool {
        false
    }

    fn destroy(&self, dir: &Path) -> std::io::Result<()> {
        remove_snapshot_dir(dir)
    }

    fn seals(&self) -> bool {
        true
    }

    fn seal(&self, layout: &Layout, id: u64, sealed: bool) -> Result<bool> {
        let fs = layout.fs(id);
        let is = btrfs::is_readonly(&fs).map_err(|e| Error::io("btrfs get flags", &fs, e))?;
        if is == sealed {
            return Ok(false);
        }
        btrfs::set_readonly(&fs, sealed).map_err(|e| Error::io("btrfs set flags", &fs, e))?;
        Ok(true)
    }

    fn usage(&self, ctx: &Ctx, layout: &Layout, snapshot: &Snapshot) -> Result<Option<Usage>> {
        let fs = layout.fs(snapshot.id);
        let root = layout.root();
        if quota_status(root)?.accounting() {
            let subvol = match btrfs::subvolume_id(&fs) {
                Ok(subvol) => subvol,
                // Removed meanwhile: the engine's walk says NotFound with the key.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("btrfs subvolume id", &fs, e)),
            };
            let usage = btrfs::qgroup_usage(root, subvol)
                .map_err(|e| Error::io("btrfs qgroup usage", &fs, e))?;
            if let Some(u) = usage {
                return Ok(Some(Usage {
                    size: i64::try_from(u.exclusive).unwrap_or(i64::MAX),
                    inodes: 0,
                }));
            }
        }
        // No accounting: what differs from the parent, as containerd's btrfs snapshotter
        // measures (a plain walk would count the parent's files as the snapshot's own).
        diff_usage(ctx, layout, snapshot)
    }

    fn commit_usage(
        &self,
        ctx: &Ctx,
        layout: &Layout,
        snapshot: &Snapshot,
    ) -> Result<Option<Usage>> {
        // Exact, with inodes, and what `strata fsck` checks: the walk against the parent.
        diff_usage(ctx, layout, snapshot)
    }

    fn check_snapshot(
        &self,
        layout: &Layout,
        id: u64,
        kind: Kind,
    ) -> std::io::Result<Option<SnapshotFault>> {
        Ok(match subvolume_state(layout, id, kind)? {
            SubvolumeState::Good => None,
            SubvolumeState::NotASubvolume => Some(SnapshotFault::NotASubvolume),
            SubvolumeState::WrongFlag { readonly } => {
                Some(SnapshotFault::ReadOnlyFlag { readonly })
            }
        })
    }

    fn limits(&self) -> Option<LimitPolicy> {
        Some(LimitPolicy {
            default: self.options.default_max_size,
        })
    }

    fn set_limit(&self, fs: &Path, bytes: Option<u64>) -> Result<()> {
        match btrfs::set_qgroup_limit(fs, bytes) {
            Ok(()) => Ok(()),
            // ENOTCONN: quotas are not enabled.
            Err(e) if e.raw_os_error() == Some(107) => Err(Error::FailedPrecondition(format!(
                "a size limit needs btrfs quotas, which are off on {}: enable them (`btrfs \
                 quota enable {}`, or `quota = \"simple\"` in the [btrfs] configuration)",
                self.root.display(),
                self.root.display()
            ))),
            Err(e) => Err(Error::io("btrfs qgroup limit", fs, e)),
        }
    }
}

/// What `snapshot`'s subvolume holds beyond its parent's (inodes new or changed since the
/// snapshot was taken); `None` for a snapshot without parent, whose whole tree is its own
/// (the engine walks it), or one removed meanwhile.
fn diff_usage(ctx: &Ctx, layout: &Layout, snapshot: &Snapshot) -> Result<Option<Usage>> {
    let Some(&parent) = snapshot.parent_ids.first() else {
        return Ok(None);
    };
    let fs = layout.fs(snapshot.id);
    let stop = || ctx.is_done();
    match strata_sys::usage::diff_usage_until(&fs, &layout.fs(parent), &stop) {
        Ok(du) => Ok(Some(Usage {
            size: du.bytes as i64,
            inodes: du.inodes as i64,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            Err(ctx.check().err().unwrap_or(Error::Cancelled))
        }
        Err(e) => Err(Error::io("usage walk", &fs, e)),
    }
}

/// Deletes a snapshot directory of the btrfs backend: its `fs` subvolume (read-only or not,
/// with any subvolumes nested in it) by the destroy ioctl, then the directory. What Cleanup
/// does, and `strata fsck --repair` for an orphan.
pub fn remove_snapshot_dir(dir: &Path) -> std::io::Result<()> {
    let fs = dir.join("fs");
    match btrfs::is_subvolume(&fs) {
        Ok(true) => btrfs::destroy_subvolume(&fs)?,
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_dir_all(dir)
}

/// How snapshot `id`'s `fs` stands as a subvolume, for `strata fsck`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubvolumeState {
    /// A subvolume, read-only exactly when the snapshot's kind says (active: writable).
    Good,
    /// A plain directory: not made by this backend (restored by a copy?); it works, but its
    /// snapshots and removal cost a copy and a walk.
    NotASubvolume,
    /// A subvolume whose read-only flag disagrees with the snapshot's kind.
    WrongFlag {
        /// The flag found.
        readonly: bool,
    },
}

/// Inspects snapshot `id`'s `fs` for a snapshot of `kind`.
pub fn subvolume_state(layout: &Layout, id: u64, kind: Kind) -> std::io::Result<SubvolumeState> {
    let fs = layout.fs(id);
    if !btrfs::is_subvolume(&fs)? {
        return Ok(SubvolumeState::NotASubvolume);
    }
    let readonly = btrfs::is_readonly(&fs)?;
    Ok(if readonly == (kind != Kind::Active) {
        SubvolumeState::Good
    } else {
        SubvolumeState::WrongFlag { readonly }
    })
}

/// The mounts of a btrfs snapshot: a bind of its own subvolume, read-write when active and
/// read-only otherwise (a view is its own read-only snapshot of the parent).
pub fn btrfs_mounts(layout: &Layout, snapshot: &Snapshot) -> Vec<Mount> {
    let mode = if snapshot.kind == Kind::Active {
        "rw"
    } else {
        "ro"
    };
    vec![Mount {
        kind: "bind".into(),
        source: layout.fs(snapshot.id).display().to_string(),
        options: vec!["rbind".into(), mode.into()],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind binds its own subvolume: views have one of their own.
    #[test]
    fn mounts_bind_own_subvolume() {
        let layout = Layout::new(Path::new("/r"));
        for (kind, parents, mode) in [
            (Kind::Active, vec![], "rw"),
            (Kind::Active, vec![4, 1], "rw"),
            (Kind::View, vec![4, 1], "ro"),
            (Kind::View, vec![], "ro"),
        ] {
            let got = btrfs_mounts(
                &layout,
                &Snapshot {
                    id: 9,
                    kind,
                    parent_ids: parents,
                },
            );
            assert_eq!(
                got,
                vec![Mount {
                    kind: "bind".into(),
                    source: "/r/snapshots/9/fs".into(),
                    options: vec!["rbind".into(), mode.into()],
                }],
                "{kind:?}"
            );
        }
    }
}
