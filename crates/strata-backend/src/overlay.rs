//! The overlay backend: each snapshot directory holds one layer (overlay's upper directory),
//! and mounts stack a snapshot's ancestors as lower directories, exactly as containerd's own
//! overlay snapshotter does.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_core::{Error, Kind, Mount, Result, crash};
use strata_meta::Snapshot;

use crate::layout::Layout;
use crate::{BackendKind, Driver, OpenError};

/// Mount-related settings, probed at start-up or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// Pass `index=off` (the kernel has the `index` parameter).
    pub index_off: bool,
    /// Pass `userxattr` (running in a user namespace).
    pub userxattr: bool,
    /// Extra options put first on every overlay mount (e.g. `volatile`, `metacopy=on`).
    pub extra: Vec<String>,
}

impl OverlayOptions {
    /// What this kernel and process need: `index=off` where supported, `userxattr` inside a
    /// user namespace, plus `extra`.
    pub fn probe(extra: Vec<String>) -> OverlayOptions {
        OverlayOptions {
            index_off: strata_sys::probe::overlay_supports_index(),
            userxattr: strata_sys::probe::overlay_needs_userxattr(),
            extra,
        }
    }
}

/// The overlay driver.
#[derive(Debug, Clone)]
pub struct Overlay {
    options: OverlayOptions,
}

impl Overlay {
    /// An overlay driver for a root on `root`: refuses a filesystem without `d_type`, on
    /// which overlayfs misbehaves.
    pub fn new(root: &Path, options: OverlayOptions) -> Result<Overlay, OpenError> {
        std::fs::create_dir_all(root).map_err(|e| OpenError::io("mkdir", root, e))?;
        let d_type = strata_sys::probe::supports_d_type(root)
            .map_err(|e| OpenError::io("d_type probe", root, e))?;
        if !d_type {
            return Err(OpenError::NoDType {
                path: root.to_owned(),
            });
        }
        Ok(Overlay { options })
    }

    /// An overlay driver with the given options and no start-up checks, for computing
    /// mounts in tests.
    pub fn with_options(options: OverlayOptions) -> Overlay {
        Overlay { options }
    }
}

impl Driver for Overlay {
    fn kind(&self) -> BackendKind {
        BackendKind::Overlay
    }

    fn populate(&self, layout: &Layout, dir: &Path, kind: Kind, parent_ids: &[u64]) -> Result<()> {
        let fs = dir.join("fs");
        make_dir(&fs, 0o755)?;
        if kind == Kind::Active {
            make_dir(&dir.join("work"), 0o711)?;
        }
        // The root of the merged tree is the upper directory: give it the owner of the
        // layer below, or a container would see its root change owner.
        if let Some(&parent) = parent_ids.first() {
            let parent_fs = layout.fs(parent);
            let meta =
                std::fs::metadata(&parent_fs).map_err(|e| Error::io("stat", &parent_fs, e))?;
            std::os::unix::fs::lchown(&fs, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| Error::io("lchown", &fs, e))?;
        }
        Ok(())
    }

    fn mounts(&self, layout: &Layout, snapshot: &Snapshot) -> Vec<Mount> {
        overlay_mounts(layout, &self.options, snapshot)
    }

    fn can_rebase(&self) -> bool {
        true
    }
}

/// containerd's overlay mounts for `snapshot`: a bind of its own directory when it has no
/// parent; a read-only bind of the parent for a view of a single layer; otherwise an overlay
/// with `lowerdir` nearest-first and, for active snapshots, `upperdir`/`workdir`.
pub fn overlay_mounts(
    layout: &Layout,
    options: &OverlayOptions,
    snapshot: &Snapshot,
) -> Vec<Mount> {
    let path = |id: u64| layout.fs(id).display().to_string();
    if snapshot.parent_ids.is_empty() {
        let mode = if snapshot.kind == Kind::View {
            "ro"
        } else {
            "rw"
        };
        return vec![Mount {
            kind: "bind".into(),
            source: path(snapshot.id),
            options: vec![mode.into(), "rbind".into()],
        }];
    }
    if snapshot.kind != Kind::Active && snapshot.parent_ids.len() == 1 {
        return vec![Mount {
            kind: "bind".into(),
            source: path(snapshot.parent_ids[0]),
            options: vec!["ro".into(), "rbind".into()],
        }];
    }
    let mut opts = options.extra.clone();
    if options.index_off {
        opts.push("index=off".into());
    }
    if options.userxattr {
        opts.push("userxattr".into());
    }
    if snapshot.kind == Kind::Active {
        opts.push(format!("workdir={}", layout.work(snapshot.id).display()));
        opts.push(format!("upperdir={}", path(snapshot.id)));
    }
    let lowers: Vec<String> = snapshot.parent_ids.iter().map(|&id| path(id)).collect();
    opts.push(format!("lowerdir={}", lowers.join(":")));
    vec![Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: opts,
    }]
}

/// Creates `path` with exactly `mode`, whatever the process umask.
pub(crate) fn make_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crash::fault("mkdir")
        .and_then(|()| std::fs::create_dir(path))
        .map_err(|e| Error::io("mkdir", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: u64, kind: Kind, parents: &[u64]) -> Snapshot {
        Snapshot {
            id,
            kind,
            parent_ids: parents.to_vec(),
        }
    }

    fn m(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Every shape of containerd's overlay `mounts()`, table-driven.
    #[test]
    fn mounts_match_containerd() {
        let layout = Layout::new(Path::new("/r"));
        let plain = OverlayOptions::default();
        let full = OverlayOptions {
            index_off: true,
            userxattr: true,
            extra: vec!["volatile".into()],
        };
        let cases: Vec<(&str, &OverlayOptions, Snapshot, Mount)> = vec![
            (
                "active, no parent",
                &plain,
                snap(1, Kind::Active, &[]),
                m("bind", "/r/snapshots/1/fs", &["rw", "rbind"]),
            ),
            (
                "view, no parent",
                &plain,
                snap(2, Kind::View, &[]),
                m("bind", "/r/snapshots/2/fs", &["ro", "rbind"]),
            ),
            (
                "view of one layer",
                &full,
                snap(3, Kind::View, &[1]),
                m("bind", "/r/snapshots/1/fs", &["ro", "rbind"]),
            ),
            (
                "view of two layers",
                &plain,
                snap(4, Kind::View, &[2, 1]),
                m(
                    "overlay",
                    "overlay",
                    &["lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs"],
                ),
            ),
            (
                "active on one layer",
                &plain,
                snap(5, Kind::Active, &[1]),
                m(
                    "overlay",
                    "overlay",
                    &[
                        "workdir=/r/snapshots/5/work",
                        "upperdir=/r/snapshots/5/fs",
                        "lowerdir=/r/snapshots/1/fs",
                    ],
                ),
            ),
            (
                "active with every option",
                &full,
                snap(6, Kind::Active, &[3, 2, 1]),
                m(
                    "overlay",
                    "overlay",
                    &[
                        "volatile",
                        "index=off",
                        "userxattr",
                        "workdir=/r/snapshots/6/work",
                        "upperdir=/r/snapshots/6/fs",
                        "lowerdir=/r/snapshots/3/fs:/r/snapshots/2/fs:/r/snapshots/1/fs",
                    ],
                ),
            ),
        ];
        for (name, options, snapshot, want) in cases {
            assert_eq!(
                overlay_mounts(&layout, options, &snapshot),
                vec![want],
                "{name}"
            );
        }
    }
}
