//! What filesystem a path lives on and how much room it has left (`statfs(2)`,
//! `statvfs(3)`), for `strata doctor`.

use std::io;
use std::path::Path;

/// The filesystem holding a path, as `statfs(2)` identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsType {
    /// The superblock magic number (`f_type`).
    pub magic: u32,
}

impl FsType {
    /// The filesystem's usual name, or `None` for a magic number this table lacks.
    pub fn name(self) -> Option<&'static str> {
        fs_name(self.magic)
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown (magic {:#x})", self.magic),
        }
    }
}

/// The type of the filesystem holding `path`.
pub fn fs_type(path: &Path) -> io::Result<FsType> {
    let st = rustix::fs::statfs(path)?;
    // `f_type` is a C long on most targets: mask to the 32-bit magic the kernel defines, so
    // magics above 0x7fff_ffff compare equal whatever sign extension happened.
    #[allow(clippy::unnecessary_cast)]
    let magic = (st.f_type as u64 & 0xffff_ffff) as u32;
    Ok(FsType { magic })
}

/// Names of the filesystems a Strata root may plausibly sit on, by `statfs` magic
/// (`include/uapi/linux/magic.h`).
pub fn fs_name(magic: u32) -> Option<&'static str> {
    Some(match magic {
        // ext2, ext3 and ext4 share one magic number.
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x794C_7630 => "overlay",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0xF2F5_2010 => "f2fs",
        0x2FC1_2FC1 => "zfs",
        0xCA45_1A4E => "bcachefs",
        0xE0F5_E1E2 => "erofs",
        0x7371_7368 => "squashfs",
        0x6573_5546 => "fuse",
        0x4D44 => "vfat",
        0x7366_746E => "ntfs3",
        0x3153_464A => "jfs",
        0x5265_4973 => "reiserfs",
        0x0027_e0eb => "cgroup",
        _ => return None,
    })
}

/// Room left on a filesystem, as an unprivileged writer sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    /// Size of the filesystem in bytes.
    pub bytes_total: u64,
    /// Bytes available to unprivileged writers (`f_bavail`: the reserved blocks excluded).
    pub bytes_available: u64,
    /// Number of inodes the filesystem has (0 where it allocates them dynamically, e.g. btrfs).
    pub inodes_total: u64,
    /// Inodes available to unprivileged writers.
    pub inodes_available: u64,
}

/// The room left on the filesystem holding `path`.
pub fn space(path: &Path) -> io::Result<Space> {
    let st = rustix::fs::statvfs(path)?;
    Ok(Space {
        bytes_total: st.f_blocks.saturating_mul(st.f_frsize),
        bytes_available: st.f_bavail.saturating_mul(st.f_frsize),
        inodes_total: st.f_files,
        inodes_available: st.f_favail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc` is procfs, which the table does not name: the magic is shown instead.
    #[test]
    fn names_and_unknowns() {
        assert_eq!(fs_name(0xEF53), Some("ext4"));
        assert_eq!(
            FsType { magic: 0x9fa0 }.to_string(),
            "unknown (magic 0x9fa0)"
        );
        assert_eq!(fs_type(Path::new("/proc")).unwrap().magic, 0x9fa0);
    }

    /// A real filesystem reports a size and some room.
    #[test]
    fn space_of_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let s = space(dir.path()).unwrap();
        assert!(
            s.bytes_total > 0 && s.bytes_available <= s.bytes_total,
            "{s:?}"
        );
    }
}
