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
