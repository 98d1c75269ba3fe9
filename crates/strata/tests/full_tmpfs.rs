//! A full disk is the caller's to fix, not a bug: the daemon answers `ResourceExhausted`
//! (recognised by the I/O error's kind, `StorageFull`), changes nothing, and works again
//! once space is freed. Mounts a small tmpfs, so it needs root (and fails without it).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, no_labels, writable_dir};
use strata_grpc::client::Code;

/// A tmpfs of `size` mounted on an existing directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a tmpfs and needs root: run it as root (scripts/test does)"
        );
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs: {status}");
        Tmpfs {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon still running after a failed assertion must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// A native Prepare whose copy of the parent runs out of space is `ResourceExhausted`,
/// leaves no snapshot and no directory behind, and succeeds once space is freed — with the
/// daemon's own log on the full disk too, which must cost log lines, not requests.
#[tokio::test(flavor = "multi_thread")]
async fn full_disk_is_resource_exhausted() {
    let base = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(base.path(), "32m");
    let mut d = Daemon::start_in(&fs.path, "native", &[]);
    let c = d.client().await;
    let m = c.prepare("a", "", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&m).join("data"), vec![7u8; 4 << 20]).unwrap();
    c.commit("A", "a", no_labels(), None).await.unwrap();
    let dirs_before = d.snapshot_dirs();

    let filler = fs.path.join("filler");
    fill(&filler);
    let status = c.prepare("b", "A", no_labels()).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{status:?}\n{}",
        d.stderr()
    );
    assert!(
        status.message().contains("No space left on device"),
        "{status:?}"
    );
    assert_eq!(c.stat("b").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(d.snapshot_dirs(), dirs_before, "nothing left behind");

    std::fs::remove_file(&filler).unwrap();
    c.prepare("b", "A", no_labels())
        .await
        .expect("works again once space is freed");
    d.stop();
    d.assert_disk_matches_metadata("native");
}

/// The metadata file growing into a full disk (many snapshots with big labels): the
/// Prepare that needs the file to grow answers `ResourceExhausted` naming the metadata file,
/// records nothing and leaves no directory; reads keep answering; and once space is freed,
/// writes succeed again without restarting the daemon (redb refuses every write after one
/// failed commit until its database is reopened: issue 15). A `kill -9` then loses nothing
/// acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_growth_into_a_full_disk_recovers_without_restart() {
    let base = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(base.path(), "32m");
    let mut d = Daemon::start_in(&fs.path, "native", &[]);
    let c = d.client().await;
    c.prepare("first", "", no_labels()).await.unwrap();
    let filler = fs.path.join("filler");
    fill(&filler);

    let big = "x".repeat(4000);
    let mut acknowledged = vec!["first".to_owned()];
    let mut refused = None;
    for i in 0..20_000 {
        let key = format!("grow-{i}");
        let labels = common::labels(&[("big", &big)]);
        let dirs = d.snapshot_dirs();
        match c.prepare(&key, "", labels).await {
            Ok(_) => acknowledged.push(key),
            Err(status) => {
                refused = Some((key, status, dirs));
                break;
            }
        }
    }
    let (key, status, dirs_before) = refused.expect("the metadata must outgrow the disk");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{status:?}\n{}",
        d.stderr()
    );
    assert!(
        status.message().contains("metadata.redb") && status.message().contains("No space"),
        "names what ran out and where: {status:?}"
    );
    assert_eq!(c.stat(&key).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(d.snapshot_dirs(), dirs_before, "nothing left behind");
    // Reads keep answering while the disk is full.
    let listed = common::names(&c, &[]).await;
    assert_eq!(listed.len(), acknowledged.len());
    c.stat("first").await.unwrap();
    let again = c.prepare(&key, "", no_labels()).await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");

    std::fs::remove_file(&filler).unwrap();
    c.prepare(&key, "", no_labels())
        .await
        .expect("writes work again once space is freed, without a restart");
    acknowledged.push(key);
    c.remove("first").await.unwrap();
    acknowledged.retain(|k| k != "first");

    d.stop_with(rustix::process::Signal::KILL);
    d.restart();
    let c = d.client().await;
    let mut listed = common::names(&c, &[]).await;
    listed.sort();
    acknowledged.sort();
    assert_eq!(
        listed, acknowledged,
        "nothing acknowledged lost, nothing removed back"
    );
    c.cleanup().await.unwrap();
    d.stop();
    d.assert_disk_matches_metadata("native");
}
