//! The on-disk encoding of one snapshot record: a small hand-written, versioned binary format
//! (little-endian integers, length-prefixed strings), so the layout is explicit and stable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_core::snapshot::Labels;
use strata_core::{Error, Info, InfoRef, Kind, Result, Usage};

/// Format version written as the first byte of every record.
const RECORD_V1: u8 = 1;

/// Everything stored about one snapshot; its key is the table key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Numeric id, fixed at creation and kept by Commit; names the snapshot's directory.
    pub id: u64,
    /// Kind of the snapshot.
    pub kind: Kind,
    /// Key of the committed parent, empty for none.
    pub parent: String,
    /// User labels.
    pub labels: Labels,
    /// Creation (or commit) time.
    pub created: SystemTime,
    /// Time of the last label update.
    pub updated: SystemTime,
    /// Usage measured at Commit; `None` for active snapshots and views.
    pub usage: Option<Usage>,
}

impl Record {
    /// The [`Info`] of this record under `key`.
    pub fn info(&self, key: &str) -> Info {
        Info {
            name: key.to_owned(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: self.created,
            updated: self.updated,
        }
    }

    /// The [`Info`] of this record under `key`, consuming it (no copies of labels).
    pub fn into_info(self, key: &str) -> Info {
        Info {
            name: key.to_owned(),
            parent: self.parent,
            kind: self.kind,
            labels: self.labels,
            created: self.created,
            updated: self.updated,
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.parent.len());
        out.push(RECORD_V1);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.push(match self.kind {
            Kind::View => 1,
            Kind::Active => 2,
            Kind::Committed => 3,
        });
        put_time(&mut out, self.created);
        put_time(&mut out, self.updated);
        match self.usage {
            Some(u) => {
                out.push(1);
                out.extend_from_slice(&u.size.to_le_bytes());
                out.extend_from_slice(&u.inodes.to_le_bytes());
            }
            None => out.push(0),
        }
        put_str(&mut out, &self.parent);
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        for (k, v) in &self.labels {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        out
    }

    /// Decodes a record written by [`Record::encode`]; `key` only serves the error message.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
        let mut r = Reader { bytes, key };
        let Head {
            id,
            kind,
            created,
            updated,
            usage,
        } = r.head()?;
        let parent = r.string()?;
        let n = r.u32()?;
        let mut labels = Labels::new();
        for _ in 0..n {
            let k = r.string()?;
            let v = r.string()?;
            labels.insert(k, v);
        }
        Ok(Record {
            id,
            kind,
            parent,
            labels,
            created,
            updated,
            usage,
        })
    }
}

/// What a walk up the parents needs of a record: its id, kind and parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The snapshot's id.
    pub id: u64,
    /// Its kind.
    pub kind: Kind,
    /// Its parent's key, empty for none.
    pub parent: String,
}

impl Link {
    /// The id, kind and parent of the record stored as `bytes` under `key`, without
    /// decoding its labels (which [`Record::decode`] checks).
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Link> {
        let mut r = Reader { bytes, key };
        let Head { id, kind, .. } = r.head()?;
        let parent = r.string()?;
        Ok(Link { id, kind, parent })
    }
}

/// Calls `f` with the record stored as `bytes` under `key`, borrowed: no label map, no
/// string copied. Checks exactly what [`Record::decode`] checks.
pub fn with_info_ref<T>(
    key: &str,
    bytes: &[u8],
    f: impl FnOnce(&InfoRef<'_>) -> Result<T>,
) -> Result<T> {
    let mut r = Reader { bytes, key };
    let Head {
        kind,
        created,
        updated,
        ..
    } = r.head()?;
    let parent = r.str_ref()?;
    let n = r.u32()? as usize;
    let mut labels = Vec::with_capacity(n.min(r.bytes.len() / 8));
    for _ in 0..n {
        let k = r.str_ref()?;
        let v = r.str_ref()?;
        labels.push((k, v));
    }
    f(&InfoRef {
        name: key,
        parent,
        kind,
        labels: &labels,
        created,
        updated,
    })
}

fn put_time(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(&d.as_secs().to_le_bytes());
    out.extend_from_slice(&d.subsec_nanos().to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    key: &'a str,
}

/// A record's fixed fields, before its parent and labels.
struct Head {
    id: u64,
    kind: Kind,
    created: SystemTime,
    updated: SystemTime,
    usage: Option<Usage>,
}

impl<'a> Reader<'a> {
    /// The version byte (checked) and the fixed fields.
    fn head(&mut self) -> Result<Head> {
        let version = self.u8()?;
        if version != RECORD_V1 {
            return Err(self.corrupt(&format!("unknown record version {version}")));
        }
        let id = self.u64()?;
        let kind = match self.u8()? {
            1 => Kind::View,
            2 => Kind::Active,
            3 => Kind::Committed,
            other => return Err(self.corrupt(&format!("unknown kind {other}"))),
        };
        let created = self.time()?;
        let updated = self.time()?;
        let usage = match self.u8()? {
            0 => None,
            _ => Some(Usage {
                size: self.u64()? as i64,
                inodes: self.u64()? as i64,
            }),
        };
        Ok(Head {
            id,
            kind,
            created,
            updated,
            usage,
        })
    }

    fn corrupt(&self, what: &str) -> Error {
        crate::errors::corrupted(format!("record of snapshot {:?}", self.key), what)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn time(&mut self) -> Result<SystemTime> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(self.corrupt("timestamp nanoseconds out of range"));
        }
        Ok(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    fn str_ref(&mut self) -> Result<&'a str> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("string is not UTF-8"))
    }

    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.corrupt("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field survives an encode/decode round trip, nanoseconds included.
    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let record = Record {
            id: 42,
            kind: Kind::Committed,
            parent: "base".into(),
            labels: [("a".to_string(), "1".to_string())].into(),
            created: t,
            updated: t + Duration::from_nanos(1),
            usage: Some(Usage {
                size: 4096,
                inodes: 3,
            }),
        };
        assert_eq!(Record::decode("k", &record.encode()).unwrap(), record);
        // The borrowed reading sees the same info.
        let info = record.info("k");
        with_info_ref("k", &record.encode(), |r| {
            info.with_ref(|expected| assert_eq!(r, expected));
            Ok(())
        })
        .unwrap();
    }

    /// A truncated or unknown record is a clear Store error, never a panic.
    #[test]
    fn corrupt_records_are_errors() {
        let record = Record {
            id: 1,
            kind: Kind::Active,
            parent: String::new(),
            labels: Labels::new(),
            created: UNIX_EPOCH,
            updated: UNIX_EPOCH,
            usage: None,
        };
        let bytes = record.encode();
        for n in 0..bytes.len() {
            assert!(matches!(
                Record::decode("k", &bytes[..n]),
                Err(Error::Store(strata_core::StoreError::Corrupted { .. }))
            ));
            assert!(matches!(
                with_info_ref("k", &bytes[..n], |_| Ok(())),
                Err(Error::Store(strata_core::StoreError::Corrupted { .. }))
            ));
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(Record::decode("k", &bad).is_err());
    }
}
