//! Test support (feature `testing`): a scratch filesystem (btrfs or ext4) on a loop device,
//! for tests and benchmarks on any machine, whatever filesystem holds `/tmp`, and for tests
//! that fill a disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh btrfs filesystem in a sparse image file, loop-mounted on a temporary directory;
/// unmounted (which releases the loop device, `mount -o loop` sets autoclear) and deleted on
/// drop, even when a test panics.
#[derive(Debug)]
pub struct LoopBtrfs(LoopDisk);

impl LoopBtrfs {
    /// Makes and mounts a btrfs of `size` bytes (at least 128 MiB: mkfs.btrfs refuses less
    /// than about 110 MiB). Panics with the reason when it cannot: not root, `mkfs.btrfs`
    /// missing (install btrfs-progs), no loop device.
    pub fn new(size: u64) -> LoopBtrfs {
        LoopBtrfs(LoopDisk::new(Fs::Btrfs, size))
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A filesystem [`LoopDisk`] can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// btrfs (at least 128 MiB).
    Btrfs,
    /// ext4 with a journal and no blocks reserved for root, so that a test's filler really
    /// fills it for the daemon too.
    Ext4,
}

/// A fresh filesystem in a sparse image file, loop-mounted on a temporary directory;
/// unmounted (which releases the loop device) and deleted on drop, even when a test panics.
#[derive(Debug)]
pub struct LoopDisk {
    dir: PathBuf,
    mountpoint: PathBuf,
}

impl LoopDisk {
    /// Makes and mounts a filesystem `fs` of `size` bytes (btrfs: at least 128 MiB). Panics
    /// with the reason when it cannot: not root, the mkfs tool missing, no loop device.
    pub fn new(fs: Fs, size: u64) -> LoopDisk {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a loop device and needs root: run it as root (scripts/test does)"
        );
        let base = std::env::var_os("STRATA_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = (0..1000)
            .map(|n| base.join(format!("strata-loop-{}-{n}", std::process::id())))
            .find(|d| std::fs::create_dir(d).is_ok())
            .expect("a scratch directory for the image");
        let disk = LoopDisk {
            mountpoint: dir.join("mnt"),
            dir,
        };
        let image = disk.dir.join("disk.img");
        let file = std::fs::File::create(&image).expect("creating the image");
        let size = match fs {
            Fs::Btrfs => size.max(128 << 20),
            Fs::Ext4 => size,
        };
        file.set_len(size).expect("sizing the image");
        drop(file);
        match fs {
            Fs::Btrfs => run(
                Command::new("mkfs.btrfs").arg("-q").arg(&image),
                "mkfs.btrfs (install btrfs-progs)",
            ),
            Fs::Ext4 => run(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-m", "0"])
                    .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
                    .arg(&image),
                "mkfs.ext4",
            ),
        }
        std::fs::create_dir(&disk.mountpoint).expect("creating the mount point");
        run(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&disk.mountpoint),
            "mount -o loop",
        );
        disk
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopDisk {
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
