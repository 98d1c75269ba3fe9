//! Strata's storage backends.
//!
//! One [`Engine`] implements the [`Snapshotter`](strata_core::Snapshotter) contract for every
//! backend: it validates requests, orders directory work against metadata transactions so a
//! crash at any instant is recoverable, and keeps slow filesystem work out of the metadata
//! writer. What differs between backends — how a new snapshot's directory is filled and
//! which mounts expose it — is a [`Driver`]: [`overlay::Overlay`], [`native::Native`] and
//! [`btrfs::Btrfs`].
#![forbid(unsafe_code)]

pub mod btrfs;
mod engine;
mod kind;
mod layout;
pub mod limits;
pub mod native;
mod open_error;
pub mod overlay;

pub use engine::check;
pub use engine::{Engine, EngineOptions, Recovery};
pub use kind::{BackendKind, UnknownBackend};
pub use layout::{DirEntry, Entry, Layout, Orphan, RootLock, lock_path, lock_root};
pub use open_error::OpenError;

use std::path::Path;

use strata_core::{Ctx, Kind, Mount, Result, Usage};
use strata_meta::Snapshot;

/// How a driver limits the size of writable snapshots (see [`limits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitPolicy {
    /// The limit of writable snapshots without a `containerd.io/snapshot/max-size` label
    /// (extraction snapshots excepted); `None` for no limit.
    pub default: Option<u64>,
}

/// The filesystem half of a backend.
///
/// The hooks with default implementations exist for backends whose snapshots are more than
/// plain directories (btrfs subvolumes); the defaults are what a plain directory needs.
pub trait Driver: Send + Sync + 'static {
    /// Which backend this driver makes.
    fn kind(&self) -> BackendKind;

    /// The backend's name (`overlay`, `native`, `btrfs`).
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Fills `dir`, a fresh empty directory, for a new snapshot of `kind` whose ancestors
    /// are `parent_ids` (nearest first). `dir` is already the snapshot's (`snapshots/<id>`);
    /// the snapshot is recorded afterwards.
    fn populate(&self, layout: &Layout, dir: &Path, kind: Kind, parent_ids: &[u64]) -> Result<()>;

    /// The mounts that expose `snapshot`. Pure: no filesystem access.
    fn mounts(&self, layout: &Layout, snapshot: &Snapshot) -> Vec<Mount>;

    /// Whether a snapshot prepared without a parent may be committed onto one (containerd
    /// 2.2's rebase), i.e. whether its directory holds a diff rather than a full tree.
    fn can_rebase(&self) -> bool;

    /// Deletes `dir` — a snapshot directory, a half-built one, or anything else found under
    /// `snapshots/` — with everything in it.
    fn destroy(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    /// Whether [`Driver::seal`] does anything, i.e. whether a Commit changes the snapshot's
    /// content on disk and start-up recovery must check active snapshots.
    fn seals(&self) -> bool {
        false
    }

    /// Makes snapshot `id`'s content immutable (`sealed`) before its Commit is recorded, or
    /// writable again (`!sealed`) when that Commit could not be recorded or a crash
    /// interrupted it. Returns whether anything changed.
    fn seal(&self, layout: &Layout, id: u64, sealed: bool) -> Result<bool> {
        let _ = (layout, id, sealed);
        Ok(false)
    }

    /// The usage of the active `snapshot` when the driver measures it its own way (btrfs:
    /// from its quota group, or against its parent); `None` to have the engine walk the
    /// snapshot's directory. A walk gives up once `ctx` ends.
    fn usage(&self, ctx: &Ctx, layout: &Layout, snapshot: &Snapshot) -> Result<Option<Usage>> {
        let _ = (ctx, layout, snapshot);
        Ok(None)
    }

    /// The usage a Commit records for `snapshot` when the driver measures it its own way
    /// (btrfs: against its parent, whose files its subvolume also holds); `None` to have
    /// the engine walk the snapshot's directory.
    fn commit_usage(
        &self,
        ctx: &Ctx,
        layout: &Layout,
        snapshot: &Snapshot,
    ) -> Result<Option<Usage>> {
        let _ = (ctx, layout, snapshot);
        Ok(None)
    }

    /// How snapshot `id`'s content disagrees with what this driver makes for a snapshot of
    /// `kind`, for `strata fsck` ([`check`]); `None` when it agrees. Plain directories need
    /// nothing more than to exist, which the check sees for itself.
    fn check_snapshot(
        &self,
        layout: &Layout,
        id: u64,
        kind: Kind,
    ) -> std::io::Result<Option<check::SnapshotFault>> {
        let _ = (layout, id, kind);
        Ok(None)
    }

    /// Whether (and how) this driver enforces size limits on writable snapshots; `None`:
    /// the `containerd.io/snapshot/max-size` label is kept as any other and has no effect.
    fn limits(&self) -> Option<LimitPolicy> {
        None
    }

    /// Sets (`Some`) or clears (`None`) the size limit of the writable snapshot content at
    /// `fs`. Called only when [`Driver::limits`] is `Some`.
    fn set_limit(&self, fs: &Path, bytes: Option<u64>) -> Result<()> {
        let _ = (fs, bytes);
        Ok(())
    }
}
