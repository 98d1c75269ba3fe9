//! Hostile layers: whatever a layer names, nothing outside the target directory is written,
//! and each refusal says which entry and why. Needs root (devices, chown).

mod common;

use std::path::Path;

use common::{raw_header, require_root, tar_of};
use strata_layer::{Compression, Digest, LayerError, Whiteouts, apply};
use tar::EntryType;

/// A target directory with a sibling directory holding a sentinel file, both inside a
/// temporary directory: the sibling must come out unchanged.
struct Sandbox {
    _top: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        let outside = top.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("sentinel"), b"keep").unwrap();
        Sandbox {
            _top: top,
            root,
            outside,
        }
    }

    fn apply(
        &self,
        tar: Vec<u8>,
        whiteouts: Whiteouts,
    ) -> Result<strata_layer::Applied, LayerError> {
        apply(
            Box::new(std::io::Cursor::new(tar)),
            Compression::None,
            &self.root,
            &whiteouts,
            None,
            &|| false,
        )
    }

    /// The sibling holds only its sentinel, unchanged, and nothing appeared next to them.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
        assert_eq!(
            std::fs::read(self.outside.join("sentinel")).unwrap(),
            b"keep"
        );
        let top: Vec<_> = std::fs::read_dir(self.root.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "nothing new beside the target: {top:?}");
    }
}

fn file(name: &[u8], data: &[u8]) -> (tar::Header, Vec<u8>) {
    (
        raw_header(EntryType::Regular, name, b"", data.len() as u64),
        data.to_vec(),
    )
}

/// `..` and absolute names are clamped to the target, as containerd's `filepath.Clean` +
/// `RootPath` do: the file lands inside.
#[test]
fn dot_dot_and_absolute_names_stay_inside() {
    require_root();
    let s = Sandbox::new();
    s.apply(
        tar_of(vec![
            file(b"../outside/evil", b"x"),
            file(b"/../../abs", b"y"),
        ]),
        Whiteouts::Delete,
    )
    .unwrap();
    assert_eq!(std::fs::read(s.root.join("outside/evil")).unwrap(), b"x");
    assert_eq!(std::fs::read(s.root.join("abs")).unwrap(), b"y");
    s.assert_outside_untouched();
}

/// A symlink planted by the layer (absolute or climbing) and then written through resolves
/// inside the target.
#[test]
fn escaping_symlinks_resolve_inside() {
    require_root();
    let s = Sandbox::new();
    let outside = s.outside.display().to_string();
    let tar = tar_of(vec![
        (
            raw_header(EntryType::Symlink, b"abs", outside.as_bytes(), 0),
            vec![],
        ),
        (
            raw_header(EntryType::Symlink, b"up", b"../../../../outside", 0),
            vec![],
        ),
        file(b"abs/evil", b"x"),
        file(b"up/evil2", b"y"),
    ]);
    s.apply(tar, Whiteouts::Delete).unwrap();
    // Written under the target, at the symlinks' targets read as if the target were `/`.
    assert_eq!(
        std::fs::read(s.root.join(outside.trim_start_matches('/')).join("evil")).unwrap(),
        b"x"
    );
    assert_eq!(std::fs::read(s.root.join("outside/evil2")).unwrap(), b"y");
    s.assert_outside_untouched();
}

/// A hard link to a file outside the target (by `..` or through a symlink) is refused or
/// resolved inside; the outside file's link count never changes.
#[test]
fn escaping_hard_links_are_refused() {
    require_root();
    let s = Sandbox::new();
    let sentinel = s.outside.join("sentinel");
    let before = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&sentinel).unwrap());
    let tar = tar_of(vec![(
        raw_header(EntryType::Link, b"link", b"../outside/sentinel", 0),
        vec![],
    )]);
    let err = s.apply(tar, Whiteouts::Delete).unwrap_err();
    assert!(
        matches!(err, LayerError::Hostile { ref entry, .. } if entry == "link"),
        "{err}"
    );
    let outside = s.outside.display().to_string();
    let tar = tar_of(vec![
        (
            raw_header(EntryType::Symlink, b"s", outside.as_bytes(), 0),
            vec![],
        ),
        (
            raw_header(EntryType::Link, b"link2", b"s/sentinel", 0),
            vec![],
        ),
    ]);
    assert!(s.apply(tar, Whiteouts::Delete).is_err());
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&sentinel).unwrap()),
        before
    );
    s.assert_outside_untouched();
}

/// Whiteouts cannot name `.` or `..`, and a whiteout through a symlink deletes inside only.
#[test]
fn whiteouts_cannot_escape() {
    require_root();
    let s = Sandbox::new();
    for bad in [&b".wh.."[..], b"d/.wh..."] {
        let err = s
            .apply(tar_of(vec![file(bad, b"")]), Whiteouts::Delete)
            .unwrap_err();
        assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
    }
    let outside = s.outside.display().to_string();
    let tar = tar_of(vec![
        (
            raw_header(EntryType::Symlink, b"s", outside.as_bytes(), 0),
            vec![],
        ),
        file(b"s/.wh.sentinel", b""),
        file(b"../outside/.wh.sentinel", b""),
    ]);
    s.apply(tar.clone(), Whiteouts::Delete).unwrap();
    s.apply(tar, Whiteouts::Overlay { lowers: vec![] }).unwrap();
    s.assert_outside_untouched();
}

/// A PAX header larger than Go's 1 MiB limit is refused before it is read into memory.
#[test]
fn enormous_headers_are_refused() {
    require_root();
    let s = Sandbox::new();
    let big = 64u64 << 20;
    let mut h = raw_header(EntryType::XHeader, b"PaxHeader", b"", big);
    h.set_cksum();
    let mut tar = Vec::new();
    tar.extend_from_slice(h.as_bytes());
    tar.resize(512 + big as usize, b'a');
    let err = s.apply(tar, Whiteouts::Delete).unwrap_err();
    assert!(
        matches!(err, LayerError::Hostile { ref reason, .. } if reason.contains("limit")),
        "{err}"
    );
    s.assert_outside_untouched();
}

/// A truncated gzip stream and a wrong digest are errors that say so.
#[test]
fn corrupt_streams_and_wrong_digests() {
    require_root();
    let s = Sandbox::new();
    let tar = tar_of(vec![file(b"a", &vec![7u8; 100_000])]);
    let mut gz = Compression::Gzip.encoder(Vec::new()).unwrap();
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let truncated = gz[..gz.len() / 2].to_vec();
    let err = apply(
        Box::new(std::io::Cursor::new(truncated)),
        Compression::Gzip,
        &s.root,
        &Whiteouts::Delete,
        None,
        &|| false,
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::Corrupt { .. }), "{err}");

    let wrong = Digest::of(b"something else");
    let err = apply(
        Box::new(std::io::Cursor::new(gz.clone())),
        Compression::Gzip,
        &s.root,
        &Whiteouts::Delete,
        Some(&wrong),
        &|| false,
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::DigestMismatch { .. }), "{err}");

    let right = Digest::of(&gz);
    let applied = apply(
        Box::new(std::io::Cursor::new(gz)),
        Compression::Gzip,
        &s.root,
        &Whiteouts::Delete,
        Some(&right),
        &|| false,
    )
    .unwrap();
    assert_eq!(applied.diff_id, Digest::of(&tar));
    assert_eq!(applied.size, tar.len() as u64);
    s.assert_outside_untouched();
}

/// A cancelled apply stops with `Cancelled`.
#[test]
fn cancellation_stops_the_apply() {
    require_root();
    let s = Sandbox::new();
    let tar = tar_of(
        (0..100)
            .map(|i| file(format!("f{i}").as_bytes(), b"x"))
            .collect(),
    );
    let err = apply(
        Box::new(std::io::Cursor::new(tar)),
        Compression::None,
        &s.root,
        &Whiteouts::Delete,
        None,
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::Cancelled), "{err}");
    let _ = Path::new("");
}
