//! Applying a layer: a tar stream written into a snapshot directory, with containerd's
//! semantics (`archive/tar.go` `applyNaive`, `createTarFile`, `mkparent`).
//!
//! Per entry: the parent directory is resolved inside the snapshot (created if missing,
//! copying the attributes of the same directory in a lower layer, as containerd's
//! `mkparent` does); a whiteout becomes an overlay whiteout or a deletion; an existing
//! entry is replaced unless both are directories (then they merge); the new entry is
//! created, owned (`lchown`), given its xattrs, then its mode (after `lchown`, which clears
//! setuid bits) and times. Directory times are set last, after their children.
//!
//! Fault points (`strata_core::crash::fault`, compiled in only for tests) guard each
//! creation, data write, xattr and owner call: `tests/faults.rs` fails each in turn.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use strata_core::crash;
use strata_sys::beneath::{self, Dir, Special, Tree, split_entry};

use crate::digest::Digest;
use crate::entries::{self, Header, Kind};
use crate::error::{LayerError, Result};
use crate::media::Compression;
use crate::stream::Decompressed;

/// How a layer's deletions are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteouts {
    /// Into an overlay upper directory: `.wh.NAME` becomes a 0/0 character device `NAME`,
    /// `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr of its directory. `lowers` are the
    /// layers below, nearest first: a parent directory missing from the upper directory is
    /// created with the attributes it has there.
    Overlay {
        /// Lower layer directories, nearest first.
        lowers: Vec<PathBuf>,
    },
    /// Into a full copy of the tree: whiteouts delete what they name.
    Delete,
}

/// What an apply wrote and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Digest of the uncompressed tar stream (the layer's diffID).
    pub diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub size: u64,
    /// Digest of the content as read (what the descriptor names).
    pub compressed: Digest,
    /// Bytes of the content as read.
    pub compressed_size: u64,
    /// Entries written (whiteouts included).
    pub entries: u64,
}

/// The overlayfs opaque-directory xattr.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// How often a long apply logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Applies the layer read from `source` (compressed as `compression`) into the directory
/// `root`, writing deletions as `whiteouts` says. `expected`, when given, is checked
/// against the digest of what was read. `cancelled` is polled between entries.
///
/// On error, `root` may hold part of the layer (as with containerd's applier, the caller
/// discards the snapshot); nothing outside `root` is ever touched.
pub fn apply(
    source: Box<dyn Read + Send>,
    compression: Compression,
    root: &Path,
    whiteouts: &Whiteouts,
    expected: Option<&Digest>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Applied> {
    let mut writer = Writer::open(root, whiteouts)?;
    let mut stream = Decompressed::start(source, compression)?;
    let walked = entries::for_each(&mut stream, |header, data| {
        if cancelled() {
            return Err(LayerError::Cancelled);
        }
        writer.entry(header, data)
    });
    if let Err(e) = walked {
        // A stream that ended early because its producer failed explains the failure better
        // than the tar parser's "unexpected end".
        return Err(stream.failure().unwrap_or(e));
    }
    let digests = stream.finish()?;
    if let Some(expected) = expected
        && *expected != digests.compressed
    {
        return Err(LayerError::DigestMismatch {
            expected: expected.to_string(),
            actual: digests.compressed.to_string(),
        });
    }
    writer.finish()?;
    Ok(Applied {
        diff_id: digests.diff_id,
        size: digests.size,
        compressed: digests.compressed,
        compressed_size: digests.compressed_size,
        entries: writer.entries,
    })
}

/// A directory's times, set once its children are written: its parent, its name, its
/// access and modification times (seconds, nanoseconds).
type DirTimes = (PathBuf, OsString, (i64, u32), (i64, u32));

/// The state of one apply.
struct Writer<'a> {
    tree: Tree,
    whiteouts: &'a Whiteouts,
    lowers: Vec<Tree>,
    /// The last parent directory resolved: entries of a layer come grouped by directory.
    /// Dropped whenever a directory is removed, since it might be this one or above it.
    parent: Option<(PathBuf, Rc<Dir>)>,
    /// Directories whose times are set at the end, after their children were written.
    dir_times: Vec<DirTimes>,
    /// Paths written by this layer, which an opaque marker must not delete.
    unpacked: HashSet<PathBuf>,
    buffer: Vec<u8>,
    entries: u64,
    bytes: u64,
    started: Instant,
    last_report: Instant,
}

fn at<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> LayerError + use<'p> {
    move |e| LayerError::io(op, path.display().to_string(), e)
}

/// containerd's `boundTime`: times outside what a Go `time.Time` in nanoseconds can hold
/// become the epoch.
fn bound(t: (i64, u32)) -> (i64, u32) {
    if t.0 < 0 || t.0 > i64::MAX / 1_000_000_000 - 1 {
        (0, 0)
    } else {
        t
    }
}

impl<'a> Writer<'a> {
    fn open(root: &Path, whiteouts: &'a Whiteouts) -> Result<Writer<'a>> {
        let tree = Tree::open(root).map_err(at("open snapshot directory", root))?;
        let lowers = match whiteouts {
            Whiteouts::Overlay { lowers } => lowers
                .iter()
                .map(|l| Tree::open(l).map_err(at("open lower directory", l)))
                .collect::<Result<_>>()?,
            Whiteouts::Delete => Vec::new(),
        };
        let now = Instant::now();
        Ok(Writer {
            tree,
            whiteouts,
            lowers,
            parent: None,
            dir_times: Vec::new(),
            unpacked: HashSet::new(),
            buffer: vec![0; 256 << 10],
            entries: 0,
            bytes: 0,
            started: now,
            last_report: now,
        })
    }

    fn entry(&mut self, h: Header, data: &mut dyn Read) -> Result<()> {
        let Some((parent_rel, name)) = split_entry(&h.path) else {
            // The root itself: containerd ignores it too.
            return Ok(());
        };
        let rel = parent_rel.join(&name);
        let parent = self.parent_dir(&parent_rel)?;
        self.entries += 1;
        self.progress(&rel);
        let bytes = name.as_bytes();
        if bytes == OPAQUE_MARKER {
            return self.opaque(&parent_rel, &parent);
        }
        if let Some(target) = bytes.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(LayerError::Hostile {
                    entry: h.shown(),
                    reason: "invalid whiteout name".into(),
                });
            }
            return self.whiteout(&parent, &parent_rel, OsStr::from_bytes(target), &h);
        }
        // A regular file, the common case, is created first and what was there looked at
        // only if something was (see `create`); other entries look first.
        if h.kind != Kind::File
            && let Some(existing) = parent.lstat(&name).map_err(at("lstat", &rel))?
            && !(existing.is_dir() && h.kind == Kind::Dir)
        {
            parent.remove_all(&name).map_err(at("remove", &rel))?;
            if existing.is_dir() {
                self.parent = None;
            }
        }
        self.create(&parent, &name, &rel, &h, data)?;
        if h.kind != Kind::File {
            self.attributes(&parent, &name, &rel, &h)?;
        }
        if h.kind == Kind::Dir {
            let atime = h.atime.map_or(h.mtime, |a| a.max(h.mtime));
            self.dir_times
                .push((parent_rel, name, bound(atime), bound(h.mtime)));
        }
        self.unpacked.insert(rel);
        Ok(())
    }

    /// Removes whatever is at `name` before a new entry takes its place.
    fn replace(&mut self, parent: &Dir, name: &OsStr, rel: &Path) -> Result<()> {
        let was_dir = parent
            .lstat(name)
            .map_err(at("lstat", rel))?
            .is_some_and(|e| e.is_dir());
        parent.remove_all(name).map_err(at("remove", rel))?;
        if was_dir {
            self.parent = None;
        }
        Ok(())
    }

    /// Writes a regular file's data and attributes through its open descriptor: owner,
    /// xattrs, mode (after the owner, which clears setuid bits), times.
    fn write_file(
        &mut self,
        mut file: std::fs::File,
        rel: &Path,
        h: &Header,
        data: &mut dyn Read,
    ) -> Result<()> {
        let mut left = h.size;
        while left > 0 {
            let want = self.buffer.len().min(left as usize);
            let n = data
                .read(&mut self.buffer[..want])
                .map_err(|e| LayerError::Corrupt {
                    entry: Some(h.shown()),
                    source: e,
                })?;
            if n == 0 {
                return Err(LayerError::Corrupt {
                    entry: Some(h.shown()),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file data ends {left} bytes early"),
                    ),
                });
            }
            crash::fault("apply-write")
                .and_then(|()| file.write_all(&self.buffer[..n]))
                .map_err(at("write", rel))?;
            left -= n as u64;
            self.bytes += n as u64;
        }
        crash::fault("apply-attributes")
            .and_then(|()| beneath::set_file_owner(&file, h.uid, h.gid))
            .map_err(at("fchown", rel))?;
        for (key, value) in &h.xattrs {
            if let Err(e) = crash::fault("apply-xattr")
                .and_then(|()| beneath::set_file_xattr(&file, key, value))
            {
                if e.raw_os_error() == Some(95) {
                    tracing::warn!(entry = %rel.display(), xattr = ?key, error = %e, "xattr ignored");
                    continue;
                }
                return Err(at("fsetxattr", rel)(e));
            }
        }
        beneath::set_file_mode(&file, h.mode).map_err(at("fchmod", rel))?;
        let atime = h.atime.map_or(h.mtime, |a| a.max(h.mtime));
        beneath::set_file_times(&file, bound(atime), bound(h.mtime)).map_err(at("futimens", rel))
    }

    fn progress(&mut self, rel: &Path) {
        if self.last_report.elapsed() >= PROGRESS_EVERY {
            self.last_report = Instant::now();
            tracing::info!(
                root = %self.tree.path().display(),
                entries = self.entries,
                bytes = self.bytes,
                seconds = self.started.elapsed().as_secs(),
                at = %rel.display(),
                "applying layer"
            );
        }
    }

    /// The directory `parent_rel`, created (with its missing ancestors) if absent.
    fn parent_dir(&mut self, parent_rel: &Path) -> Result<Rc<Dir>> {
        if let Some((cached, dir)) = &self.parent
            && cached == parent_rel
        {
            return Ok(Rc::clone(dir));
        }
        let dir = match self.tree.dir(parent_rel) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_parents(parent_rel)?,
            Err(e) => return Err(at("resolve parent directory", parent_rel)(e)),
        };
        let dir = Rc::new(dir);
        self.parent = Some((parent_rel.to_owned(), Rc::clone(&dir)));
        Ok(dir)
    }

    /// containerd's `mkparent` over `fs.RootPath`: resolves `parent_rel` one component at a
    /// time from the root — a symlink is replaced by its target (an absolute one read from
    /// the root), `..` never climbs above the root — creating each missing directory 0755
    /// with the attributes of the same directory in the nearest lower layer that has one.
    /// Every step opens through its parent's descriptor without following links, so the
    /// walk cannot leave the tree.
    fn make_parents(&mut self, parent_rel: &Path) -> Result<Dir> {
        const MAX_LINKS: u32 = 40;
        let mut pending: std::collections::VecDeque<OsString> =
            parent_rel.iter().map(OsStr::to_owned).collect();
        let mut resolved = PathBuf::new();
        let mut dirs = vec![self.tree.root().map_err(at("open", Path::new("/")))?];
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                if resolved.pop() {
                    dirs.pop();
                }
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let current = dirs.last().expect("the root stays on the stack");
            let next = resolved.join(&c);
            match current.lstat(&c).map_err(at("lstat", &next))? {
                None => {
                    current.mkdir(&c, 0o755).map_err(at("mkdir", &next))?;
                    self.copy_up_dir(current, &c, &next)?;
                }
                Some(st) if st.is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(LayerError::Hostile {
                            entry: parent_rel.display().to_string(),
                            reason: "too many levels of symbolic links".into(),
                        });
                    }
                    let target =
                        PathBuf::from(current.readlink(&c).map_err(at("readlink", &next))?);
                    if target.is_absolute() {
                        resolved = PathBuf::new();
                        dirs.truncate(1);
                    }
                    for part in target.iter().rev() {
                        if part != "/" {
                            pending.push_front(part.to_owned());
                        }
                    }
                    continue;
                }
                Some(st) if !st.is_dir() => {
                    return Err(at("resolve parent directory", &next)(
                        io::Error::from_raw_os_error(20),
                    ));
                }
                Some(_) => {}
            }
            let sub = current.subdir(&c).map_err(at("open", &next))?;
            dirs.push(sub);
            resolved = next;
        }
        Ok(dirs.pop().expect("the root stays on the stack"))
    }

    fn copy_up_dir(&self, container: &Dir, name: &OsStr, rel: &Path) -> Result<()> {
        for lower in &self.lowers {
            let dir = match lower.dir(rel) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // Replaced by a non-directory below: no attributes to copy.
                Err(e) if e.raw_os_error() == Some(20) => return Ok(()),
                Err(e) => return Err(at("resolve lower directory", rel)(e)),
            };
            let st = dir.stat_self().map_err(at("stat lower directory", rel))?;
            container
                .chown(name, st.uid, st.gid)
                .map_err(at("lchown", rel))?;
            container
                .chmod(name, st.mode & 0o7777)
                .map_err(at("chmod", rel))?;
            for (key, value) in dir.own_xattrs().map_err(at("listxattr", rel))? {
                if key.as_bytes().starts_with(b"trusted.overlay.") {
                    continue;
                }
                container
                    .set_xattr(name, &key, &value)
                    .map_err(at("setxattr", rel))?;
            }
            return container
                .set_times(name, st.atime, st.mtime)
                .map_err(at("utimensat", rel));
        }
        Ok(())
    }

    fn whiteout(
        &mut self,
        parent: &Dir,
        parent_rel: &Path,
        target: &OsStr,
        h: &Header,
    ) -> Result<()> {
        let rel = parent_rel.join(target);
        let existing = parent.lstat(target).map_err(at("lstat", &rel))?;
        if existing.is_some() {
            parent.remove_all(target).map_err(at("remove", &rel))?;
            if existing.is_some_and(|e| e.is_dir()) {
                self.parent = None;
            }
        }
        if let Whiteouts::Overlay { .. } = self.whiteouts {
            parent
                .mknod(target, Special::Char(0, 0), 0)
                .map_err(at("mknod whiteout", &rel))?;
            parent
                .chown(target, h.uid, h.gid)
                .map_err(at("lchown", &rel))?;
        }
        Ok(())
    }

    fn opaque(&mut self, parent_rel: &Path, parent: &Dir) -> Result<()> {
        match self.whiteouts {
            Whiteouts::Overlay { .. } => parent
                .set_own_xattr(OsStr::new(OPAQUE_XATTR), b"y")
                .map_err(at("setxattr opaque", parent_rel)),
            Whiteouts::Delete => {
                self.parent = None;
                self.remove_not_unpacked(parent, parent_rel)
            }
        }
    }

    /// Removes everything under `dir` that this layer did not write.
    fn remove_not_unpacked(&self, dir: &Dir, rel: &Path) -> Result<()> {
        for name in dir.names().map_err(at("readdir", rel))? {
            let child = rel.join(&name);
            if !self.unpacked.contains(&child) {
                dir.remove_all(&name).map_err(at("remove", &child))?;
            } else if dir
                .lstat(&name)
                .map_err(at("lstat", &child))?
                .is_some_and(|s| s.is_dir())
            {
                let sub = dir.subdir(&name).map_err(at("open", &child))?;
                self.remove_not_unpacked(&sub, &child)?;
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        parent: &Dir,
        name: &OsStr,
        rel: &Path,
        h: &Header,
        data: &mut dyn Read,
    ) -> Result<()> {
        crash::fault("apply-create").map_err(at("create", rel))?;
        match h.kind {
            Kind::Dir => match parent.mkdir(name, h.mode) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(at("mkdir", rel)(e)),
            },
            Kind::File => {
                let file = match parent.create_file(name, 0o600) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.replace(parent, name, rel)?;
                        parent.create_file(name, 0o600).map_err(at("create", rel))?
                    }
                    Err(e) => return Err(at("create", rel)(e)),
                };
                self.write_file(file, rel, h, data)
            }
            Kind::Symlink => {
                let target = h.link.as_deref().unwrap_or(Path::new(""));
                parent
                    .symlink(target.as_os_str(), name)
                    .map_err(at("symlink", rel))
            }
            Kind::Hardlink => {
                let target = h.link.as_deref().unwrap_or(Path::new(""));
                let Some((target_parent, target_name)) = split_entry(target) else {
                    return Err(LayerError::Hostile {
                        entry: h.shown(),
                        reason: "hard link to the root directory".into(),
                    });
                };
                let from = self
                    .tree
                    .dir(&target_parent)
                    .map_err(|e| LayerError::Hostile {
                        entry: h.shown(),
                        reason: format!("hard link target {target:?} unreachable: {e}"),
                    })?;
                parent
                    .hardlink(&from, &target_name, name)
                    .map_err(|e| LayerError::Hostile {
                        entry: h.shown(),
                        reason: format!("hard link to {target:?}: {e}"),
                    })
            }
            Kind::Char => parent
                .mknod(name, Special::Char(h.device.0, h.device.1), h.mode)
                .map_err(at("mknod", rel)),
            Kind::Block => parent
                .mknod(name, Special::Block(h.device.0, h.device.1), h.mode)
                .map_err(at("mknod", rel)),
            Kind::Fifo => parent
                .mknod(name, Special::Fifo, h.mode)
                .map_err(at("mknod", rel)),
        }
    }

    fn attributes(&self, parent: &Dir, name: &OsStr, rel: &Path, h: &Header) -> Result<()> {
        crash::fault("apply-attributes")
            .and_then(|()| parent.chown(name, h.uid, h.gid))
            .map_err(at("lchown", rel))?;
        for (key, value) in &h.xattrs {
            if let Err(e) =
                crash::fault("apply-xattr").and_then(|()| parent.set_xattr(name, key, value))
            {
                let user = key.as_bytes().starts_with(b"user.");
                let special = !matches!(h.kind, Kind::File | Kind::Dir | Kind::Hardlink);
                // As containerd: the user.* namespace exists only on files and directories,
                // and a filesystem without a namespace is no reason to fail.
                if e.raw_os_error() == Some(95) || (e.raw_os_error() == Some(1) && user && special)
                {
                    tracing::warn!(entry = %rel.display(), xattr = ?key, error = %e, "xattr ignored");
                    continue;
                }
                return Err(at("setxattr", rel)(e));
            }
        }
        if h.kind != Kind::Symlink {
            parent.chmod(name, h.mode).map_err(at("chmod", rel))?;
        }
        if h.kind != Kind::Dir {
            let atime = h.atime.map_or(h.mtime, |a| a.max(h.mtime));
            parent
                .set_times(name, bound(atime), bound(h.mtime))
                .map_err(at("utimensat", rel))?;
        }
        Ok(())
    }

    /// Sets directory times, now that nothing more is written into them.
    fn finish(&mut self) -> Result<()> {
        self.parent = None;
        for (parent_rel, name, atime, mtime) in
            std::mem::take(&mut self.dir_times).into_iter().rev()
        {
            let rel = parent_rel.join(&name);
            let parent = match self.tree.dir(&parent_rel) {
                Ok(p) => p,
                // Removed by a later entry of the layer.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(at("resolve directory", &rel)(e)),
            };
            match parent.set_times(&name, atime, mtime) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(at("utimensat", &rel)(e)),
            }
        }
        tracing::debug!(
            root = %self.tree.path().display(),
            entries = self.entries,
            bytes = self.bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "layer applied"
        );
        Ok(())
    }
}
