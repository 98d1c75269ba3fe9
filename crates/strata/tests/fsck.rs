//! `strata fsck` on roots damaged on purpose, before and after `--repair`: orphan
//! directories, snapshots whose directory is gone (with and without children), broken parent
//! links and the snapshots below them, drifted usage; a clean root is clean; a root in use by
//! a daemon is refused.

mod common;

use std::process::{Command, Output};

use common::{Daemon, no_labels, writable_dir};
use serde_json::Value;
use strata_grpc::client::Code;

fn fsck(d: &Daemon, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("fsck")
        .arg("--root")
        .arg(&d.root)
        .args(extra)
        .output()
        .expect("run strata fsck")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The findings of `backend` in `strata fsck --json`'s output.
fn findings(out: &Output, backend: &str) -> Vec<Value> {
    let report: Value = serde_json::from_slice(&out.stdout).expect("fsck --json");
    report["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == backend)
        .unwrap_or_else(|| panic!("no {backend} in {report}"))["findings"]
        .as_array()
        .unwrap()
        .clone()
}

fn kinds(findings: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = findings
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

/// Prepares `key` on `parent`, writes `file` into it and commits it as `name`.
async fn layer(d: &Daemon, name: &str, parent: &str, file: &str) {
    let c = d.client().await;
    let key = format!("{name}-active");
    let mounts = c.prepare(&key, parent, no_labels()).await.unwrap();
    std::fs::write(writable_dir(&mounts).join(file), file.repeat(100)).unwrap();
    c.commit(name, &key, no_labels(), None).await.unwrap();
}

/// The id (directory name) of snapshot `key`, read from the stopped daemon's store.
fn id_of(d: &Daemon, backend: &str, key: &str) -> u64 {
    let store = strata_meta::Store::open(&d.root.join(backend).join("metadata.redb")).unwrap();
    let id = store
        .read(&strata_core::Ctx::background(), |tx| tx.get(key))
        .unwrap()
        .id;
    store.close();
    id
}

/// A root after an ordinary workload (and a Cleanup) is clean: exit 0, every backend clean.
#[tokio::test(flavor = "multi_thread")]
async fn clean_root_is_clean() {
    for backend in common::BACKENDS {
        let mut d = Daemon::start(backend);
        layer(&d, "base", "", "a").await;
        layer(&d, "top", "base", "b").await;
        let c = d.client().await;
        c.prepare("container", "top", no_labels()).await.unwrap();
        c.view("v", "base", no_labels()).await.unwrap();
        c.remove("v").await.unwrap();
        c.cleanup().await.unwrap();
        d.stop();
        let out = fsck(&d, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!("{backend} (")) && text.contains("clean: 3 snapshots"),
            "{text}"
        );
        assert!(text.ends_with("fsck: clean\n"), "{text}");
        let out = fsck(&d, &["--json"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(findings(&out, backend).is_empty());
    }
}

/// A daemon killed with `kill -9` leaves its last writes only in the intent log (no
/// checkpoint came: the log is far from half full): fsck replays the log before it checks,
/// so it sees every acknowledged snapshot — without the replay, their directories would be
/// orphans — and finds the root clean.
#[tokio::test(flavor = "multi_thread")]
async fn reads_what_only_the_log_holds() {
    let mut d = Daemon::start("overlay");
    layer(&d, "base", "", "a").await;
    layer(&d, "top", "base", "b").await;
    d.client()
        .await
        .prepare("container", "top", no_labels())
        .await
        .unwrap();
    let status = d.stop_with(rustix::process::Signal::KILL);
    assert!(!status.success());
    let out = fsck(&d, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("clean: 3 snapshots"), "{text}");
}

/// fsck takes the root's lock as the daemon does: with a daemon running it refuses (exit 2)
/// and says why.
#[tokio::test(flavor = "multi_thread")]
async fn refuses_while_a_daemon_runs() {
    let d = Daemon::start("overlay");
    let out = fsck(&d, &["--repair"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("strata: fsck: a strata daemon is using root ")
            && stderr.contains("stop the daemon first"),
        "{stderr}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["fsck", "--root", "/nonexistent/strata"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

/// Orphan directories (unknown id, `new-*` leftover, foreign name), an active snapshot and a
/// committed parent whose directories are gone, a committed layer whose content changed:
/// all reported with exit 1; `--repair` removes the orphans, fixes the usage, removes the
/// childless record, and leaves the parent with children (saying why), so it still exits 1;
/// a second run finds only what was left, and the daemon starts on the repaired root.
#[tokio::test(flavor = "multi_thread")]
async fn damage_found_then_repaired() {
    let mut d = Daemon::start("overlay");
    layer(&d, "base", "", "a").await;
    layer(&d, "mid", "base", "b").await;
    layer(&d, "drifter", "", "c").await;
    let c = d.client().await;
    c.prepare("child", "mid", no_labels()).await.unwrap();
    c.prepare("lost", "", no_labels()).await.unwrap();
    drop(c);
    d.stop();

    let snapshots = d.snapshots_dir();
    // Orphans.
    std::fs::create_dir(snapshots.join("9999")).unwrap();
    std::fs::write(snapshots.join("9999/file"), vec![1u8; 20_000]).unwrap();
    std::fs::create_dir(snapshots.join("new-1-0")).unwrap();
    std::fs::write(snapshots.join("stray.txt"), b"not ours").unwrap();
    // Missing directories: a childless active snapshot and a parent of `child`.
    let lost = id_of(&d, "overlay", "lost");
    std::fs::remove_dir_all(snapshots.join(lost.to_string())).unwrap();
    let mid = id_of(&d, "overlay", "mid");
    std::fs::remove_dir_all(snapshots.join(mid.to_string())).unwrap();
    // Drift: someone wrote into a committed layer.
    let drifter = id_of(&d, "overlay", "drifter");
    std::fs::write(
        snapshots.join(format!("{drifter}/fs/added")),
        vec![2u8; 50_000],
    )
    .unwrap();

    let out = fsck(&d, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "orphan directory snapshots/9999: an id the metadata does not know",
        "orphan directory snapshots/new-1-0: a half-built directory left by a crash",
        "orphan directory snapshots/stray.txt: not a name Strata gives",
        &format!("missing directory: active snapshot \"lost\" (id {lost})"),
        &format!("missing directory: committed snapshot \"mid\" (id {mid})"),
        "its children: \"child\"",
        "child of a missing parent: snapshot \"child\" descends from \"mid\"",
        "usage drift: committed snapshot \"drifter\"",
        "fsck: 7 problems; `strata fsck --repair` fixes what is safe to fix",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let before = fsck(&d, &["--json"]);
    let found = findings(&before, "overlay");
    assert_eq!(
        kinds(&found),
        [
            "child-of-missing-parent",
            "missing-directory",
            "missing-directory",
            "orphan-directory",
            "orphan-directory",
            "orphan-directory",
            "usage-drift"
        ]
    );
    let orphan = found.iter().find(|f| f["name"] == "9999").unwrap();
    assert!(orphan["bytes"].as_u64().unwrap() >= 20_000, "{orphan}");
    let drift = found
        .iter()
        .find(|f| f["problem"] == "usage-drift")
        .unwrap();
    assert!(
        drift["found"]["size"].as_i64().unwrap()
            >= drift["recorded"]["size"].as_i64().unwrap() + 50_000
    );
    assert!(
        found.iter().all(|f| f.get("action").is_none()),
        "nothing done without --repair"
    );

    let out = fsck(&d, &["--repair"]);
    assert_eq!(out.status.code(), Some(1), "one problem cannot be repaired");
    let text = stdout(&out);
    for needle in [
        "repaired: removed snapshots/9999",
        "repaired: removed snapshots/new-1-0",
        "repaired: removed snapshots/stray.txt",
        "repaired: removed the record of \"lost\"",
        "left: its record: removing it would leave \"child\" without a parent",
        "repaired: recorded the usage the walk found",
        "fsck: 7 problems, 5 repaired, 2 left",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!snapshots.join("9999").exists() && !snapshots.join("stray.txt").exists());

    let after = fsck(&d, &["--json"]);
    assert_eq!(after.status.code(), Some(1));
    assert_eq!(
        kinds(&findings(&after, "overlay")),
        ["child-of-missing-parent", "missing-directory"]
    );

    d.restart();
    let c = d.client().await;
    assert_eq!(c.stat("lost").await.unwrap_err().code(), Code::NotFound);
    let usage = c.usage("drifter").await.unwrap();
    assert!(
        usage.size >= 50_000,
        "the repaired usage is served: {usage:?}"
    );
}

/// A parent record removed behind the store's back: its child has a broken parent link, the
/// grandchild descends from a missing parent, and the parent's directory looks like an
/// orphan. `--repair` leaves all three (the directory may be the only copy of the lost layer),
/// saying why.
#[tokio::test(flavor = "multi_thread")]
async fn broken_parent_link_is_left_alone() {
    let mut d = Daemon::start("native");
    layer(&d, "base", "", "a").await;
    layer(&d, "mid", "base", "b").await;
    layer(&d, "top", "mid", "c").await;
    let c = d.client().await;
    c.prepare("leaf", "top", no_labels()).await.unwrap();
    drop(c);
    d.stop();
    let mid = id_of(&d, "native", "mid");
    let store = strata_meta::Store::open(&d.root.join("native/metadata.redb")).unwrap();
    store
        .write(&strata_core::Ctx::background(), |tx| {
            tx.remove_unchecked("mid").map(|_| ())
        })
        .unwrap();
    store.close();
    drop(store);

    let out = fsck(&d, &["--repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "broken parent link: snapshot \"top\" names parent \"mid\", which has no record",
        "child of a missing parent: snapshot \"leaf\" descends from \"mid\"",
        &format!("orphan directory snapshots/{mid}: an id the metadata does not know"),
        "left: nothing: no repair brings back \"mid\"",
        &format!("left: snapshots/{mid}: some snapshot's parent record is missing"),
        "fsck: 3 problems, 0 repaired, 3 left",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(
        d.root.join(format!("native/snapshots/{mid}/fs")).is_dir(),
        "the lost parent's layer is kept"
    );
}

/// Directories without any metadata store are reported and never deleted.
#[tokio::test(flavor = "multi_thread")]
async fn missing_store_is_never_repaired() {
    let mut d = Daemon::start("overlay");
    layer(&d, "base", "", "a").await;
    d.stop();
    std::fs::remove_file(d.root.join("overlay/metadata.redb")).unwrap();
    let out = fsck(&d, &["--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("missing metadata store: 1 entries under snapshots/ but no metadata.redb"),
        "{text}"
    );
    assert_eq!(d.snapshot_dirs().len(), 1);
}
