//! The snapshotter contract, in containerd's words (`snapshots/snapshotter.go`).
//!
//! Every method is blocking: implementations do filesystem work and metadata transactions.
//! Every operation takes the request's [`Ctx`] first, as containerd's do: once the request is
//! cancelled or its deadline has passed, an operation that has not yet written its metadata
//! fails with `Cancelled` or `DeadlineExceeded` and changes nothing. Keys are opaque strings
//! chosen by the client; they are never used as paths.

use crate::filter::Filter;
use crate::snapshot::{Info, InfoRef, Labels, Mount, Usage};
use crate::{Ctx, Result};

/// What a `Cleanup` reclaimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Directories removed.
    pub directories: u64,
    /// Bytes those directories held (`st_blocks * 512`).
    pub bytes: u64,
}

/// A backend's snapshots counted by kind, from one consistent read of its metadata: what a
/// metrics scrape reports, at the cost of a read and no directory walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// The keys of the active snapshots, whose usage only a walk of their directory tells.
    pub active: Vec<String>,
    /// How many committed snapshots there are.
    pub committed: u64,
    /// How many views there are.
    pub views: u64,
    /// The usage recorded at Commit, summed over the committed snapshots.
    pub committed_usage: Usage,
}

/// A containerd snapshotter: a tree of snapshots, each Active, View or Committed.
///
/// Errors are part of the contract (see [`crate::Error`]): containerd's garbage collector and
/// unpacker act on `NotFound`, `AlreadyExists`, `FailedPrecondition` and `InvalidArgument`.
/// A failed call changes nothing.
pub trait Snapshotter: Send + Sync + 'static {
    /// The backend's name, e.g. `overlay` or `native`.
    fn name(&self) -> &str;

    /// Returns the info of the snapshot `key` (any kind). `NotFound` if there is none.
    fn stat(&self, ctx: &Ctx, key: &str) -> Result<Info>;

    /// Updates the labels of snapshot `key` following containerd's field-mask rules
    /// ([`crate::labels::apply_update`]) and returns the new info. Only labels are mutable:
    /// a field path other than `labels` or `labels.<key>` is `InvalidArgument`; `NotFound` if
    /// there is no such snapshot. `updated` moves to now, `created` does not.
    fn update(&self, ctx: &Ctx, key: &str, labels: &Labels, fieldpaths: &[String]) -> Result<Info>;

    /// Disk usage of snapshot `key` alone, without its parents: walked on demand for an
    /// active snapshot, the figure stored at Commit for a committed one. `NotFound` if absent.
    fn usage(&self, ctx: &Ctx, key: &str) -> Result<Usage>;

    /// The usage of `key` when metadata alone answers it (a committed snapshot's figure
    /// stored at Commit, or a view's zero); `None` for an active snapshot, whose directory
    /// [`Snapshotter::usage`] must walk. Lets a caller answer the cheap case without handing
    /// work to another thread. `NotFound` if absent.
    fn recorded_usage(&self, ctx: &Ctx, key: &str) -> Result<Option<Usage>>;

    /// The mounts of an active or view snapshot `key`. `NotFound` if absent;
    /// `FailedPrecondition` for a committed snapshot, which has no mounts of its own (make a
    /// view of it).
    fn mounts(&self, ctx: &Ctx, key: &str) -> Result<Vec<Mount>>;

    /// Creates an active snapshot `key` on the committed snapshot `parent` (empty for none)
    /// and returns its mounts. `AlreadyExists` if `key` is taken; `NotFound` if the parent
    /// does not exist; `InvalidArgument` if the parent is not committed or the key or labels
    /// are malformed.
    fn prepare(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Like [`Snapshotter::prepare`] but the snapshot is a read-only view that can never be
    /// committed.
    fn view(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Turns the active snapshot `key` into the committed snapshot `name`, keeping its
    /// content and replacing its labels by `labels`; `key` is gone afterwards.
    ///
    /// `NotFound` if `key` does not exist; `AlreadyExists` if `name` is taken;
    /// `FailedPrecondition` if `key` is not active. `parent` (containerd 2.2's rebase
    /// capability) may name the parent the committed snapshot must have: it is accepted when
    /// equal to the active snapshot's parent, or when that snapshot had none and `parent` is
    /// committed; anything else is `InvalidArgument`.
    fn commit(
        &self,
        ctx: &Ctx,
        name: &str,
        key: &str,
        labels: Labels,
        parent: Option<&str>,
    ) -> Result<()>;

    /// Removes snapshot `key`. `NotFound` if absent; `FailedPrecondition` if it has children.
    /// The metadata goes at once; its directory either at once (synchronous removal) or at
    /// the next [`Snapshotter::cleanup`].
    fn remove(&self, ctx: &Ctx, key: &str) -> Result<()>;

    /// Calls `f` for every snapshot matching `filter`, in key order, from one consistent
    /// read. An error from `f` stops the walk and is returned.
    fn walk(&self, ctx: &Ctx, filter: &Filter, f: &mut dyn FnMut(Info) -> Result<()>)
    -> Result<()>;

    /// [`Snapshotter::walk`] with each snapshot's info borrowed: a backend that can hand out
    /// its stored records without decoding them into [`Info`]s (a full List of thousands)
    /// overrides it; by default it borrows each `Info` that `walk` builds.
    fn walk_refs(
        &self,
        ctx: &Ctx,
        filter: &Filter,
        f: &mut dyn FnMut(&InfoRef<'_>) -> Result<()>,
    ) -> Result<()> {
        self.walk(ctx, filter, &mut |info| info.with_ref(|r| f(r)))
    }

    /// Counts the snapshots by kind and sums the usage recorded for the committed ones, all
    /// from one consistent read; no directory is walked. Not part of containerd's contract:
    /// it feeds the daemon's metrics.
    fn census(&self, ctx: &Ctx) -> Result<Census>;

    /// Removes every snapshot directory that the metadata does not know (left by
    /// asynchronous removes or crashes).
    fn cleanup(&self, ctx: &Ctx) -> Result<CleanupReport>;

    /// The snapshot whose content directory is `dir` — its key and kind — if `dir` is one
    /// of this backend's. The differ uses it to recognise Strata's own mounts and write a
    /// layer straight into the snapshot. Backends that cannot tell answer `None`.
    fn owner(&self, ctx: &Ctx, dir: &std::path::Path) -> Result<Option<(String, crate::Kind)>> {
        let _ = (ctx, dir);
        Ok(None)
    }

    /// Releases the backend's resources. Idempotent; operations after it fail with
    /// `Closed`.
    fn close(&self) -> Result<()>;
}
