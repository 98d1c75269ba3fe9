//! The daemon's life: permissions, one daemon per root, clean shutdown, restart after a
//! clean stop and after `kill -9`, recovery of what a crash leaves.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Daemon, exists, labels, names, no_labels};
use rustix::process::Signal;
use strata_grpc::client::Code;

/// The socket is 0660, the root 0700; SIGTERM exits 0 and removes the socket.
#[tokio::test(flavor = "multi_thread")]
async fn permissions_and_clean_shutdown() {
    let mut d = Daemon::start("overlay");
    let socket = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o660);
    assert_eq!(std::fs::metadata(&d.root).unwrap().mode() & 0o777, 0o700);
    assert_eq!(
        std::fs::metadata(d.root.join("overlay"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for file in [
        "strata.lock",
        "overlay/metadata.redb",
        "native/metadata.redb",
    ] {
        let mode = std::fs::metadata(d.root.join(file)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    d.stop();
    assert!(!exists(&d.socket), "socket removed on shutdown");
}

/// A second daemon on the same root is refused with a clear error; the first keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn second_daemon_is_refused() {
    let d = Daemon::start("overlay");
    let other_socket = d.dir.path().join("other.sock");
    let output = d.command_at(&other_socket).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another strata daemon"), "{stderr}");
    let c = d.client().await;
    c.prepare("still-serving", "", no_labels()).await.unwrap();
}

/// Snapshots and labels survive a SIGTERM restart and a `kill -9` restart; the stale socket
/// left by the kill does not stop the restart.
#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_everything() {
    let mut d = Daemon::start("overlay");
    {
        let c = d.client().await;
        c.prepare("a", "", labels(&[("l", "v")])).await.unwrap();
        c.commit("A", "a", no_labels(), None).await.unwrap();
        c.prepare("b", "A", no_labels()).await.unwrap();
    }
    d.stop();
    d.restart();
    {
        let c = d.client().await;
        assert_eq!(names(&c, &[]).await, ["A", "b"]);
        c.view("v", "A", no_labels()).await.unwrap();
    }
    let status = d.stop_with(Signal::KILL);
    assert!(!status.success());
    assert!(exists(&d.socket), "kill -9 leaves the socket file behind");
    d.restart();
    let c = d.client().await;
    assert_eq!(names(&c, &[]).await, ["A", "b", "v"]);
}

/// What a crash mid-Prepare leaves (a directory under an id the store never recorded; from an
/// earlier version, a half-built `new-*` directory) is repaired at start: the temp directory
/// is gone, the id is never handed out again, and Cleanup removes the orphan.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_after_crash_leftovers() {
    let mut d = Daemon::start("overlay");
    d.stop();
    let snapshots = d.snapshots_dir();
    std::fs::create_dir_all(snapshots.join("new-123-0/fs")).unwrap();
    std::fs::create_dir_all(snapshots.join("1/fs")).unwrap();
    std::fs::write(snapshots.join("1/fs/stale"), b"from before the crash").unwrap();
    d.restart();
    assert!(
        !exists(&snapshots.join("new-123-0")),
        "temp directory removed at start"
    );
    let c = d.client().await;
    let mounts = c.prepare("fresh", "", no_labels()).await.unwrap();
    let fresh = common::writable_dir(&mounts);
    assert!(
        !fresh.starts_with(snapshots.join("1")),
        "the leftover id is not reused: {fresh:?}"
    );
    assert!(
        std::fs::read_dir(&fresh).unwrap().next().is_none(),
        "a new snapshot starts empty"
    );
    c.cleanup().await.unwrap();
    assert!(!exists(&snapshots.join("1")), "orphan removed by Cleanup");
}

/// A corrupt metadata store stops the daemon with an error naming the file, instead of
/// starting empty.
#[test]
fn corrupt_store_is_a_clear_error() {
    let mut d = Daemon::start("overlay");
    d.stop();
    let store = d.root.join("overlay/metadata.redb");
    std::fs::write(&store, vec![0xffu8; 16384]).unwrap();
    let output = d.command().output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("metadata.redb"), "{stderr}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        vec![0xffu8; 16384],
        "store left as it was"
    );
}

/// Every operation works on a brand-new, empty root.
#[tokio::test(flavor = "multi_thread")]
async fn empty_root_operations() {
    let d = Daemon::start("native");
    let c = d.client().await;
    assert!(names(&c, &[]).await.is_empty());
    assert!(names(&c, &["labels.x==y"]).await.is_empty());
    c.cleanup().await.unwrap();
    assert_eq!(c.stat("x").await.unwrap_err().code(), Code::NotFound);
}
