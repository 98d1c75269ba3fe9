//! Layer jobs: fetch one layer, apply it into a new snapshot, commit it under its chain ID.
//!
//! One job per snapshot name at a time, so concurrent requests for one chain share one
//! download. A job whose parent is still being built waits for it (a snapshot is created on
//! a committed parent); meanwhile, when memory allows, it fetches its blob ahead into
//! memory, at most `max_concurrent_layers` such fetches at once. A job that cannot fetch
//! ahead streams the blob straight into the applier once its parent is there, so nothing but
//! the unpacked layer is written to disk.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use strata_core::snapshot::Labels;
use strata_core::{Ctx, Filter, Kind, Mount, Snapshotter};
use strata_layer::Whiteouts;
use strata_layer::stack::Stack;

use crate::error::{PullError, Result};
use crate::image::Image;
use crate::metrics::PullMetrics;
use crate::reference::Reference;
use crate::registry::Registry;

/// The label naming a snapshot's chain ID, which containerd lists snapshots by.
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
/// The labels containerd's snapshotter-info handler adds to each layer's Prepare.
pub const IMAGE_REF: &str = "containerd.io/snapshot/cri.image-ref";
/// The layer blob's digest.
pub const LAYER_DIGEST: &str = "containerd.io/snapshot/cri.layer-digest";
/// The image manifest's digest.
pub const MANIFEST_DIGEST: &str = "containerd.io/snapshot/cri.manifest-digest";
/// This layer's and the following layers' digests, comma-separated.
pub const IMAGE_LAYERS: &str = "containerd.io/snapshot/cri.image-layers";

/// The name Strata commits layer `index` of `image` under, on `parent`.
///
/// Names are store-wide, shared by every containerd namespace. No namespace reaches a proxy
/// snapshotter, so containerd's List by label and parent (`labels."containerd.io/snapshot.ref"
/// ==<chain ID>,parent==<parent>`) sees every namespace's snapshots and binds the layer to
/// the first match: with a copy per namespace, a second namespace's bottom layer (parent "")
/// would be bound to the first namespace's copy, and each following layer, asked for on that
/// copy, would exist in the second namespace's copy on another parent. One snapshot per chain
/// ID and parent is what containerd expects; its garbage collector keeps a snapshot while any
/// namespace refers to it.
///
/// A layer on its image's own chain (the bottom layer, or one on the layer Strata pulled
/// below it) is `pull/<chain ID>`; on any other parent (a layer containerd unpacked itself
/// after a fallback) `pull/<chain ID>/<sha256(parent), 16 hex digits>`, so no two snapshots
/// with one chain ID share a parent. Pure.
pub fn snapshot_name(image: &Image, index: usize, parent: &str) -> String {
    let chain = &image.layers[index].chain_id;
    let own = match index.checked_sub(1) {
        None => String::new(),
        Some(below) => format!("{PULLED}{}", image.layers[below].chain_id),
    };
    if parent == own {
        format!("{PULLED}{chain}")
    } else {
        let hash = Sha256::digest(parent.as_bytes());
        let short: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{PULLED}{chain}/{short}")
    }
}

/// The prefix of the snapshots Strata commits pulled layers under.
pub const PULLED: &str = "pull/";
/// The prefix of the active snapshots Strata applies pulled layers into.
pub const EXTRACTING: &str = "pull-extract/";

/// The active snapshot a layer committed as `name` is applied into. Pure.
pub fn extraction_name(name: &str) -> String {
    format!("{EXTRACTING}{}", name.strip_prefix(PULLED).unwrap_or(name))
}

/// Whether `key` is an extraction snapshot of the pull path: `pull-extract/…`, or an earlier
/// release's per-namespace `<namespace>/pull-extract/…`. Pure.
pub fn is_extraction(key: &str) -> bool {
    key.starts_with(EXTRACTING)
        || key
            .split_once('/')
            .is_some_and(|(_, rest)| rest.starts_with(EXTRACTING))
}

/// Where a layer goes: the directory the mounts of its extraction snapshot expose, and how
/// whiteouts are written there. Pure.
pub fn target_of(mounts: &[Mount]) -> Option<(PathBuf, Whiteouts)> {
    Stack::of(mounts)?.target()
}

/// The outcome of a job, shared by everyone waiting on it.
pub struct Job {
    result: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Job {
    fn finish(&self, result: Result<(), String>) {
        *self.result.lock().expect("job") = Some(result);
        self.done.notify_all();
    }

    fn is_done(&self) -> bool {
        self.result.lock().expect("job").is_some()
    }

    /// Waits for the job, giving up when `ctx` ends.
    fn wait(&self, ctx: &Ctx) -> Result<(), String> {
        let mut result = self.result.lock().expect("job");
        loop {
            if let Some(r) = &*result {
                return r.clone();
            }
            if ctx.is_done() {
                return Err("request ended while the layer was being pulled".into());
            }
            result = self
                .done
                .wait_timeout(result, Duration::from_millis(100))
                .expect("job")
                .0;
        }
    }
}

/// What one Prepare asks for, from its labels.
#[derive(Debug, Clone)]
pub struct LayerRequest {
    /// The chain ID (`containerd.io/snapshot.ref`).
    pub target: String,
    /// The image reference.
    pub image_ref: String,
    /// The manifest digest.
    pub manifest: String,
    /// The layer blob digest.
    pub layer: String,
    /// This and the following layers' digests (may be truncated or absent).
    pub layers: Vec<String>,
}

impl LayerRequest {
    /// The request `labels` carry, if they carry the remote-snapshot labels.
    pub fn from_labels(labels: &Labels) -> Option<LayerRequest> {
        Some(LayerRequest {
            target: labels.get(SNAPSHOT_REF)?.clone(),
            image_ref: labels.get(IMAGE_REF)?.clone(),
            manifest: labels.get(MANIFEST_DIGEST)?.clone(),
            layer: labels.get(LAYER_DIGEST)?.clone(),
            layers: labels
                .get(IMAGE_LAYERS)
                .map(|l| l.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }
}

/// Runs layer jobs for every backend: the registry client, images already read, jobs in
/// flight, and the bounds on fetching ahead.
pub struct Puller {
    registry: Registry,
    metrics: Arc<PullMetrics>,
    images: Mutex<HashMap<String, Arc<Image>>>,
    jobs: Mutex<HashMap<(String, String), Arc<Job>>>,
    slots: (Mutex<usize>, Condvar),
    memory: Mutex<u64>,
}

struct Work {
    backend: Arc<dyn Snapshotter>,
    reference: Reference,
    image: Arc<Image>,
    index: usize,
    name: String,
    extract: String,
    parent: String,
    labels: Labels,
    parent_job: Option<Arc<Job>>,
}

impl Puller {
    /// A puller fetching with `registry` and counting into `metrics`.
    pub fn new(registry: Registry, metrics: Arc<PullMetrics>) -> Arc<Puller> {
        Arc::new(Puller {
            registry,
            metrics,
            images: Mutex::default(),
            jobs: Mutex::default(),
            slots: (Mutex::new(0), Condvar::new()),
            memory: Mutex::new(0),
        })
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<PullMetrics> {
        &self.metrics
    }

    fn image(&self, reference: &Reference, manifest: &str) -> Result<Arc<Image>> {
        if let Some(image) = self.images.lock().expect("images").get(manifest) {
            return Ok(Arc::clone(image));
        }
        let digest = strata_layer::Digest::parse(manifest)
            .ok_or_else(|| PullError::Labels(format!("manifest digest {manifest:?}")))?;
        let bytes = self.registry.manifest(reference, &digest)?;
        let config = self
            .registry
            .small_blob(reference, &crate::image::config_digest(&bytes)?)?;
        let image = Arc::new(Image::parse(&bytes, &config)?);
        let mut images = self.images.lock().expect("images");
        // A daemon sees few images at a time; keep the cache from growing without bound.
        if images.len() >= 64 {
            images.clear();
        }
        images.insert(manifest.to_owned(), Arc::clone(&image));
        Ok(image)
    }

    /// Makes sure the layer a Prepare's `labels` name is a committed snapshot on `parent`
    /// (pulling it, or joining the job already pulling it), and starts the following layers.
    /// `Ok` means containerd can be told `AlreadyExists`.
    pub fn pull(
        self: &Arc<Self>,
        backend: &Arc<dyn Snapshotter>,
        ctx: &Ctx,
        parent: &str,
        labels: &Labels,
        request: &LayerRequest,
    ) -> Result<()> {
        let reference = Reference::parse(&request.image_ref)?;
        let image = self.image(&reference, &request.manifest)?;
        let index = image.position(&request.target, &request.layer)?;
        image.layers[index].compression()?;
        let name = snapshot_name(&image, index, parent);
        let job = self.start(
            backend,
            &reference,
            &image,
            index,
            &name,
            parent,
            labels.clone(),
        );
        // The following layers, on the chain this one starts (or joins).
        let mut below = name.clone();
        for next in index + 1..image.layers.len() {
            let listed = request
                .layers
                .iter()
                .any(|l| *l == image.layers[next].digest.as_str());
            if !listed || image.layers[next].compression().is_err() {
                break;
            }
            let next_name = snapshot_name(&image, next, &below);
            self.start(
                backend,
                &reference,
                &image,
                next,
                &next_name,
                &below,
                Labels::new(),
            );
            below = next_name;
        }
        job.wait(ctx).map_err(PullError::Image)?;
        let info = backend.stat(ctx, &name)?;
        if info.kind == Kind::Committed && info.parent == parent {
            Ok(())
        } else {
            Err(PullError::Image(format!(
                "snapshot {name} exists on parent {:?}, not {parent:?}",
                info.parent
            )))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        self: &Arc<Self>,
        backend: &Arc<dyn Snapshotter>,
        reference: &Reference,
        image: &Arc<Image>,
        index: usize,
        name: &str,
        parent: &str,
        labels: Labels,
    ) -> Arc<Job> {
        let layer = &image.layers[index];
        let mut jobs = self.jobs.lock().expect("jobs");
        let job_key = (backend.name().to_owned(), name.to_owned());
        if let Some(job) = jobs.get(&job_key) {
            return Arc::clone(job);
        }
        let job = Arc::new(Job {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        let parent_job = jobs
            .get(&(backend.name().to_owned(), parent.to_owned()))
            .cloned();
        jobs.insert(job_key.clone(), Arc::clone(&job));
        drop(jobs);
        let mut labels = labels;
        labels.insert(SNAPSHOT_REF.into(), layer.chain_id.to_string());
        labels.insert(LAYER_DIGEST.into(), layer.digest.to_string());
        let work = Work {
            backend: Arc::clone(backend),
            reference: reference.clone(),
            image: Arc::clone(image),
            index,
            extract: extraction_name(name),
            name: name.to_owned(),
            parent: parent.to_owned(),
            labels,
            parent_job,
        };
        let puller = Arc::clone(self);
        let shared = Arc::clone(&job);
        std::thread::spawn(move || {
            let result = puller.run(&work).map_err(|e| e.to_string());
            if let Err(why) = &result {
                tracing::debug!(snapshot = %work.name, %why, "layer job failed");
            }
            puller.jobs.lock().expect("jobs").remove(&job_key);
            shared.finish(result);
        });
        job
    }

    fn run(&self, w: &Work) -> Result<()> {
        let ctx = &Ctx::background();
        let layer = &w.image.layers[w.index];
        let compression = layer.compression()?;
        if let Ok(info) = w.backend.stat(ctx, &w.name) {
            return if info.kind == Kind::Committed && info.parent == w.parent {
                Ok(())
            } else {
                Err(PullError::Image(format!(
                    "{} exists with another parent",
                    w.name
                )))
            };
        }
        let start = Instant::now();
        let mut ahead = None;
        if let Some(parent_job) = &w.parent_job
            && !parent_job.is_done()
            && self.reserve(layer.size)
        {
            let fetched = (|| {
                let _slot = self.slot();
                let mut buf = Vec::with_capacity(layer.size as usize);
                self.registry
                    .blob(&w.reference, &layer.digest, layer.size)?
                    .read_to_end(&mut buf)
                    .map_err(|e| PullError::Registry {
                        url: layer.digest.to_string(),
                        why: e.to_string(),
                    })?;
                Ok::<_, PullError>(buf)
            })();
            match fetched {
                Ok(buf) => ahead = Some(buf),
                Err(e) => {
                    self.release(layer.size);
                    return Err(e);
                }
            }
        }
        self.apply(ctx, w, ahead.take(), compression, start)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        w: &Work,
        ahead: Option<Vec<u8>>,
        compression: strata_layer::Compression,
        start: Instant,
    ) -> Result<()> {
        let layer = &w.image.layers[w.index];
        let reserved = ahead.as_ref().map_or(0, |_| layer.size);
        let release = Release(self, reserved);
        if let Some(parent_job) = &w.parent_job {
            parent_job
                .wait(ctx)
                .map_err(|_| PullError::Parent(w.parent.clone()))?;
        }
        // A previous attempt's extraction snapshot (a crash, a failed job) is ours to drop.
        if w.backend.stat(ctx, &w.extract).is_ok() {
            w.backend.remove(ctx, &w.extract)?;
        }
        let mounts = w
            .backend
            .prepare(ctx, &w.extract, &w.parent, Labels::new())?;
        let applied = (|| {
            let (dir, whiteouts) = target_of(&mounts)
                .ok_or_else(|| PullError::Image(format!("unexpected mounts {mounts:?}")))?;
            let source: Box<dyn Read + Send> = match ahead {
                Some(bytes) => Box::new(Cursor::new(bytes)),
                None => {
                    let _slot = self.slot();
                    self.registry
                        .blob(&w.reference, &layer.digest, layer.size)?
                }
            };
            let applied = strata_layer::apply(
                source,
                compression,
                &dir,
                &whiteouts,
                Some(&layer.digest),
                &|| false,
            )
            .map_err(|source| PullError::Apply {
                digest: layer.digest.to_string(),
                source,
            })?;
            drop(release);
            if applied.diff_id != layer.diff_id {
                return Err(PullError::DiffId {
                    digest: layer.digest.to_string(),
                    got: applied.diff_id.to_string(),
                    want: layer.diff_id.to_string(),
                });
            }
            w.backend
                .commit(ctx, &w.name, &w.extract, w.labels.clone(), None)?;
            Ok(applied)
        })();
        match applied {
            Ok(applied) => {
                let micros = start.elapsed().as_micros() as u64;
                self.metrics
                    .layer(applied.compressed_size, applied.size, micros);
                tracing::info!(
                    snapshot = %w.name,
                    layer = %layer.digest,
                    bytes = applied.compressed_size,
                    unpacked = applied.size,
                    entries = applied.entries,
                    ms = micros / 1000,
                    "layer pulled into a snapshot"
                );
                Ok(())
            }
            Err(e) => {
                if let Err(r) = w.backend.remove(ctx, &w.extract) {
                    tracing::warn!(key = %w.extract, error = %r, "removing a failed extraction");
                }
                Err(e)
            }
        }
    }

    /// Whether a job of `backend` is building `key`: its extraction snapshot or the name it
    /// commits under.
    pub fn is_busy(&self, backend: &Arc<dyn Snapshotter>, key: &str) -> bool {
        self.jobs
            .lock()
            .expect("jobs")
            .keys()
            .any(|(b, name)| b == backend.name() && (name == key || extraction_name(name) == key))
    }

    /// Removes the extraction snapshots (`pull-extract/…`) of `backend` that no job is
    /// applying a layer into: what a crash or a kill left half-built. Returns how many it
    /// removed; one that cannot be removed is logged and left for the next sweep.
    pub fn sweep(&self, backend: &Arc<dyn Snapshotter>, ctx: &Ctx) -> strata_core::Result<usize> {
        let mut found = Vec::new();
        backend.walk(ctx, &Filter::always(), &mut |info| {
            if info.kind == Kind::Active && is_extraction(&info.name) {
                found.push(info.name);
            }
            Ok(())
        })?;
        // Held while removing, so no job starts on one of these meanwhile.
        let jobs = self.jobs.lock().expect("jobs");
        let mut removed = 0;
        for key in found {
            let busy = jobs
                .keys()
                .any(|(b, name)| b == backend.name() && extraction_name(name) == key);
            if busy {
                continue;
            }
            match backend.remove(ctx, &key) {
                Ok(()) => {
                    tracing::info!(%key, "removed a half-built pulled layer");
                    removed += 1;
                }
                Err(strata_core::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(%key, error = %e, "removing a half-built pulled layer"),
            }
        }
        Ok(removed)
    }

    fn reserve(&self, bytes: u64) -> bool {
        let mut used = self.memory.lock().expect("memory");
        if *used + bytes <= self.registry.config().prefetch_memory_bytes {
            *used += bytes;
            true
        } else {
            false
        }
    }

    fn release(&self, bytes: u64) {
        let mut used = self.memory.lock().expect("memory");
        *used = used.saturating_sub(bytes);
    }

    fn slot(&self) -> Slot<'_> {
        let (count, cv) = &self.slots;
        let max = self.registry.config().max_concurrent_layers.max(1);
        let mut n = count.lock().expect("slots");
        while *n >= max {
            n = cv.wait(n).expect("slots");
        }
        *n += 1;
        Slot(self)
    }
}

struct Release<'a>(&'a Puller, u64);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

struct Slot<'a>(&'a Puller);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let (count, cv) = &self.0.slots;
        *count.lock().expect("slots") -= 1;
        cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A layer goes into an overlay's upper directory (overlay whiteouts, lowers nearest
    /// first) or a writable bind's source (deletions); nothing else is a target.
    #[test]
    fn targets() {
        let (dir, w) = target_of(&[mount(
            "overlay",
            "overlay",
            &["workdir=/w", "upperdir=/u", "lowerdir=/a:/b"],
        )])
        .unwrap();
        assert_eq!(dir, PathBuf::from("/u"));
        assert!(
            matches!(w, Whiteouts::Overlay { lowers } if lowers == vec![PathBuf::from("/a"), "/b".into()])
        );
        let (dir, w) = target_of(&[mount("bind", "/s", &["rw", "rbind"])]).unwrap();
        assert_eq!(dir, PathBuf::from("/s"));
        assert!(matches!(w, Whiteouts::Delete));
        assert!(target_of(&[mount("bind", "/s", &["ro", "rbind"])]).is_none());
        assert!(target_of(&[mount("overlay", "overlay", &["lowerdir=/a"])]).is_none());
        assert!(target_of(&[]).is_none());
    }

    /// A layer on its image's own chain is `pull/<chain>` in every namespace; on another
    /// parent the name carries the parent's hash, so one parent never holds two snapshots
    /// with one chain ID. Extractions mirror the names and are recognised, old ones too.
    #[test]
    fn names() {
        let d = |c: char| {
            strata_layer::Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
        };
        let layer = |chain: char| crate::image::Layer {
            digest: d('0'),
            size: 1,
            media_type: String::new(),
            diff_id: d(chain),
            chain_id: d(chain),
        };
        let image = Image {
            layers: vec![layer('a'), layer('b')],
        };
        let a = format!("pull/{}", d('a'));
        assert_eq!(snapshot_name(&image, 0, ""), a);
        assert_eq!(snapshot_name(&image, 1, &a), format!("pull/{}", d('b')));
        let other = snapshot_name(&image, 1, "ns/7/sha256:aa");
        assert!(other.starts_with(&format!("pull/{}/", d('b'))), "{other}");
        assert_ne!(other, snapshot_name(&image, 1, "ns2/7/sha256:aa"));
        assert_eq!(other, snapshot_name(&image, 1, "ns/7/sha256:aa"));
        assert_ne!(snapshot_name(&image, 0, "x"), a);
        assert_eq!(extraction_name(&a), format!("pull-extract/{}", d('a')));
        assert!(is_extraction(&extraction_name(&other)));
        assert!(is_extraction("default/pull-extract/sha256:aa"));
        assert!(!is_extraction(&a));
        assert!(!is_extraction("default/3/extract-1-sha256:aa"));
    }

    /// Only Prepares carrying all remote-snapshot labels are pull requests.
    #[test]
    fn requests() {
        let mut labels = Labels::new();
        labels.insert(SNAPSHOT_REF.into(), "sha256:c".into());
        assert!(LayerRequest::from_labels(&labels).is_none());
        labels.insert(IMAGE_REF.into(), "r/x:1".into());
        labels.insert(MANIFEST_DIGEST.into(), "sha256:m".into());
        labels.insert(LAYER_DIGEST.into(), "sha256:l".into());
        labels.insert(IMAGE_LAYERS.into(), "sha256:l,sha256:k".into());
        let r = LayerRequest::from_labels(&labels).unwrap();
        assert_eq!(r.layers, vec!["sha256:l", "sha256:k"]);
    }
}
