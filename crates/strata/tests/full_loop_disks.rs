//! A full disk, end to end, on small loop-mounted filesystems the tests make (ext4 and btrfs;
//! root needed, and the tests fail without it). What is protected (issue 15):
//! - the daemon starts on a full disk, probing without writing, and leaves no probe
//!   directory behind;
//! - while the disk is full, every write answers `ResourceExhausted` with a message saying
//!   what ran out and where, and changes nothing (metadata, snapshot directories, temporary
//!   directories) — or succeeds, when it needs no new block; reads keep answering; Cleanup
//!   frees space;
//! - once space returns, writes succeed without a restart;
//! - after `kill -9`, nothing acknowledged is lost and nothing removed comes back;
//! - an exceeded quota on the root (EDQUOT, a btrfs qgroup limit) is answered the same way.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use common::{Daemon, labels, names, no_labels, writable_dir};
use strata_grpc::client::{self, Client, Code};
use strata_sys::testing::{Fs, LoopDisk};

/// Writes to `path` until the filesystem is full: big chunks, then single blocks, so that
/// even a one-block directory cannot be made afterwards.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096] {
        let data = vec![0x5au8; chunk];
        loop {
            match f.write_all(&data) {
                Ok(()) => {}
                Err(e) if is_full(&e) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    // ext4 reserves blocks for delayed allocation until the data is written: flush them, so
    // the disk is full for the daemon and not only for this writer. btrfs may still answer
    // ENOSPC here, which is what we want.
    let _ = f.sync_all();
}

fn is_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// 64 KiB of labels: what makes the metadata grow fast.
fn big_labels() -> strata_core::snapshot::Labels {
    (0..16)
        .map(|i| (format!("big{i}"), "x".repeat(4000)))
        .collect()
}

/// The snapshots the daemon lists, by name.
async fn listed(c: &Client) -> BTreeSet<String> {
    names(c, &[]).await.into_iter().collect()
}

/// A write made while the disk is full: either it needed no new block and succeeded (then
/// `done` says what it changed in `model`), or it is `ResourceExhausted`, says what ran out
/// and where, and changed neither the metadata nor the disk (temporary directories
/// included). Returns whether it succeeded.
async fn full_write<T>(
    d: &Daemon,
    c: &Client,
    model: &mut BTreeSet<String>,
    what: &str,
    done: impl FnOnce(&mut BTreeSet<String>),
    result: impl std::future::Future<Output = Result<T, client::Error>>,
) -> bool {
    let dirs = d.snapshot_dirs();
    let result = result.await;
    match result {
        Ok(_) => {
            eprintln!("{what}: succeeded on the full disk");
            done(model);
            true
        }
        Err(e) => {
            assert_eq!(
                e.code(),
                Code::ResourceExhausted,
                "{what}: {e}\n{}",
                d.stderr()
            );
            let message = e.message();
            assert!(
                message.contains("No space left") && message.contains('/'),
                "{what}: says what ran out and where: {message}"
            );
            eprintln!("{what}: {message}");
            assert_eq!(d.snapshot_dirs(), dirs, "{what}: changed the directories");
            assert_eq!(listed(c).await, *model, "{what}: changed the metadata");
            false
        }
    }
}

/// The whole story on one filesystem and backend.
async fn full_disk_story(fs: Fs, size: u64, backend: &str) {
    let disk = LoopDisk::new(fs, size);
    let mut d = Daemon::start_in(disk.path(), backend, &[]);
    let c = d.client().await;
    let mut model: BTreeSet<String> = BTreeSet::new();
    let m = c.prepare("a", "", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&m).join("data"), vec![7u8; 1 << 20]).unwrap();
    c.commit("A", "a", no_labels(), None).await.unwrap();
    c.prepare("b", "A", no_labels()).await.unwrap();
    c.view("v", "A", no_labels()).await.unwrap();
    let f = c.prepare("f", "", no_labels()).await.unwrap();
    let r = c.prepare("r", "", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&r).join("data"), vec![1u8; 1 << 20]).unwrap();
    c.remove("r").await.unwrap();
    model.extend(["A", "b", "v", "f"].map(String::from));
    assert_eq!(listed(&c).await, model);

    // A restart on a full disk, filled by a writer in a snapshot, as a container would.
    d.stop();
    let filler = writable_dir(&f).join("filler");
    fill(&filler);
    d.restart();
    let c = d.client().await;
    for dir in [
        d.root.join("overlay"),
        d.root.join("native"),
        d.root.join(backend),
    ] {
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().contains("probe"),
                "probe left in {}: {name:?}",
                dir.display()
            );
        }
    }

    // Reads answer.
    assert_eq!(listed(&c).await, model);
    c.stat("A").await.unwrap();
    c.mounts("b").await.unwrap();
    c.usage("b").await.unwrap();
    c.usage("A").await.unwrap();

    // Every write: done, or ResourceExhausted and no change.
    let m = &mut model;
    let add = |k: &'static str| {
        move |m: &mut BTreeSet<String>| {
            m.insert(k.to_owned());
        }
    };
    full_write(
        &d,
        &c,
        m,
        "prepare",
        add("c"),
        c.prepare("c", "A", no_labels()),
    )
    .await;
    full_write(&d, &c, m, "view", add("w"), c.view("w", "A", no_labels())).await;
    let big = "x".repeat(4000);
    full_write(&d, &c, m, "update", |_| {}, async {
        c.update("A", labels(&[("big", &big)]), &[]).await
    })
    .await;
    full_write(
        &d,
        &c,
        m,
        "commit",
        |m| {
            m.remove("b");
            m.insert("B".to_owned());
        },
        c.commit("B", "b", no_labels(), None),
    )
    .await;
    full_write(
        &d,
        &c,
        m,
        "remove",
        |m| {
            m.remove("v");
        },
        c.remove("v"),
    )
    .await;
    assert_eq!(listed(&c).await, *m);
    // Metadata growth: new snapshots with big labels until one is refused.
    let mut refused = false;
    for i in 0..2000 {
        let key: &'static str = Box::leak(format!("m{i}").into_boxed_str());
        let grow = c.prepare(key, "", big_labels());
        if !full_write(&d, &c, m, "prepare with big labels", add(key), grow).await {
            refused = true;
            break;
        }
    }
    assert!(refused, "the disk never filled");

    // Cleanup frees the removed snapshot's directory, and then more metadata fits, until
    // the disk is full again.
    let before = d.snapshot_dirs();
    c.cleanup().await.expect("Cleanup works on a full disk");
    assert!(
        d.snapshot_dirs().len() < before.len(),
        "Cleanup freed nothing"
    );
    if fs == Fs::Btrfs {
        // btrfs frees a deleted subvolume's blocks in the background (the cleaner), and
        // counts them free at the next transaction commit.
        // Committing the transaction first wakes the cleaner, rather than waiting for the
        // next periodic commit (30 s).
        let steps = [
            ["filesystem", "sync"],
            ["subvolume", "sync"],
            ["filesystem", "sync"],
        ];
        for args in steps {
            let synced = std::process::Command::new("btrfs")
                .args(args)
                .arg(disk.path())
                .status()
                .unwrap();
            assert!(synced.success(), "btrfs {args:?}");
        }
    }
    let mut grown = 0;
    for i in 0..20_000 {
        let key: &'static str = Box::leak(format!("n{i}").into_boxed_str());
        let grow = c.prepare(key, "", big_labels());
        if !full_write(&d, &c, m, "metadata growth", add(key), grow).await {
            break;
        }
        grown += 1;
    }
    eprintln!("{grown} snapshots with 64 KiB of labels fitted in the space Cleanup freed");
    assert!(grown > 0, "nothing fitted in the space Cleanup freed");
    assert_eq!(listed(&c).await, *m);

    // Space returns: writes work again, no restart.
    std::fs::remove_file(&filler).unwrap();
    c.prepare("after", "A", no_labels())
        .await
        .expect("writes work once space returns");
    m.insert("after".to_owned());
    c.remove("n0").await.unwrap();
    m.remove("n0");

    // kill -9: nothing acknowledged lost, nothing removed back.
    d.stop_with(rustix::process::Signal::KILL);
    d.restart();
    let c = d.client().await;
    assert_eq!(listed(&c).await, *m, "after kill -9");
    c.cleanup().await.unwrap();
    d.stop();
    d.assert_disk_matches_metadata(backend);
}

/// ext4, native backend (a Prepare copies its parent).
#[tokio::test(flavor = "multi_thread")]
async fn ext4_native() {
    full_disk_story(Fs::Ext4, 64 << 20, "native").await;
}

/// ext4, overlay backend (a Prepare makes two directories).
#[tokio::test(flavor = "multi_thread")]
async fn ext4_overlay() {
    full_disk_story(Fs::Ext4, 64 << 20, "overlay").await;
}

/// btrfs, btrfs backend (a Prepare snapshots a subvolume; copy-on-write, so even the header
/// write of an open for writing needs a new block: the store opens read-only).
#[tokio::test(flavor = "multi_thread")]
async fn btrfs_btrfs() {
    full_disk_story(Fs::Btrfs, 256 << 20, "btrfs").await;
}

/// An exceeded quota on the root (EDQUOT: a btrfs qgroup limit on the subvolume the root
/// lives in), overlay backend: a write answers `ResourceExhausted` saying the quota ran out
/// and where, and changes nothing; reads answer; once the quota has room again, writes work
/// without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn btrfs_quota_exceeded_on_the_root() {
    let disk = LoopDisk::new(Fs::Btrfs, 256 << 20);
    let btrfs = |args: &[&str]| {
        let out = std::process::Command::new("btrfs")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "btrfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let base = disk.path().join("limited");
    let base_str = base.to_str().unwrap();
    btrfs(&["quota", "enable", disk.path().to_str().unwrap()]);
    btrfs(&["subvolume", "create", base_str]);
    btrfs(&["qgroup", "limit", "48M", base_str]);
    let d = Daemon::start_in(&base, "overlay", &[]);
    let c = d.client().await;
    c.prepare("a", "", no_labels()).await.unwrap();
    c.commit("A", "a", no_labels(), None).await.unwrap();
    let f = c.prepare("f", "", no_labels()).await.unwrap();
    let mut model: BTreeSet<String> = ["A", "f"].map(String::from).into();

    // A container fills the quota.
    let filler = writable_dir(&f).join("filler");
    fill(&filler);
    let mut refused = 0;
    for i in 0..200 {
        let dirs = d.snapshot_dirs();
        match c.prepare(&format!("q{i}"), "A", big_labels()).await {
            Ok(_) => {
                model.insert(format!("q{i}"));
                continue;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e}\n{}", d.stderr());
                assert!(
                    e.message().contains("quota") && e.message().contains('/'),
                    "says what ran out and where: {}",
                    e.message()
                );
                eprintln!("prepare over the quota: {}", e.message());
                assert_eq!(d.snapshot_dirs(), dirs, "changed the directories");
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1, "the quota never refused a Prepare");
    assert_eq!(
        listed(&c).await,
        model,
        "a refused write changed the metadata"
    );
    c.stat("A").await.unwrap();
    c.mounts("f").await.unwrap();

    // Room again: writes work, no restart.
    std::fs::remove_file(&filler).unwrap();
    btrfs(&["filesystem", "sync", disk.path().to_str().unwrap()]);
    c.prepare("after", "A", no_labels())
        .await
        .expect("writes work once the quota has room");
    drop(c);
    let mut d = d;
    d.stop();
    d.assert_disk_matches_metadata("overlay");
}
