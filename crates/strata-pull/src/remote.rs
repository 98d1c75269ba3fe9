//! [`Remote`]: a backend that answers containerd's remote-snapshot Prepares by pulling the
//! layer itself, and passes every other call through unchanged.

use std::path::Path;
use std::sync::Arc;

use strata_core::snapshot::Labels;
use strata_core::{
    Census, CleanupReport, Ctx, Error, Filter, Info, Kind, Mount, Result, Snapshotter, Usage,
};

use crate::jobs::{LayerRequest, Puller};

/// A backend plus the pull path.
pub struct Remote {
    inner: Arc<dyn Snapshotter>,
    puller: Arc<Puller>,
}

impl Remote {
    /// `inner`, pulling layers with `puller` when containerd asks for them by chain ID.
    pub fn new(inner: Arc<dyn Snapshotter>, puller: Arc<Puller>) -> Remote {
        Remote { inner, puller }
    }

    /// Removes what a crash left of layers being pulled (see [`Puller::sweep`]); the daemon
    /// calls it on start, and every Cleanup does.
    pub fn sweep(&self, ctx: &Ctx) -> Result<usize> {
        self.puller.sweep(&self.inner, ctx)
    }
}

impl Snapshotter for Remote {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn stat(&self, ctx: &Ctx, key: &str) -> Result<Info> {
        self.inner.stat(ctx, key)
    }

    fn update(&self, ctx: &Ctx, key: &str, labels: &Labels, fieldpaths: &[String]) -> Result<Info> {
        self.inner.update(ctx, key, labels, fieldpaths)
    }

    fn usage(&self, ctx: &Ctx, key: &str) -> Result<Usage> {
        self.inner.usage(ctx, key)
    }

    fn recorded_usage(&self, ctx: &Ctx, key: &str) -> Result<Option<Usage>> {
        self.inner.recorded_usage(ctx, key)
    }

    fn mounts(&self, ctx: &Ctx, key: &str) -> Result<Vec<Mount>> {
        self.inner.mounts(ctx, key)
    }

    /// containerd's remote-snapshot protocol: a Prepare labelled with a chain ID and the
    /// layer's origin is answered `AlreadyExists` once that layer is a committed snapshot
    /// labelled with the chain ID on `parent`; containerd then lists it by label and parent
    /// and skips the layer. Any failure is logged and the Prepare proceeds as usual.
    fn prepare(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        if let Some(request) = LayerRequest::from_labels(&labels) {
            match self
                .puller
                .pull(&self.inner, ctx, parent, &labels, &request)
            {
                Ok(()) => {
                    return Err(Error::AlreadyExists {
                        key: request.target,
                    });
                }
                Err(e) => {
                    self.puller.metrics().fallback();
                    tracing::warn!(
                        key,
                        layer = %request.layer,
                        image = %request.image_ref,
                        error = %e,
                        "pulling the layer into a snapshot failed; containerd pulls it instead"
                    );
                }
            }
        }
        self.inner.prepare(ctx, key, parent, labels)
    }

    fn view(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.inner.view(ctx, key, parent, labels)
    }

    fn commit(
        &self,
        ctx: &Ctx,
        name: &str,
        key: &str,
        labels: Labels,
        parent: Option<&str>,
    ) -> Result<()> {
        self.inner.commit(ctx, name, key, labels, parent)
    }

    /// A snapshot a layer job is building is not removed: containerd's garbage collector
    /// removes every snapshot its metadata does not name, and would otherwise take the
    /// extraction snapshot a layer is being applied into. It logs the refusal
    /// (`FailedPrecondition`) and collects the snapshot on a later pass if it is still unused.
    fn remove(&self, ctx: &Ctx, key: &str) -> Result<()> {
        if self.puller.is_busy(&self.inner, key) {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is being pulled; it can be removed once that layer is done"
            )));
        }
        self.inner.remove(ctx, key)
    }

    fn walk(
        &self,
        ctx: &Ctx,
        filter: &Filter,
        f: &mut dyn FnMut(Info) -> Result<()>,
    ) -> Result<()> {
        self.inner.walk(ctx, filter, f)
    }

    fn walk_refs(
        &self,
        ctx: &Ctx,
        filter: &Filter,
        f: &mut dyn FnMut(&strata_core::InfoRef<'_>) -> Result<()>,
    ) -> Result<()> {
        self.inner.walk_refs(ctx, filter, f)
    }

    fn census(&self, ctx: &Ctx) -> Result<Census> {
        self.inner.census(ctx)
    }

    /// Removes half-built pulled layers first, so their directories go with this Cleanup.
    fn cleanup(&self, ctx: &Ctx) -> Result<CleanupReport> {
        self.sweep(ctx)?;
        self.inner.cleanup(ctx)
    }

    fn owner(&self, ctx: &Ctx, dir: &Path) -> Result<Option<(String, Kind)>> {
        self.inner.owner(ctx, dir)
    }

    fn close(&self) -> Result<()> {
        self.inner.close()
    }
}
