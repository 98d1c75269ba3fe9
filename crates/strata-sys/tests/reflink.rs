//! On a filesystem that can share extents (btrfs, on a loop device made by the test), a tree
//! copy reflinks every regular file instead of copying its bytes, and the copy reads back the
//! same. Needs root and `mkfs.btrfs` (btrfs-progs; `scripts/test` installs it); CI runs as
//! root. Without them the test fails saying so, rather than passing untested.

#[path = "../src/testing.rs"]
#[allow(dead_code)]
mod testing;

use std::path::Path;

use testing::LoopBtrfs;

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
    let fs = LoopBtrfs::new(256 << 20);
    let src = fs.path().join("parent");
    let dst = fs.path().join("child");
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
    assert!(strata_sys::probe::supports_reflink(fs.path()).unwrap());
}
