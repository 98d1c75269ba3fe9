//! Reading a tar stream as the logical entries a layer describes.
//!
//! The `tar` crate parses headers; GNU long names and PAX records are gathered here, in the
//! crate's raw mode, so that their size is bounded: a hostile layer can declare a PAX header
//! of gigabytes that a gzip stream of a few megabytes expands to. Go's `archive/tar`, which
//! containerd uses, refuses such headers past 1 MiB; so do we.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use tar::EntryType;

use crate::error::LayerError;

/// Largest GNU long name or PAX header accepted (Go's `archive/tar` limit).
pub(crate) const MAX_SPECIAL_BYTES: u64 = 1 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One entry's header, every extension applied.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub path: PathBuf,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    pub atime: Option<(i64, u32)>,
    pub link: Option<PathBuf>,
    pub device: (u32, u32),
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Header {
    /// The entry's name for messages.
    pub fn shown(&self) -> String {
        self.path.display().to_string()
    }
}

fn corrupt(entry: Option<String>) -> impl FnOnce(io::Error) -> LayerError {
    move |source| LayerError::Corrupt { entry, source }
}

fn read_special(
    entry: &mut impl Read,
    size: u64,
    what: &str,
    near: &str,
) -> Result<Vec<u8>, LayerError> {
    if size > MAX_SPECIAL_BYTES {
        return Err(LayerError::Hostile {
            entry: near.to_owned(),
            reason: format!("{what} of {size} bytes exceeds the {MAX_SPECIAL_BYTES}-byte limit"),
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(corrupt(Some(near.to_owned())))?;
    Ok(data)
}

/// A numeric header field as Go's `archive/tar` reads it: a field of only NULs and spaces is
/// zero (some layer writers leave unused fields empty), anything else must parse.
fn lenient(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

/// The `key=value` records of a PAX header, each `"<length> <key>=<value>\n"`. Split by
/// their length prefix, not by newlines: an xattr value may hold any byte (the `tar` crate's
/// own parser splits on newlines and rejects such values).
fn pax_records(mut data: &[u8]) -> impl Iterator<Item = io::Result<(&[u8], &[u8])>> {
    std::iter::from_fn(move || {
        if data.is_empty() || data.iter().all(|b| *b == 0) {
            return None;
        }
        let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed PAX record");
        let record = (|| {
            let space = data.iter().position(|b| *b == b' ').ok_or_else(malformed)?;
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|l| l.parse().ok())
                .ok_or_else(malformed)?;
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err(malformed());
            }
            let body = &data[space + 1..len - 1];
            let eq = body.iter().position(|b| *b == b'=').ok_or_else(malformed)?;
            let record = (&body[..eq], &body[eq + 1..]);
            data = &data[len..];
            Ok(record)
        })();
        if record.is_err() {
            data = &[];
        }
        Some(record)
    })
}

/// Parses a PAX time (`seconds[.fraction]`, possibly negative).
fn pax_time(value: &str) -> Option<(i64, u32)> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    if value.starts_with('-') && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

/// Calls `f` with each entry of the tar stream `reader` and a reader of its data, stopping
/// at the first error. Returns when the archive's end marker (or the stream's end) is read.
pub(crate) fn for_each(
    reader: impl Read,
    mut f: impl FnMut(Header, &mut dyn Read) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(corrupt(None))?.raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<u8>> = None;
    let mut last = String::from("(start of layer)");
    for entry in entries {
        let mut entry = entry.map_err(corrupt(Some(format!("after {last}"))))?;
        let header = entry.header().clone();
        let size = header.entry_size().map_err(corrupt(Some(last.clone())))?;
        let near = format!("after {last}");
        match header.entry_type() {
            EntryType::GNULongName => {
                long_name = Some(read_special(&mut entry, size, "GNU long name", &near)?);
                continue;
            }
            EntryType::GNULongLink => {
                long_link = Some(read_special(&mut entry, size, "GNU long link", &near)?);
                continue;
            }
            EntryType::XHeader => {
                pax = Some(read_special(&mut entry, size, "PAX header", &near)?);
                continue;
            }
            EntryType::XGlobalHeader => {
                // Ignored, as containerd does.
                read_special(&mut entry, size, "PAX global header", &near)?;
                continue;
            }
            _ => {}
        }
        let mut path = long_name
            .take()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link = long_link
            .take()
            .or_else(|| header.link_name_bytes().map(|b| b.into_owned()));
        while path.last() == Some(&0) {
            path.pop();
        }
        let shown = String::from_utf8_lossy(&path).into_owned();
        let old = header.as_old();
        let mut mtime = (
            lenient(&old.mtime, header.mtime()).map_err(corrupt(Some(shown.clone())))? as i64,
            0,
        );
        let mut atime = None;
        let mut uid = lenient(&old.uid, header.uid()).map_err(corrupt(Some(shown.clone())))?;
        let mut gid = lenient(&old.gid, header.gid()).map_err(corrupt(Some(shown.clone())))?;
        let mut xattrs = Vec::new();
        if let Some(records) = pax.take() {
            for record in pax_records(&records) {
                let (key, value) = record.map_err(corrupt(Some(shown.clone())))?;
                let text = || String::from_utf8_lossy(value).into_owned();
                let bad = |what: &str| LayerError::Hostile {
                    entry: shown.clone(),
                    reason: format!("malformed PAX {what} record {:?}", text()),
                };
                match key {
                    b"path" => path = value.to_vec(),
                    b"linkpath" => link = Some(value.to_vec()),
                    b"mtime" => mtime = pax_time(&text()).ok_or_else(|| bad("mtime"))?,
                    b"atime" => atime = Some(pax_time(&text()).ok_or_else(|| bad("atime"))?),
                    b"uid" => uid = text().parse().map_err(|_| bad("uid"))?,
                    b"gid" => gid = text().parse().map_err(|_| bad("gid"))?,
                    b"size" => {
                        let declared: u64 = text().parse().map_err(|_| bad("size"))?;
                        if declared != size {
                            return Err(LayerError::Unsupported {
                                entry: shown,
                                feature: "a PAX size record (files over 8 GiB)".into(),
                            });
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            xattrs.push((OsString::from_vec(name.to_vec()), value.to_vec()));
                        }
                    }
                }
            }
        }
        let shown = String::from_utf8_lossy(&path).into_owned();
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::GNUSparse => {
                return Err(LayerError::Unsupported {
                    entry: shown,
                    feature: "GNU sparse files".into(),
                });
            }
            other => {
                return Err(LayerError::Unsupported {
                    entry: shown,
                    feature: format!("tar entry type {:?}", other.as_byte() as char),
                });
            }
        };
        let to_u32 = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| LayerError::Hostile {
                entry: shown.clone(),
                reason: format!("{what} {v} does not fit in 32 bits"),
            })
        };
        let device = if matches!(kind, Kind::Char | Kind::Block) {
            (
                header
                    .device_major()
                    .map_err(corrupt(Some(shown.clone())))?
                    .unwrap_or(0),
                header
                    .device_minor()
                    .map_err(corrupt(Some(shown.clone())))?
                    .unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        let parsed = Header {
            path: PathBuf::from(OsString::from_vec(path)),
            kind,
            mode: lenient(&header.as_old().mode, header.mode().map(u64::from))
                .map_err(corrupt(Some(shown.clone())))? as u32
                & 0o7777,
            uid: to_u32(uid, "uid")?,
            gid: to_u32(gid, "gid")?,
            size,
            mtime,
            atime,
            link: link.map(|mut l| {
                while l.last() == Some(&0) {
                    l.pop();
                }
                PathBuf::from(OsString::from_vec(l))
            }),
            device,
            xattrs,
        };
        last = shown;
        f(parsed, &mut entry)?;
    }
    if long_name.is_some() || long_link.is_some() || pax.is_some() {
        return Err(LayerError::Corrupt {
            entry: Some(last),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "an extension header describes an entry that never comes",
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PAX records are split by length, so values may contain newlines and `=`.
    #[test]
    fn pax_records_by_length() {
        let data = b"29 SCHILY.xattr.user.a=x\ny=z\n12 path=abc\n";
        let records: Vec<_> = pax_records(data).map(Result::unwrap).collect();
        assert_eq!(
            records,
            vec![
                (&b"SCHILY.xattr.user.a"[..], &b"x\ny=z"[..]),
                (&b"path"[..], &b"abc"[..])
            ]
        );
        assert!(pax_records(b"99 path=abc\n").next().unwrap().is_err());
    }

    /// PAX times keep their fraction, also before 1970.
    #[test]
    fn pax_times() {
        assert_eq!(pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(pax_time("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(pax_time("x"), None);
    }
}
