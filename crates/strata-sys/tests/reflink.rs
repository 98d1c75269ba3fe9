//! On a filesystem that can share extents (btrfs, on a loop device made by the test), a tree
//! copy reflinks every regular file instead of copying its bytes, and the copy reads back the
//! same. Needs root and `mkfs.btrfs` (btrfs-progs; `scripts/test` installs it); CI runs as
//! root. Without them the test fails saying so, rather than passing untested.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A btrfs filesystem on a loop device, mounted on a temporary directory; unmounted (and the
/// loop device released by `umount`) on drop, even when the test fails.
struct Btrfs {
    _dir: tempfile::TempDir,
    mountpoint: PathBuf,
}

impl Btrfs {
    fn new() -> Btrfs {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a btrfs loop device and needs root: run it as root (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("btrfs.img");
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(256 << 20).unwrap();
        run(
            Command::new("mkfs.btrfs").arg("-q").arg(&image),
            "mkfs.btrfs (install btrfs-progs)",
        );
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        run(
            Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mountpoint),
            "mount -o loop",
        );
        Btrfs {
            _dir: dir,
            mountpoint,
        }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
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

fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Every regular file of a parent is reflinked into the child, and reads back identical.
#[test]
fn copy_tree_reflinks_on_btrfs() {
    let fs = Btrfs::new();
    let src = fs.mountpoint.join("parent");
    let dst = fs.mountpoint.join("child");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    for i in 0..20u8 {
        std::fs::write(
            src.join(format!("f{i}")),
            vec![i; 64 * 1024 + usize::from(i)],
        )
        .unwrap();
    }
    let stats = strata_sys::copy::copy_tree(&src, &dst).unwrap();
    assert_eq!(stats.entries, 20);
    assert_eq!(stats.reflinked, 20, "every file shares its extents");
    assert_eq!(read_tree(&dst), read_tree(&src));
    assert!(strata_sys::probe::supports_reflink(&fs.mountpoint).unwrap());
}
