//! Faithful copies of directory trees, for backends that give each snapshot a full copy of
//! its parent. Owners, modes, timestamps, extended attributes (capabilities and overlay's
//! `trusted.*` included), device nodes, fifos, symlinks and hard links are preserved; regular
//! files are reflinked where the filesystem can share extents (btrfs, xfs) and copied with
//! `copy_file_range` otherwise.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

/// What a tree copy did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries created (files, directories, links, devices).
    pub entries: u64,
    /// Regular files whose extents were shared by reflink rather than copied.
    pub reflinked: u64,
}

/// An error of a tree copy, naming the path and the step that failed.
#[derive(Debug)]
pub struct CopyError {
    /// The step, e.g. `lsetxattr` or `mknod`.
    pub op: &'static str,
    /// The path it was applied to.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for CopyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

trait Context<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, CopyError>;
}

impl<T, E: Into<io::Error>> Context<T> for Result<T, E> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, CopyError> {
        self.map_err(|e| CopyError {
            op,
            path: path.to_owned(),
            source: e.into(),
        })
    }
}

/// Copies the contents of directory `src` into the existing directory `dst`, then gives `dst`
/// the owner, mode, xattrs and times of `src`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<CopyStats, CopyError> {
    let mut copier = Copier {
        stats: CopyStats::default(),
        links: HashMap::new(),
        reflink: true,
    };
    copier.copy_dir_contents(src, dst)?;
    let meta = fs::symlink_metadata(src).at("lstat", src)?;
    copier.copy_metadata(src, dst, &meta)?;
    Ok(copier.stats)
}

struct Copier {
    stats: CopyStats,
    /// Multiply-linked inodes already copied: (dev, ino) → the path of their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Cleared after the first failed reflink, so a filesystem without it costs one syscall.
    reflink: bool,
}

impl Copier {
    fn copy_dir_contents(&mut self, src: &Path, dst: &Path) -> Result<(), CopyError> {
        for entry in fs::read_dir(src).at("readdir", src)? {
            let entry = entry.at("readdir", src)?;
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let meta = fs::symlink_metadata(&from).at("lstat", &from)?;
            self.copy_entry(&from, &to, &meta)?;
        }
        Ok(())
    }

    fn copy_entry(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), CopyError> {
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, to).at("link", to)?;
                self.stats.entries += 1;
                return Ok(());
            }
            self.links.insert((meta.dev(), meta.ino()), to.to_owned());
        }
        if ft.is_dir() {
            fs::create_dir(to).at("mkdir", to)?;
            self.copy_dir_contents(from, to)?;
        } else if ft.is_file() {
            self.copy_file(from, to)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(from).at("readlink", from)?;
            std::os::unix::fs::symlink(&target, to).at("symlink", to)?;
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_socket() {
                FileType::Socket
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            rustix::fs::mknodat(CWD, to, kind, Mode::from_raw_mode(meta.mode()), meta.rdev())
                .at("mknod", to)?;
        }
        self.stats.entries += 1;
        self.copy_metadata(from, to, meta)
    }

    fn copy_file(&mut self, from: &Path, to: &Path) -> Result<(), CopyError> {
        let mut src = fs::File::open(from).at("open", from)?;
        let mut dst = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .at("create", to)?;
        if self.reflink {
            match rustix::fs::ioctl_ficlone(&dst, &src) {
                Ok(()) => {
                    self.stats.reflinked += 1;
                    return Ok(());
                }
                Err(_) => self.reflink = false,
            }
        }
        // std's copy uses copy_file_range, which stays in the kernel and keeps holes.
        io::copy(&mut src, &mut dst).at("copy", to)?;
        Ok(())
    }

    /// Owner first (chown clears setuid bits), then mode, xattrs, and times last (every
    /// other change bumps them).
    fn copy_metadata(
        &mut self,
        from: &Path,
        to: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), CopyError> {
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).at("lchown", to)?;
        let is_symlink = meta.file_type().is_symlink();
        if !is_symlink {
            fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .at("chmod", to)?;
        }
        copy_xattrs(from, to)?;
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: meta.atime(),
                tv_nsec: meta.atime_nsec() as _,
            },
            last_modification: Timespec {
                tv_sec: meta.mtime(),
                tv_nsec: meta.mtime_nsec() as _,
            },
        };
        rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW).at("utimensat", to)?;
        Ok(())
    }
}

/// Copies every extended attribute of `from` to `to`, neither followed if a symlink.
pub fn copy_xattrs(from: &Path, to: &Path) -> Result<(), CopyError> {
    let names = list_xattrs(from)?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap_or_default());
        if name.is_empty() {
            continue;
        }
        let value = get_xattr(from, name)?;
        match rustix::fs::lsetxattr(to, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs, and some filesystems refuse namespaces
            // they do not know; neither makes the copy wrong.
            Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => {
                return Err(CopyError {
                    op: "lsetxattr",
                    path: to.to_owned(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// Every extended attribute of `path` (not followed if a symlink), sorted by name.
pub fn xattrs_of(path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let names = list_xattrs(path).map_err(|e| e.source)?;
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        match get_xattr(path, name) {
            Ok(value) => out.push((name.to_owned(), value)),
            // Removed between the listing and the read.
            Err(e) if e.source.raw_os_error() == Some(rustix::io::Errno::NODATA.raw_os_error()) => {
            }
            Err(e) => return Err(e.source),
        }
    }
    out.sort();
    Ok(out)
}

fn list_xattrs(path: &Path) -> Result<Vec<u8>, CopyError> {
    loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e).at("llistxattr", path),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e).at("llistxattr", path),
        }
    }
}

fn get_xattr(path: &Path, name: &std::ffi::OsStr) -> Result<Vec<u8>, CopyError> {
    loop {
        let size = rustix::fs::lgetxattr_query(path, name).at("lgetxattr", path)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e).at("lgetxattr", path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owners, modes, times, xattrs, symlinks, fifos and hard links survive a copy.
    #[test]
    fn copy_preserves_what_images_contain() {
        // Ownership is part of what a copy keeps, and only root can give it away: this test
        // fails rather than leave it unchecked (CI runs as root).
        assert!(
            rustix::process::geteuid().is_root(),
            "this test chowns files and needs root: run it as root (scripts/test does)"
        );
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir(s.join("dir")).unwrap();
        fs::write(s.join("dir/file"), b"hello").unwrap();
        fs::set_permissions(s.join("dir/file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(s.join("dir/file"), s.join("link")).unwrap();
        std::os::unix::fs::symlink("dir/file", s.join("sym")).unwrap();
        rustix::fs::mknodat(
            CWD,
            s.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        rustix::fs::lsetxattr(
            s.join("dir"),
            "user.note",
            b"x",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let old = Timestamps {
            last_access: Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 5,
            },
            last_modification: Timespec {
                tv_sec: 2_000_000,
                tv_nsec: 7,
            },
        };
        rustix::fs::utimensat(CWD, s.join("dir"), &old, AtFlags::empty()).unwrap();
        std::os::unix::fs::lchown(s.join("sym"), Some(1234), Some(4321)).unwrap();

        let stats = copy_tree(s, dst.path()).unwrap();
        let d = dst.path();
        assert_eq!(stats.entries, 5, "dir, dir/file, link, sym, fifo");
        assert_eq!(fs::read(d.join("link")).unwrap(), b"hello");
        let file = fs::metadata(d.join("dir/file")).unwrap();
        assert_eq!(
            file.ino(),
            fs::metadata(d.join("link")).unwrap().ino(),
            "hard link kept"
        );
        assert_eq!(file.mode() & 0o7777, 0o4751);
        assert_eq!(fs::read_link(d.join("sym")).unwrap(), Path::new("dir/file"));
        assert!(
            fs::symlink_metadata(d.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(d.join("dir"), "user.note", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"x");
        let dir = fs::metadata(d.join("dir")).unwrap();
        assert_eq!(
            (dir.mtime(), dir.mtime_nsec()),
            (2_000_000, 7),
            "times set after contents"
        );
        let sym = fs::symlink_metadata(d.join("sym")).unwrap();
        assert_eq!((sym.uid(), sym.gid()), (1234, 4321));
    }
}
