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

use strata_core::snapshot::Labels;
use strata_core::{Ctx, Kind, Mount, Snapshotter};
use strata_layer::Whiteouts;

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

/// The name Strata commits a pulled layer under: `<namespace>/pull/<chain ID>`.
pub fn snapshot_name(namespace: &str, chain: &str) -> String {
    format!("{namespace}/pull/{chain}")
}

/// Where a layer goes: the directory the mounts of its extraction snapshot expose, and how
/// whiteouts are written there. Pure.
pub fn target_of(mounts: &[Mount]) -> Option<(PathBuf, Whiteouts)> {
    match mounts {
        [m] if m.kind == "overlay" => {
            let mut upper = None;
            let mut lowers = Vec::new();
            for option in &m.options {
                if let Some(u) = option.strip_prefix("upperdir=") {
                    upper = Some(PathBuf::from(u));
                } else if let Some(l) = option.strip_prefix("lowerdir=") {
                    lowers = l.split(':').map(PathBuf::from).collect();
                }
            }
            Some((upper?, Whiteouts::Overlay { lowers }))
        }
        [m] if (m.kind == "bind" || m.kind == "rbind") && !m.options.iter().any(|o| o == "ro") => {
            Some((PathBuf::from(&m.source), Whiteouts::Delete))
        }
        _ => None,
    }
}

/// The outcome of a job, shared by everyone waiting on it.
pub struct Job {
    parent: String,
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
        key: &str,
        parent: &str,
        labels: &Labels,
        request: &LayerRequest,
    ) -> Result<()> {
        let namespace = match key.split_once('/') {
            Some((ns, _)) if !ns.is_empty() => ns,
            _ => return Err(PullError::Labels(format!("no namespace in key {key:?}"))),
        };
        let reference = Reference::parse(&request.image_ref)?;
        let image = self.image(&reference, &request.manifest)?;
        let index = image.position(&request.target, &request.layer)?;
        image.layers[index].compression()?;
        for attempt in 0..2 {
            let job = self.start(
                backend,
                namespace,
                &reference,
                &image,
                index,
                parent,
                labels.clone(),
            );
            // The following layers, on the chain this one starts (or joins).
            for next in index + 1..image.layers.len() {
                let listed = request
                    .layers
                    .iter()
                    .any(|l| *l == image.layers[next].digest.as_str());
                if !listed {
                    break;
                }
                let below = snapshot_name(namespace, image.layers[next - 1].chain_id.as_str());
                self.start(
                    backend,
                    namespace,
                    &reference,
                    &image,
                    next,
                    &below,
                    Labels::new(),
                );
            }
            let result = job.wait(ctx);
            let name = snapshot_name(namespace, &request.target);
            match (result, backend.stat(ctx, &name)) {
                (Ok(()), Ok(info)) if info.kind == Kind::Committed && info.parent == parent => {
                    return Ok(());
                }
                (Ok(()), Ok(info)) => {
                    return Err(PullError::Image(format!(
                        "snapshot {name} exists on parent {:?}, not {parent:?}",
                        info.parent
                    )));
                }
                (Ok(()), Err(e)) => return Err(e.into()),
                // A job started ahead on another parent failed: try once on ours.
                (Err(_), _) if attempt == 0 && job.parent != parent => continue,
                (Err(why), _) => return Err(PullError::Image(why)),
            }
        }
        unreachable!("the loop returns")
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        self: &Arc<Self>,
        backend: &Arc<dyn Snapshotter>,
        namespace: &str,
        reference: &Reference,
        image: &Arc<Image>,
        index: usize,
        parent: &str,
        labels: Labels,
    ) -> Arc<Job> {
        let layer = &image.layers[index];
        let name = snapshot_name(namespace, layer.chain_id.as_str());
        let mut jobs = self.jobs.lock().expect("jobs");
        let job_key = (backend.name().to_owned(), name.clone());
        if let Some(job) = jobs.get(&job_key) {
            return Arc::clone(job);
        }
        let job = Arc::new(Job {
            parent: parent.to_owned(),
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
            extract: format!("{namespace}/pull-extract/{}", layer.chain_id),
            name,
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
