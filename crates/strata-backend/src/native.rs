//! The native backend: every snapshot directory holds a complete tree, a copy of its parent
//! made when the snapshot is prepared (reflinked where the filesystem can), exposed by bind
//! mounts. Slower to prepare than overlay, but it works on any filesystem and kernel.

use std::path::Path;

use strata_core::{Error, Kind, Mount, Result};
use strata_meta::Snapshot;

use crate::layout::Layout;
use crate::overlay::make_dir;
use crate::{BackendKind, Driver};

/// The native driver.
#[derive(Debug, Clone, Default)]
pub struct Native;

impl Driver for Native {
    fn kind(&self) -> BackendKind {
        BackendKind::Native
    }

    fn populate(&self, layout: &Layout, dir: &Path, kind: Kind, parent_ids: &[u64]) -> Result<()> {
        let fs = dir.join("fs");
        make_dir(&fs, 0o755)?;
        // A view of a parent mounts the parent itself read-only: nothing to copy.
        if kind == Kind::Active
            && let Some(&parent) = parent_ids.first()
        {
            let from = layout.fs(parent);
            let stats = strata_sys::copy::copy_tree(&from, &fs)
                .map_err(|e| Error::io(e.op, e.path, e.source))?;
            tracing::debug!(
                entries = stats.entries,
                reflinked = stats.reflinked,
                "copied parent"
            );
        }
        Ok(())
    }

    fn mounts(&self, layout: &Layout, snapshot: &Snapshot) -> Vec<Mount> {
        native_mounts(layout, snapshot)
    }

    fn can_rebase(&self) -> bool {
        false
    }
}

/// containerd's native mounts: a bind of the snapshot's own tree (read-write when active), or
/// for a view with a parent, a read-only bind of the parent's tree.
pub fn native_mounts(layout: &Layout, snapshot: &Snapshot) -> Vec<Mount> {
    let (source, mode) = match (snapshot.kind, snapshot.parent_ids.first()) {
        (Kind::Active, _) => (snapshot.id, "rw"),
        (_, Some(&parent)) => (parent, "ro"),
        (_, None) => (snapshot.id, "ro"),
    };
    vec![Mount {
        kind: "bind".into(),
        source: layout.fs(source).display().to_string(),
        options: vec!["rbind".into(), mode.into()],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Active snapshots bind their own tree rw; views bind their parent's (or own) tree ro.
    #[test]
    fn mounts_match_containerd() {
        let layout = Layout::new(Path::new("/r"));
        let cases = [
            (Kind::Active, vec![], "/r/snapshots/9/fs", "rw"),
            (Kind::Active, vec![4, 1], "/r/snapshots/9/fs", "rw"),
            (Kind::View, vec![4, 1], "/r/snapshots/4/fs", "ro"),
            (Kind::View, vec![], "/r/snapshots/9/fs", "ro"),
        ];
        for (kind, parents, source, mode) in cases {
            let got = native_mounts(
                &layout,
                &Snapshot {
                    id: 9,
                    kind,
                    parent_ids: parents,
                },
            );
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].kind, "bind");
            assert_eq!(got[0].source, source, "{kind:?}");
            assert_eq!(got[0].options, vec!["rbind".to_string(), mode.to_string()]);
        }
    }
}
