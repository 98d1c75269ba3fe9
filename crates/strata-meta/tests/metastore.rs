//! containerd's `MetaStoreSuite` (snapshots/storage/metastore_test.go), ported: every
//! metadata operation in its success and error forms, plus what Strata adds (rebase on
//! commit, the labels index, group commit, the schema version).

use std::sync::Arc;

use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Filter, Kind, StoreError, Usage};
use strata_meta::{Snapshot, Store};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("metadata.redb")).unwrap();
    (dir, store)
}

fn create(store: &Store, kind: Kind, key: &str, parent: &str) -> Result<Snapshot, Error> {
    let (key, parent) = (key.to_owned(), parent.to_owned());
    store.write(&Ctx::background(), move |tx| {
        let plan = tx.plan_create(kind, &key, &parent)?;
        tx.create(plan, labels(&[("origin", &key)]))
    })
}

fn commit(store: &Store, key: &str, name: &str, parent: Option<&str>) -> Result<u64, Error> {
    let (key, name, parent) = (key.to_owned(), name.to_owned(), parent.map(str::to_owned));
    store.write(&Ctx::background(), move |tx| {
        tx.commit(
            &key,
            &name,
            Labels::new(),
            parent.as_deref(),
            Usage { size: 8, inodes: 2 },
            None,
        )
    })
}

fn remove(store: &Store, key: &str) -> Result<(), Error> {
    let key = key.to_owned();
    store.write(&Ctx::background(), move |tx| tx.remove(&key).map(|_| ()))
}

/// containerd's `basePopulate`: two committed layers, actives and views on them.
fn populate(store: &Store) {
    create(store, Kind::Active, "committed-tmp-1", "").unwrap();
    commit(store, "committed-tmp-1", "committed-1", None).unwrap();
    create(store, Kind::Active, "committed-tmp-2", "committed-1").unwrap();
    commit(store, "committed-tmp-2", "committed-2", None).unwrap();
    create(store, Kind::Active, "active-1", "").unwrap();
    create(store, Kind::Active, "active-2", "committed-1").unwrap();
    create(store, Kind::Active, "active-3", "committed-2").unwrap();
    create(store, Kind::View, "view-1", "").unwrap();
    create(store, Kind::View, "view-2", "committed-2").unwrap();
}

/// GetInfo returns kind, parent and labels of every populated snapshot.
#[test]
fn get_info() {
    let (_d, store) = open();
    populate(&store);
    let cases = [
        ("committed-1", Kind::Committed, ""),
        ("committed-2", Kind::Committed, "committed-1"),
        ("active-1", Kind::Active, ""),
        ("active-2", Kind::Active, "committed-1"),
        ("active-3", Kind::Active, "committed-2"),
        ("view-1", Kind::View, ""),
        ("view-2", Kind::View, "committed-2"),
    ];
    for (key, kind, parent) in cases {
        let info = store.read(&Ctx::background(), |tx| tx.stat(key)).unwrap();
        assert_eq!(
            (info.name.as_str(), info.kind, info.parent.as_str()),
            (key, kind, parent)
        );
        assert_eq!(
            info.created, info.updated,
            "{key}: created == updated until an Update"
        );
    }
    // Commit replaces labels; actives keep theirs.
    assert!(
        store
            .read(&Ctx::background(), |tx| tx.stat("committed-1"))
            .unwrap()
            .labels
            .is_empty()
    );
    assert_eq!(
        store
            .read(&Ctx::background(), |tx| tx.stat("active-1"))
            .unwrap()
            .labels,
        labels(&[("origin", "active-1")])
    );
}

/// GetInfoNotExist and GetInfoEmptyDB: NotFound, in a populated and in an empty store.
#[test]
fn get_info_not_exist() {
    let (_d, store) = open();
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.stat("active-not-exist")),
        Err(Error::NotFound { .. })
    ));
    populate(&store);
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.stat("active-not-exist")),
        Err(Error::NotFound { .. })
    ));
}

/// Walk visits every snapshot once, in key order, and honours filters.
#[test]
fn walk() {
    let (_d, store) = open();
    populate(&store);
    let names = |filters: &[&str]| {
        let filter = Filter::parse_all(filters).unwrap();
        let mut names = Vec::new();
        store
            .read(&Ctx::background(), |tx| {
                tx.walk(&filter, &mut |info| {
                    names.push(info.name);
                    Ok(())
                })
            })
            .unwrap();
        names
    };
    assert_eq!(
        names(&[]),
        [
            "active-1",
            "active-2",
            "active-3",
            "committed-1",
            "committed-2",
            "view-1",
            "view-2"
        ]
    );
    assert_eq!(names(&["kind==view"]), ["view-1", "view-2"]);
    assert_eq!(names(&["parent==committed-2"]), ["active-3", "view-2"]);
    assert_eq!(
        names(&["kind==active,parent==committed-1", "name~=^view-1$"]),
        ["active-2", "view-1"]
    );
}

/// Label filters answered from the labels index agree with a full scan, through updates,
/// commits and removes.
#[test]
fn walk_by_label_uses_index_consistently() {
    let (_d, store) = open();
    populate(&store);
    let names = |filter: &str| {
        let filter = Filter::parse(filter).unwrap();
        let mut names = Vec::new();
        store
            .read(&Ctx::background(), |tx| {
                tx.walk(&filter, &mut |info| {
                    names.push(info.name);
                    Ok(())
                })
            })
            .unwrap();
        names
    };
    assert_eq!(names("labels.origin==active-2"), ["active-2"]);
    assert_eq!(
        names(r#"labels."origin"==active-2,kind==active"#),
        ["active-2"]
    );
    store
        .write(&Ctx::background(), |tx| {
            tx.update(
                "active-2",
                &labels(&[("origin", "moved")]),
                &["labels.origin".into()],
            )
        })
        .unwrap();
    assert!(names("labels.origin==active-2").is_empty());
    assert_eq!(names("labels.origin==moved"), ["active-2"]);
    commit(&store, "active-2", "committed-3", None).unwrap();
    assert!(
        names("labels.origin==moved").is_empty(),
        "commit replaces labels"
    );
    remove(&store, "view-1").unwrap();
    assert!(names("labels.origin==view-1").is_empty());
}

/// GetSnapshot gives the id and the ancestor ids, nearest first.
#[test]
fn get_snapshot_parent_ids() {
    let (_d, store) = open();
    let base = create(&store, Kind::Active, "a", "").unwrap();
    commit(&store, "a", "A", None).unwrap();
    let mid = create(&store, Kind::Active, "b", "A").unwrap();
    assert_eq!(mid.parent_ids, vec![base.id]);
    commit(&store, "b", "B", None).unwrap();
    let top = create(&store, Kind::View, "c", "B").unwrap();
    assert_eq!(top.parent_ids, vec![mid.id, base.id]);
    let again = store
        .read(&Ctx::background(), |tx| tx.snapshot("c"))
        .unwrap();
    assert_eq!(again, top);
    // Commit keeps the id.
    assert_eq!(
        store
            .read(&Ctx::background(), |tx| tx.snapshot("B"))
            .unwrap()
            .id,
        mid.id
    );
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.snapshot("nope")),
        Err(Error::NotFound { .. })
    ));
}

/// CreateActive with a missing parent is NotFound; with an existing key AlreadyExists; on
/// an active parent InvalidArgument (only committed snapshots can be parents).
#[test]
fn create_errors() {
    let (_d, store) = open();
    populate(&store);
    assert!(matches!(
        create(&store, Kind::Active, "x", "no-parent"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        create(&store, Kind::Active, "active-1", ""),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        create(&store, Kind::View, "committed-1", ""),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        create(&store, Kind::Active, "x", "active-1"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        create(&store, Kind::Active, "x", "view-1"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        create(&store, Kind::Committed, "x", ""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        matches!(
            store.read(&Ctx::background(), |tx| tx.stat("x")),
            Err(Error::NotFound { .. })
        ),
        "nothing written"
    );
}

/// Commit moves the record to its name, keeps the id, stores usage, and frees the key.
#[test]
fn commit_moves_record() {
    let (_d, store) = open();
    let active = create(&store, Kind::Active, "k", "").unwrap();
    assert_eq!(commit(&store, "k", "n", None).unwrap(), active.id);
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.stat("k")),
        Err(Error::NotFound { .. })
    ));
    let record = store.read(&Ctx::background(), |tx| tx.get("n")).unwrap();
    assert_eq!((record.id, record.kind), (active.id, Kind::Committed));
    assert_eq!(record.usage, Some(Usage { size: 8, inodes: 2 }));
    create(&store, Kind::Active, "k", "n").expect("key reusable after commit");
}

/// CommitNotExist, CommitExist, CommitCommitted, CommitViewFails.
#[test]
fn commit_errors() {
    let (_d, store) = open();
    populate(&store);
    assert!(matches!(
        commit(&store, "missing", "x", None),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        commit(&store, "active-1", "committed-1", None),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        commit(&store, "committed-1", "x", None),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        commit(&store, "view-1", "x", None),
        Err(Error::FailedPrecondition(_))
    ));
    assert_eq!(
        store
            .read(&Ctx::background(), |tx| tx.stat("active-1"))
            .unwrap()
            .kind,
        Kind::Active,
        "unchanged"
    );
}

/// Rebase (containerd 2.2's Commit parent): same parent or none→committed is accepted; a
/// conflicting, missing or non-committed parent is refused.
#[test]
fn commit_rebase() {
    let (_d, store) = open();
    populate(&store);
    commit(&store, "active-2", "same", Some("committed-1")).expect("same parent");
    assert!(matches!(
        commit(&store, "active-3", "x", Some("committed-1")),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        commit(&store, "active-1", "x", Some("missing")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        commit(&store, "active-1", "x", Some("active-3")),
        Err(Error::InvalidArgument(_))
    ));
    commit(&store, "active-1", "rebased", Some("committed-2")).expect("none → committed");
    assert_eq!(
        store
            .read(&Ctx::background(), |tx| tx.stat("rebased"))
            .unwrap()
            .parent,
        "committed-2"
    );
    assert!(
        store
            .read(&Ctx::background(), |tx| tx.has_children("committed-2"))
            .unwrap()
    );
    assert!(matches!(
        remove(&store, "committed-2"),
        Err(Error::FailedPrecondition(_))
    ));
}

/// Remove deletes; RemoveNotExist is NotFound; RemoveWithChildren is FailedPrecondition
/// until the children are gone; keys are reusable afterwards.
#[test]
fn remove_rules() {
    let (_d, store) = open();
    populate(&store);
    assert!(matches!(
        remove(&store, "missing"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        remove(&store, "committed-1"),
        Err(Error::FailedPrecondition(_))
    ));
    remove(&store, "active-2").unwrap();
    assert!(
        matches!(
            remove(&store, "committed-1"),
            Err(Error::FailedPrecondition(_))
        ),
        "committed-2 is a child"
    );
    for key in ["active-3", "view-2", "committed-2", "committed-1"] {
        remove(&store, key).unwrap();
    }
    let ids = store.read(&Ctx::background(), |tx| tx.ids()).unwrap();
    assert_eq!(ids.len(), 2, "active-1 and view-1 remain");
    create(&store, Kind::Active, "committed-1", "").expect("key reusable after remove");
}

/// Update applies containerd's masks, moves `updated` and not `created`, and refuses
/// immutable fields without changing anything.
#[test]
fn update_labels() {
    let (_d, store) = open();
    create(&store, Kind::Active, "a", "").unwrap();
    let before = store.read(&Ctx::background(), |tx| tx.stat("a")).unwrap();
    let after = store
        .write(&Ctx::background(), |tx| {
            tx.update("a", &labels(&[("x", "1")]), &[])
        })
        .unwrap();
    assert_eq!(after.labels, labels(&[("x", "1")]));
    assert_eq!(after.created, before.created);
    assert!(after.updated > before.updated);
    assert!(matches!(
        store.write(&Ctx::background(), |tx| tx.update(
            "a",
            &Labels::new(),
            &["parent".into()]
        )),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        store.write(&Ctx::background(), |tx| tx.update("b", &Labels::new(), &[])),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        store.read(&Ctx::background(), |tx| tx.stat("a")).unwrap(),
        after
    );
}

/// Ids are never reused, even after removes and a reopen.
#[test]
fn ids_are_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    let first = {
        let store = Store::open(&path).unwrap();
        let s = create(&store, Kind::Active, "a", "").unwrap();
        remove(&store, "a").unwrap();
        s.id
    };
    let store = Store::open(&path).unwrap();
    let second = create(&store, Kind::Active, "a", "").unwrap();
    assert!(second.id > first);
    store
        .write(&Ctx::background(), |tx| tx.reserve_ids_below(100))
        .unwrap();
    assert_eq!(create(&store, Kind::Active, "b", "").unwrap().id, 100);
}

/// Group commit: many threads writing at once all succeed, get distinct ids, and every
/// acknowledged write is in the store after a reopen.
#[test]
fn concurrent_writers_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    let store = Arc::new(Store::open(&path).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        create(&store, Kind::Active, &format!("t{t}-{i}"), "")
                            .unwrap()
                            .id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 400);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.read(&Ctx::background(), |tx| tx.ids()).unwrap().len(),
        400
    );
}

/// Ids reserved ahead of their records (a directory built under its final name) are never
/// handed out twice, not even to a batch's own plan; they may be recorded out of order; and
/// the stored next id stays above every recorded one, across a reopen too.
#[test]
fn reserved_ids_are_unique_and_recorded_in_any_order() {
    let (dir, store) = open();
    let bg = Ctx::background();
    let a = store.reserve_id(&bg).unwrap();
    let b = store.reserve_id(&bg).unwrap();
    assert_ne!(a, b);
    for (id, key) in [(b, "b"), (a, "a")] {
        let recorded = store
            .write(&bg, move |tx| {
                let plan = tx.plan_create_as(id, Kind::Active, key, "", Vec::new())?;
                tx.create(plan, Labels::new())
            })
            .unwrap();
        assert_eq!(recorded.id, id);
    }
    let c = create(&store, Kind::Active, "c", "").unwrap().id;
    assert!(
        c > a.max(b),
        "a batch's own id {c} is above the reserved {a}, {b}"
    );
    let unused = store.reserve_id(&bg).unwrap();
    assert!(unused > c);
    drop(store);
    let store = Store::open(&dir.path().join("metadata.redb")).unwrap();
    let next = store.reserve_id(&bg).unwrap();
    assert!(
        next > a.max(b).max(c),
        "after a reopen, {next} is above every recorded id"
    );
    assert_eq!(
        store.read(&bg, |tx| tx.ids()).unwrap().len(),
        3,
        "the reserved but unrecorded id {unused} left nothing"
    );
}

/// A snapshot planned on ancestors read before its batch is refused (FailedPrecondition,
/// nothing written) when its parent was removed and made again meanwhile, and recorded with
/// those ancestors when the parent is the one they were read from.
#[test]
fn a_parent_replaced_before_the_batch_is_refused() {
    let (_d, store) = open();
    let bg = Ctx::background();
    create(&store, Kind::Active, "p-a", "").unwrap();
    commit(&store, "p-a", "p", None).unwrap();
    create(&store, Kind::Active, "q-a", "p").unwrap();
    commit(&store, "q-a", "q", None).unwrap();
    let ancestry = |key: &'static str| {
        store
            .read(&bg, |tx| tx.plan_create(Kind::Active, key, "q"))
            .unwrap()
            .parent_ids
    };
    let record = |key: &'static str, ancestors: Vec<u64>| {
        let id = store.reserve_id(&bg).unwrap();
        store.write(&bg, move |tx| {
            let plan = tx.plan_create_as(id, Kind::Active, key, "q", ancestors)?;
            tx.create(plan, Labels::new())
        })
    };
    let before = ancestry("child");
    assert_eq!(before.len(), 2);
    let kept = record("kept", before.clone()).unwrap();
    assert_eq!(kept.parent_ids, before);
    remove(&store, "kept").unwrap();
    remove(&store, "q").unwrap();
    create(&store, Kind::Active, "q-b", "p").unwrap();
    commit(&store, "q-b", "q", None).unwrap();
    let refused = record("child", before).unwrap_err();
    assert!(
        matches!(refused, Error::FailedPrecondition(ref m) if m.contains("replaced")),
        "{refused}"
    );
    assert!(matches!(
        store.read(&bg, |tx| tx.stat("child")),
        Err(Error::NotFound { .. })
    ));
    let now = ancestry("child");
    assert_eq!(record("child", now.clone()).unwrap().parent_ids, now);
}

/// An operation that fails after writing aborts its whole batch: nothing of it lands.
#[test]
fn failure_after_write_rolls_back() {
    let (_d, store) = open();
    let result: Result<u64, Error> = store.write(&Ctx::background(), |tx| {
        let plan = tx.plan_create(Kind::Active, "half", "")?;
        let id = plan.id;
        tx.create(plan, Labels::new())?;
        Err(Error::FailedPrecondition(format!(
            "simulated failure after the write of id {id}"
        )))
    });
    let message = result.unwrap_err().to_string();
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.stat("half")),
        Err(Error::NotFound { .. })
    ));
    let next = create(&store, Kind::Active, "next", "").expect("the store carries on");
    assert!(
        next.id > 1,
        "the rolled-back id 1 is not handed out again ({message})"
    );
}

/// A store written by a newer schema is refused with a message naming the file, and a
/// file that is not a store is refused rather than replaced by an empty one; each failure
/// keeps its kind (damaged, newer schema, already open) for the caller to act on.
#[test]
fn refuses_unknown_or_corrupt_stores() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&garbage).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Corrupted { .. })),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("garbage.redb"), "{err}");
    assert_eq!(
        std::fs::read(&garbage).unwrap(),
        vec![0x5a; 8192],
        "file untouched"
    );

    let newer = dir.path().join("newer.redb");
    drop(Store::open(&newer).unwrap());
    {
        let db = redb::Database::create(&newer).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&newer).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::NewerSchema {
                found: 99,
                supported: 1,
                ..
            })
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("newer.redb") && err.contains("schema version 99"),
        "{err}"
    );

    let held = dir.path().join("held.redb");
    let _open = Store::open(&held).unwrap();
    let err = Store::open(&held).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::AlreadyOpen { .. })),
        "{err:?}"
    );
}

/// Operations after close fail with Closed; close is idempotent.
#[test]
fn closed_store_refuses() {
    let (_d, store) = open();
    store.close();
    store.close();
    assert!(matches!(
        store.read(&Ctx::background(), |tx| tx.ids()),
        Err(Error::Closed)
    ));
    assert!(matches!(
        create(&store, Kind::Active, "a", ""),
        Err(Error::Closed)
    ));
}

/// A tool, not a test: rewrites the schema-1 fixture (`tests/fixtures/schema-v1.redb`) that
/// [`reads_a_schema_v1_store`] checks. Ignored, so the suite never runs it; run it by hand,
/// only when the fixture must be regenerated: `cargo test -p strata-meta --test metastore
/// write_schema_v1_fixture -- --ignored --exact`.
#[test]
#[ignore = "tool: rewrites tests/fixtures/schema-v1.redb (run with --ignored)"]
fn write_schema_v1_fixture() {
    let path = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/fixtures/schema-v1.redb");
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path).unwrap();
    populate(&store);
    store
        .write(&Ctx::background(), |tx| {
            tx.update("committed-2", &labels(&[("team", "storage")]), &[])
        })
        .unwrap();
}

/// A store written by schema version 1 (checked in as a fixture) still opens and reads the
/// same: kinds, parents, labels, usage and the labels index. Guards the on-disk format.
#[test]
fn reads_a_schema_v1_store() {
    let fixture =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("tests/fixtures/schema-v1.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.redb");
    std::fs::copy(&fixture, &path).unwrap();
    let store = Store::open(&path).unwrap();
    let info = store
        .read(&Ctx::background(), |tx| tx.stat("committed-2"))
        .unwrap();
    assert_eq!(
        (info.kind, info.parent.as_str()),
        (Kind::Committed, "committed-1")
    );
    assert_eq!(info.labels, labels(&[("team", "storage")]));
    let record = store
        .read(&Ctx::background(), |tx| tx.get("committed-1"))
        .unwrap();
    assert_eq!(record.usage, Some(Usage { size: 8, inodes: 2 }));
    let chain = store
        .read(&Ctx::background(), |tx| tx.snapshot("active-3"))
        .unwrap();
    assert_eq!(chain.parent_ids.len(), 2);
    let filter = Filter::parse("labels.team==storage").unwrap();
    let mut found = Vec::new();
    store
        .read(&Ctx::background(), |tx| {
            tx.walk(&filter, &mut |info| {
                found.push(info.name);
                Ok(())
            })
        })
        .unwrap();
    assert_eq!(found, ["committed-2"]);
    create(&store, Kind::Active, "new", "committed-2").expect("writable after opening");
}

/// An operation that panics inside a batch fails its own caller, hands leadership back, and
/// leaves the store usable for everyone else.
#[test]
fn a_panicking_operation_does_not_wedge_the_store() {
    let (_d, store) = open();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error> = store.write(&Ctx::background(), |_| {
            panic!("simulated bug in an operation")
        });
    }));
    assert!(result.is_err());
    create(&store, Kind::Active, "after", "").expect("the store still takes writes");
    assert_eq!(
        store
            .read(&Ctx::background(), |tx| tx.stat("after"))
            .unwrap()
            .kind,
        Kind::Active
    );
}

/// The context is checked when an operation's turn comes in its batch, not only when it is
/// queued: a write whose request is cancelled while it waits behind another batch writes
/// nothing and answers `Cancelled`; a read whose deadline has passed reads nothing.
#[test]
fn ended_context_writes_nothing() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let leader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write(&Ctx::background(), move |tx| {
                started_tx.send(()).unwrap();
                hold_rx.recv().unwrap();
                let plan = tx.plan_create(Kind::Active, "first", "")?;
                tx.create(plan, Labels::new())
            })
        })
    };
    started_rx.recv().unwrap();
    let (ctx, cancel) = Ctx::with_cancel();
    let waiting = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write(&ctx, |tx| {
                let plan = tx.plan_create(Kind::Active, "second", "")?;
                tx.create(plan, Labels::new())
            })
        })
    };
    // Give the second write time to queue behind the held batch (if it has not, it sees
    // the cancellation anyway: the test then proves less, but cannot fail wrongly).
    std::thread::sleep(std::time::Duration::from_millis(50));
    cancel.cancel();
    hold_tx.send(()).unwrap();
    leader.join().unwrap().unwrap();
    assert!(matches!(waiting.join().unwrap(), Err(Error::Cancelled)));
    let bg = Ctx::background();
    assert!(store.read(&bg, |tx| tx.stat("first")).is_ok());
    assert!(matches!(
        store.read(&bg, |tx| tx.stat("second")),
        Err(Error::NotFound { .. })
    ));
    let expired = Ctx::background().with_deadline(std::time::Instant::now());
    assert!(matches!(
        store.read(&expired, |tx| tx.ids()),
        Err(Error::DeadlineExceeded)
    ));
}
