//! The gRPC service: one handler per RPC, each picking its backend by the request's
//! `snapshotter` field and running the (blocking) snapshotter call on tokio's blocking pool,
//! so a slow filesystem walk never stalls the runtime or other requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use strata_core::{Ctx, Error, Filter, Snapshotter};
use tokio::net::UnixListener;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status};

use crate::backends::Backends;
use crate::context::{self, request_context};
use crate::convert;
use crate::heavy::{Heavy, HeavyWork};
use crate::list_wire::ListSnapshotsResponse;
use crate::metrics::Metrics;
use crate::proto::snapshots as pb;
use crate::proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};
use crate::status::to_status;

/// The error of a failed server, re-exported so callers need not depend on tonic.
pub use tonic::transport::Error as TransportError;

/// How many infos one List response message carries. containerd's service sends 100; larger
/// messages (a few hundred KiB, far below gRPC's 4 MiB default limit) halve the per-message
/// overhead of a long listing.
const LIST_BATCH: usize = 500;

/// Where a request's snapshotter call runs.
#[derive(Debug, Clone, Copy)]
enum Dispatch {
    /// On tokio's blocking pool.
    Blocking,
    /// On the runtime thread handling the request.
    Inline,
}

/// The `containerd.services.snapshots.v1.Snapshots` service over a set of backends.
#[derive(Clone)]
pub struct SnapshotService {
    backends: Arc<Backends>,
    metrics: Arc<Metrics>,
    /// Slots for Usage walks and Cleanups.
    heavy: HeavyWork,
}

impl SnapshotService {
    /// A service answering from `backends`.
    pub fn new(backends: Arc<Backends>) -> SnapshotService {
        SnapshotService::with_metrics(backends, Arc::default())
    }

    /// A service answering from `backends` and recording into `metrics`.
    pub fn with_metrics(backends: Arc<Backends>, metrics: Arc<Metrics>) -> SnapshotService {
        SnapshotService {
            backends,
            metrics,
            heavy: HeavyWork::default(),
        }
    }

    /// Waits for a slot for heavy work of `kind` (see [`HeavyWork::admit`]).
    async fn admit(
        &self,
        kind: Heavy,
        op: &'static str,
        deadline: Option<Instant>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.heavy
            .admit(kind, op, deadline)
            .await
            .inspect_err(|status| self.metrics.failed(op, status.code()))
    }

    /// Runs `f` against the backend named `snapshotter` on the blocking pool (it may walk a
    /// tree or wait for an fsync), logging the operation, its key and duration at debug
    /// level and its failure at warn level, and recording both in the metrics.
    async fn run<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        op: &'static str,
        snapshotter: &str,
        key: &str,
        f: impl FnOnce(&dyn Snapshotter, &Ctx) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        self.run_with(Dispatch::Blocking, deadline, op, snapshotter, key, f)
            .await
    }

    /// Like [`SnapshotService::run`], for an operation that only reads metadata (a few
    /// microseconds, no filesystem walk, no fsync): it runs on the runtime thread itself,
    /// sparing two thread hand-offs that would cost more than the work.
    async fn run_inline<T: Send + 'static>(
        &self,
        deadline: Option<Instant>,
        op: &'static str,
        snapshotter: &str,
        key: &str,
        f: impl FnOnce(&dyn Snapshotter, &Ctx) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        self.run_with(Dispatch::Inline, deadline, op, snapshotter, key, f)
            .await
    }

    async fn run_with<T: Send + 'static>(
        &self,
        dispatch: Dispatch,
        deadline: Option<Instant>,
        op: &'static str,
        snapshotter: &str,
        key: &str,
        f: impl FnOnce(&dyn Snapshotter, &Ctx) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        let backend = self.backends.get(snapshotter).map_err(|e| {
            let status = to_status(&e);
            self.metrics.failed(op, status.code());
            status
        })?;
        let backend_name = backend.name().to_owned();
        let start = Instant::now();
        // The guard is dropped with this future: when the client cancels or the deadline
        // passes, tonic drops the handler and the blocking work sees `ctx` end.
        let (ctx, guard) = request_context(deadline, op);
        let result = match dispatch {
            Dispatch::Inline => Ok(f(&*backend, &ctx)),
            Dispatch::Blocking => tokio::task::spawn_blocking(move || f(&*backend, &ctx))
                .await
                .map_err(|e| Status::internal(format!("{op} handler panicked: {e}"))),
        };
        guard.finish();
        let code = match &result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(to_status(e).code()),
            Err(status) => Some(status.code()),
        };
        self.metrics
            .observe(op, &backend_name, start.elapsed(), code);
        let result = result?;
        let elapsed_us = start.elapsed().as_micros() as u64;
        match result {
            Ok(value) => {
                tracing::debug!(op, key, snapshotter, elapsed_us, "ok");
                Ok(value)
            }
            Err(error) => {
                let status = to_status(&error);
                if matches!(error, Error::Io { .. } | Error::Store(_)) {
                    tracing::warn!(op, key, snapshotter, elapsed_us, %error, "failed");
                } else {
                    tracing::debug!(op, key, snapshotter, elapsed_us, code = ?status.code(), %error, "refused");
                }
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotService {
    async fn prepare(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let (key, parent, labels) = (r.key.clone(), r.parent, r.labels);
        let mounts = self
            .run(
                deadline,
                "prepare",
                &r.snapshotter,
                &r.key,
                move |s, ctx| s.prepare(ctx, &key, &parent, labels),
            )
            .await?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: convert::mounts_to_wire(mounts),
        }))
    }

    async fn view(
        &self,
        request: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let (key, parent, labels) = (r.key.clone(), r.parent, r.labels);
        let mounts = self
            .run(deadline, "view", &r.snapshotter, &r.key, move |s, ctx| {
                s.view(ctx, &key, &parent, labels)
            })
            .await?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: convert::mounts_to_wire(mounts),
        }))
    }

    async fn mounts(
        &self,
        request: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let key = r.key.clone();
        let mounts = self
            .run_inline(deadline, "mounts", &r.snapshotter, &r.key, move |s, ctx| {
                s.mounts(ctx, &key)
            })
            .await?;
        Ok(Response::new(pb::MountsResponse {
            mounts: convert::mounts_to_wire(mounts),
        }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let (name, key, labels) = (r.name, r.key.clone(), r.labels);
        let parent = Some(r.parent).filter(|p| !p.is_empty());
        self.run(deadline, "commit", &r.snapshotter, &r.key, move |s, ctx| {
            s.commit(ctx, &name, &key, labels, parent.as_deref())
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let key = r.key.clone();
        self.run(deadline, "remove", &r.snapshotter, &r.key, move |s, ctx| {
            s.remove(ctx, &key)
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let key = r.key.clone();
        let info = self
            .run_inline(deadline, "stat", &r.snapshotter, &r.key, move |s, ctx| {
                s.stat(ctx, &key)
            })
            .await?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(convert::info_to_wire(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("update request carries no info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let key = info.name.clone();
        let labels = info.labels;
        let info = self
            .run(
                deadline,
                "update",
                &r.snapshotter,
                &info.name,
                move |s, ctx| s.update(ctx, &key, &labels, &paths),
            )
            .await?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(convert::info_to_wire(info)),
        }))
    }

    type ListStream = ReceiverStream<Result<ListSnapshotsResponse, Status>>;

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let metrics = Arc::clone(&self.metrics);
        let refused = |status: Status| {
            metrics.failed("list", status.code());
            status
        };
        let backend = self
            .backends
            .get(&r.snapshotter)
            .map_err(|e| refused(to_status(&e)))?;
        let filter =
            Filter::parse_all(&r.filters).map_err(|e| refused(to_status(&Error::from(e))))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let start = Instant::now();
        // No drop guard: this handler returns at once. A client that goes away is seen when
        // the next batch cannot be sent.
        let ctx = match deadline {
            Some(d) => Ctx::background().with_deadline(d),
            None => Ctx::background(),
        };
        tokio::task::spawn_blocking(move || {
            // Each info goes onto the wire straight from its stored record (list_wire.rs).
            let fresh = || ListSnapshotsResponse::with_capacity(LIST_BATCH * 256);
            let mut batch = fresh();
            let mut scratch = Vec::with_capacity(512);
            let result = backend.walk_refs(&ctx, &filter, &mut |info| {
                batch.push_ref(info, &mut scratch);
                if batch.len() == LIST_BATCH {
                    let full = std::mem::replace(&mut batch, fresh());
                    // The client went away: stop walking.
                    tx.blocking_send(Ok(full)).map_err(|_| Error::Closed)?;
                }
                Ok(())
            });
            // The walk's time, not the client's: a slow reader is not a slow List.
            let code = match &result {
                Ok(()) | Err(Error::Closed) => None,
                Err(e) => Some(to_status(e).code()),
            };
            metrics.observe("list", backend.name(), start.elapsed(), code);
            let last = match result {
                Ok(()) if batch.is_empty() => return,
                Ok(()) => Ok(batch),
                Err(Error::Closed) => return,
                Err(e) => Err(to_status(&e)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        // A committed snapshot's usage is a metadata read: answer it here. Only an active
        // snapshot's walk goes to the blocking pool.
        let key = r.key.clone();
        if let Some(usage) = self
            .run_inline(deadline, "usage", &r.snapshotter, &r.key, move |s, ctx| {
                s.recorded_usage(ctx, &key)
            })
            .await?
        {
            return Ok(Response::new(convert::usage_to_wire(usage)));
        }
        let key = r.key.clone();
        let metrics = Arc::clone(&self.metrics);
        let slot = self.admit(Heavy::Walk, "usage-walk", deadline).await?;
        let usage = self
            .run(
                deadline,
                "usage-walk",
                &r.snapshotter,
                &r.key,
                move |s, ctx| {
                    let _slot = slot;
                    let usage = s.usage(ctx, &key)?;
                    metrics.usage_measured(s.name(), &key, usage);
                    Ok(usage)
                },
            )
            .await?;
        Ok(Response::new(convert::usage_to_wire(usage)))
    }

    async fn cleanup(&self, request: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        let deadline = context::deadline(request.metadata(), Instant::now());
        let r = request.into_inner();
        let metrics = Arc::clone(&self.metrics);
        let slot = self.admit(Heavy::Cleanup, "cleanup", deadline).await?;
        self.run(deadline, "cleanup", &r.snapshotter, "", move |s, ctx| {
            let _slot = slot;
            let report = s.cleanup(ctx)?;
            metrics.cleanup_done(s.name(), &report);
            Ok(report)
        })
        .await?;
        Ok(Response::new(()))
    }
}

/// Serves `backends` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: UnixListener,
    backends: Arc<Backends>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with_metrics(listener, backends, Arc::default(), None, shutdown).await
}

/// [`serve`], recording every request into `metrics` (which
/// [`crate::metrics::serve_http`] can expose), and serving containerd's diff service beside
/// the snapshots service when `content` (containerd's content store) is given.
pub async fn serve_with_metrics(
    listener: UnixListener,
    backends: Arc<Backends>,
    metrics: Arc<Metrics>,
    content: Option<Arc<crate::content::ContentStore>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let differ = content.map(|content| {
        crate::proto::diff::diff_server::DiffServer::new(crate::diff::DiffService::new(
            Arc::clone(&backends),
            content,
            Arc::clone(&metrics),
        ))
    });
    tonic::transport::Server::builder()
        .add_service(SnapshotsServer::new(SnapshotService::with_metrics(
            backends, metrics,
        )))
        .add_optional_service(differ)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
