//! Request decoding and handling on arbitrary input (the stable-toolchain twin of the
//! cargo-fuzz target `fuzz/fuzz_targets/request_decode.rs`): any bytes that decode as a
//! request, and any structured request with hostile strings, go through the real service
//! in-process, over both real backends, and get either success or a contract error — never a
//! panic, never `Internal`.
//!
//! It lives with the adapter because it speaks the wire types, which nothing outside this
//! crate sees; the daemon-level hostile suite (`crates/strata/tests/hostile.rs`) drives the
//! real binary through the typed client and `strata_grpc::raw`.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use prost::Message;
use strata_backend::native::Native;
use strata_backend::overlay::{Overlay, OverlayOptions};
use strata_backend::{Engine, EngineOptions};
use strata_core::Snapshotter;
use strata_grpc::backends::Backends;
use strata_grpc::proto::snapshots as pb;
use strata_grpc::proto::snapshots::snapshots_server::Snapshots;
use strata_grpc::server::SnapshotService;
use tonic::{Code, Request};

struct Fixture {
    _dir: tempfile::TempDir,
    service: SnapshotService,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let overlay = Overlay::new(&root.join("overlay"), OverlayOptions::probe(Vec::new()))
            .expect("overlay driver");
        let (overlay, _) = Engine::open(&root.join("overlay"), overlay, EngineOptions::default())
            .expect("overlay backend");
        let (native, _) = Engine::open(&root.join("native"), Native, EngineOptions::default())
            .expect("native backend");
        let backends: Vec<Arc<dyn Snapshotter>> = vec![Arc::new(overlay), Arc::new(native)];
        let backends = Arc::new(Backends::new(backends));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let service = SnapshotService::new(backends);
        runtime.block_on(async {
            service
                .prepare(Request::new(pb::PrepareSnapshotRequest {
                    key: "seed-a".into(),
                    ..Default::default()
                }))
                .await
                .unwrap();
            service
                .commit(Request::new(pb::CommitSnapshotRequest {
                    name: "seed".into(),
                    key: "seed-a".into(),
                    ..Default::default()
                }))
                .await
                .unwrap();
        });
        Fixture {
            _dir: dir,
            service,
            runtime,
        }
    })
}

fn acceptable(result: Result<(), tonic::Status>) -> Result<(), TestCaseError> {
    if let Err(status) = result {
        prop_assert!(
            matches!(
                status.code(),
                Code::NotFound
                    | Code::AlreadyExists
                    | Code::FailedPrecondition
                    | Code::InvalidArgument
            ),
            "{:?}: {}",
            status.code(),
            status.message()
        );
        prop_assert!(!status.message().is_empty());
    }
    Ok(())
}

/// Decodes `bytes` as every request type and runs whatever decodes.
fn exercise(bytes: &[u8]) -> Result<(), TestCaseError> {
    let f = fixture();
    let s = &f.service;
    f.runtime.block_on(async {
        if let Ok(r) = pb::PrepareSnapshotRequest::decode(bytes) {
            acceptable(s.prepare(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::ViewSnapshotRequest::decode(bytes) {
            acceptable(s.view(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::CommitSnapshotRequest::decode(bytes) {
            acceptable(s.commit(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::StatSnapshotRequest::decode(bytes) {
            acceptable(s.stat(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::UpdateSnapshotRequest::decode(bytes) {
            acceptable(s.update(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::UsageRequest::decode(bytes) {
            acceptable(s.usage(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::MountsRequest::decode(bytes) {
            acceptable(s.mounts(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::ListSnapshotsRequest::decode(bytes) {
            acceptable(s.list(Request::new(r)).await.map(drop))?;
        }
        if let Ok(r) = pb::RemoveSnapshotRequest::decode(bytes) {
            acceptable(s.remove(Request::new(r)).await.map(drop))?;
        }
        Ok(())
    })
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("seed".to_string()),
        Just("seed-a".to_string()),
        Just("../../etc".to_string()),
        Just("strata-native".to_string()),
        "\\PC{0,12}",
        "[a-z\0/.]{0,8}",
        (0usize..6000).prop_map(|n| "k".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes.
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise(&bytes)?;
    }

    /// Well-formed messages carrying hostile strings in every field.
    #[test]
    fn hostile_fields(
        snapshotter in prop_oneof![Just(String::new()), Just("native".to_string()), hostile_string()],
        key in hostile_string(),
        parent in hostile_string(),
        label_key in hostile_string(),
        label_value in hostile_string(),
        filter in hostile_string(),
        paths in prop::collection::vec(hostile_string(), 0..3),
    ) {
        let labels: std::collections::BTreeMap<_, _> = [(label_key, label_value)].into();
        let prepare = pb::PrepareSnapshotRequest { snapshotter: snapshotter.clone(), key: key.clone(), parent: parent.clone(), labels: labels.clone() };
        exercise(&prepare.encode_to_vec())?;
        let commit = pb::CommitSnapshotRequest { snapshotter: snapshotter.clone(), name: parent.clone(), key: key.clone(), labels: labels.clone(), parent: parent.clone() };
        exercise(&commit.encode_to_vec())?;
        let update = pb::UpdateSnapshotRequest {
            snapshotter: snapshotter.clone(),
            info: Some(pb::Info { name: key.clone(), labels, ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        exercise(&update.encode_to_vec())?;
        let list = pb::ListSnapshotsRequest { snapshotter, filters: vec![filter] };
        exercise(&list.encode_to_vec())?;
    }
}
