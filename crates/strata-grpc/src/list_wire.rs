//! The List answer written straight from stored records: `ListSnapshotsResponse` is this
//! crate's own message type (the build maps the protobuf name to it), so a server can append
//! each snapshot's `Info` already encoded, without building a wire `Info` (and its label map)
//! per snapshot, while a client still receives decoded `Info`s.

use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use strata_core::InfoRef;

use crate::convert::kind_to_wire;
use crate::proto::snapshots as pb;

/// `containerd.services.snapshots.v1.ListSnapshotsResponse` (`repeated Info info = 1`).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct ListSnapshotsResponse {
    /// Decoded infos: what a client receives; a server may also fill it.
    pub info: Vec<pb::Info>,
    /// Infos already encoded as `info` fields (tag and length included), sent after
    /// [`ListSnapshotsResponse::info`]. Empty on the receiving side.
    pub encoded: Vec<u8>,
    /// How many infos `encoded` holds.
    pub encoded_count: usize,
}

impl ListSnapshotsResponse {
    /// An empty answer with room for `bytes` of encoded infos.
    pub fn with_capacity(bytes: usize) -> ListSnapshotsResponse {
        ListSnapshotsResponse {
            info: Vec::new(),
            encoded: Vec::with_capacity(bytes),
            encoded_count: 0,
        }
    }

    /// Appends `info`, encoded exactly as prost encodes the wire `Info` that
    /// [`crate::convert::info_to_wire`] makes of it; `scratch` is reused between calls.
    pub fn push_ref(&mut self, info: &InfoRef<'_>, scratch: &mut Vec<u8>) {
        scratch.clear();
        encode_info(info, scratch);
        encoding::encode_key(1, WireType::LengthDelimited, &mut self.encoded);
        encoding::encode_varint(scratch.len() as u64, &mut self.encoded);
        self.encoded.extend_from_slice(scratch);
        self.encoded_count += 1;
    }

    /// How many infos the answer holds.
    pub fn len(&self) -> usize {
        self.info.len() + self.encoded_count
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

/// The fields of one `Info` (without its own tag and length), in prost's order and with its
/// rules: empty strings and a zero enum omitted, timestamps always present, map entries
/// with empty keys or values omitting that field.
fn encode_info(info: &InfoRef<'_>, buf: &mut Vec<u8>) {
    put_str(1, info.name, buf);
    put_str(2, info.parent, buf);
    let kind = kind_to_wire(info.kind) as i32;
    if kind != 0 {
        encoding::int32::encode(3, &kind, buf);
    }
    encoding::message::encode(4, &prost_types::Timestamp::from(info.created), buf);
    encoding::message::encode(5, &prost_types::Timestamp::from(info.updated), buf);
    for (k, v) in info.labels {
        let len = entry_len(1, k) + entry_len(2, v);
        encoding::encode_key(6, WireType::LengthDelimited, buf);
        encoding::encode_varint(len as u64, buf);
        put_str(1, k, buf);
        put_str(2, v, buf);
    }
}

fn entry_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoding::encoded_len_varint(s.len() as u64) + s.len()
    }
}

impl prost::Message for ListSnapshotsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for info in &self.info {
            encoding::message::encode(1, info, buf);
        }
        buf.put_slice(&self.encoded);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag == 1 {
            encoding::message::merge_repeated(wire_type, &mut self.info, buf, ctx)
        } else {
            encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.info) + self.encoded.len()
    }

    fn clear(&mut self) {
        self.info.clear();
        self.encoded.clear();
        self.encoded_count = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use prost::Message;
    use strata_core::{Info, Kind};

    use super::*;
    use crate::convert::info_to_wire;

    fn info(name: &str, parent: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            created: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            updated: UNIX_EPOCH + Duration::new(1_700_000_001, 0),
        }
    }

    /// Byte for byte what prost writes for the same infos, and it decodes back to them.
    #[test]
    fn encodes_like_prost() {
        let infos = [
            info("a", "", Kind::Active, &[]),
            info(
                "default/1/sha256:x",
                "p",
                Kind::Committed,
                &[("containerd.io/gc.root", "2026"), ("k", ""), ("é", "ü")],
            ),
            info("", "", Kind::View, &[("", "v")]),
            info(&"n".repeat(300), &"q".repeat(200), Kind::View, &[]),
        ];
        let mut ours = ListSnapshotsResponse::default();
        let mut scratch = Vec::new();
        for i in &infos {
            i.with_ref(|r| ours.push_ref(r, &mut scratch));
        }
        let theirs = ListSnapshotsResponse {
            info: infos.iter().cloned().map(info_to_wire).collect(),
            ..Default::default()
        };
        assert_eq!(ours.len(), 4);
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        let back = ListSnapshotsResponse::decode(ours.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.info, theirs.info);
    }
}
