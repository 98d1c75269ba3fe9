//! The table-level changes a write makes, and their encoding in the intent log.
//!
//! Every change to the tables goes through one [`Change`] (see `Tables::apply`), which is
//! both performed and appended to the batch's encoding; replaying an entry decodes the same
//! changes and performs them in the same order. Each change sets or clears one entry to a
//! value fixed in the change (ids and times included), so replay lands on exactly the state
//! the batch left.

use strata_core::StoreError;

/// One change to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// `snapshots[key] = record`.
    PutRecord { key: &'a str, record: &'a [u8] },
    /// `snapshots[key]` removed.
    DeleteRecord { key: &'a str },
    /// `ids[id] = key`.
    PutId { id: u64, key: &'a str },
    /// `ids[id]` removed.
    DeleteId { id: u64 },
    /// `key` added to `children[parent]`.
    PutChild { parent: &'a str, key: &'a str },
    /// `key` removed from `children[parent]`.
    DeleteChild { parent: &'a str, key: &'a str },
    /// `key` added to `labels[entry]`.
    PutLabel { entry: &'a str, key: &'a str },
    /// `key` removed from `labels[entry]`.
    DeleteLabel { entry: &'a str, key: &'a str },
    /// `meta[name] = value`.
    PutMeta { name: &'a str, value: u64 },
}

impl Change<'_> {
    /// Appends the change's encoding to `out`: a tag byte, then its fields (integers
    /// little-endian, strings and bytes with a `u32` length).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Change::PutRecord { key, record } => {
                out.push(1);
                put_bytes(out, key.as_bytes());
                put_bytes(out, record);
            }
            Change::DeleteRecord { key } => {
                out.push(2);
                put_bytes(out, key.as_bytes());
            }
            Change::PutId { id, key } => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
                put_bytes(out, key.as_bytes());
            }
            Change::DeleteId { id } => {
                out.push(4);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Change::PutChild { parent, key } => pair(out, 5, parent, key),
            Change::DeleteChild { parent, key } => pair(out, 6, parent, key),
            Change::PutLabel { entry, key } => pair(out, 7, entry, key),
            Change::DeleteLabel { entry, key } => pair(out, 8, entry, key),
            Change::PutMeta { name, value } => {
                out.push(9);
                put_bytes(out, name.as_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
}

fn pair(out: &mut Vec<u8>, tag: u8, a: &str, b: &str) {
    out.push(tag);
    put_bytes(out, a.as_bytes());
    put_bytes(out, b.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes the changes of one log entry, in order. `seq` names the entry in errors.
pub(crate) fn decode(payload: &[u8], seq: u64) -> Result<Vec<Change<'_>>, StoreError> {
    let mut r = Reader {
        bytes: payload,
        seq,
    };
    let mut changes = Vec::new();
    while !r.bytes.is_empty() {
        let change = match r.take(1)?[0] {
            1 => Change::PutRecord {
                key: r.str()?,
                record: r.bytes()?,
            },
            2 => Change::DeleteRecord { key: r.str()? },
            3 => Change::PutId {
                id: r.u64()?,
                key: r.str()?,
            },
            4 => Change::DeleteId { id: r.u64()? },
            5 => Change::PutChild {
                parent: r.str()?,
                key: r.str()?,
            },
            6 => Change::DeleteChild {
                parent: r.str()?,
                key: r.str()?,
            },
            7 => Change::PutLabel {
                entry: r.str()?,
                key: r.str()?,
            },
            8 => Change::DeleteLabel {
                entry: r.str()?,
                key: r.str()?,
            },
            9 => Change::PutMeta {
                name: r.str()?,
                value: r.u64()?,
            },
            tag => return Err(r.corrupt(&format!("unknown change {tag}"))),
        };
        changes.push(change);
    }
    Ok(changes)
}

struct Reader<'a> {
    bytes: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupted {
            context: format!("intent log entry {}", self.seq),
            detail: what.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }

    fn str(&mut self) -> Result<&'a str, StoreError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("a key that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every change decodes to itself; a truncated or unknown one is damage, named by the
    /// entry's number.
    #[test]
    fn round_trip() {
        let changes = [
            Change::PutRecord {
                key: "a",
                record: &[1, 2, 3],
            },
            Change::DeleteRecord { key: "b" },
            Change::PutId { id: 7, key: "a" },
            Change::DeleteId { id: 8 },
            Change::PutChild {
                parent: "p",
                key: "a",
            },
            Change::DeleteChild {
                parent: "p",
                key: "b",
            },
            Change::PutLabel {
                entry: "k\0v",
                key: "a",
            },
            Change::DeleteLabel {
                entry: "k\0w",
                key: "a",
            },
            Change::PutMeta {
                name: "next_id",
                value: 9,
            },
        ];
        let mut out = Vec::new();
        for c in &changes {
            c.encode(&mut out);
        }
        assert_eq!(decode(&out, 1).unwrap(), changes);
        let e = decode(&out[..out.len() - 1], 5).unwrap_err();
        assert_eq!(e.to_string(), "intent log entry 5: truncated");
        assert!(
            decode(&[42], 5)
                .unwrap_err()
                .to_string()
                .contains("unknown change 42")
        );
    }
}
