//! Round trips: a tree written out as a layer and applied again is the same tree, and a
//! layer exported from an overlay upper directory, applied onto its lower layer, gives what
//! the overlay mount showed. Needs root (ownership, devices, overlay mounts).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::{listing, require_root};
use proptest::prelude::*;
use strata_layer::export::export_upper;
use strata_layer::{Compression, Whiteouts, apply};

/// One thing to create in a random tree.
#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        owner: u32,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: String,
    },
    HardLink {
        to: usize,
    },
    Fifo,
    Char {
        minor: u32,
    },
    Xattr {
        value: Vec<u8>,
    },
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..3000), prop_oneof![Just(0o644u32), Just(0o755), Just(0o4755), Just(0o2711), Just(0o600)], 0u32..3)
            .prop_map(|(data, mode, owner)| Node::File { data, mode, owner }),
        2 => prop_oneof![Just(0o755u32), Just(0o700), Just(0o1777)].prop_map(|mode| Node::Dir { mode }),
        1 => "[a-z./]{1,12}".prop_map(|target| Node::Symlink { target }),
        1 => (0usize..64).prop_map(|to| Node::HardLink { to }),
        1 => Just(Node::Fifo),
        1 => (1u32..9).prop_map(|minor| Node::Char { minor }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|value| Node::Xattr { value }),
    ]
}

/// Builds a tree under `root` from `nodes`: each node goes into a directory chosen among
/// those made so far.
fn build(root: &Path, nodes: &[(usize, Node)]) {
    let mut dirs = vec![root.to_owned()];
    let mut files = Vec::new();
    for (i, (at, node)) in nodes.iter().enumerate() {
        let dir = dirs[at % dirs.len()].clone();
        let path = dir.join(format!("n{i}"));
        match node {
            Node::File { data, mode, owner } => {
                std::fs::write(&path, data).unwrap();
                std::os::unix::fs::chown(&path, Some(1000 + owner), Some(2000 + owner)).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
                files.push(path);
            }
            Node::Dir { mode } => {
                std::fs::create_dir(&path).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
                dirs.push(path);
            }
            Node::Symlink { target } => symlink(target, &path).unwrap(),
            Node::HardLink { to } => {
                if !files.is_empty() {
                    std::fs::hard_link(&files[to % files.len()], &path).unwrap();
                }
            }
            Node::Fifo => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                0o640.into(),
                0,
            )
            .unwrap(),
            Node::Char { minor } => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::CharacterDevice,
                0o600.into(),
                rustix::fs::makedev(1, *minor),
            )
            .unwrap(),
            Node::Xattr { value } => {
                std::fs::write(&path, b"x").unwrap();
                rustix::fs::lsetxattr(&path, "user.strata", value, rustix::fs::XattrFlags::empty())
                    .unwrap();
            }
        }
    }
}

fn export_apply(from: &Path, to: &Path, compression: Compression, whiteouts: &Whiteouts) {
    let mut blob = Vec::new();
    let exported = export_upper(from, compression, None, &mut blob, &|| false).unwrap();
    assert_eq!(exported.size, blob.len() as u64);
    let applied = apply(
        Box::new(std::io::Cursor::new(blob)),
        compression,
        to,
        whiteouts,
        Some(&exported.digest),
        &|| false,
    )
    .unwrap();
    assert_eq!(
        applied.diff_id, exported.diff_id,
        "the diffID of what was written is what was read"
    );
    assert_eq!(applied.size, exported.uncompressed_size);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Random trees (files with setuid/setgid/sticky modes and owners, directories,
    /// symlinks, hard links, fifos, devices, xattrs) survive export and apply unchanged,
    /// with every compression.
    #[test]
    fn random_trees_round_trip(nodes in proptest::collection::vec((0usize..16, node()), 1..40), c in 0..3usize) {
        require_root();
        let compression = [Compression::None, Compression::Gzip, Compression::Zstd][c];
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        build(src.path(), &nodes);
        export_apply(src.path(), dst.path(), compression, &Whiteouts::Delete);
        prop_assert_eq!(listing(src.path()), listing(dst.path()));
    }
}

/// Mounts an overlay of `lower` and `upper` (work dir beside them) at `merged`.
fn mount_overlay(lower: &Path, upper: &Path, work: &Path, merged: &Path) {
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(merged)
        .status()
        .unwrap();
    assert!(status.success(), "mount overlay");
}

fn umount(path: &Path) {
    assert!(
        std::process::Command::new("umount")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

/// Changes made through a real overlay mount — new, modified and deleted files, a deleted
/// and recreated directory (opaque), changed modes and owners, hard links, symlinks, xattrs,
/// devices — exported from the upper directory alone and applied onto the lower layer give
/// the tree the mount showed: as deletions onto a full copy (native) and as overlay
/// whiteouts into a fresh upper directory (overlay).
#[test]
fn overlay_upper_exports_what_the_mount_shows() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let p = |s: &str| t.path().join(s);
    for d in [
        "lower", "upper", "work", "merged", "copy", "upper2", "work2", "merged2",
    ] {
        std::fs::create_dir(p(d)).unwrap();
    }
    // The lower layer.
    let lower = p("lower");
    std::fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
    std::fs::write(lower.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    std::fs::write(lower.join("etc/conf.d/a"), b"a").unwrap();
    std::fs::write(lower.join("etc/conf.d/b"), b"b").unwrap();
    std::fs::create_dir_all(lower.join("opt/app/lib")).unwrap();
    std::fs::write(lower.join("opt/app/lib/old.so"), vec![1u8; 10_000]).unwrap();
    std::fs::write(lower.join("gone"), b"bye").unwrap();
    std::fs::create_dir_all(lower.join("var/keep/deep")).unwrap();
    std::fs::write(lower.join("var/keep/deep/file"), b"deep").unwrap();
    symlink("etc/passwd", lower.join("pw")).unwrap();

    // Changes through the mount.
    let merged = p("merged");
    mount_overlay(&lower, &p("upper"), &p("work"), &merged);
    let m = |s: &str| merged.join(s);
    std::fs::write(m("etc/passwd"), b"root:x:0:0\nuser:x:1000:1000\n").unwrap();
    std::fs::remove_file(m("etc/conf.d/a")).unwrap();
    std::fs::remove_dir_all(m("opt/app")).unwrap();
    std::fs::create_dir_all(m("opt/app/bin")).unwrap();
    std::fs::write(m("opt/app/bin/tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        m("opt/app/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::remove_file(m("gone")).unwrap();
    std::fs::write(m("var/keep/deep/new"), b"new").unwrap();
    std::fs::hard_link(m("var/keep/deep/new"), m("var/keep/hardlink")).unwrap();
    std::os::unix::fs::chown(m("etc/conf.d/b"), Some(33), Some(33)).unwrap();
    symlink("/opt/app/bin/tool", m("tool")).unwrap();
    rustix::fs::lsetxattr(
        m("var/keep/deep/new"),
        "user.note",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m("fifo"),
        rustix::fs::FileType::Fifo,
        0o600.into(),
        0,
    )
    .unwrap();
    let expected = listing(&merged);
    umount(&merged);

    // Native: a full copy of the lower layer, the layer applied with deletions.
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", lower.display()))
            .arg(p("copy"))
            .status()
            .unwrap()
            .success()
    );
    export_apply(
        &p("upper"),
        &p("copy"),
        Compression::Gzip,
        &Whiteouts::Delete,
    );
    assert_eq!(
        listing(&p("copy")),
        expected,
        "native: lower + layer = what the mount showed"
    );

    // Overlay: the layer applied into a fresh upper directory, then mounted.
    export_apply(
        &p("upper"),
        &p("upper2"),
        Compression::Gzip,
        &Whiteouts::Overlay {
            lowers: vec![lower.clone()],
        },
    );
    let merged2 = p("merged2");
    mount_overlay(&lower, &p("upper2"), &p("work2"), &merged2);
    let got = listing(&merged2);
    umount(&merged2);
    assert_eq!(
        got, expected,
        "overlay: lower + applied upper = what the mount showed"
    );
    let _ = OsStr::new("");
}

/// Copies the tree `from` to `to` with everything (`cp -a`).
fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A change made to a copy of a random tree.
#[derive(Debug, Clone)]
enum Change {
    Remove(usize),
    Rewrite(usize, Vec<u8>),
    Chmod(usize, u32),
    Add(usize, Node),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0usize..64).prop_map(Change::Remove),
        ((0usize..64), proptest::collection::vec(any::<u8>(), 0..500))
            .prop_map(|(i, d)| Change::Rewrite(i, d)),
        (
            (0usize..64),
            prop_oneof![Just(0o600u32), Just(0o755), Just(0o4711)]
        )
            .prop_map(|(i, m)| Change::Chmod(i, m)),
        ((0usize..64), node()).prop_map(|(i, n)| Change::Add(i, n)),
    ]
}

/// Every path under `root`, sorted (directories before their content).
fn paths(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn apply_changes(root: &Path, changes: &[Change]) {
    for (k, c) in changes.iter().enumerate() {
        let all = paths(root);
        let pick = |i: usize| (!all.is_empty()).then(|| all[i % all.len()].clone());
        match c {
            Change::Remove(i) => {
                if let Some(p) = pick(*i) {
                    if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                        std::fs::remove_dir_all(&p).unwrap();
                    } else {
                        std::fs::remove_file(&p).unwrap();
                    }
                }
            }
            Change::Rewrite(i, data) => {
                if let Some(p) =
                    pick(*i).filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
                {
                    std::fs::write(&p, data).unwrap();
                }
            }
            Change::Chmod(i, mode) => {
                if let Some(p) = pick(*i).filter(|p| {
                    !std::fs::symlink_metadata(p)
                        .unwrap()
                        .file_type()
                        .is_symlink()
                }) {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
                }
            }
            Change::Add(i, node) => {
                let dir = pick(*i)
                    .filter(|p| std::fs::symlink_metadata(p).unwrap().is_dir())
                    .unwrap_or_else(|| root.to_owned());
                let sub = dir.join(format!("added{k}"));
                std::fs::create_dir(&sub).unwrap();
                build(&sub, &[(0, node.clone())]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// Two full trees (a native snapshot and its parent): the compared layer applied onto
    /// a copy of the lower tree gives the upper tree.
    #[test]
    fn compared_full_trees_round_trip(
        nodes in proptest::collection::vec((0usize..16, node()), 1..30),
        changes in proptest::collection::vec(change(), 1..12),
    ) {
        require_root();
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        build(lower.path(), &nodes);
        copy_tree(lower.path(), upper.path());
        apply_changes(upper.path(), &changes);
        copy_tree(lower.path(), target.path());
        let mut blob = Vec::new();
        let exported = strata_layer::export::export_compare(lower.path(), upper.path(), Compression::Gzip, None, &mut blob, &|| false).unwrap();
        apply(Box::new(std::io::Cursor::new(blob)), Compression::Gzip, target.path(), &Whiteouts::Delete, Some(&exported.digest), &|| false).unwrap();
        prop_assert_eq!(listing(target.path()), listing(upper.path()));
    }
}
