//! `strata mount` / `strata umount` on deep overlay chains: 128, 300 and 499 lower layers,
//! far beyond the 4 KiB of options `mount(2)` accepts (the kernel's limit is 500 layers).
//! Every layer's file must be readable through the mount, writes must land in the active
//! snapshot's upper directory, and no test may leave a mount behind, even when it fails.
//!
//! These tests mount, so they need root (CI runs as root); run as another user they fail
//! saying so, rather than pass without testing anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Daemon, no_labels, writable_dir};

/// Runs `strata ARGS --address <socket>` (or without `--address` for `umount`).
fn strata(d: Option<&Daemon>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args);
    if let Some(d) = d {
        cmd.arg("--address").arg(&d.socket);
    }
    cmd.output().expect("run strata")
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mount points under `dir` (from `/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// Detaches whatever is still mounted on its path when dropped: a failing assertion between
/// `strata mount` and `strata umount` must not leave the mount (and a busy test root) behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        while !mounts_under(&self.0).is_empty() {
            if rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH).is_err() {
                break;
            }
        }
    }
}

/// Fails the test unless it runs as root: a test that cannot mount must not pass.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts and needs root: run it as root (scripts/test does)"
    );
}

/// Builds `layers` committed layers, each adding `layer-<i>` (and overwriting `top-file`),
/// then an active snapshot on the last; mounts it with `strata mount`, reads every layer's
/// file through it, writes through it, unmounts with `strata umount`.
async fn mount_chain(layers: usize) {
    require_root();
    let d = Daemon::start("overlay");
    let c = d.client().await;
    let mut parent = String::new();
    for i in 0..layers {
        let key = format!("active-{i}");
        let mounts = c.prepare(&key, &parent, no_labels()).await.unwrap();
        let dir = writable_dir(&mounts);
        std::fs::write(
            dir.join(format!("layer-{i}")),
            format!("content of layer {i}"),
        )
        .unwrap();
        std::fs::write(dir.join("top-file"), format!("{i}")).unwrap();
        let name = format!("layer-{i}");
        c.commit(&name, &key, no_labels(), None).await.unwrap();
        parent = name;
    }
    let mounts = c.prepare("container", &parent, no_labels()).await.unwrap();
    let lower = mounts[0]
        .options
        .iter()
        .find(|o| o.starts_with("lowerdir="))
        .unwrap();
    assert_eq!(lower.split(':').count(), layers);
    assert!(
        lower.len() > 4096 || layers < 100,
        "the chain should not fit in a mount(2) page"
    );

    let target = d.dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let _guard = MountGuard(target.clone());
    let t = target.to_str().unwrap();
    check(
        &strata(Some(&d), &["mount", "container", t]),
        "strata mount",
    );
    assert_eq!(mounts_under(&target), [t], "one mount on the target");

    for i in 0..layers {
        let content = std::fs::read_to_string(target.join(format!("layer-{i}")))
            .unwrap_or_else(|e| panic!("layer-{i} through the mount: {e}"));
        assert_eq!(content, format!("content of layer {i}"));
    }
    assert_eq!(
        std::fs::read_to_string(target.join("top-file")).unwrap(),
        (layers - 1).to_string(),
        "the nearest layer wins"
    );
    std::fs::write(target.join("written"), b"through the mount").unwrap();
    assert_eq!(
        std::fs::read(writable_dir(&mounts).join("written")).unwrap(),
        b"through the mount",
        "writes land in the upper directory"
    );

    check(&strata(None, &["umount", t]), "strata umount");
    assert!(mounts_under(&target).is_empty(), "mount left behind");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

/// 128 layers: about 6 KiB of lowerdir, already past `mount(2)`'s page.
#[tokio::test(flavor = "multi_thread")]
async fn mount_128_layers() {
    mount_chain(128).await;
}

/// 300 layers.
#[tokio::test(flavor = "multi_thread")]
async fn mount_300_layers() {
    mount_chain(300).await;
}

/// 499 layers: one under overlayfs's limit of 500 lower layers.
#[tokio::test(flavor = "multi_thread")]
async fn mount_499_layers() {
    mount_chain(499).await;
}

/// A base layer mounts as a writable bind and a view as a read-only one; `umount` of
/// something that is not mounted is a clear error; a committed snapshot cannot be mounted.
#[tokio::test(flavor = "multi_thread")]
async fn mount_binds_and_errors() {
    require_root();
    for backend in common::BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        let mounts = c.prepare("base-a", "", no_labels()).await.unwrap();
        std::fs::write(writable_dir(&mounts).join("f"), b"base").unwrap();
        c.commit("base", "base-a", no_labels(), None).await.unwrap();
        c.view("v", "base", no_labels()).await.unwrap();
        c.prepare("rw", "", no_labels()).await.unwrap();

        let target = d.dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let _guard = MountGuard(target.clone());
        let t = target.to_str().unwrap();

        check(&strata(Some(&d), &["mount", "v", t]), "mount view");
        assert_eq!(std::fs::read(target.join("f")).unwrap(), b"base");
        let err = std::fs::write(target.join("g"), b"x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(30),
            "{backend}: a view is read-only"
        );
        check(&strata(None, &["umount", t]), "umount view");

        check(&strata(Some(&d), &["mount", "rw", t]), "mount active");
        std::fs::write(target.join("g"), b"x").unwrap();
        check(&strata(None, &["umount", t]), "umount active");
        assert!(mounts_under(&target).is_empty());

        let out = strata(Some(&d), &["mount", "base", t]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("strata: mount base: FailedPrecondition: "),
            "{stderr}"
        );
        let out = strata(None, &["umount", t]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!("strata: umount {t}: "))
                && stderr.contains("not a mount point"),
            "{stderr}"
        );
        assert!(mounts_under(&target).is_empty());
    }
}
