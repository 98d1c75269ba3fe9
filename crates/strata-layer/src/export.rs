//! Producing a layer from a snapshot directory.
//!
//! An overlay upper directory holds exactly what changed above its lower layers: new and
//! modified entries, the directories leading to them (copied up), 0/0 character devices for
//! deletions and the `trusted.overlay.opaque` xattr on directories that replace a lower one.
//! Written out with those turned back into OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`), it is
//! the layer containerd's walking differ would compute by comparing the two mounted trees —
//! at a cost proportional to the changes instead of to the whole image. A directory with no
//! lower layers (a parentless snapshot) is written out whole.
//!
//! Entries are written in lexical order per directory, parents before children, as
//! containerd's differ does; times are whole seconds (containerd's differ writes those too);
//! xattrs are kept except overlayfs' own `trusted.overlay.*`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::apply::OPAQUE_XATTR;
use crate::digest::{Digest, HashingWriter};
use crate::error::{LayerError, Result};
use crate::media::Compression;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Digest of the compressed stream (the blob's digest).
    pub digest: Digest,
    /// Bytes of the compressed stream.
    pub size: u64,
    /// Digest of the uncompressed tar stream (the diffID).
    pub diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub uncompressed_size: u64,
    /// Entries written.
    pub entries: u64,
}

/// Writes the layer held by the upper directory `upper` to `out`, compressed as
/// `compression`. With `epoch` (containerd's `source_date_epoch`), no time in the layer is
/// later than it. `cancelled` is polled between entries.
pub fn export_upper(
    upper: &Path,
    compression: Compression,
    epoch: Option<i64>,
    out: impl Write,
    cancelled: &dyn Fn() -> bool,
) -> Result<Exported> {
    export(upper, true, compression, epoch, out, cancelled, |e| {
        e.dir(Path::new(""))
    })
}

/// Writes the layer that turns the full tree `lower` into the full tree `upper` (two
/// snapshots of a backend that stores full copies) to `out`: what is new or changed in
/// `upper` (with the directories leading to it), and a whiteout for what `upper` lacks.
/// Entries are compared as containerd's double walk compares them: type, mode, owner,
/// device, size, modification time, xattrs and link target, and the content of regular
/// files whose times carry no nanoseconds (too coarse to tell an edit).
pub fn export_compare(
    lower: &Path,
    upper: &Path,
    compression: Compression,
    epoch: Option<i64>,
    out: impl Write,
    cancelled: &dyn Fn() -> bool,
) -> Result<Exported> {
    let lower = lower.to_owned();
    export(upper, false, compression, epoch, out, cancelled, move |e| {
        e.compare(&lower, Path::new(""))
    })
}

fn export<W: Write>(
    root: &Path,
    overlay: bool,
    compression: Compression,
    epoch: Option<i64>,
    out: W,
    cancelled: &dyn Fn() -> bool,
    body: impl FnOnce(
        &mut Exporter<'_, HashingWriter<crate::media::Encoder<HashingWriter<W>>>>,
    ) -> Result<()>,
) -> Result<Exported> {
    let blob = HashingWriter::new(out);
    let encoder = compression
        .encoder(blob)
        .map_err(|e| LayerError::io("start compression", "", e))?;
    let tar = HashingWriter::new(encoder);
    let mut exporter = Exporter {
        root: root.to_owned(),
        builder: tar::Builder::new(tar),
        links: HashMap::new(),
        entries: 0,
        overlay,
        pending: Vec::new(),
        epoch,
        cancelled,
    };
    body(&mut exporter)?;
    let tar = exporter
        .builder
        .into_inner()
        .map_err(|e| LayerError::io("write tar end", "", e))?;
    let (encoder, diff_id, uncompressed_size) = tar.finish();
    let blob = encoder
        .finish()
        .map_err(|e| LayerError::io("finish compression", "", e))?;
    let (_, digest, size) = blob.finish();
    Ok(Exported {
        digest,
        size,
        diff_id,
        uncompressed_size,
        entries: exporter.entries,
    })
}

/// The sorted names in the directory `path`; none if it is not a directory.
fn sorted_names(path: &Path, rel: &Path) -> Result<Vec<OsString>> {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(err("readdir", rel)(e)),
    };
    let mut names: Vec<OsString> = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(err("readdir", rel))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Whether two entries of the same type are unchanged, as containerd's double walk judges.
fn unchanged(lower: &Path, upper: &Path, l: &fs::Metadata, u: &fs::Metadata) -> io::Result<bool> {
    if l.mode() != u.mode()
        || l.uid() != u.uid()
        || l.gid() != u.gid()
        || l.rdev() != u.rdev()
        || l.mtime() != u.mtime()
        || l.mtime_nsec() != u.mtime_nsec()
        || (!l.is_dir() && l.size() != u.size())
    {
        return Ok(false);
    }
    let own = |x: Vec<(OsString, Vec<u8>)>| -> Vec<(OsString, Vec<u8>)> {
        x.into_iter()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"trusted.overlay."))
            .collect()
    };
    if own(strata_sys::copy::xattrs_of(lower)?) != own(strata_sys::copy::xattrs_of(upper)?) {
        return Ok(false);
    }
    if l.file_type().is_symlink() {
        return Ok(fs::read_link(lower)? == fs::read_link(upper)?);
    }
    if l.is_file() && l.mtime_nsec() == 0 && (l.dev(), l.ino()) != (u.dev(), u.ino()) {
        return same_content(lower, upper);
    }
    Ok(true)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

struct Exporter<'a, W: Write> {
    root: PathBuf,
    builder: tar::Builder<W>,
    /// First path written for each multiply-linked inode: later ones become hard links.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
    /// Whether the tree is an overlay upper directory (0/0 character devices and the
    /// opaque xattr are whiteouts) rather than a full tree.
    overlay: bool,
    /// Directories entered by a comparison whose entry is not written yet: written, in
    /// order, before the first change found under them (containerd writes the parents of
    /// every change).
    pending: Vec<PathBuf>,
    epoch: Option<i64>,
    cancelled: &'a dyn Fn() -> bool,
}

fn err<'p>(op: &'static str, rel: &'p Path) -> impl FnOnce(io::Error) -> LayerError + use<'p> {
    move |e| LayerError::io(op, rel.display().to_string(), e)
}

impl<W: Write> Exporter<'_, W> {
    /// Writes the children of the directory `rel` (sorted), recursing into directories.
    fn dir(&mut self, rel: &Path) -> Result<()> {
        let path = self.root.join(rel);
        let mut names: Vec<OsString> = fs::read_dir(&path)
            .map_err(err("readdir", rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(err("readdir", rel))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            if (self.cancelled)() {
                return Err(LayerError::Cancelled);
            }
            let child = rel.join(&name);
            if self.entry(&child, &name)? {
                self.dir(&child)?;
            }
        }
        Ok(())
    }

    /// Compares the directory `rel` of `lower` with the same of the tree, writing what
    /// changed (see [`export_compare`]).
    fn compare(&mut self, lower: &Path, rel: &Path) -> Result<()> {
        let (l_dir, u_dir) = (lower.join(rel), self.root.join(rel));
        let l_names = sorted_names(&l_dir, rel)?;
        let u_names = sorted_names(&u_dir, rel)?;
        let (mut i, mut j) = (0, 0);
        while i < l_names.len() || j < u_names.len() {
            if (self.cancelled)() {
                return Err(LayerError::Cancelled);
            }
            let order = match (l_names.get(i), u_names.get(j)) {
                (Some(l), Some(u)) => l.as_bytes().cmp(u.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    // Gone from the upper tree.
                    self.flush_pending()?;
                    let meta = fs::symlink_metadata(&u_dir).map_err(err("lstat", rel))?;
                    self.whiteout(rel, &l_names[i].clone(), &meta)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let name = u_names[j].clone();
                    self.add(&rel.join(&name), &name)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let name = u_names[j].clone();
                    let child = rel.join(&name);
                    let (lp, up) = (lower.join(&child), self.root.join(&child));
                    let l = fs::symlink_metadata(&lp).map_err(err("lstat", &child))?;
                    let u = fs::symlink_metadata(&up).map_err(err("lstat", &child))?;
                    if l.file_type() != u.file_type() {
                        // Replaced by another type: the new entry (and a directory's whole
                        // content) replaces it when applied.
                        self.add(&child, &name)?;
                    } else if u.is_dir() {
                        let same = unchanged(&lp, &up, &l, &u).map_err(err("compare", &child))?;
                        if same {
                            self.pending.push(child.clone());
                        } else {
                            self.flush_pending()?;
                            self.entry(&child, &name)?;
                        }
                        self.compare(lower, &child)?;
                        if self.pending.last() == Some(&child) {
                            self.pending.pop();
                        }
                    } else if !unchanged(&lp, &up, &l, &u).map_err(err("compare", &child))? {
                        self.flush_pending()?;
                        self.entry(&child, &name)?;
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Writes `rel` and, for a directory, everything under it: all new.
    fn add(&mut self, rel: &Path, name: &std::ffi::OsStr) -> Result<()> {
        self.flush_pending()?;
        if self.entry(rel, name)? {
            self.dir(rel)?;
        }
        Ok(())
    }

    /// Writes the directories entered but not written yet, outermost first.
    fn flush_pending(&mut self) -> Result<()> {
        for dir in std::mem::take(&mut self.pending) {
            let name = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
            self.entry(&dir, &name)?;
        }
        Ok(())
    }

    /// Writes a whiteout for `name` in the directory `rel`, stamped with `meta`'s time.
    fn whiteout(&mut self, rel: &Path, name: &std::ffi::OsStr, meta: &fs::Metadata) -> Result<()> {
        let mut whiteout = OsString::from(".wh.");
        whiteout.push(name);
        let wh = rel.join(whiteout);
        // As containerd writes them: an empty regular file, mode 0, owned by root.
        let mut h = self.header(meta, tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        self.entries += 1;
        self.builder
            .append_data(&mut h, &wh, io::empty())
            .map_err(err("write whiteout", &wh))
    }

    /// Writes the entry `rel` (named `name`) of the tree; `true` if it is a directory, whose
    /// children the caller then writes.
    fn entry(&mut self, rel: &Path, name: &std::ffi::OsStr) -> Result<bool> {
        let path = self.root.join(rel);
        let meta = fs::symlink_metadata(&path).map_err(err("lstat", rel))?;
        let ft = meta.file_type();
        if self.overlay && ft.is_char_device() && meta.rdev() == 0 {
            let parent = rel.parent().unwrap_or(Path::new(""));
            self.whiteout(parent, name, &meta)?;
            return Ok(false);
        }
        self.entries += 1;
        let xattrs: Vec<(OsString, Vec<u8>)> =
            strata_sys::copy::xattrs_of(&path).map_err(err("listxattr", rel))?;
        let opaque = ft.is_dir()
            && xattrs
                .iter()
                .any(|(k, v)| k.as_bytes() == OPAQUE_XATTR.as_bytes() && v == b"y");
        let kept: Vec<_> = xattrs
            .into_iter()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"trusted.overlay."))
            .collect();
        let mut pax: Vec<(String, Vec<u8>)> = kept
            .into_iter()
            .map(|(k, v)| {
                (
                    format!("SCHILY.xattr.{}", String::from_utf8_lossy(k.as_bytes())),
                    v,
                )
            })
            .collect();
        // A symlink's target is stored byte for byte (the tar crate's own setter normalises
        // paths, which would turn `./.` into `.`): in the header when it fits, else as a PAX
        // record in the entry's one PAX header.
        let link_target = if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(err("readlink", rel))?;
            let bytes = target.as_os_str().as_bytes().to_vec();
            if bytes.len() > 100 {
                pax.push(("linkpath".to_owned(), bytes.clone()));
            }
            Some(bytes)
        } else {
            None
        };
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .map_err(err("write PAX header", rel))?;
        }
        if ft.is_dir() {
            let mut h = self.header(&meta, tar::EntryType::Directory);
            let mut shown = rel.as_os_str().to_owned();
            shown.push("/");
            self.builder
                .append_data(&mut h, Path::new(&shown), io::empty())
                .map_err(err("write directory", rel))?;
            if opaque && self.overlay {
                self.whiteout(rel, std::ffi::OsStr::new(".wh..opq"), &meta)?;
            }
            return Ok(true);
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&inode).cloned() {
                let mut h = self.header(&meta, tar::EntryType::Link);
                h.set_size(0);
                self.builder
                    .append_link(&mut h, rel, &first)
                    .map_err(err("write hard link", rel))?;
                return Ok(false);
            }
            self.links.insert(inode, rel.to_owned());
        }
        if ft.is_file() {
            let mut h = self.header(&meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let file = fs::File::open(&path).map_err(err("open", rel))?;
            // The size in the header must match what follows, even if the file changes.
            let mut body = io::Read::take(file, meta.len());
            self.builder
                .append_data(&mut h, rel, &mut body)
                .map_err(err("write file", rel))?;
            return Ok(false);
        }
        if let Some(target) = link_target {
            let mut h = self.header(&meta, tar::EntryType::Symlink);
            if target.len() <= 100 {
                h.set_link_name_literal(&target)
                    .map_err(err("write symlink", rel))?;
            }
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(err("write symlink", rel))?;
            return Ok(false);
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets are not carried by layers (containerd skips them too).
            return Ok(false);
        };
        let mut h = self.header(&meta, kind);
        if kind != tar::EntryType::Fifo {
            let (major, minor) = (
                rustix::fs::major(meta.rdev()),
                rustix::fs::minor(meta.rdev()),
            );
            h.set_device_major(major)
                .map_err(err("device number", rel))?;
            h.set_device_minor(minor)
                .map_err(err("device number", rel))?;
        }
        self.builder
            .append_data(&mut h, rel, io::empty())
            .map_err(err("write device", rel))?;
        Ok(false)
    }

    fn header(&self, meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        let mtime = self.epoch.map_or(meta.mtime(), |e| meta.mtime().min(e));
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        h
    }
}
