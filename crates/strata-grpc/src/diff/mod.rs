//! containerd's diff service (`containerd.services.diff.v1.Diff`), served beside the
//! snapshots service on the same socket, for containerd 1.7.4+ as a proxy differ
//! (`[proxy_plugins.strata-diff] type = "diff"`).
//!
//! - **Apply** writes a layer straight into the snapshot directory the mounts expose when
//!   that directory is one of Strata's active snapshots (an overlay's upper directory with
//!   overlay whiteouts, or a bind mount's source with deletions), reading the blob from
//!   containerd's content store. Mounts that are not Strata's, media types and stream
//!   processors it does not handle, answer `Unimplemented`: containerd's diff service then
//!   tries its next differ (`walking`).
//! - **Diff** produces the layer between two mounts when the upper one is the lower one plus
//!   one Strata layer directory (an active or committed overlay snapshot over its parent, or
//!   a parentless snapshot over nothing) from that directory alone; between two full trees
//!   (native snapshots, bind mounts) by comparing them; between any other two stacks of
//!   Strata layers by mounting both read-only where nobody else sees them and comparing the
//!   merged trees (`compare.rs`); and writes it to the content store. Mounts that are not
//!   Strata's answer `Unimplemented` for `walking` to take.
//!
//! containerd 1.7 sends no namespace header to a proxy differ (containerd#12328): the
//! namespace is then read from the key of the snapshot the mounts belong to (containerd's
//! keys are `<namespace>/<n>/<name>`).

mod compare;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use strata_core::{Ctx, Kind, crash};
use strata_layer::Digest;
use strata_layer::export::{export_compare, export_upper};
use strata_layer::media::{self, Compression};
use strata_layer::stack::Stack;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use crate::backends::Backends;
use crate::content::{Commit, ContentStore, NAMESPACE_HEADER};
use crate::context::{deadline, request_context};
use crate::convert;
use crate::heavy::{Heavy, HeavyWork};
use crate::metrics::Metrics;
use crate::proto::diff as pb;
use crate::proto::diff::diff_server::Diff;
use crate::proto::types;
use crate::status::layer_status;

/// The label containerd puts on a compressed layer blob naming its uncompressed digest.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// The diff service over Strata's backends and containerd's content store.
pub struct DiffService {
    backends: Arc<Backends>,
    content: Arc<ContentStore>,
    metrics: Arc<Metrics>,
    /// Slots for Applies and Diffs.
    heavy: HeavyWork,
}

/// Where a Diff's layer comes from.
enum Source {
    /// One layer directory's content: the upper stack is the lower one plus this layer.
    Upper(PathBuf),
    /// The difference of two full trees (lower, upper): native snapshots.
    Trees(PathBuf, PathBuf),
    /// The difference of the trees two stacks of layers show, mounted (lower, upper).
    Stacks(Stack, Stack),
}

/// A snapshot directory the mounts expose, and whose it is.
struct Owned {
    dir: PathBuf,
    key: String,
    kind: Kind,
}

fn unimplemented(what: impl std::fmt::Display) -> Status {
    Status::unimplemented(format!("{what}; containerd's own differ can take it"))
}

/// containerd's namespace of a request: its header when containerd sends one, else the
/// first segment of the snapshot key (`<namespace>/<n>/<name>`).
fn namespace<T>(request: &Request<T>, key: &str) -> Result<String, Status> {
    if let Some(ns) = request
        .metadata()
        .get(NAMESPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|ns| !ns.is_empty())
    {
        return Ok(ns.to_owned());
    }
    match key.split_once('/') {
        Some((ns, _)) if !ns.is_empty() => Ok(ns.to_owned()),
        _ => Err(Status::failed_precondition(format!(
            "no containerd namespace in the request and none in snapshot key {key:?}"
        ))),
    }
}

impl DiffService {
    /// A differ writing into `backends`' snapshots and reading and writing blobs in
    /// `content`.
    pub fn new(
        backends: Arc<Backends>,
        content: Arc<ContentStore>,
        metrics: Arc<Metrics>,
    ) -> DiffService {
        DiffService {
            backends,
            content,
            metrics,
            heavy: HeavyWork::default(),
        }
    }

    /// The Strata snapshot whose content directory is `dir`, if any.
    async fn owner(&self, ctx: &Ctx, dir: &Path) -> Result<Option<Owned>, Status> {
        self.owner_of_all(ctx, vec![dir.to_owned()]).await
    }

    /// The snapshot owning the first of `dirs`, if every one of them is one of Strata's
    /// snapshot directories; `None` otherwise — Strata mounts nothing else. One trip to the
    /// blocking pool for all of them.
    async fn owner_of_all(&self, ctx: &Ctx, dirs: Vec<PathBuf>) -> Result<Option<Owned>, Status> {
        let backends = Arc::clone(&self.backends);
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            let mut first = None;
            for path in dirs {
                match owner_in(&backends, &ctx, path)? {
                    Some(owned) => {
                        first.get_or_insert(owned);
                    }
                    None => return Ok(None),
                }
            }
            Ok(first)
        })
        .await
        .map_err(|e| Status::internal(format!("owner lookup panicked: {e}")))?
    }
}

/// The snapshot of one of `backends` whose content directory is `path`, if any.
fn owner_in(backends: &Backends, ctx: &Ctx, path: PathBuf) -> Result<Option<Owned>, Status> {
    for backend in backends.all() {
        if let Some((key, kind)) = backend
            .owner(ctx, &path)
            .map_err(|e| crate::status::to_status(&e))?
        {
            return Ok(Some(Owned {
                dir: path,
                key,
                kind,
            }));
        }
    }
    Ok(None)
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> types::Descriptor {
    types::Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: size as i64,
        annotations: BTreeMap::new(),
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let started = Instant::now();
        let result = self.apply_layer(request).await;
        match &result {
            Ok((_, blob, tar)) => {
                self.metrics
                    .layer_done("apply", None, *blob, *tar, started.elapsed())
            }
            Err(status) => {
                self.metrics
                    .layer_done("apply", Some(status.code()), 0, 0, started.elapsed())
            }
        }
        result.map(|(response, _, _)| response)
    }

    async fn diff(
        &self,
        request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let started = Instant::now();
        let result = self.produce_layer(request).await;
        match &result {
            Ok((_, blob, tar)) => {
                self.metrics
                    .layer_done("diff", None, *blob, *tar, started.elapsed())
            }
            Err(status) => {
                self.metrics
                    .layer_done("diff", Some(status.code()), 0, 0, started.elapsed())
            }
        }
        result.map(|(response, _, _)| response)
    }
}

/// A response with the blob and tar bytes it moved, for the metrics.
type Measured<T> = Result<(Response<T>, u64, u64), Status>;

impl DiffService {
    /// Apply: see the module's documentation.
    async fn apply_layer(&self, request: Request<pb::ApplyRequest>) -> Measured<pb::ApplyResponse> {
        let started = Instant::now();
        let until = deadline(request.metadata(), started);
        let (ctx, guard) = request_context(until, "apply");
        let desc = request
            .get_ref()
            .diff
            .clone()
            .ok_or_else(|| Status::invalid_argument("apply request carries no descriptor"))?;
        let layer = desc.digest.clone();
        if !request.get_ref().payloads.is_empty() {
            return Err(unimplemented("stream processor payloads are not supported"));
        }
        let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
            unimplemented(format!(
                "media type {:?} is not a layer Strata applies",
                desc.media_type
            ))
        })?;
        let digest = Digest::parse(&desc.digest).ok_or_else(|| {
            Status::invalid_argument(format!("digest {:?} is not a sha256 digest", desc.digest))
        })?;
        let mounts = convert::mounts_from_wire(request.get_ref().mounts.clone());
        let stack = Stack::of(&mounts)
            .ok_or_else(|| unimplemented("the mounts are not a shape Strata hands out"))?;
        let Some((dir, whiteouts)) = stack.target() else {
            return Err(unimplemented("the mounts have no writable layer"));
        };
        let owned = self
            .owner(&ctx, &dir)
            .await?
            .ok_or_else(|| unimplemented(format!("{} is not a Strata snapshot", dir.display())))?;
        if owned.kind != Kind::Active {
            return Err(Status::failed_precondition(format!(
                "snapshot {:?} is not active: layers are applied to active snapshots only",
                owned.key
            )));
        }
        let ns = namespace(&request, &owned.key)?;
        let sync_fs = request.get_ref().sync_fs;
        let reader = self
            .content
            .reader(&ns, digest.as_str())
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    format!("layer {layer} in namespace {ns:?}: {}", s.message()),
                )
            })?;
        let target = owned.dir.clone();
        let key = owned.key.clone();
        let local = reader.is_local();
        let slot = self.heavy.admit(Heavy::Layer, "apply", until).await?;
        tracing::debug!(layer = %layer, key = %key, dir = %target.display(), local, "applying layer");
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            crash::pause("apply-layer");
            let applied = strata_layer::apply(
                Box::new(reader),
                compression,
                &target,
                &whiteouts,
                Some(&digest),
                &|| ctx.is_done(),
            )?;
            if sync_fs {
                strata_sys::syncfs(&target).map_err(|e| {
                    strata_layer::LayerError::io("syncfs", target.display().to_string(), e)
                })?;
            }
            Ok::<_, strata_layer::LayerError>(applied)
        })
        .await
        .map_err(|e| Status::internal(format!("apply of layer {layer} panicked: {e}")))?;
        guard.finish();
        let applied = result.map_err(|e| {
            let status = layer_status(&e, &layer);
            tracing::warn!(layer = %layer, key = %key, error = %e, "apply failed");
            status
        })?;
        tracing::info!(
            layer = %layer,
            key = %key,
            entries = applied.entries,
            bytes = applied.size,
            local,
            ms = started.elapsed().as_millis() as u64,
            "layer applied"
        );
        Ok((
            Response::new(pb::ApplyResponse {
                applied: Some(descriptor(
                    media::OCI_LAYER_TAR,
                    &applied.diff_id,
                    applied.size,
                )),
            }),
            applied.compressed_size,
            applied.size,
        ))
    }

    /// Diff: see the module's documentation.
    async fn produce_layer(&self, request: Request<pb::DiffRequest>) -> Measured<pb::DiffResponse> {
        let started = Instant::now();
        let until = deadline(request.metadata(), started);
        let (ctx, guard) = request_context(until, "diff");
        let r = request.get_ref();
        let media_type = if r.media_type.is_empty() {
            media::OCI_LAYER_GZIP.to_owned()
        } else {
            r.media_type.clone()
        };
        let compression = Compression::from_media_type(&media_type).ok_or_else(|| {
            unimplemented(format!(
                "media type {media_type:?} is not a layer Strata writes"
            ))
        })?;
        let lower = Stack::of(&convert::mounts_from_wire(r.left.clone()))
            .ok_or_else(|| unimplemented("the lower mounts are not a shape Strata hands out"))?;
        let upper = Stack::of(&convert::mounts_from_wire(r.right.clone()))
            .ok_or_else(|| unimplemented("the upper mounts are not a shape Strata hands out"))?;
        // The layer is one directory's content (an overlay snapshot over its parent), the
        // difference of two full trees (native snapshots), or that of two mounted stacks.
        let source = match upper.single_layer_over(&lower) {
            Some(top) => Source::Upper(top.clone()),
            None => match (&upper.layers[..], &lower.layers[..]) {
                ([u], [l]) if !upper.overlay && !lower.overlay => {
                    Source::Trees(l.clone(), u.clone())
                }
                _ => Source::Stacks(lower, upper),
            },
        };
        let owned = match &source {
            Source::Upper(top) | Source::Trees(_, top) => self.owner(&ctx, top).await?,
            // The upper stack's top layer, or the lower's when the upper is empty.
            Source::Stacks(lower, upper) => {
                let dirs = upper.layers.iter().chain(&lower.layers).cloned().collect();
                self.owner_of_all(&ctx, dirs).await?
            }
        }
        .ok_or_else(|| unimplemented("the upper mounts are not Strata's snapshots"))?;
        let ns = namespace(&request, &owned.key)?;
        let lease = self.content.lease(&ns).await.map_err(|s| {
            Status::new(
                s.code(),
                format!(
                    "taking a lease in namespace {ns:?} for the layer of {:?}: {}",
                    owned.key,
                    s.message()
                ),
            )
        })?;
        let r = request.into_inner();
        let epoch = r.source_date_epoch.map(|t| t.seconds);
        let reference = if r.r#ref.is_empty() {
            format!(
                "strata-diff-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            )
        } else {
            r.r#ref.clone()
        };
        let (data_tx, data_rx) = mpsc::channel::<Vec<u8>>(8);
        let (commit_tx, commit_rx) = oneshot::channel::<Commit>();
        let labels = r.labels.clone();
        let slot = self.heavy.admit(Heavy::Layer, "diff", until).await?;
        let export = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut out = ChannelWriter {
                tx: data_tx,
                buffer: Vec::with_capacity(1 << 20),
            };
            let cancelled = move || ctx.is_done();
            let sent = |e| strata_layer::LayerError::io("send layer", "", e);
            let exported = match source {
                Source::Upper(top) => export_upper(&top, compression, epoch, &mut out, &cancelled)?,
                Source::Trees(base, top) => {
                    export_compare(&base, &top, compression, epoch, &mut out, &cancelled)?
                }
                Source::Stacks(lower, upper) => {
                    compare::stacks(&lower, &upper, compression, epoch, &mut out, &cancelled)?
                }
            };
            // The writer's last chunk.
            out.flush().map_err(sent)?;
            drop(out);
            let mut labels = labels;
            if compression != Compression::None {
                labels.insert(UNCOMPRESSED_LABEL.to_owned(), exported.diff_id.to_string());
            }
            let _ = commit_tx.send(Commit {
                digest: exported.digest.to_string(),
                size: exported.size,
                labels,
            });
            Ok::<_, strata_layer::LayerError>(exported)
        });
        let written = self
            .content
            .write(&ns, &lease, &reference, data_rx, commit_rx)
            .await;
        let exported = export
            .await
            .map_err(|e| Status::internal(format!("diff of {} panicked: {e}", owned.key)))?;
        guard.finish();
        let exported = exported.map_err(|e| layer_status(&e, &owned.key))?;
        written.map_err(|s| {
            Status::new(
                s.code(),
                format!(
                    "writing the layer of {:?} to containerd's content store: {}",
                    owned.key,
                    s.message()
                ),
            )
        })?;
        tracing::info!(
            key = %owned.key,
            digest = %exported.digest,
            entries = exported.entries,
            bytes = exported.size,
            ms = started.elapsed().as_millis() as u64,
            "layer produced"
        );
        Ok((
            Response::new(pb::DiffResponse {
                diff: Some(descriptor(&media_type, &exported.digest, exported.size)),
            }),
            exported.size,
            exported.uncompressed_size,
        ))
    }
}

/// A blocking writer that hands 1 MiB chunks to the async content writer.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(1 << 20));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the content store write ended",
            )
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= 1 << 20 {
            self.flush_chunk()?;
        }
        Ok(buf.len())
    }

    /// Sends what is buffered: called once, at the end of the layer.
    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()
    }
}
