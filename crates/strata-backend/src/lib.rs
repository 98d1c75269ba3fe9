//! Strata's storage backends.
//!
//! One [`Engine`] implements the [`Snapshotter`](strata_core::Snapshotter) contract for every
//! backend: it validates requests, orders directory work against metadata transactions so a
//! crash at any instant is recoverable, and keeps slow filesystem work out of the metadata
//! writer. What differs between backends — how a new snapshot's directory is filled and
//! which mounts expose it — is a [`Driver`]: [`overlay::Overlay`] and [`native::Native`].
#![forbid(unsafe_code)]

mod engine;
mod layout;
pub mod native;
pub mod overlay;

pub use engine::{Engine, EngineOptions, Recovery};
pub use layout::{Entry, Layout};

use std::path::Path;

use strata_core::{Kind, Mount, Result};
use strata_meta::Snapshot;

/// The filesystem half of a backend.
pub trait Driver: Send + Sync + 'static {
    /// The backend's name (`overlay`, `native`).
    fn name(&self) -> &'static str;

    /// Fills `dir`, a fresh empty directory, for a new snapshot of `kind` whose ancestors
    /// are `parent_ids` (nearest first). `dir` is renamed to the snapshot's id afterwards.
    fn populate(&self, layout: &Layout, dir: &Path, kind: Kind, parent_ids: &[u64]) -> Result<()>;

    /// The mounts that expose `snapshot`. Pure: no filesystem access.
    fn mounts(&self, layout: &Layout, snapshot: &Snapshot) -> Vec<Mount>;

    /// Whether a snapshot prepared without a parent may be committed onto one (containerd
    /// 2.2's rebase), i.e. whether its directory holds a diff rather than a full tree.
    fn can_rebase(&self) -> bool;
}
