//! Test support (feature `testing`): a scratch btrfs filesystem on a loop device, for tests
//! and benchmarks of the btrfs code on any machine, whatever filesystem holds `/tmp`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh btrfs filesystem in a sparse image file, loop-mounted on a temporary directory;
/// unmounted (which releases the loop device, `mount -o loop` sets autoclear) and deleted on
/// drop, even when a test panics.
#[derive(Debug)]
pub struct LoopBtrfs {
    dir: PathBuf,
    mountpoint: PathBuf,
}

impl LoopBtrfs {
    /// Makes and mounts a btrfs of `size` bytes (at least 128 MiB: mkfs.btrfs refuses less
    /// than about 110 MiB). Panics with the reason when it cannot: not root, `mkfs.btrfs`
    /// missing (install btrfs-progs), no loop device.
    pub fn new(size: u64) -> LoopBtrfs {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a btrfs loop device and needs root: run it as root (scripts/test does)"
        );
        let base = std::env::var_os("STRATA_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = (0..1000)
            .map(|n| base.join(format!("strata-btrfs-{}-{n}", std::process::id())))
            .find(|d| std::fs::create_dir(d).is_ok())
            .expect("a scratch directory for the btrfs image");
        let fs = LoopBtrfs {
            mountpoint: dir.join("mnt"),
            dir,
        };
        let image = fs.dir.join("btrfs.img");
        let file = std::fs::File::create(&image).expect("creating the btrfs image");
        file.set_len(size.max(128 << 20))
            .expect("sizing the btrfs image");
        drop(file);
        run(
            Command::new("mkfs.btrfs").arg("-q").arg(&image),
            "mkfs.btrfs (install btrfs-progs)",
        );
        std::fs::create_dir(&fs.mountpoint).expect("creating the mount point");
        run(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&fs.mountpoint),
            "mount -o loop",
        );
        fs
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        let mut unmounted = Command::new("umount")
            .arg(&self.mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a test left a mount or an open file): detach it lazily.
            unmounted = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status()
                .is_ok_and(|s| s.success());
        }
        if unmounted {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
