//! Working inside a directory tree that untrusted names must never leave.
//!
//! An image layer names its entries with paths and links chosen by whoever built it. A
//! [`Tree`] holds a descriptor of the tree's root and resolves every path with `openat2(2)`
//! and `RESOLVE_IN_ROOT`, so `..`, absolute paths and symlinks — absolute or relative,
//! planted by earlier entries of the same layer — are resolved as if the root were `/`, the
//! way containerd's `fs.RootPath` does, but by the kernel and without a race. Operations on
//! an entry then go through its parent's descriptor ([`Dir`]) and a single name component,
//! never following a symlink in the last component.
//!
//! Calls that Linux offers only by path (`lsetxattr`, `llistxattr`, recursive removal) use
//! the parent's `/proc/self/fd/N/NAME`: the kernel resolves the magic link to the parent
//! descriptor itself, and the last component is not followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawMode, ResolveFlags, Timespec, Timestamps};

/// The root of a tree that entries must stay inside.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

/// An open directory inside a [`Tree`], the parent of the entries an operation names.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What kind of special file [`Dir::mknod`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// A character device with the given major and minor numbers.
    Char(u32, u32),
    /// A block device with the given major and minor numbers.
    Block(u32, u32),
    /// A named pipe.
    Fifo,
}

/// The metadata of an entry, not following a final symlink.
#[derive(Debug, Clone, Copy)]
pub struct EntryStat {
    /// The file type bits and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device number of a device file.
    pub rdev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard link count.
    pub nlink: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Access time, seconds and nanoseconds.
    pub atime: (i64, u32),
}

impl EntryStat {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc_s_ifmt() == 0o040000
    }

    /// Whether the entry is a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & libc_s_ifmt() == 0o120000
    }

    /// Whether the entry is a 0/0 character device: an overlayfs whiteout.
    pub fn is_whiteout(&self) -> bool {
        self.mode & libc_s_ifmt() == 0o020000 && self.rdev == 0
    }
}

impl From<&rustix::fs::Stat> for EntryStat {
    fn from(st: &rustix::fs::Stat) -> EntryStat {
        EntryStat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            rdev: st.st_rdev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            atime: (st.st_atime, st.st_atime_nsec as u32),
        }
    }
}

const fn libc_s_ifmt() -> u32 {
    0o170000
}

impl Tree {
    /// Opens the directory `path` as the root of a tree.
    pub fn open(path: &Path) -> io::Result<Tree> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root,
            path: path.to_owned(),
        })
    }

    /// The path the tree was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tree's root directory.
    pub fn root(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.root.try_clone()?,
        })
    }

    /// Opens the directory `rel` (relative, or absolute meaning relative to the root),
    /// resolving every component — `..`, symlinks — inside the tree.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let fd = rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(Dir { fd })
    }
}

/// Splits a layer entry's path into its parent (relative, cleaned of `.` and leading `/`,
/// `..` kept for the kernel to clamp) and its last component. `None` when the path names
/// the root itself.
pub fn split_entry(path: &Path) -> Option<(PathBuf, OsString)> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => parts.push(OsStr::new("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    // A trailing `..` names a directory above: resolve it lexically against the root, as
    // containerd's `filepath.Clean` on the header name does.
    let mut clean: Vec<&OsStr> = Vec::new();
    for p in parts {
        if p == ".." {
            clean.pop();
        } else {
            clean.push(p);
        }
    }
    let name = clean.pop()?.to_owned();
    Some((clean.iter().collect(), name))
}

impl Dir {
    /// The `/proc/self/fd` path of `name` in this directory, for path-only system calls.
    fn proc_path(&self, name: &OsStr) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        p.push(name);
        p
    }

    /// The metadata of `name`, `None` if it does not exist.
    pub fn lstat(&self, name: &OsStr) -> io::Result<Option<EntryStat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(EntryStat::from(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The metadata of this directory itself.
    pub fn stat_self(&self) -> io::Result<EntryStat> {
        Ok(EntryStat::from(&rustix::fs::fstat(&self.fd)?))
    }

    /// Sets the extended attribute `key` of this directory itself.
    pub fn set_own_xattr(&self, key: &OsStr, value: &[u8]) -> io::Result<()> {
        rustix::fs::fsetxattr(&self.fd, key, value, rustix::fs::XattrFlags::empty())?;
        Ok(())
    }

    /// The extended attributes of this directory itself, sorted by key.
    pub fn own_xattrs(&self) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        let mut names = vec![0u8; 4096];
        let n = loop {
            match rustix::fs::flistxattr(&self.fd, &mut names[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
                Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        };
        let mut out = Vec::new();
        for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
            let key = OsStr::from_bytes(key);
            let mut value = vec![0u8; 256];
            loop {
                match rustix::fs::fgetxattr(&self.fd, key, &mut value[..]) {
                    Ok(n) => {
                        value.truncate(n);
                        out.push((key.to_owned(), value));
                        break;
                    }
                    Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 16, 0),
                    Err(rustix::io::Errno::NODATA) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens the subdirectory `name` (not following a symlink).
    pub fn subdir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd })
    }

    /// Creates the directory `name` with permission bits `mode` (before the umask).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode as RawMode))?;
        Ok(())
    }

    /// Creates the regular file `name`, which must not exist, for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode as RawMode),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `name` for reading (not following a symlink).
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `name` pointing at `target` (stored as is, never resolved here).
    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name)?;
        Ok(())
    }

    /// Reads the target of the symlink `name`.
    pub fn readlink(&self, name: &OsStr) -> io::Result<OsString> {
        let target = rustix::fs::readlinkat(&self.fd, name, Vec::new())?;
        Ok(OsStr::from_bytes(target.as_bytes()).to_owned())
    }

    /// Makes `name` a hard link to `from_name` in `from` (a final symlink is linked itself,
    /// not followed).
    pub fn hardlink(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        rustix::fs::linkat(&from.fd, from_name, &self.fd, name, AtFlags::empty())?;
        Ok(())
    }

    /// Creates the special file `name`.
    pub fn mknod(&self, name: &OsStr, special: Special, mode: u32) -> io::Result<()> {
        let perm = Mode::from_raw_mode((mode & 0o7777) as RawMode);
        let (kind, dev) = match special {
            Special::Char(ma, mi) => (FileType::CharacterDevice, rustix::fs::makedev(ma, mi)),
            Special::Block(ma, mi) => (FileType::BlockDevice, rustix::fs::makedev(ma, mi)),
            Special::Fifo => (FileType::Fifo, 0),
        };
        rustix::fs::mknodat(&self.fd, name, kind, perm, dev)?;
        Ok(())
    }

    /// Sets the owner of `name` (not following a symlink).
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        rustix::fs::chownat(
            &self.fd,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Sets the permission bits (including setuid, setgid, sticky) of `name`, which must not
    /// be a symlink (Linux symlinks have no mode of their own).
    pub fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        rustix::fs::chmodat(
            &self.fd,
            name,
            Mode::from_raw_mode((mode & 0o7777) as RawMode),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Sets the access and modification times of `name` (not following a symlink).
    pub fn set_times(&self, name: &OsStr, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
        let ts = |(s, ns): (i64, u32)| Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        rustix::fs::utimensat(
            &self.fd,
            name,
            &Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Sets the extended attribute `key` of `name` (not following a symlink).
    pub fn set_xattr(&self, name: &OsStr, key: &OsStr, value: &[u8]) -> io::Result<()> {
        rustix::fs::lsetxattr(
            self.proc_path(name),
            key,
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
        Ok(())
    }

    /// The extended attributes of `name` (not following a symlink), sorted by key.
    pub fn xattrs(&self, name: &OsStr) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        crate::copy::xattrs_of(&self.proc_path(name))
    }

    /// Removes `name`, whatever it is; a directory with everything under it. Absent is fine.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::ISDIR) => {}
            Err(e) => return Err(e.into()),
        }
        // std's remove_dir_all does not follow symlinks inside the tree it removes.
        match std::fs::remove_dir_all(self.proc_path(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The names in this directory (without `.` and `..`), unsorted.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(fd.as_fd())? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(names)
    }
}

/// Sets the owner of an open file.
pub fn set_file_owner(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::fchown(
        file,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    Ok(())
}

/// Sets the permission bits (setuid, setgid and sticky included) of an open file.
pub fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(file, Mode::from_raw_mode((mode & 0o7777) as RawMode))?;
    Ok(())
}

/// Sets the access and modification times of an open file.
pub fn set_file_times(file: &File, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
    let ts = |(s, ns): (i64, u32)| Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::futimens(
        file,
        &Timestamps {
            last_access: ts(atime),
            last_modification: ts(mtime),
        },
    )?;
    Ok(())
}

/// Sets the extended attribute `key` of an open file.
pub fn set_file_xattr(file: &File, key: &OsStr, value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(file, key, value, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry paths are cleaned as containerd cleans header names: `..` cannot climb above
    /// the root, `.` and leading slashes vanish.
    #[test]
    fn split_entry_cleans() {
        let s = |p: &str| split_entry(Path::new(p)).map(|(d, n)| (d, n.into_string().unwrap()));
        assert_eq!(s("a/b/c"), Some(("a/b".into(), "c".into())));
        assert_eq!(s("/a/./b/"), Some(("a".into(), "b".into())));
        assert_eq!(s("../../etc/passwd"), Some(("etc".into(), "passwd".into())));
        assert_eq!(s("a/../../b"), Some(("".into(), "b".into())));
        assert_eq!(s("./"), None);
        assert_eq!(s(".."), None);
    }

    /// A symlink planted inside the tree cannot lead a later operation outside it: an
    /// absolute target is resolved against the tree's root.
    #[test]
    fn symlinks_resolve_inside() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let tree = Tree::open(root.path()).unwrap();
        let top = tree.root().unwrap();
        top.symlink(outside.path().as_os_str(), OsStr::new("escape"))
            .unwrap();
        top.symlink(OsStr::new("../../.."), OsStr::new("up"))
            .unwrap();
        // `escape` resolves to <root>/<outside path>, which does not exist inside.
        assert!(tree.dir(Path::new("escape")).is_err());
        // `up` resolves to the root itself.
        let up = tree.dir(Path::new("up")).unwrap();
        up.mkdir(OsStr::new("made"), 0o755).unwrap();
        assert!(root.path().join("made").is_dir());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    /// Whole-tree removal does not follow a symlink to outside the tree.
    #[test]
    fn remove_all_stays_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("d/link")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        tree.root().unwrap().remove_all(OsStr::new("d")).unwrap();
        assert!(!root.path().join("d").exists());
        assert!(outside.path().join("keep").exists());
    }
}
