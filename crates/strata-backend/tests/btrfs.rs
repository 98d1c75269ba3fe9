//! The btrfs backend through the engine, on a real btrfs (a loop device each test makes):
//! size limits, qgroup Usage against a walk, Commit's read-only flag, removal of read-only
//! subvolumes, and start-up recovery of half-made subvolumes. Needs root and `mkfs.btrfs`
//! (btrfs-progs; `scripts/test` installs it): without them each test fails saying so.

use std::io::Write;
use std::path::{Path, PathBuf};

use strata_backend::btrfs::{Btrfs, BtrfsOptions, QuotaSetting};
use strata_backend::limits::MAX_SIZE_LABEL;
use strata_backend::{Engine, EngineOptions};
use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Kind, Snapshotter};
use strata_sys::btrfs as sys;
use strata_sys::testing::LoopBtrfs;

/// The context of work no client waits on.
fn bg() -> Ctx {
    Ctx::background()
}

const MIB: u64 = 1 << 20;

fn engine(root: &Path, options: BtrfsOptions) -> Engine<Btrfs> {
    let driver = Btrfs::new(root, options).expect("btrfs driver");
    Engine::open(root, driver, EngineOptions::default())
        .expect("engine")
        .0
}

fn with_quota(default_max_size: Option<u64>) -> BtrfsOptions {
    BtrfsOptions {
        quota: QuotaSetting::Qgroups,
        default_max_size,
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The writable directory of an active snapshot: the source of its bind mount.
fn prepare(e: &Engine<Btrfs>, key: &str, parent: &str, l: Labels) -> PathBuf {
    let mounts = e.prepare(&bg(), key, parent, l).unwrap();
    assert_eq!(mounts[0].kind, "bind");
    assert!(mounts[0].options.contains(&"rw".to_string()));
    PathBuf::from(&mounts[0].source)
}

fn write_file(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0x5au8; MIB as usize];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize])?;
        left -= n;
    }
    f.sync_all()
}

fn edquot(r: std::io::Result<()>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(122))
}

/// A snapshot labelled with a max size refuses writes past it with "Disk quota exceeded",
/// while a neighbour without a label writes freely; the default limit covers unlabelled
/// writable snapshots but never extraction snapshots.
#[test]
fn limits_are_enforced() {
    let fs = LoopBtrfs::new(1 << 30);
    let e = engine(&fs.path().join("root"), with_quota(Some(24 * MIB)));
    let small = (8 * MIB).to_string();
    let limited = prepare(&e, "limited", "", labels(&[(MAX_SIZE_LABEL, &small)]));
    let free = prepare(&e, "ns/3/extract-123-sha256:abc", "", Labels::new());
    let referenced = prepare(
        &e,
        "layer",
        "",
        labels(&[("containerd.io/snapshot.ref", "sha256:abc")]),
    );
    let defaulted = prepare(&e, "container", "", Labels::new());

    let err = write_file(&limited.join("big"), 32 * MIB).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(122), "{err}");
    assert!(err.to_string().contains("Disk quota exceeded"), "{err}");
    write_file(&free.join("big"), 64 * MIB).unwrap();
    write_file(&referenced.join("big"), 64 * MIB).unwrap();
    assert!(edquot(write_file(&defaulted.join("big"), 64 * MIB)));
    write_file(&defaulted.join("small"), 4 * MIB).unwrap_or(());

    // A malformed label is refused and nothing is created.
    let bad = e.prepare(&bg(), "bad", "", labels(&[(MAX_SIZE_LABEL, "10G")]));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    assert!(matches!(e.stat(&bg(), "bad"), Err(Error::NotFound { .. })));
}

/// Update of the label moves the limit: raised, the writer may go on; removed, the
/// snapshot falls back to the default (none here); malformed, refused with nothing changed.
#[test]
fn update_moves_the_limit() {
    let fs = LoopBtrfs::new(1 << 30);
    let e = engine(&fs.path().join("root"), with_quota(None));
    let max = (8 * MIB).to_string();
    let dir = prepare(&e, "c", "", labels(&[(MAX_SIZE_LABEL, &max)]));
    assert!(edquot(write_file(&dir.join("a"), 16 * MIB)));
    std::fs::remove_file(dir.join("a")).unwrap();
    strata_sys::syncfs(&dir).unwrap();

    let raised = (64 * MIB).to_string();
    let fields = vec![format!("labels.{MAX_SIZE_LABEL}")];
    let info = e
        .update(&bg(), "c", &labels(&[(MAX_SIZE_LABEL, &raised)]), &fields)
        .unwrap();
    assert_eq!(info.labels[MAX_SIZE_LABEL], raised);
    write_file(&dir.join("a"), 16 * MIB).unwrap();

    let bad = e.update(&bg(), "c", &labels(&[(MAX_SIZE_LABEL, "lots")]), &fields);
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    assert_eq!(e.stat(&bg(), "c").unwrap().labels[MAX_SIZE_LABEL], raised);
    let id = sys::subvolume_id(&dir).unwrap();
    assert_eq!(sys::qgroup_limit(&dir, id).unwrap(), Some(64 * MIB));

    // Removing the label (an update that does not carry it) clears the limit.
    e.update(&bg(), "c", &Labels::new(), &fields).unwrap();
    assert_eq!(sys::qgroup_limit(&dir, id).unwrap(), None);
    write_file(&dir.join("b"), 96 * MIB).unwrap();
}

/// With quotas on, the Usage of an active snapshot comes from its qgroup and equals a walk
/// of its files within qgroup granularity (metadata blocks and 4 KiB sectors); without
/// quotas it is the walk.
#[test]
fn usage_matches_a_walk() {
    for quota in [QuotaSetting::Qgroups, QuotaSetting::Keep] {
        // A filesystem each: quotas once enabled stay on.
        let fs = LoopBtrfs::new(1 << 30);
        let root = fs.path().join(format!("root-{quota:?}"));
        let e = engine(
            &root,
            BtrfsOptions {
                quota,
                default_max_size: None,
            },
        );
        let base = prepare(&e, "base-a", "", Labels::new());
        write_file(&base.join("shared"), 8 * MIB).unwrap();
        e.commit(&bg(), "base", "base-a", Labels::new(), None)
            .unwrap();
        let dir = prepare(&e, "active", "base", Labels::new());
        std::fs::create_dir(dir.join("d")).unwrap();
        for i in 0..2000 {
            std::fs::write(dir.join("d").join(i.to_string()), vec![7u8; 5000]).unwrap();
        }
        write_file(&dir.join("big"), 16 * MIB).unwrap();
        strata_sys::syncfs(&dir).unwrap();
        let usage = e.usage(&bg(), "active").unwrap();
        // The walk counts the whole tree, parent's files included: take them out.
        let walk = strata_sys::usage::disk_usage(&dir).unwrap().bytes
            - strata_sys::usage::disk_usage(&base).unwrap().bytes;
        let diff = usage.size.abs_diff(walk as i64);
        eprintln!("{quota:?}: usage {usage:?}, walk {walk} bytes, difference {diff}");
        if quota == QuotaSetting::Qgroups {
            assert_eq!(usage.inodes, 0, "qgroups count no inodes");
            assert!(
                diff <= walk / 20 + MIB,
                "qgroup {} vs walk {walk}",
                usage.size
            );
        } else {
            // The walk against the parent: exactly the new files (and the directory holding
            // them, and the snapshot's root, whose times changed).
            assert_eq!(usage.size, walk as i64, "{usage:?}");
            assert_eq!(usage.inodes, 2000 + 1 + 1 + 1, "{usage:?}");
        }
    }
}

/// Commit makes the subvolume read-only in place; a view is a read-only snapshot of its
/// parent; Remove + Cleanup (and sync_remove) destroy subvolumes, read-only ones included,
/// leaving no subvolume behind.
#[test]
fn commit_view_remove() {
    let fs = LoopBtrfs::new(512 << 20);
    for sync_remove in [false, true] {
        let root = fs.path().join(format!("root-{sync_remove}"));
        let driver = Btrfs::new(&root, BtrfsOptions::default()).unwrap();
        let options = EngineOptions {
            sync_remove,
            ..EngineOptions::default()
        };
        let (e, _) = Engine::open(&root, driver, options).unwrap();
        let dir = prepare(&e, "a", "", Labels::new());
        std::fs::write(dir.join("f"), b"layer").unwrap();
        e.commit(&bg(), "base", "a", Labels::new(), None).unwrap();
        assert!(
            sys::is_readonly(&dir).unwrap(),
            "committed in place, read-only"
        );
        assert!(std::fs::write(dir.join("g"), b"x").is_err());
        assert_eq!(e.stat(&bg(), "base").unwrap().kind, Kind::Committed);

        let view = e.view(&bg(), "v", "base", Labels::new()).unwrap();
        assert_eq!(view[0].options, vec!["rbind", "ro"]);
        let vdir = PathBuf::from(&view[0].source);
        assert_ne!(vdir, dir, "a view has its own snapshot");
        assert!(sys::is_readonly(&vdir).unwrap());
        assert_eq!(std::fs::read(vdir.join("f")).unwrap(), b"layer");

        let child = prepare(&e, "c", "base", Labels::new());
        assert_eq!(std::fs::read(child.join("f")).unwrap(), b"layer");
        std::fs::write(child.join("f"), b"child").unwrap();
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"layer");

        for key in ["v", "c", "base"] {
            e.remove(&bg(), key).unwrap();
        }
        let report = e.cleanup(&bg()).unwrap();
        assert_eq!(report.directories, if sync_remove { 0 } else { 3 });
        let left: Vec<_> = std::fs::read_dir(root.join("snapshots")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// What a crash leaves is repaired at the next start: a half-built `new-*` subvolume
/// (read-only, as a View builds) is destroyed; a subvolume whose id the metadata does not
/// know goes at Cleanup; an active snapshot left read-only by a crash inside Commit is
/// writable again.
#[test]
fn recovery_of_half_made_subvolumes() {
    let fs = LoopBtrfs::new(512 << 20);
    let root = fs.path().join("root");
    let e = engine(&root, BtrfsOptions::default());
    let dir = prepare(&e, "active", "", Labels::new());
    std::fs::write(dir.join("f"), b"data").unwrap();
    e.close().unwrap();
    drop(e);

    let snapshots = root.join("snapshots");
    // A crash during a View of "active"'s subvolume, before the rename.
    std::fs::create_dir(snapshots.join("new-1234-0")).unwrap();
    sys::snapshot(&dir, &snapshots.join("new-1234-0/fs"), true).unwrap();
    // A crash after the rename, before the metadata commit: an id nobody knows.
    std::fs::create_dir(snapshots.join("77")).unwrap();
    sys::snapshot(&dir, &snapshots.join("77/fs"), true).unwrap();
    // A crash inside Commit, after the read-only flag was set.
    sys::set_readonly(&dir, true).unwrap();

    let driver = Btrfs::new(&root, BtrfsOptions::default()).unwrap();
    let (e, recovery) = Engine::open(&root, driver, EngineOptions::default()).unwrap();
    assert_eq!(recovery.temp_dirs_removed, 1, "{recovery:?}");
    assert_eq!(recovery.orphan_dirs, 1, "{recovery:?}");
    assert_eq!(recovery.unsealed, 1, "{recovery:?}");
    assert!(!snapshots.join("new-1234-0").exists());
    assert!(!sys::is_readonly(&dir).unwrap());
    std::fs::write(dir.join("g"), b"writable again").unwrap();
    assert_eq!(e.cleanup(&bg()).unwrap().directories, 1);
    assert!(!snapshots.join("77").exists());
    // A new snapshot never reuses the orphan's id.
    let next = prepare(&e, "next", "", Labels::new());
    assert!(next.starts_with(&snapshots), "{}", next.display());
    let id: u64 = next
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 77, "{id}");
}

/// A root that is not on btrfs is refused at start with a message that says so.
#[test]
fn refuses_a_root_not_on_btrfs() {
    let dir = tempfile::tempdir().unwrap();
    if sys::is_btrfs(dir.path()).unwrap() {
        return;
    }
    let err = Btrfs::new(&dir.path().join("root"), BtrfsOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("needs its root on a btrfs filesystem") && msg.contains("is on "),
        "{msg}"
    );
}

/// A default limit without quotas (and no setting to enable them) is refused at start:
/// every Prepare would fail.
#[test]
fn default_limit_needs_quotas() {
    let fs = LoopBtrfs::new(256 << 20);
    let err = Btrfs::new(
        &fs.path().join("root"),
        BtrfsOptions {
            quota: QuotaSetting::Keep,
            default_max_size: Some(MIB),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs btrfs quotas"), "{err}");
}
