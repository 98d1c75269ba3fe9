//! Crash consistency: the daemon dies at every named step of every operation (deterministic
//! crash points) and at random instants of a mixed workload (`kill -9`); after a restart,
//! everything acknowledged is there, nothing acknowledged as removed comes back, and after
//! Cleanup the directories on disk and the metadata agree exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{BACKENDS, Daemon, exists, labels, names, no_labels, writable_dir};
use rustix::process::Signal;
use strata_core::Mount;
use strata_grpc::client::Client;
use strata_meta::LOG_BYTES_ENV;

/// An intent log of 16 blocks: the daemon checkpoints every ~8 batches, and its log is
/// sometimes full, so crashes meet those paths too.
const SMALL_LOG: &str = "65536";

/// The directory holding a committed snapshot's own layer, found through a view of it.
async fn committed_dir(c: &Client, name: &str, probe: &str) -> PathBuf {
    let mounts = c.view(probe, name, no_labels()).await.unwrap();
    c.remove(probe).await.unwrap();
    layer_of(&mounts)
}

fn layer_of(mounts: &[Mount]) -> PathBuf {
    let m = &mounts[0];
    if m.kind == "bind" {
        return PathBuf::from(&m.source);
    }
    let lower = m
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    PathBuf::from(lower.split(':').next().unwrap())
}

/// Restarts cleanly, runs Cleanup, and checks metadata and disk agree.
async fn restart_and_check(d: &mut Daemon) {
    d.env.clear();
    d.restart();
    let c = d.client().await;
    c.cleanup().await.unwrap();
    d.stop();
    d.assert_disk_matches_metadata(&d.backend.clone());
    d.restart();
}

/// Every crash point, for every operation that reaches it, for both backends: the
/// interrupted operation either happened entirely or not at all, everything before it is
/// intact, and the daemon converges to metadata = disk.
#[tokio::test(flavor = "multi_thread")]
async fn every_crash_point() {
    crash_points(BACKENDS, Path::new("/tmp")).await;
}

/// The same for the btrfs backend, on a loop btrfs (needs root): half-made subvolumes are
/// destroyed at start-up, and an active snapshot sealed read-only by an interrupted Commit
/// is writable again.
#[tokio::test(flavor = "multi_thread")]
async fn every_crash_point_on_btrfs() {
    let fs = strata_sys::testing::LoopBtrfs::new(1 << 30);
    crash_points(&["btrfs"], fs.path()).await;
}

async fn crash_points(backends: &[&str], base: &Path) {
    let cases: &[(&str, &str)] = &[
        ("create-before-record", "prepare"),
        ("meta-before-commit", "prepare"),
        ("log-after-write", "prepare"),
        ("log-after-flush", "prepare"),
        ("meta-after-commit", "prepare"),
        ("log-after-flush", "commit"),
        ("log-after-flush", "remove"),
        ("log-after-write", "update"),
        ("checkpoint-before-commit", "burst"),
        ("checkpoint-after-commit", "burst"),
        ("meta-before-commit", "commit"),
        ("meta-after-commit", "commit"),
        ("commit-before-metadata", "commit"),
        ("meta-before-commit", "remove"),
        ("meta-after-commit", "remove"),
        ("remove-after-metadata", "remove"),
        ("meta-before-commit", "update"),
        ("meta-after-commit", "update"),
        ("cleanup-first-removal", "cleanup"),
        ("cleanup-next-removal", "cleanup"),
    ];
    let mut crashes = 0;
    for backend in backends {
        for &(point, op) in cases {
            let extra: &[&str] = if point == "remove-after-metadata" {
                &["--config", "/dev/null"]
            } else {
                &[]
            };
            let mut d =
                Daemon::start_in_with_env(base, backend, extra, &[(LOG_BYTES_ENV, SMALL_LOG)]);
            let c = d.client().await;
            // Base state: a committed layer with content, an active child with content, a
            // removable leaf, and two orphans for Cleanup.
            let m = c.prepare("base-a", "", no_labels()).await.unwrap();
            std::fs::write(writable_dir(&m).join("base"), b"base").unwrap();
            c.commit("base", "base-a", no_labels(), None).await.unwrap();
            let m = c.prepare("work", "base", no_labels()).await.unwrap();
            std::fs::write(writable_dir(&m).join("work"), b"work").unwrap();
            c.prepare("victim", "", no_labels()).await.unwrap();
            for k in ["old1", "old2"] {
                c.prepare(k, "", no_labels()).await.unwrap();
                c.remove(k).await.unwrap();
            }
            d.stop();
            d.env = vec![
                ("STRATA_CRASH_AT".into(), point.into()),
                (LOG_BYTES_ENV.into(), SMALL_LOG.into()),
            ];
            d.restart();
            let c = d.client().await;
            let answer = match op {
                // Enough batches to fill half the log: the checkpoint they call for dies.
                "burst" => {
                    let mut answer = Ok(());
                    for i in 0..40 {
                        if let Err(e) = c.prepare(&format!("burst-{i}"), "", no_labels()).await {
                            answer = Err(e);
                            break;
                        }
                    }
                    answer
                }
                "prepare" => c.prepare("new", "base", no_labels()).await.map(drop),
                "commit" => c.commit("done", "work", no_labels(), None).await.map(drop),
                "remove" => c.remove("victim").await.map(drop),
                "update" => c
                    .update("victim", labels(&[("l", "v")]), &[])
                    .await
                    .map(drop),
                _ => c.cleanup().await.map(drop),
            };
            assert!(
                answer.is_err(),
                "{backend} {point} {op}: the daemon answered instead of crashing"
            );
            let status = d.wait_exit();
            assert!(!status.success(), "{backend} {point} {op}: {status}");
            assert!(
                d.stderr().contains(&format!("crash point {point:?}")),
                "{backend} {point} {op}"
            );
            crashes += 1;

            restart_and_check(&mut d).await;
            let c = d.client().await;
            let base = committed_dir(&c, "base", "probe-base").await;
            assert_eq!(
                std::fs::read(base.join("base")).unwrap(),
                b"base",
                "{backend} {point} {op}"
            );
            let listed = names(&c, &[]).await;
            // Commit is atomic: exactly one of the active and the committed snapshot exists.
            assert_ne!(
                listed.contains(&"work".to_string()),
                listed.contains(&"done".to_string()),
                "{listed:?}"
            );
            if listed.contains(&"work".to_string()) {
                // Still active, so still writable (btrfs: the read-only flag an interrupted
                // Commit set was cleared at start-up).
                let mounts = c.mounts("work").await.unwrap();
                std::fs::write(writable_dir(&mounts).join("more"), b"more").unwrap_or_else(|e| {
                    panic!("{backend} {point} {op}: work is not writable: {e}")
                });
            }
            if listed.contains(&"done".to_string()) {
                let done = committed_dir(&c, "done", "probe-done").await;
                assert_eq!(
                    std::fs::read(done.join("work")).unwrap(),
                    b"work",
                    "{backend} {point} {op}"
                );
            }
            if listed.contains(&"new".to_string()) {
                let mounts = c.mounts("new").await.unwrap();
                assert!(
                    exists(&writable_dir(&mounts)),
                    "{backend} {point} {op}: new has its directory"
                );
            }
            // The daemon carries on: the interrupted operation can be retried.
            c.prepare("after", "base", no_labels()).await.unwrap();
            c.cleanup().await.unwrap();
            d.stop();
            d.assert_disk_matches_metadata(backend);
        }
    }
    eprintln!("crash points injected and survived: {crashes}");
}

/// What the client knows for sure about a key after acknowledged operations.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    /// Committed with this content and labels.
    Committed { content: String, label: String },
    /// Acknowledged as removed.
    Removed,
}

/// A mixed workload (Prepare, View, write, Commit, Update, Remove, Cleanup) from several
/// clients, killed with SIGKILL at random instants, many times over: after each restart every
/// acknowledged commit is there with its content and labels, no acknowledged remove came back,
/// and after Cleanup metadata and disk agree.
#[tokio::test(flavor = "multi_thread")]
async fn random_kills_during_workload() {
    random_kills(BACKENDS, Path::new("/tmp"), &[]).await;
}

/// The same on the btrfs backend, on a loop btrfs (needs root) with simple quotas and a
/// default size limit, so that every Prepare also creates and limits a qgroup: after each
/// restart and Cleanup, besides the checks above, `strata fsck` is clean (no orphan or
/// missing subvolume, read-only flags as each snapshot's kind says), the subvolumes under the
/// root are exactly the snapshots', and once btrfs has dropped the deleted subvolumes no
/// qgroup of a subvolume that is gone is still charged with bytes.
#[tokio::test(flavor = "multi_thread")]
async fn random_kills_during_workload_on_btrfs() {
    let fs = strata_sys::testing::LoopBtrfs::new(1 << 30);
    let config = fs.path().join("strata.toml");
    std::fs::write(
        &config,
        "[btrfs]\nquota = \"simple\"\ndefault_max_size = 67108864\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    random_kills(&["btrfs"], fs.path(), &["--config", config]).await;
}

/// The workload with a small intent log (see [`SMALL_LOG`]): kills land in checkpoints, full
/// logs and replays too.
async fn random_kills(backends: &[&str], base: &Path, extra: &[&str]) {
    let rounds: usize = std::env::var("STRATA_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let mut kills = 0;
    let mut checked = 0;
    for backend in backends {
        let mut d = Daemon::start_in_with_env(base, backend, extra, &[(LOG_BYTES_ENV, SMALL_LOG)]);
        let mut known: BTreeMap<String, Known> = BTreeMap::new();
        let mut seed = 0x5eed_u64 ^ backend.len() as u64;
        for round in 0..rounds {
            let socket = d.socket.clone();
            let mut workers = Vec::new();
            for w in 0..4 {
                let socket = socket.clone();
                let committed: Vec<String> = known
                    .iter()
                    .filter(|(_, k)| matches!(k, Known::Committed { .. }))
                    .map(|(n, _)| n.clone())
                    .collect();
                workers.push(tokio::spawn(async move {
                    workload(socket, round, w, committed).await
                }));
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = 30 + (seed >> 33) % 170;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let status = d.stop_with(Signal::KILL);
            assert!(!status.success());
            kills += 1;
            for worker in workers {
                for (key, fact) in worker.await.unwrap() {
                    known.insert(key, fact);
                }
            }
            d.restart();
            let c = d.client().await;
            let present: BTreeSet<String> = names(&c, &[]).await.into_iter().collect();
            for (key, fact) in &known {
                match fact {
                    Known::Removed => {
                        assert!(!present.contains(key), "{backend}: removed {key} came back")
                    }
                    Known::Committed { content, label } => {
                        assert!(
                            present.contains(key),
                            "{backend}: acknowledged commit {key} lost"
                        );
                        let info = c.stat(key).await.unwrap();
                        assert_eq!(
                            info.labels.get("mark"),
                            Some(label),
                            "{backend}: {key} labels"
                        );
                        let dir = committed_dir(&c, key, &format!("probe-{round}-{key}")).await;
                        assert_eq!(
                            std::fs::read_to_string(dir.join("data")).unwrap(),
                            *content,
                            "{key}"
                        );
                    }
                }
                checked += 1;
            }
            c.cleanup().await.unwrap();
            d.stop();
            d.assert_disk_matches_metadata(backend);
            if *backend == "btrfs" {
                assert_btrfs_consistent(&d, base, extra);
            }
            d.restart();
        }
    }
    eprintln!("random kills: {kills}, acknowledged facts checked: {checked}");
}

/// A stopped btrfs daemon's root, after Cleanup: `strata fsck` finds nothing, the
/// subvolumes under the root are exactly one per snapshot directory, and (once btrfs has
/// dropped the deleted ones) no qgroup of a vanished subvolume still holds bytes.
fn assert_btrfs_consistent(d: &Daemon, fs: &Path, extra: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("fsck")
        .args(extra)
        .arg("--root")
        .arg(&d.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata fsck after kills:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let btrfs = |args: &[&str]| {
        let out = std::process::Command::new("btrfs")
            .args(args)
            .arg(fs)
            .output()
            .expect("btrfs (btrfs-progs)");
        assert!(out.status.success(), "btrfs {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // `ID 258 gen 12 top level 5 path <path>`: the live subvolumes and their paths.
    let live: BTreeMap<u64, String> = btrfs(&["subvolume", "list"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.last()?.to_string()))
        })
        .collect();
    let snapshots = d.snapshots_dir();
    let rel = snapshots.strip_prefix(fs).unwrap().to_str().unwrap();
    let mut ours: Vec<String> = live
        .values()
        .filter_map(|p| p.strip_prefix(rel)?.strip_prefix('/').map(str::to_owned))
        .collect();
    ours.sort();
    let mut dirs: Vec<String> = d
        .snapshot_dirs()
        .into_iter()
        .map(|n| format!("{n}/fs"))
        .collect();
    dirs.sort();
    assert_eq!(ours, dirs, "subvolumes under {rel} vs snapshot directories");
    // A transaction commit wakes the cleaner, which drops the deleted subvolumes at once
    // (otherwise it waits for the next periodic commit, up to 30 s).
    btrfs(&["filesystem", "sync"]);
    btrfs(&["subvolume", "sync"]);
    // `0/258  16384  16384  <path>`: level-0 qgroups, referenced and exclusive bytes.
    let mut seen = 0;
    for line in btrfs(&["qgroup", "show", "--raw"]).lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(id) = f.first().and_then(|q| q.strip_prefix("0/")) else {
            continue;
        };
        let id: u64 = id.parse().unwrap();
        if id == 5 || live.contains_key(&id) {
            seen += usize::from(live.contains_key(&id));
            continue;
        }
        assert!(
            f[1] == "0" && f[2] == "0",
            "qgroup 0/{id} of a deleted subvolume still charged: {line}"
        );
    }
    // Quotas are on: every live subvolume has its qgroup (so the listing was read right).
    assert_eq!(seen, live.len(), "qgroups of the live subvolumes");
}

/// One client's share of the workload: runs until the daemon dies, returns what it knows for
/// sure (acknowledged commits with their content and label, acknowledged removes). A key
/// whose last operation was in flight at the crash is left out: either outcome is allowed.
async fn workload(
    socket: PathBuf,
    round: usize,
    worker: usize,
    committed: Vec<String>,
) -> Vec<(String, Known)> {
    let mut facts = Vec::new();
    let Ok(c) = Client::connect(&socket).await else {
        return facts;
    };
    let mut i = 0usize;
    loop {
        i += 1;
        let key = format!("r{round}-w{worker}-{i}");
        let parent = if i.is_multiple_of(3) {
            committed
                .get(i % committed.len().max(1))
                .cloned()
                .unwrap_or_default()
        } else {
            String::new()
        };
        let Ok(resp) = c
            .prepare(&format!("{key}-active"), &parent, no_labels())
            .await
        else {
            return facts;
        };
        let dir = writable_dir(&resp);
        let content = format!("content of {key}");
        if std::fs::write(dir.join("data"), &content).is_err() {
            return facts;
        }
        let active = format!("{key}-active");
        if c.commit(&key, &active, labels(&[("mark", "v1")]), None)
            .await
            .is_err()
        {
            return facts;
        }
        facts.push((
            key.clone(),
            Known::Committed {
                content: content.clone(),
                label: "v1".into(),
            },
        ));
        let n = facts.len() - 1;
        if c.update(&key, labels(&[("mark", "v2")]), &["labels.mark"])
            .await
            .is_err()
        {
            facts.pop();
            return facts;
        }
        facts[n] = (
            key.clone(),
            Known::Committed {
                content,
                label: "v2".into(),
            },
        );
        if i.is_multiple_of(2) {
            if c.view(&format!("{key}-view"), &key, no_labels())
                .await
                .is_err()
            {
                return facts;
            }
            if c.remove(&format!("{key}-view")).await.is_err() {
                return facts;
            }
            let before = facts.pop().unwrap();
            if c.remove(&key).await.is_err() {
                return facts;
            }
            let _ = before;
            facts.push((key.clone(), Known::Removed));
        }
        if i.is_multiple_of(5) && c.cleanup().await.is_err() {
            return facts;
        }
    }
}

/// A crash while start-up replays the intent log (a daemon killed with acknowledged writes
/// in its log, then dying in the middle of the replay and just before the replay is
/// durable): the next start replays again, and every acknowledged commit is there with its
/// content.
#[tokio::test(flavor = "multi_thread")]
async fn crash_during_replay() {
    for point in ["replay-mid", "replay-before-commit"] {
        let mut d = Daemon::start("overlay");
        let c = d.client().await;
        for i in 0..5 {
            let m = c.prepare(&format!("w{i}"), "", no_labels()).await.unwrap();
            std::fs::write(writable_dir(&m).join("data"), format!("{i}")).unwrap();
            c.commit(&format!("c{i}"), &format!("w{i}"), no_labels(), None)
                .await
                .unwrap();
        }
        let status = d.stop_with(Signal::KILL);
        assert!(!status.success());
        d.env = vec![("STRATA_CRASH_AT".into(), point.into())];
        let out = d.command().output().unwrap();
        assert!(!out.status.success(), "{point}: the start-up must crash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("crash point {point:?}")),
            "{point}: the start-up had no log to replay: {stderr}"
        );
        d.env.clear();
        d.restart();
        let c = d.client().await;
        for i in 0..5 {
            let dir = committed_dir(&c, &format!("c{i}"), &format!("probe-{i}")).await;
            assert_eq!(
                std::fs::read_to_string(dir.join("data")).unwrap(),
                format!("{i}"),
                "{point}: c{i}"
            );
        }
        c.cleanup().await.unwrap();
        d.stop();
        d.assert_disk_matches_metadata("overlay");
    }
}

/// A crash during start-up recovery itself (while it records that ids found on disk are
/// taken) is recovered by the next start: the leftover id is still never handed out, and the
/// daemon serves.
#[tokio::test(flavor = "multi_thread")]
async fn crash_during_recovery() {
    let mut d = Daemon::start("overlay");
    d.stop();
    let leftover = d.snapshots_dir().join("50");
    std::fs::create_dir_all(leftover.join("fs")).unwrap();
    std::fs::write(leftover.join("fs/stale"), b"left by a crash").unwrap();
    d.env = vec![("STRATA_CRASH_AT".into(), "meta-before-commit".into())];
    let status = d.command().status().unwrap();
    assert!(!status.success(), "recovery reached its write and crashed");
    d.env.clear();
    d.restart();
    let c = d.client().await;
    let mounts = c.prepare("fresh", "", no_labels()).await.unwrap();
    let fresh = writable_dir(&mounts);
    assert!(
        !fresh.starts_with(&leftover),
        "id 50 must not be reused: {fresh:?}"
    );
    assert!(std::fs::read_dir(&fresh).unwrap().next().is_none());
    c.cleanup().await.unwrap();
    assert!(!exists(&leftover), "the leftover is reclaimed");
    d.stop();
    d.assert_disk_matches_metadata("overlay");
}
