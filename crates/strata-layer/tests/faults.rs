//! Failed system calls during an apply: each creation, data write, xattr and attribute call
//! of a layer fails in turn (fault points, as a full disk would fail them), and each time the
//! apply stops with an I/O error naming the call and the entry, keeping the error's kind (a
//! full disk stays a full disk, which the gRPC layer answers as `ResourceExhausted`), writes
//! nothing outside its directory, and leaves a directory that can be removed; the same layer
//! then applies in full. Needs root (chown, fifos).

mod common;

use std::path::Path;

use common::{listing, require_root};
use strata_core::crash;
use strata_layer::{Compression, LayerError, Whiteouts, apply};

/// A layer with every kind of call the points guard: directories, files (one larger than the
/// applier's 256 KiB buffer), an xattr, a symlink, a fifo.
fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let entry = |b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("a").unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    entry(&mut b, tar::EntryType::Directory, "d/", b"");
    entry(&mut b, tar::EntryType::Regular, "d/a", b"small");
    entry(
        &mut b,
        tar::EntryType::Regular,
        "d/big",
        &vec![7u8; 600 << 10],
    );
    b.append_pax_extensions([("SCHILY.xattr.user.strata", &b"yes"[..])])
        .unwrap();
    entry(&mut b, tar::EntryType::Regular, "d/x", b"with an xattr");
    entry(&mut b, tar::EntryType::Symlink, "d/l", b"");
    entry(&mut b, tar::EntryType::Fifo, "d/f", b"");
    entry(&mut b, tar::EntryType::Directory, "e/", b"");
    b.into_inner().unwrap()
}

fn apply_into(root: &Path, tar: &[u8]) -> Result<strata_layer::Applied, LayerError> {
    apply(
        Box::new(std::io::Cursor::new(tar.to_vec())),
        Compression::None,
        root,
        &Whiteouts::Delete,
        None,
        &|| false,
    )
}

#[test]
fn each_failed_call_stops_the_apply_cleanly() {
    require_root();
    let tar = layer();
    let top = tempfile::tempdir().unwrap();
    let whole = top.path().join("whole");
    std::fs::create_dir(&whole).unwrap();
    apply_into(&whole, &tar).unwrap();
    let expected = listing(&whole);
    assert!(expected.len() >= 7, "the layer's listing: {expected:?}");

    let outside = top.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"keep").unwrap();
    let mut failures = 0;
    for point in [
        "apply-create",
        "apply-write",
        "apply-xattr",
        "apply-attributes",
    ] {
        for nth in 1.. {
            let root = top.path().join(format!("{point}-{nth}"));
            std::fs::create_dir(&root).unwrap();
            crash::fail_nth(point, nth, libc_enospc());
            let result = apply_into(&root, &tar);
            if crash::fault_pending() {
                // The layer makes fewer than `nth` such calls: nothing failed.
                crash::clear_faults();
                assert!(result.is_ok(), "{point} #{nth}: {result:?}");
                assert!(nth > 1, "{point}: the layer never makes this call");
                std::fs::remove_dir_all(&root).unwrap();
                break;
            }
            failures += 1;
            match result {
                Err(LayerError::Io { op, path, source }) => {
                    assert_eq!(
                        source.kind(),
                        std::io::ErrorKind::StorageFull,
                        "{point} #{nth}: {op} {path}"
                    );
                    assert!(!path.is_empty(), "{point} #{nth}: {op} names no entry");
                }
                other => panic!("{point} #{nth}: expected an I/O error, got {other:?}"),
            }
            assert_eq!(
                std::fs::read(outside.join("sentinel")).unwrap(),
                b"keep",
                "{point} #{nth}"
            );
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
            std::fs::remove_dir_all(&root).unwrap();
            // The same layer applies in full once the calls succeed again.
            std::fs::create_dir(&root).unwrap();
            apply_into(&root, &tar).unwrap();
            assert_eq!(listing(&root), expected, "{point} #{nth}: re-applied");
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    // 8 creations, 3 writes (one per file, the big one twice more), 1 xattr, 7 owners.
    assert!(failures >= 15, "only {failures} calls were failed");
}

/// ENOSPC, without a libc dependency.
fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}
