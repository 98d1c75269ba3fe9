//! Each filesystem call of each operation failing in turn (`mkdir`, a Cleanup's
//! removal), through the fault points of `strata_core::crash` (a seam, not sleeps or full
//! disks), for every backend (btrfs on a loop btrfs): the operation fails with the I/O error, naming the
//! call and the path, and leaves the state as the model says — the snapshots the store
//! lists, and the directories on disk (no `new-*` left, no directory without a record) — and
//! the next operation succeeds. Cleanup keeps what it could not remove for the next one.

use std::collections::BTreeSet;
use std::path::Path;

use strata_backend::btrfs::{Btrfs, BtrfsOptions};
use strata_backend::native::Native;
use strata_backend::overlay::{Overlay, OverlayOptions};
use strata_backend::{Driver, Engine, EngineOptions};
use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Filter, Snapshotter, crash};

const EIO: i32 = 5;

fn bg() -> Ctx {
    Ctx::background()
}

fn listed(engine: &dyn Snapshotter) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    engine
        .walk(&bg(), &Filter::always(), &mut |info| {
            names.insert(info.name);
            Ok(())
        })
        .unwrap();
    names
}

fn dirs(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// One operation of the test: its name, and what it does on `engine` with a fresh `n`.
type Op = (
    &'static str,
    fn(&dyn Snapshotter, &str) -> Result<(), Error>,
);

const OPS: &[Op] = &[
    ("prepare", |e, k| {
        e.prepare(&bg(), &format!("{k}-p"), "base", Labels::new())
            .map(|_| ())
    }),
    ("prepare-root", |e, k| {
        e.prepare(&bg(), &format!("{k}-r"), "", Labels::new())
            .map(|_| ())
    }),
    ("view", |e, k| {
        e.view(&bg(), &format!("{k}-v"), "base", Labels::new())
            .map(|_| ())
    }),
    ("commit", |e, k| {
        e.prepare(&bg(), &format!("{k}-c"), "base", Labels::new())?;
        e.commit(
            &bg(),
            &format!("{k}-C"),
            &format!("{k}-c"),
            Labels::new(),
            None,
        )
    }),
    ("remove+cleanup", |e, k| {
        e.prepare(&bg(), &format!("{k}-x"), "", Labels::new())?;
        e.remove(&bg(), &format!("{k}-x"))?;
        e.cleanup(&bg()).map(|_| ())
    }),
];

fn each_call_fails_cleanly<D: Driver>(base: &Path, driver: impl FnOnce(&Path) -> D) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let root = dir.path().join("root");
    let driver = driver(&root);
    let (engine, _) = Engine::open(&root, driver, EngineOptions::default()).unwrap();
    engine.prepare(&bg(), "base-a", "", Labels::new()).unwrap();
    engine
        .commit(&bg(), "base", "base-a", Labels::new(), None)
        .unwrap();
    let mut failures = 0;
    let mut seq = 0;
    for (op, run) in OPS {
        for point in ["mkdir", "remove"] {
            for n in 1.. {
                seq += 1;
                let key = format!("{op}-{point}-{n}-{seq}");
                let (names, on_disk) = (listed(&engine), dirs(&root));
                crash::fail_nth(point, n, EIO);
                let result = run(&engine, &key);
                if crash::fault_pending() {
                    // Fewer than `n` such calls: every one of them has failed once.
                    crash::clear_faults();
                    result.unwrap_or_else(|e| panic!("{op} with no fault: {e}"));
                    break;
                }
                failures += 1;
                let error = match result {
                    Err(e) => e,
                    Ok(()) => panic!("{op}: {point} #{n} failed, yet the operation succeeded"),
                };
                let message = error.to_string();
                assert!(
                    matches!(error, Error::Io { .. }) && message.contains(point),
                    "{op}: {point} #{n}: {message}"
                );
                // What a failed multi-step test operation did before the failing call stays
                // (a Prepare before a failed Commit); the failing step itself changed nothing.
                let after = listed(&engine);
                let kept: BTreeSet<_> = after.difference(&names).cloned().collect();
                assert!(
                    kept.iter().all(|k| k.ends_with("-c") || k.ends_with("-x")),
                    "{op}: {point} #{n}: {kept:?} appeared: {message}"
                );
                let disk = dirs(&root);
                assert!(
                    disk.iter().all(|d| !d.starts_with("new-")),
                    "{op}: {point} #{n}: temporary directory left: {disk:?}"
                );
                if *op == "remove+cleanup" && point == "remove" {
                    // The removed snapshot's directory stays for the next Cleanup.
                    assert!(disk.len() > on_disk.len(), "{op}: {point} #{n}");
                    engine.cleanup(&bg()).expect("the next Cleanup succeeds");
                }
            }
        }
    }
    assert!(failures >= 5, "only {failures} calls failed");
    eprintln!("{failures} (operation, call) failures checked");
    // Everything converges: after a Cleanup, each directory belongs to a listed snapshot.
    engine.cleanup(&bg()).unwrap();
    let census = engine.census(&bg()).unwrap();
    let listed_count = listed(&engine).len();
    assert_eq!(
        dirs(&root).len(),
        listed_count,
        "directories vs snapshots ({census:?})"
    );
}

/// The overlay backend.
#[test]
fn overlay_fails_each_call_cleanly() {
    each_call_fails_cleanly(&std::env::temp_dir(), |_| {
        Overlay::with_options(OverlayOptions::default())
    });
}

/// The native backend.
#[test]
fn native_fails_each_call_cleanly() {
    each_call_fails_cleanly(&std::env::temp_dir(), |_| Native);
}

/// The btrfs backend, on a loop btrfs (needs root, as the other btrfs tests).
#[test]
fn btrfs_fails_each_call_cleanly() {
    let fs = strata_sys::testing::LoopBtrfs::new(256 << 20);
    each_call_fails_cleanly(fs.path(), |root| {
        Btrfs::new(root, BtrfsOptions::default()).unwrap()
    });
}
