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
    let blob = HashingWriter::new(out);
    let encoder = compression
        .encoder(blob)
        .map_err(|e| LayerError::io("start compression", "", e))?;
    let tar = HashingWriter::new(encoder);
    let mut exporter = Exporter {
        root: upper.to_owned(),
        builder: tar::Builder::new(tar),
        links: HashMap::new(),
        entries: 0,
        epoch,
        cancelled,
    };
    exporter.dir(Path::new(""))?;
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

struct Exporter<'a, W: Write> {
    root: PathBuf,
    builder: tar::Builder<W>,
    /// First path written for each multiply-linked inode: later ones become hard links.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
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
            self.entry(&child, &name)?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path, name: &std::ffi::OsStr) -> Result<()> {
        let path = self.root.join(rel);
        let meta = fs::symlink_metadata(&path).map_err(err("lstat", rel))?;
        let ft = meta.file_type();
        self.entries += 1;
        if ft.is_char_device() && meta.rdev() == 0 {
            let mut whiteout = OsString::from(".wh.");
            whiteout.push(name);
            let wh = rel.with_file_name(whiteout);
            let mut h = self.header(&meta, tar::EntryType::Regular);
            h.set_mode(0);
            h.set_size(0);
            return self
                .builder
                .append_data(&mut h, &wh, io::empty())
                .map_err(err("write whiteout", rel));
        }
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
            if opaque {
                let marker = rel.join(".wh..wh..opq");
                let mut h = self.header(&meta, tar::EntryType::Regular);
                h.set_mode(0);
                h.set_size(0);
                self.builder
                    .append_data(&mut h, &marker, io::empty())
                    .map_err(err("write opaque marker", rel))?;
            }
            return self.dir(rel);
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&inode).cloned() {
                let mut h = self.header(&meta, tar::EntryType::Link);
                h.set_size(0);
                return self
                    .builder
                    .append_link(&mut h, rel, &first)
                    .map_err(err("write hard link", rel));
            }
            self.links.insert(inode, rel.to_owned());
        }
        if ft.is_file() {
            let mut h = self.header(&meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let file = fs::File::open(&path).map_err(err("open", rel))?;
            // The size in the header must match what follows, even if the file changes.
            let mut body = io::Read::take(file, meta.len());
            return self
                .builder
                .append_data(&mut h, rel, &mut body)
                .map_err(err("write file", rel));
        }
        if let Some(target) = link_target {
            let mut h = self.header(&meta, tar::EntryType::Symlink);
            if target.len() <= 100 {
                h.set_link_name_literal(&target)
                    .map_err(err("write symlink", rel))?;
            }
            return self
                .builder
                .append_data(&mut h, rel, io::empty())
                .map_err(err("write symlink", rel));
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // Sockets are not carried by layers (containerd skips them too).
            return Ok(());
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
            .map_err(err("write device", rel))
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
