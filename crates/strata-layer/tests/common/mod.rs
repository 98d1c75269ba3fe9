//! Helpers of the layer tests: canonical tree listings and hand-made tar streams.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// One line per entry under `root` (sorted): path, type, mode, owner, size, content hash,
/// link target, xattrs (overlay's own excluded), and a hard-link group number. Directory
/// times are left out (they change as children are written); file mtimes are kept.
pub fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut groups: HashMap<u64, usize> = HashMap::new();
    walk(root, root, &mut out, &mut groups);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, groups: &mut HashMap<u64, usize>) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let mut line = format!(
            "{rel} {kind} {:o} {}:{}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        );
        if ft.is_file() {
            let mut hash = Sha256::new();
            let mut f = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0; 65536];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
            }
            line += &format!(
                " size={} sha={:x} mtime={}",
                meta.len(),
                hash.finalize(),
                meta.mtime()
            );
            if meta.nlink() > 1 {
                let next = groups.len();
                let g = *groups.entry(meta.ino()).or_insert(next);
                line += &format!(" link-group={g}");
            }
        }
        if ft.is_symlink() {
            line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
        }
        if ft.is_char_device() || ft.is_block_device() {
            line += &format!(" dev={}", meta.rdev());
        }
        let xattrs: BTreeMap<_, _> = strata_sys::copy::xattrs_of(&path)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"trusted.overlay."))
            .collect();
        for (k, v) in xattrs {
            line += &format!(" xattr:{}={:?}", k.to_string_lossy(), v);
        }
        out.push(line);
        if ft.is_dir() {
            walk(root, &path, out, groups);
        }
    }
}

/// A tar header with raw bytes for its name and link (bypassing the `tar` crate's checks,
/// which refuse the hostile names these tests need).
pub fn raw_header(kind: tar::EntryType, name: &[u8], link: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_cksum();
    h
}

/// A tar stream of `entries` (header, data), with the end-of-archive marker.
pub fn tar_of(entries: Vec<(tar::Header, Vec<u8>)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, data) in entries {
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Requires root: the tests create devices, chown and mount. CI runs as root.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (devices, ownership, overlay mounts); CI runs it as root"
    );
}
