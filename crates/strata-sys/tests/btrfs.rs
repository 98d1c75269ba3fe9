//! The btrfs ioctls of `strata_sys::btrfs` on a real btrfs (a loop device the test makes).
//! Needs root and `mkfs.btrfs` (btrfs-progs; `scripts/test` installs it): without them each
//! test fails saying so, rather than passing untested.

#[path = "../src/testing.rs"]
#[allow(dead_code)]
mod testing;

use std::io::Write;
use std::path::Path;

use strata_sys::btrfs::{self, QuotaStatus};
use testing::LoopBtrfs;

fn write_file(path: &Path, bytes: usize) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xa5u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n])?;
        left -= n;
    }
    f.sync_all()
}

/// Create, snapshot (writable and read-only), flags and destroy behave as the kernel
/// documents: a snapshot sees its source's files, a read-only one refuses writes with EROFS
/// until its flag is cleared, and destroy removes read-only subvolumes too.
#[test]
fn subvolume_lifecycle() {
    let fs = LoopBtrfs::new(256 << 20);
    let root = fs.path();
    assert!(btrfs::is_btrfs(root).unwrap());
    let base = root.join("base");
    btrfs::create_subvolume(&base).unwrap();
    assert!(btrfs::is_subvolume(&base).unwrap());
    assert!(!btrfs::is_readonly(&base).unwrap());
    let id = btrfs::subvolume_id(&base).unwrap();
    assert!(id >= 256, "subvolume ids start at 256: {id}");
    std::fs::write(base.join("file"), b"base").unwrap();

    // A plain directory is not a subvolume, and destroy refuses it.
    std::fs::create_dir(root.join("plain")).unwrap();
    assert!(!btrfs::is_subvolume(&root.join("plain")).unwrap());
    assert!(btrfs::destroy_subvolume(&root.join("plain")).is_err());

    let rw = root.join("rw");
    btrfs::snapshot(&base, &rw, false).unwrap();
    assert_eq!(std::fs::read(rw.join("file")).unwrap(), b"base");
    std::fs::write(rw.join("file"), b"changed").unwrap();
    assert_eq!(std::fs::read(base.join("file")).unwrap(), b"base");
    assert_ne!(btrfs::subvolume_id(&rw).unwrap(), id);

    let ro = root.join("ro");
    btrfs::snapshot(&base, &ro, true).unwrap();
    assert!(btrfs::is_readonly(&ro).unwrap());
    let err = std::fs::write(ro.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");

    btrfs::set_readonly(&rw, true).unwrap();
    assert!(btrfs::is_readonly(&rw).unwrap());
    assert!(std::fs::write(rw.join("file"), b"again").is_err());
    btrfs::set_readonly(&rw, false).unwrap();
    std::fs::write(rw.join("file"), b"again").unwrap();

    // remove_dir_all cannot empty a read-only subvolume; destroy can.
    assert!(std::fs::remove_dir_all(&ro).is_err());
    btrfs::destroy_subvolume(&ro).unwrap();
    btrfs::destroy_subvolume(&rw).unwrap();
    assert!(!ro.exists() && !rw.exists());
    assert!(btrfs::is_subvolume(&base).unwrap());
}

/// A subvolume holding nested subvolumes (which an unprivileged container can create), even
/// made read-only afterwards, is destroyed with everything nested in it.
#[test]
fn destroy_nested_readonly() {
    let fs = LoopBtrfs::new(256 << 20);
    let outer = fs.path().join("outer");
    btrfs::create_subvolume(&outer).unwrap();
    std::fs::create_dir_all(outer.join("a/b")).unwrap();
    btrfs::create_subvolume(&outer.join("a/b/inner")).unwrap();
    btrfs::create_subvolume(&outer.join("a/b/inner/deeper")).unwrap();
    std::fs::write(outer.join("a/b/inner/deeper/f"), b"x").unwrap();
    btrfs::set_readonly(&outer, true).unwrap();
    btrfs::destroy_subvolume(&outer).unwrap();
    assert!(!outer.exists());
}

/// With quotas on, a limit on a subvolume's exclusive bytes makes a writer past it fail
/// with EDQUOT while a neighbour without a limit writes freely; the accounting after a
/// commit matches what was written; clearing the limit lets the writer go on.
#[test]
fn qgroup_limit_is_enforced() {
    let fs = LoopBtrfs::new(512 << 20);
    let root = fs.path();
    assert_eq!(btrfs::quota_status(root).unwrap(), QuotaStatus::Off);
    btrfs::enable_quota(root, false).unwrap();
    let status = btrfs::quota_status(root).unwrap();
    assert!(
        matches!(status, QuotaStatus::On { simple: false, .. }),
        "{status:?}"
    );

    let limited = root.join("limited");
    let free = root.join("free");
    btrfs::create_subvolume(&limited).unwrap();
    btrfs::create_subvolume(&free).unwrap();
    let id = btrfs::subvolume_id(&limited).unwrap();
    btrfs::set_qgroup_limit(&limited, Some(16 << 20)).unwrap();
    assert_eq!(btrfs::qgroup_limit(root, id).unwrap(), Some(16 << 20));

    let err = write_file(&limited.join("big"), 48 << 20).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(122), "EDQUOT expected: {err}");
    assert_eq!(err.to_string(), "Disk quota exceeded (os error 122)");
    write_file(&free.join("big"), 48 << 20).unwrap();

    sync(root);
    let free_id = btrfs::subvolume_id(&free).unwrap();
    let usage = btrfs::qgroup_usage(root, free_id).unwrap().unwrap();
    let written = 48u64 << 20;
    assert!(
        usage.exclusive >= written && usage.exclusive < written + (1 << 20),
        "{usage:?}"
    );
    assert_eq!(btrfs::qgroup_limit(root, free_id).unwrap(), None);

    std::fs::remove_file(limited.join("big")).unwrap();
    btrfs::set_qgroup_limit(&limited, None).unwrap();
    assert_eq!(btrfs::qgroup_limit(root, id).unwrap(), None);
    write_file(&limited.join("big"), 48 << 20).unwrap();
    // An unknown qgroup has no accounting.
    assert_eq!(btrfs::qgroup_usage(root, 99_999).unwrap(), None);
}

/// Simple quotas (Linux 6.7+) report their mode, and charge a snapshot only for what it
/// writes, not for what it shares with its source.
#[test]
fn simple_quotas() {
    let fs = LoopBtrfs::new(256 << 20);
    let root = fs.path();
    btrfs::enable_quota(root, true).unwrap();
    let status = btrfs::quota_status(root).unwrap();
    assert!(
        matches!(status, QuotaStatus::On { simple: true, .. }),
        "{status:?}"
    );
    assert!(status.accounting());
    let base = root.join("base");
    btrfs::create_subvolume(&base).unwrap();
    write_file(&base.join("f"), 8 << 20).unwrap();
    let child = root.join("child");
    btrfs::snapshot(&base, &child, false).unwrap();
    write_file(&child.join("g"), 2 << 20).unwrap();
    sync(root);
    let usage = btrfs::qgroup_usage(root, btrfs::subvolume_id(&child).unwrap())
        .unwrap()
        .unwrap();
    assert!(
        usage.exclusive >= 2 << 20 && usage.exclusive < 3 << 20,
        "{usage:?}"
    );
}

fn sync(path: &Path) {
    strata_sys::syncfs(path).unwrap();
}
