//! Fuzzes request decoding and conversion: `cargo +nightly fuzz run request_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_grpc::convert;
use strata_grpc::proto::snapshots as pb;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = pb::PrepareSnapshotRequest::decode(data) {
        let _ = strata_core::labels::validate(&r.labels);
    }
    if let Ok(r) = pb::UpdateSnapshotRequest::decode(data)
        && let Some(info) = r.info
    {
        let _ = convert::info_from_wire(info);
    }
    let _ = pb::CommitSnapshotRequest::decode(data);
    let _ = pb::ListSnapshotsRequest::decode(data);
});
