//! btrfs subvolumes and quota groups, through the kernel's ioctls (`linux/btrfs.h`,
//! `linux/btrfs_tree.h`): create, snapshot (writable or read-only), destroy, the read-only
//! flag, quota status, and per-subvolume qgroup limits and accounting.
//!
//! Each ioctl is one small `unsafe` call whose argument layout mirrors the kernel's uapi
//! struct field for field; the structs are checked against the kernel's sizes by the tests.
//! Everything needs `CAP_SYS_ADMIN` except subvolume creation and snapshots.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::ioctl::{Getter, Opcode, Setter, Updater, ioctl, opcode};

const MAGIC: u8 = 0x94;
/// `BTRFS_PATH_NAME_MAX`.
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_NAME_MAX`.
const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_SUBVOL_RDONLY`.
const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root directory.
pub const SUBVOLUME_ROOT_INO: u64 = 256;
/// `BTRFS_QUOTA_TREE_OBJECTID`.
const QUOTA_TREE: u64 = 8;
/// `BTRFS_QGROUP_STATUS_KEY`, `BTRFS_QGROUP_INFO_KEY`, `BTRFS_QGROUP_LIMIT_KEY`.
const QGROUP_STATUS_KEY: u32 = 240;
const QGROUP_INFO_KEY: u32 = 242;
const QGROUP_LIMIT_KEY: u32 = 244;
/// `BTRFS_QGROUP_LIMIT_MAX_EXCL`.
const LIMIT_MAX_EXCL: u64 = 1 << 1;
/// The value that clears a limit (`CLEAR_VALUE` in `fs/btrfs/qgroup.c`).
const LIMIT_CLEAR: u64 = u64::MAX;
/// `BTRFS_QUOTA_CTL_ENABLE`, `BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA` (Linux 6.7).
const QUOTA_CTL_ENABLE: u64 = 1;
const QUOTA_CTL_ENABLE_SIMPLE: u64 = 4;
/// `BTRFS_QGROUP_STATUS_FLAG_*`.
const STATUS_ON: u64 = 1 << 0;
const STATUS_RESCAN: u64 = 1 << 1;
const STATUS_INCONSISTENT: u64 = 1 << 2;
const STATUS_SIMPLE_MODE: u64 = 1 << 3;
/// The statfs magic of btrfs.
pub const BTRFS_MAGIC: u32 = 0x9123_683E;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (the `size`/`qgroup_inherit` union as `unused`, the
/// `name`/`devid`/`subvolid` union as `name`).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// `struct btrfs_qgroup_limit` inside `struct btrfs_ioctl_qgroup_limit_args`.
#[repr(C)]
struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: [u64; 4],
}

/// `struct btrfs_ioctl_search_args`: a key and a 4 KiB page of results.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; 4096 - std::mem::size_of::<SearchKey>()],
}

/// `struct btrfs_ioctl_search_header`, as it precedes each item in the results.
const SEARCH_HEADER_LEN: usize = 32;

const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 23);
const SUBVOL_CREATE: Opcode = opcode::write::<VolArgs>(MAGIC, 14);
const SNAP_DESTROY: Opcode = opcode::write::<VolArgs>(MAGIC, 15);
const SUBVOL_GETFLAGS: Opcode = opcode::read::<u64>(MAGIC, 25);
const SUBVOL_SETFLAGS: Opcode = opcode::write::<u64>(MAGIC, 26);
const INO_LOOKUP: Opcode = opcode::read_write::<InoLookupArgs>(MAGIC, 18);
const TREE_SEARCH: Opcode = opcode::read_write::<SearchArgs>(MAGIC, 17);
const QUOTA_CTL: Opcode = opcode::read_write::<QuotaCtlArgs>(MAGIC, 40);
const QGROUP_CREATE: Opcode = opcode::write::<QgroupCreateArgs>(MAGIC, 42);
// The kernel declares it `_IOR` although it only reads the argument.
const QGROUP_LIMIT: Opcode = opcode::read::<QgroupLimitArgs>(MAGIC, 43);

fn open_dir(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Copies `name` into a NUL-terminated fixed-size buffer; refuses names that do not fit,
/// contain a NUL or a `/`, or are `.`/`..`.
fn fill_name<const N: usize>(buf: &mut [u8; N], name: &OsStr) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() >= N
        || bytes.contains(&0)
        || bytes.contains(&b'/')
        || bytes == b"."
        || bytes == b".."
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid subvolume name {name:?}"),
        ));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Splits `path` into its parent directory (opened) and its last component.
fn parent_and_name(path: &Path) -> io::Result<(File, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no final component", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((open_dir(parent)?, name))
}

/// Whether the filesystem holding `path` is btrfs.
pub fn is_btrfs(path: &Path) -> io::Result<bool> {
    Ok(crate::fsinfo::fs_type(path)?.magic == BTRFS_MAGIC)
}

/// Whether `path` is the root directory of a btrfs subvolume (a directory with inode
/// number 256 on btrfs). Does not follow a final symlink.
pub fn is_subvolume(path: &Path) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(meta.is_dir() && meta.ino() == SUBVOLUME_ROOT_INO && is_btrfs(path)?)
}

/// Creates an empty subvolume at `path` (`BTRFS_IOC_SUBVOL_CREATE`): a directory owned by
/// the caller, mode 0755 less the umask.
pub fn create_subvolume(path: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let mut args = VolArgs {
        fd: 0,
        name: [0; PATH_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SUBVOL_CREATE takes a `struct btrfs_ioctl_vol_args`, which `VolArgs` lays out
    // exactly (checked by `struct_sizes`); the name is NUL-terminated and the kernel only
    // reads the struct.
    unsafe { ioctl(&parent, Setter::<SUBVOL_CREATE, VolArgs>::new(args)) }?;
    Ok(())
}

/// Makes `dest` a snapshot of the subvolume `source` (`BTRFS_IOC_SNAP_CREATE_V2`),
/// read-only when `readonly`. O(1): the snapshot shares every extent and tree block with its
/// source until either is written. Subvolumes nested in `source` appear in the snapshot as
/// empty directories.
pub fn snapshot(source: &Path, dest: &Path, readonly: bool) -> io::Result<()> {
    let src = open_dir(source)?;
    let (parent, name) = parent_and_name(dest)?;
    let mut args = VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if readonly { SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; SUBVOL_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SNAP_CREATE_V2 takes a `struct btrfs_ioctl_vol_args_v2`, laid out by
    // `VolArgsV2` (checked by `struct_sizes`); `fd` is an open descriptor that outlives the
    // call, the flags carry no `QGROUP_INHERIT` (so the union holds no pointer) and the
    // kernel only reads the struct.
    unsafe { ioctl(&parent, Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args)) }?;
    Ok(())
}

/// Destroys the subvolume at `path` (`BTRFS_IOC_SNAP_DESTROY`), read-only or not, with
/// everything in it; its space is reclaimed in the background by the filesystem. Subvolumes
/// nested inside it (a container may create some: creating one needs no privilege) are
/// destroyed first. `EINVAL` if `path` is not a subvolume.
pub fn destroy_subvolume(path: &Path) -> io::Result<()> {
    match destroy_one(path) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) => {
            // It holds subvolumes, which must go first; removing their entries needs the
            // subvolume writable.
            if is_readonly(path)? {
                set_readonly(path, false)?;
            }
            for nested in nested_subvolumes(path)? {
                destroy_subvolume(&nested)?;
            }
            destroy_one(path)
        }
        other => other,
    }
}

fn destroy_one(path: &Path) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let mut args = VolArgs {
        fd: 0,
        name: [0; PATH_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SNAP_DESTROY takes a `struct btrfs_ioctl_vol_args` (laid out by `VolArgs`,
    // checked by `struct_sizes`) naming an entry of the directory it is called on; the kernel
    // only reads it.
    unsafe { ioctl(&parent, Setter::<SNAP_DESTROY, VolArgs>::new(args)) }?;
    Ok(())
}

/// The roots of the subvolumes directly nested in subvolume `root` (not those nested in
/// them), found by walking `root` without crossing into them.
fn nested_subvolumes(root: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let meta = entry.metadata()?;
            // Each subvolume has its own st_dev; its root is inode 256.
            if meta.dev() != dev && meta.ino() == SUBVOLUME_ROOT_INO {
                found.push(entry.path());
            } else if meta.dev() == dev {
                stack.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// Whether the subvolume at `path` is read-only (`BTRFS_IOC_SUBVOL_GETFLAGS`).
pub fn is_readonly(path: &Path) -> io::Result<bool> {
    Ok(get_flags(path)? & SUBVOL_RDONLY != 0)
}

fn get_flags(path: &Path) -> io::Result<u64> {
    let dir = open_dir(path)?;
    // SAFETY: SUBVOL_GETFLAGS writes one `__u64` into the buffer it is given, which the
    // `Getter` provides.
    Ok(unsafe { ioctl(&dir, Getter::<SUBVOL_GETFLAGS, u64>::new()) }?)
}

/// Makes the subvolume at `path` read-only or writable (`BTRFS_IOC_SUBVOL_SETFLAGS`),
/// keeping its other flags. A read-only subvolume refuses every change to its content with
/// `EROFS`, whoever writes and through whatever mount.
pub fn set_readonly(path: &Path, readonly: bool) -> io::Result<()> {
    let dir = open_dir(path)?;
    // SAFETY: as in `get_flags`.
    let flags = unsafe { ioctl(&dir, Getter::<SUBVOL_GETFLAGS, u64>::new()) }?;
    let wanted = if readonly {
        flags | SUBVOL_RDONLY
    } else {
        flags & !SUBVOL_RDONLY
    };
    if wanted == flags {
        return Ok(());
    }
    // SAFETY: SUBVOL_SETFLAGS reads one `__u64` of flags from the pointer it is given.
    unsafe { ioctl(&dir, Setter::<SUBVOL_SETFLAGS, u64>::new(wanted)) }?;
    Ok(())
}

/// The id of the subvolume holding `path` (`BTRFS_IOC_INO_LOOKUP`); for a subvolume's root
/// directory, that subvolume's own id. Its level-0 quota group is `0/<id>`.
pub fn subvolume_id(path: &Path) -> io::Result<u64> {
    let dir = open_dir(path)?;
    let mut args = InoLookupArgs {
        treeid: 0,
        objectid: SUBVOLUME_ROOT_INO,
        name: [0; 4080],
    };
    // SAFETY: INO_LOOKUP reads and writes a `struct btrfs_ioctl_ino_lookup_args`, which
    // `InoLookupArgs` lays out (checked by `struct_sizes`); with tree id 0 it fills in the
    // id of the tree holding the descriptor.
    unsafe { ioctl(&dir, Updater::<INO_LOOKUP, InoLookupArgs>::new(&mut args)) }?;
    Ok(args.treeid)
}

/// How quotas stand on a btrfs filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaStatus {
    /// Quotas are disabled: no qgroup accounting, no limits.
    Off,
    /// Quotas are enabled.
    On {
        /// Simple quotas (Linux 6.7+): each extent is charged to the subvolume that wrote it,
        /// with no back-reference walks; a snapshot is charged only for what it writes.
        simple: bool,
        /// The numbers are known to be out of date until a rescan (`btrfs quota rescan`).
        inconsistent: bool,
        /// A rescan is running.
        rescanning: bool,
    },
}

impl QuotaStatus {
    /// Whether the qgroup numbers can be trusted now: quotas on, consistent, not rescanning.
    pub fn accounting(self) -> bool {
        matches!(
            self,
            QuotaStatus::On {
                inconsistent: false,
                rescanning: false,
                ..
            }
        )
    }
}

/// The quota status of the filesystem holding `path`, from the quota tree's status item.
/// Needs `CAP_SYS_ADMIN`.
pub fn quota_status(path: &Path) -> io::Result<QuotaStatus> {
    match search_one(path, QUOTA_TREE, 0, QGROUP_STATUS_KEY, 0)? {
        None => Ok(QuotaStatus::Off),
        Some(item) => {
            // struct btrfs_qgroup_status_item: version, generation, flags, … (little endian).
            let flags = le64(&item, 16)?;
            Ok(if flags & STATUS_ON == 0 {
                QuotaStatus::Off
            } else {
                QuotaStatus::On {
                    simple: flags & STATUS_SIMPLE_MODE != 0,
                    inconsistent: flags & STATUS_INCONSISTENT != 0,
                    rescanning: flags & STATUS_RESCAN != 0,
                }
            })
        }
    }
}

/// Enables quotas on the filesystem holding `path` (`BTRFS_IOC_QUOTA_CTL`): simple quotas
/// when `simple` (Linux 6.7+; `EINVAL` before), full qgroup accounting otherwise, which
/// starts a rescan of existing data. Does nothing if quotas are already on.
pub fn enable_quota(path: &Path, simple: bool) -> io::Result<()> {
    let dir = open_dir(path)?;
    let mut args = QuotaCtlArgs {
        cmd: if simple {
            QUOTA_CTL_ENABLE_SIMPLE
        } else {
            QUOTA_CTL_ENABLE
        },
        status: 0,
    };
    // SAFETY: QUOTA_CTL takes a `struct btrfs_ioctl_quota_ctl_args` (two `__u64`s, laid out
    // by `QuotaCtlArgs`).
    unsafe { ioctl(&dir, Updater::<QUOTA_CTL, QuotaCtlArgs>::new(&mut args)) }?;
    Ok(())
}

/// A qgroup's accounting, as of the last committed btrfs transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QgroupUsage {
    /// Bytes referenced by the subvolume, shared ones included.
    pub referenced: u64,
    /// Bytes referenced by this subvolume alone (with simple quotas: bytes it wrote).
    pub exclusive: u64,
}

/// The accounting of the level-0 qgroup of subvolume `subvol_id` on the filesystem holding
/// `path`; `None` if that qgroup does not exist (or quotas are off). The figures lag writes
/// until the transaction that carries them commits (`syncfs` forces one). Needs
/// `CAP_SYS_ADMIN`.
pub fn qgroup_usage(path: &Path, subvol_id: u64) -> io::Result<Option<QgroupUsage>> {
    match search_one(path, QUOTA_TREE, 0, QGROUP_INFO_KEY, subvol_id)? {
        None => Ok(None),
        // struct btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr.
        Some(item) => Ok(Some(QgroupUsage {
            referenced: le64(&item, 8)?,
            exclusive: le64(&item, 24)?,
        })),
    }
}

/// The exclusive-bytes limit of the level-0 qgroup of subvolume `subvol_id`; `None` when it
/// has none or does not exist. Needs `CAP_SYS_ADMIN`.
pub fn qgroup_limit(path: &Path, subvol_id: u64) -> io::Result<Option<u64>> {
    match search_one(path, QUOTA_TREE, 0, QGROUP_LIMIT_KEY, subvol_id)? {
        None => Ok(None),
        // struct btrfs_qgroup_limit_item: flags, max_rfer, max_excl, rsv_rfer, rsv_excl.
        Some(item) => {
            let flags = le64(&item, 0)?;
            Ok((flags & LIMIT_MAX_EXCL != 0).then_some(le64(&item, 16)?))
        }
    }
}

/// Sets (`Some(bytes)`) or clears (`None`) the limit on bytes exclusive to the subvolume at
/// `subvol` (`BTRFS_IOC_QGROUP_LIMIT` on its level-0 qgroup). Past the limit, writes into the
/// subvolume fail with `EDQUOT`. Creates the qgroup if it is missing (a subvolume made
/// before quotas were enabled on an old kernel). Needs quotas enabled and `CAP_SYS_ADMIN`.
pub fn set_qgroup_limit(subvol: &Path, max_exclusive: Option<u64>) -> io::Result<()> {
    let dir = open_dir(subvol)?;
    let limit = |dir: &File| {
        let args = QgroupLimitArgs {
            // 0: the qgroup of the subvolume the descriptor is in.
            qgroupid: 0,
            flags: LIMIT_MAX_EXCL,
            max_rfer: 0,
            max_excl: max_exclusive.unwrap_or(LIMIT_CLEAR),
            rsv_rfer: 0,
            rsv_excl: 0,
        };
        // SAFETY: QGROUP_LIMIT reads a `struct btrfs_ioctl_qgroup_limit_args` (a qgroup id
        // and a `struct btrfs_qgroup_limit`, laid out by `QgroupLimitArgs`).
        unsafe { ioctl(dir, Setter::<QGROUP_LIMIT, QgroupLimitArgs>::new(args)) }
    };
    match limit(&dir) {
        Err(rustix::io::Errno::NOENT) => {
            create_qgroup(subvol, subvolume_id(subvol)?)?;
            limit(&dir)?;
        }
        other => other?,
    }
    Ok(())
}

/// Creates the level-0 qgroup `0/<subvol_id>` on the filesystem holding `path`
/// (`BTRFS_IOC_QGROUP_CREATE`). `EEXIST` if it exists.
pub fn create_qgroup(path: &Path, subvol_id: u64) -> io::Result<()> {
    let dir = open_dir(path)?;
    let args = QgroupCreateArgs {
        create: 1,
        qgroupid: subvol_id,
    };
    // SAFETY: QGROUP_CREATE reads a `struct btrfs_ioctl_qgroup_create_args` (two `__u64`s,
    // laid out by `QgroupCreateArgs`).
    unsafe { ioctl(&dir, Setter::<QGROUP_CREATE, QgroupCreateArgs>::new(args)) }?;
    Ok(())
}

/// Looks up the one item `(objectid, item_type, offset)` of tree `tree_id` with
/// `BTRFS_IOC_TREE_SEARCH`; `None` if it (or the tree) does not exist.
fn search_one(
    path: &Path,
    tree_id: u64,
    objectid: u64,
    item_type: u32,
    offset: u64,
) -> io::Result<Option<Vec<u8>>> {
    let dir = open_dir(path)?;
    let mut args = SearchArgs {
        key: SearchKey {
            tree_id,
            min_objectid: objectid,
            max_objectid: objectid,
            min_offset: offset,
            max_offset: offset,
            min_transid: 0,
            max_transid: u64::MAX,
            min_type: item_type,
            max_type: item_type,
            nr_items: 1,
            ..SearchKey::default()
        },
        buf: [0; 4096 - std::mem::size_of::<SearchKey>()],
    };
    // SAFETY: TREE_SEARCH reads the key of a `struct btrfs_ioctl_search_args` (laid out by
    // `SearchArgs`, checked by `struct_sizes`) and writes at most `buf`'s length of results
    // into it, then the number of items into the key.
    match unsafe { ioctl(&dir, Updater::<TREE_SEARCH, SearchArgs>::new(&mut args)) } {
        // The quota tree does not exist while quotas are off.
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        other => other?,
    }
    if args.key.nr_items == 0 {
        return Ok(None);
    }
    let header = &args.buf[..SEARCH_HEADER_LEN];
    let found_type = u32::from_ne_bytes(header[24..28].try_into().expect("4 bytes"));
    let len = u32::from_ne_bytes(header[28..32].try_into().expect("4 bytes")) as usize;
    if found_type != item_type || SEARCH_HEADER_LEN + len > args.buf.len() {
        return Ok(None);
    }
    Ok(Some(
        args.buf[SEARCH_HEADER_LEN..SEARCH_HEADER_LEN + len].to_vec(),
    ))
}

fn le64(item: &[u8], at: usize) -> io::Result<u64> {
    item.get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short btrfs tree item"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The argument structs have the kernel's sizes (from `linux/btrfs.h`): a wrong size
    /// would give a different ioctl number, or let the kernel read past the buffer.
    #[test]
    fn struct_sizes() {
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<VolArgsV2>(), 4096);
        assert_eq!(std::mem::size_of::<InoLookupArgs>(), 4096);
        assert_eq!(std::mem::size_of::<SearchKey>(), 104);
        assert_eq!(std::mem::size_of::<SearchArgs>(), 4096);
        assert_eq!(std::mem::size_of::<QgroupLimitArgs>(), 48);
        // The opcodes of two of them, as the kernel headers compute them.
        assert_eq!(SUBVOL_GETFLAGS as u64, 0x8008_9419);
        assert_eq!(SNAP_DESTROY as u64, 0x5000_940f);
    }

    /// Names that would escape the directory or overflow the buffer are refused.
    #[test]
    fn names_are_checked() {
        let mut buf = [0u8; 8];
        assert!(fill_name(&mut buf, OsStr::new("ok")).is_ok());
        for bad in ["", ".", "..", "a/b", "12345678"] {
            assert!(
                fill_name(&mut [0u8; 8], OsStr::new(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
