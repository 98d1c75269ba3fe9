//! The store on a failing disk, through the fault seam of `strata_meta::faults` (feature
//! `testing`): a full disk, and a failure of each system call of a write in turn. What is
//! protected: a failed write changes nothing and says what ran out and where, reads keep
//! answering, and writes work again without reopening the store by hand (redb refuses every
//! operation after one failed I/O until its database is reopened; issue 15).

use std::collections::BTreeSet;
use std::path::Path;

use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Filter, Kind};
use strata_meta::Store;
use strata_meta::faults::{Faults, FileCall};

const EIO: i32 = 5;

fn create(store: &Store, key: &str, label_bytes: usize) -> Result<(), Error> {
    let key = key.to_owned();
    store.write(&Ctx::background(), move |tx| {
        let plan = tx.plan_create(Kind::Active, &key, "")?;
        let labels: Labels = [("big".to_owned(), "x".repeat(label_bytes))].into();
        tx.create(plan, labels).map(|_| ())
    })
}

fn remove(store: &Store, key: &str) -> Result<(), Error> {
    let key = key.to_owned();
    store.write(&Ctx::background(), move |tx| tx.remove(&key).map(|_| ()))
}

fn keys(store: &Store) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    store
        .read(&Ctx::background(), |tx| {
            tx.walk(&Filter::always(), &mut |info| {
                keys.insert(info.name);
                Ok(())
            })
        })
        .expect("reads keep answering");
    keys
}

fn open_faulty(path: &Path) -> (Faults, Store) {
    let faults = Faults::default();
    let store = Store::open_with_faults(path, faults.clone()).unwrap();
    (faults, store)
}

/// A full disk: the write that must grow the file fails as out of space, naming the
/// metadata file, and changes nothing; reads keep answering; once space returns, writes
/// succeed on the same store; everything acknowledged is in the file when it is opened
/// afresh.
#[test]
fn full_disk_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.redb");
    let (faults, store) = open_faulty(&path);
    let mut model = BTreeSet::new();
    for i in 0..10 {
        create(&store, &format!("before-{i}"), 100).unwrap();
        model.insert(format!("before-{i}"));
    }

    faults.fill(&path);
    let mut refused = None;
    for i in 0..10_000 {
        let key = format!("grow-{i}");
        match create(&store, &key, 4000) {
            Ok(()) => {
                model.insert(key);
            }
            Err(e) => {
                refused = Some((key, e));
                break;
            }
        }
    }
    let (key, error) = refused.expect("the file must grow past the full disk");
    assert!(error.is_out_of_space(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("No space left"),
        "names what ran out and where: {message}"
    );
    assert_eq!(keys(&store), model, "the refused write changed nothing");

    // Still full: the same answer, not "previous I/O error".
    let again = create(&store, &key, 4000).unwrap_err();
    assert!(again.is_out_of_space(), "{again:?}");
    assert_eq!(keys(&store), model);
    // A removal needs new pages too (redb copies on write): it may or may not fit in the
    // pages the file already has, and either way it is all or nothing.
    match remove(&store, "before-0") {
        Ok(()) => {
            model.remove("before-0");
        }
        Err(e) => assert!(e.is_out_of_space(), "{e:?}"),
    }
    assert_eq!(keys(&store), model);

    faults.clear();
    create(&store, &key, 4000).expect("writes work again once space returns");
    model.insert(key);
    assert_eq!(keys(&store), model);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(
        keys(&store),
        model,
        "nothing acknowledged lost, nothing removed back"
    );
}

/// Each `pwrite`, `ftruncate` and `fdatasync` of a Create, a Remove, failing in turn with
/// EIO, first on the intent log's path, then (the log broken, so every batch commits durably
/// in the database file) on the database's: the operation fails and did not happen — or
/// succeeded anyway, because a failed log write or flush sent the batch down the durable
/// path, or because the failed call was the durable commit's fdatasync and the batch had
/// reached the file anyway (the store made it durable with one more commit); either way the
/// store's content equals the model of what was answered, the next operation succeeds on the
/// same store, and the file opened afresh holds the model.
#[test]
fn each_failing_call_of_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.redb");
    let log = path.with_extension("log");
    let (faults, store) = open_faulty(&path);
    let mut model = BTreeSet::new();
    let mut seq = 0;
    let mut cases = 0;
    let mut absorbed = 0;
    for log_broken in [false, true] {
        for op in ["create", "remove"] {
            for call in [FileCall::Write, FileCall::SetLen, FileCall::SyncData] {
                for n in 1.. {
                    // A key to remove, made before the fault is armed.
                    seq += 1;
                    let key = format!("{op}-{call:?}-{n}-{seq}-{log_broken}");
                    if op == "remove" {
                        create(&store, &key, 64).unwrap();
                        model.insert(key.clone());
                    }
                    if log_broken {
                        faults.break_log();
                    }
                    faults.fail_nth(call, n, EIO);
                    let result = match op {
                        "create" => create(&store, &key, 2000),
                        _ => remove(&store, &key),
                    };
                    if faults.pending() {
                        // The operation made fewer than `n` such calls: all were tried.
                        faults.clear();
                        result.unwrap();
                        match op {
                            "create" => model.insert(key),
                            _ => model.remove(&key),
                        };
                        assert_eq!(keys(&store), model);
                        break;
                    }
                    faults.clear();
                    cases += 1;
                    let what = format!("{op}, {call:?} #{n}, log broken: {log_broken}");
                    match result {
                        Ok(()) => {
                            if log_broken {
                                assert_eq!(call, FileCall::SyncData, "{what} succeeded");
                            }
                            absorbed += 1;
                            match op {
                                "create" => model.insert(key),
                                _ => model.remove(&key),
                            };
                            assert_eq!(keys(&store), model, "{what}");
                        }
                        Err(error) => {
                            let message = error.to_string();
                            assert!(
                                message.contains(&path.display().to_string())
                                    || message.contains(&log.display().to_string()),
                                "{what}: {error}"
                            );
                            assert_eq!(keys(&store), model, "{what}: {error}");
                        }
                    }
                }
            }
        }
    }
    assert!(cases >= 8, "only {cases} failures injected");
    eprintln!("{cases} failures injected; {absorbed} absorbed (the operation succeeded)");
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(keys(&store), model);
}

/// A store opened on a full copy-on-write disk (btrfs refuses even the header write an open
/// for writing makes) opens read-only: reads answer, writes are out of space and change
/// nothing, and once space returns the next write reopens it for writing and succeeds.
#[test]
fn opens_read_only_on_a_full_copy_on_write_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.redb");
    let (faults, store) = open_faulty(&path);
    create(&store, "a", 10).unwrap();
    drop(store);

    faults.fill_copy_on_write();
    let store = Store::open_with_faults(&path, faults.clone()).expect("opens read-only");
    assert_eq!(keys(&store), BTreeSet::from(["a".to_owned()]));
    let error = create(&store, "b", 10).unwrap_err();
    assert!(error.is_out_of_space(), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(keys(&store), BTreeSet::from(["a".to_owned()]));

    faults.clear();
    create(&store, "b", 10).expect("writes once space returns");
    assert_eq!(
        keys(&store),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
}

/// A commit that meets a full copy-on-write disk leaves a file that needs recovery (redb
/// closes a failed database without writing), which redb's read-only open refuses and an
/// open for writing cannot do on that disk: the store still reads it (recovered in memory),
/// and writes again once space returns.
#[test]
fn reads_after_a_failed_commit_on_a_full_copy_on_write_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.redb");
    let (faults, store) = open_faulty(&path);
    create(&store, "a", 10).unwrap();
    faults.fill_copy_on_write();
    let error = create(&store, "b", 10).unwrap_err();
    assert!(error.is_out_of_space(), "{error:?}");
    assert_eq!(keys(&store), BTreeSet::from(["a".to_owned()]));
    let error = remove(&store, "a").unwrap_err();
    assert!(error.is_out_of_space(), "{error:?}");
    assert_eq!(keys(&store), BTreeSet::from(["a".to_owned()]));

    faults.clear();
    create(&store, "b", 10).expect("writes once space returns");
    assert_eq!(
        keys(&store),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        keys(&store),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
}
