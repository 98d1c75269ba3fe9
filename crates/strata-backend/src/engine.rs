//! The engine: containerd's snapshotter contract over a metadata [`Store`] and a [`Driver`].
//!
//! Crash ordering (see the README's architecture section):
//! - *create*: the snapshot's id is reserved first ([`Store::reserve_id`]), its directory
//!   built under that final name, then the snapshot recorded; a crash before that commit
//!   leaves a directory whose id the store does not know, which start-up recovery finds
//!   (and never hands out again) and Cleanup removes. (Earlier versions built it as
//!   `new-<pid>-<n>` and renamed it: start-up still removes such leftovers.)
//! - *commit*: the usage is measured (and, with `sync_commit`, the layer flushed) before the
//!   metadata moves; the directory does not change.
//! - *remove*: the metadata goes first; the directory at once (`sync_remove`) or at the next
//!   Cleanup. A crash in between leaves an orphan directory, never a dangling record.
//! - *cleanup*: removes the directories in the trash: those of removed snapshots and the
//!   orphans found at start-up. Only this process writes under the root (one daemon per
//!   root, enforced by a lock), so nothing else can appear there while it runs, and an idle
//!   Cleanup costs nothing whatever the number of snapshots.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata_core::labels;
use strata_core::snapshot::Labels;
use strata_core::{
    Census, CleanupReport, Ctx, Error, Filter, Info, InfoRef, Kind, Mount, Result, Snapshotter,
    Usage, crash,
};
use strata_meta::Store;
use strata_sys::usage::{disk_usage, disk_usage_until};

use crate::layout::{Entry, Layout, Orphan};
use crate::{Driver, OpenError};

pub mod check;
mod new_dir;

use new_dir::NewDir;

/// Longest key or name accepted, in bytes. containerd's own keys stay under a few hundred
/// bytes (`<namespace>/<n>/<digest>`); the limit keeps hostile requests from bloating the
/// store.
pub const MAX_KEY_BYTES: usize = 4096;

/// The label that exposes an overlay snapshot's upper directory, when enabled.
pub const UPPERDIR_LABEL: &str = "containerd.io/snapshot/overlay.upperdir";

/// Behaviour switches of an engine.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Remove a snapshot's directory during Remove instead of at the next Cleanup.
    pub sync_remove: bool,
    /// Flush the filesystem (`syncfs`) before recording a Commit, so the committed layer's
    /// data, not only its metadata, survives a power loss.
    pub sync_commit: bool,
    /// Report each snapshot's upper directory in the [`UPPERDIR_LABEL`] label.
    pub upperdir_label: bool,
}

/// What start-up recovery found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Half-built `new-*` directories removed.
    pub temp_dirs_removed: u64,
    /// Active snapshots made writable again: a crash interrupted their Commit after the
    /// driver sealed them (btrfs: set the read-only flag) and before it was recorded.
    pub unsealed: u64,
    /// Directories the metadata does not know, left for Cleanup.
    pub orphan_dirs: u64,
    /// Snapshots whose directory is missing (a damaged root: see `strata fsck`).
    pub missing_dirs: u64,
    /// Snapshots in the store.
    pub snapshots: u64,
}

/// A snapshotter: one backend root, its metadata store and its driver.
pub struct Engine<D: Driver> {
    driver: Arc<D>,
    layout: Layout,
    store: Store,
    options: EngineOptions,
    /// Directories the metadata no longer knows, waiting for Cleanup: those of removed
    /// snapshots, and the orphans start-up recovery found. Only this process creates
    /// directories under the root, so this list is complete and an idle Cleanup costs
    /// nothing, however many snapshots there are.
    trash: Mutex<Vec<Trash>>,
    closed: AtomicBool,
}

impl<D: Driver> Engine<D> {
    /// Opens the backend rooted at `root` (created 0700 if absent), then recovers from
    /// whatever a crash left: removes half-built directories, makes sure no id found on disk
    /// is handed out again, and counts orphans and missing directories.
    pub fn open(
        root: &Path,
        driver: D,
        options: EngineOptions,
    ) -> Result<(Engine<D>, Recovery), OpenError> {
        let layout = Layout::new(root);
        create_private_dir(root)?;
        create_private_dir(layout.snapshots())?;
        let store = Store::open(&layout.metadata())?;
        let engine = Engine::assemble(layout, store, driver, options);
        let recovery = engine.recover()?;
        Ok((engine, recovery))
    }

    /// Opens the existing backend rooted at `root` as it is: no start-up recovery, nothing
    /// created but the store's tables. For [`Engine::check`], on a root no daemon serves.
    pub fn open_unrecovered(root: &Path, driver: D) -> Result<Engine<D>, OpenError> {
        let layout = Layout::new(root);
        let store = Store::open(&layout.metadata())?;
        Ok(Engine::assemble(
            layout,
            store,
            driver,
            EngineOptions::default(),
        ))
    }

    fn assemble(layout: Layout, store: Store, driver: D, options: EngineOptions) -> Engine<D> {
        Engine {
            driver: Arc::new(driver),
            layout,
            store,
            options,
            trash: Mutex::default(),
            closed: AtomicBool::new(false),
        }
    }

    fn recover(&self) -> Result<Recovery> {
        let ctx = &Ctx::background();
        let ids = self.store.read(ctx, |tx| tx.ids())?;
        let mut recovery = Recovery {
            snapshots: ids.len() as u64,
            ..Recovery::default()
        };
        let mut present = 0u64;
        let mut max_id = 0u64;
        let mut orphans = Vec::new();
        let entries = self
            .layout
            .entries()
            .map_err(|e| Error::io("readdir", self.layout.snapshots(), e))?;
        for e in entries {
            if let Entry::Snapshot(id) = e.entry {
                max_id = max_id.max(id);
            }
            match e.entry.orphan(|id| ids.contains(&id)) {
                None => present += 1,
                // Nobody can finish it: gone at once. The others wait for Cleanup.
                Some(Orphan::Leftover) => {
                    self.driver
                        .destroy(&e.path)
                        .map_err(|err| Error::io("remove", &e.path, err))?;
                    recovery.temp_dirs_removed += 1;
                }
                Some(Orphan::UnknownId | Orphan::Foreign) => orphans.push(e.path),
            }
        }
        recovery.orphan_dirs = orphans.len() as u64;
        *self.trash.lock().expect("trash") = orphans.into_iter().map(Trash::unmeasured).collect();
        recovery.missing_dirs = recovery.snapshots - present;
        if self.driver.seals() {
            recovery.unsealed = self.unseal_active()?;
        }
        // Only write when needed: a clean start costs no fsync.
        if max_id >= self.store.read(ctx, |tx| tx.next_id())? {
            self.store
                .write(ctx, move |tx| tx.reserve_ids_below(max_id + 1))?;
        }
        Ok(recovery)
    }

    /// Makes every active snapshot writable again whose Commit a crash interrupted after
    /// the driver sealed it.
    fn unseal_active(&self) -> Result<u64> {
        let mut active = Vec::new();
        self.store.read(&Ctx::background(), |tx| {
            tx.for_each(&mut |_, record| {
                if record.kind == Kind::Active {
                    active.push(record.id);
                }
                Ok(())
            })
        })?;
        let mut unsealed = 0;
        for id in active {
            match self.driver.seal(&self.layout, id, false) {
                Ok(changed) => unsealed += u64::from(changed),
                // Missing: counted as such above, and `strata fsck` reports it.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(unsealed)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn create(
        &self,
        ctx: &Ctx,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        self.check_open()?;
        validate_key("key", key)?;
        if !parent.is_empty() {
            validate_key("parent", parent)?;
        }
        labels::validate(&labels)?;
        let limit = match self.driver.limits() {
            Some(policy) => crate::limits::size_limit(kind, key, &labels, policy.default)?,
            None => None,
        };
        // Check before building: copying a parent for nothing is expensive, and the
        // common errors (AlreadyExists for a retried unpack) should be cheap.
        let expected = self
            .store
            .read(ctx, |tx| tx.plan_create(kind, key, parent))?
            .parent_ids;

        // Built under its final name: recording it then needs no rename, and until it is
        // recorded nothing refers to the id (a failure discards the directory, a crash
        // leaves an orphan that start-up recovery finds).
        let id = self.store.reserve_id(ctx)?;
        let dir = NewDir::create(self, id)?;
        self.driver
            .populate(&self.layout, dir.path(), kind, &expected)?;
        if limit.is_some() {
            self.driver.set_limit(&dir.path().join("fs"), limit)?;
        }
        crash::pause("create-before-metadata");

        let (key, parent) = (key.to_owned(), parent.to_owned());
        // The store checks `ctx` right before this runs: the last moment to honour a
        // cancelled request, with nothing recorded yet.
        let snapshot = self.store.write(ctx, move |tx| {
            let plan = tx.plan_create_as(id, kind, &key, &parent, expected)?;
            crash::point("create-before-record");
            tx.create(plan, labels)
        })?;
        dir.keep();
        Ok(self.driver.mounts(&self.layout, &snapshot))
    }

    /// Removes a directory the metadata no longer knows, or leaves it to Cleanup if that
    /// fails (a mount still on it, say).
    fn discard(&self, dir: PathBuf) {
        match self.driver.destroy(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove directory yet; Cleanup will retry");
                self.trash
                    .lock()
                    .expect("trash")
                    .push(Trash::unmeasured(dir));
            }
        }
    }

    /// The part of a Commit after sealing: measure, flush if asked, record.
    fn record_commit(
        &self,
        ctx: &Ctx,
        name: &str,
        key: &str,
        labels: Labels,
        parent: Option<&str>,
        id: u64,
    ) -> Result<()> {
        // Measured before the metadata write: a 10,000-file walk must not hold up a batch.
        crash::pause("commit-walk");
        let fs = self.layout.fs(id);
        let snapshot = self.store.read(ctx, |tx| tx.snapshot(key))?;
        let usage = match self.driver.commit_usage(ctx, &self.layout, &snapshot)? {
            Some(usage) => usage,
            None => walk_usage(ctx, &fs, key)?,
        };
        if self.options.sync_commit {
            strata_sys::syncfs(&fs).map_err(|e| Error::io("syncfs", &fs, e))?;
        }
        crash::point("commit-before-metadata");
        let (name, key, parent) = (name.to_owned(), key.to_owned(), parent.map(str::to_owned));
        self.store.write(ctx, move |tx| {
            tx.commit(&key, &name, labels, parent.as_deref(), usage, Some(id))
                .map(|_| ())
        })
    }

    fn decorate(&self, info: &mut Info, id: u64) {
        if self.options.upperdir_label {
            info.labels.insert(
                UPPERDIR_LABEL.to_owned(),
                self.layout.fs(id).display().to_string(),
            );
        }
    }
}

impl<D: Driver> Snapshotter for Engine<D> {
    fn name(&self) -> &str {
        self.driver.name()
    }

    fn stat(&self, ctx: &Ctx, key: &str) -> Result<Info> {
        self.check_open()?;
        validate_key("key", key)?;
        let record = self.store.read(ctx, |tx| tx.get(key))?;
        let mut info = record.info(key);
        self.decorate(&mut info, record.id);
        Ok(info)
    }

    fn update(&self, ctx: &Ctx, key: &str, labels: &Labels, fieldpaths: &[String]) -> Result<Info> {
        self.check_open()?;
        validate_key("key", key)?;
        let mut requested = labels.clone();
        requested.remove(UPPERDIR_LABEL);
        let (key, paths) = (key.to_owned(), fieldpaths.to_vec());
        // A limit changed inside the transaction, to restore if the transaction fails.
        let changed_limit = Arc::new(Mutex::new(None::<(PathBuf, Option<u64>)>));
        let changed = Arc::clone(&changed_limit);
        let (driver, layout) = (Arc::clone(&self.driver), self.layout.clone());
        let result = self.store.write(ctx, move |tx| {
            let record = tx.get(&key)?;
            // Applied before the store is written: a write transaction's operations fail
            // before their first write or not at all.
            if let Some(policy) = driver.limits()
                && record.kind == Kind::Active
            {
                let labels = labels::apply_update(&key, &record.labels, &requested, &paths)?;
                let limit =
                    |labels| crate::limits::size_limit(Kind::Active, &key, labels, policy.default);
                let new = limit(&labels)?;
                let old = limit(&record.labels).unwrap_or(None);
                if new != old {
                    let fs = layout.fs(record.id);
                    driver.set_limit(&fs, new)?;
                    *changed.lock().expect("limit slot") = Some((fs, old));
                }
            }
            Ok((tx.update(&key, &requested, &paths)?, record.id))
        });
        match result {
            Ok((mut info, id)) => {
                self.decorate(&mut info, id);
                Ok(info)
            }
            Err(e) => {
                if let Some((fs, old)) = changed_limit.lock().expect("limit slot").take()
                    && let Err(undo) = self.driver.set_limit(&fs, old)
                {
                    tracing::warn!(path = %fs.display(), error = %undo, "cannot restore the size limit of a failed Update");
                }
                Err(e)
            }
        }
    }

    fn recorded_usage(&self, ctx: &Ctx, key: &str) -> Result<Option<Usage>> {
        self.check_open()?;
        validate_key("key", key)?;
        let record = self.store.read(ctx, |tx| tx.get(key))?;
        Ok((record.kind != Kind::Active).then(|| record.usage.unwrap_or_default()))
    }

    fn usage(&self, ctx: &Ctx, key: &str) -> Result<Usage> {
        self.check_open()?;
        validate_key("key", key)?;
        let record = self.store.read(ctx, |tx| tx.get(key))?;
        if record.kind != Kind::Active {
            return Ok(record.usage.unwrap_or_default());
        }
        let snapshot = strata_meta::Snapshot {
            id: record.id,
            kind: record.kind,
            parent_ids: self.store.read(ctx, |tx| tx.snapshot(key))?.parent_ids,
        };
        if let Some(usage) = self.driver.usage(ctx, &self.layout, &snapshot)? {
            return Ok(usage);
        }
        crash::pause("usage-walk");
        walk_usage(ctx, &self.layout.fs(record.id), key)
    }

    fn mounts(&self, ctx: &Ctx, key: &str) -> Result<Vec<Mount>> {
        self.check_open()?;
        validate_key("key", key)?;
        let snapshot = self.store.read(ctx, |tx| tx.snapshot(key))?;
        if snapshot.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is committed: it has no mounts of its own, make a view of it"
            )));
        }
        Ok(self.driver.mounts(&self.layout, &snapshot))
    }

    fn prepare(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(ctx, Kind::Active, key, parent, labels)
    }

    fn view(&self, ctx: &Ctx, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(ctx, Kind::View, key, parent, labels)
    }

    fn commit(
        &self,
        ctx: &Ctx,
        name: &str,
        key: &str,
        labels: Labels,
        parent: Option<&str>,
    ) -> Result<()> {
        self.check_open()?;
        validate_key("name", name)?;
        validate_key("key", key)?;
        if let Some(p) = parent.filter(|p| !p.is_empty()) {
            validate_key("parent", p)?;
        }
        labels::validate(&labels)?;
        let (record, new_parent) = self
            .store
            .read(ctx, |tx| tx.check_commit(key, name, parent))?;
        if new_parent != record.parent && !self.driver.can_rebase() {
            return Err(strata_core::invalid!(
                "the {} backend cannot commit {key:?} onto parent {new_parent:?}: it stores full \
                 copies, so a snapshot must be prepared on its parent",
                self.driver.name()
            ));
        }
        // Sealed first (btrfs: read-only), so the usage measured is the content committed.
        let sealed = self.driver.seal(&self.layout, record.id, true)?;
        let result = self.record_commit(ctx, name, key, labels, parent, record.id);
        if result.is_err()
            && sealed
            && let Err(e) = self.driver.seal(&self.layout, record.id, false)
        {
            tracing::warn!(key, error = %e, "cannot make a snapshot writable again after its Commit failed; the next start does");
        }
        result
    }

    fn remove(&self, ctx: &Ctx, key: &str) -> Result<()> {
        self.check_open()?;
        validate_key("key", key)?;
        let owned = key.to_owned();
        let record = self.store.write(ctx, move |tx| tx.remove(&owned))?;
        crash::point("remove-after-metadata");
        let dir = self.layout.dir(record.id);
        if self.options.sync_remove {
            self.discard(dir);
        } else {
            // A committed snapshot's size is known; Cleanup need not walk it again to report
            // what it reclaims.
            let bytes = record.usage.map(|u| u.size.max(0) as u64);
            self.trash.lock().expect("trash").push(Trash { dir, bytes });
        }
        Ok(())
    }

    fn walk_refs(
        &self,
        ctx: &Ctx,
        filter: &Filter,
        f: &mut dyn FnMut(&InfoRef<'_>) -> Result<()>,
    ) -> Result<()> {
        // Only the full listing reads records in place: a filter needs an `Info` to match
        // against, and the upperdir label is not stored.
        if !filter.alternatives.is_empty() || self.options.upperdir_label {
            return self.walk(ctx, filter, &mut |info| info.with_ref(|r| f(r)));
        }
        self.check_open()?;
        self.store.read(ctx, |tx| {
            tx.walk_refs(&mut |info| {
                // A long listing stops as soon as its caller has gone.
                ctx.check()?;
                f(info)
            })
        })
    }

    fn walk(
        &self,
        ctx: &Ctx,
        filter: &Filter,
        f: &mut dyn FnMut(Info) -> Result<()>,
    ) -> Result<()> {
        self.check_open()?;
        self.store.read(ctx, |tx| {
            tx.walk(filter, &mut |mut info| {
                // A long listing stops as soon as its caller has gone.
                ctx.check()?;
                if !self.options.upperdir_label {
                    return f(info);
                }
                let id = tx.get(&info.name)?.id;
                self.decorate(&mut info, id);
                f(info)
            })
        })
    }

    fn census(&self, ctx: &Ctx) -> Result<Census> {
        self.check_open()?;
        self.store.read(ctx, |tx| {
            let mut census = Census::default();
            tx.for_each(&mut |key, record| {
                match record.kind {
                    Kind::Active => census.active.push(key.to_owned()),
                    Kind::View => census.views += 1,
                    Kind::Committed => {
                        census.committed += 1;
                        census.committed_usage.add(record.usage.unwrap_or_default());
                    }
                }
                Ok(())
            })?;
            Ok(census)
        })
    }

    fn cleanup(&self, ctx: &Ctx) -> Result<CleanupReport> {
        self.check_open()?;
        ctx.check()?;
        let orphans = std::mem::take(&mut *self.trash.lock().expect("trash"));
        crash::pause("cleanup-remove");
        let mut report = CleanupReport::default();
        for (n, Trash { dir, bytes }) in orphans.iter().enumerate() {
            crash::point(if n == 0 {
                "cleanup-first-removal"
            } else {
                "cleanup-next-removal"
            });
            let removed = ctx.check().and_then(|()| {
                let bytes = bytes.unwrap_or_else(|| disk_usage(dir).map(|u| u.bytes).unwrap_or(0));
                match crash::fault("remove").and_then(|()| self.driver.destroy(dir)) {
                    Ok(()) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("remove", dir, e)),
                }
            });
            match removed {
                Ok(Some(bytes)) => {
                    report.directories += 1;
                    report.bytes += bytes;
                }
                Ok(None) => {}
                Err(e) => {
                    // Keep what is left for the next Cleanup, and say what stopped this one.
                    self.trash
                        .lock()
                        .expect("trash")
                        .extend(orphans[n..].iter().cloned());
                    return Err(e);
                }
            }
        }
        if report.directories > 0 {
            tracing::info!(
                backend = self.driver.name(),
                directories = report.directories,
                bytes = report.bytes,
                "cleanup reclaimed space"
            );
        }
        Ok(report)
    }

    fn owner(&self, ctx: &Ctx, dir: &Path) -> Result<Option<(String, Kind)>> {
        self.check_open()?;
        let Some(id) = self.layout.id_of_fs(dir) else {
            return Ok(None);
        };
        self.store.read(ctx, |tx| {
            let Some(key) = tx.key_of(id)? else {
                return Ok(None);
            };
            let kind = tx.get(&key)?.kind;
            Ok(Some((key, kind)))
        })
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.store.close();
        Ok(())
    }
}

/// Measures a snapshot directory, giving up once the request is cancelled or its deadline
/// passes. A directory that vanished under the walk belongs to a snapshot removed meanwhile:
/// `NotFound`.
fn walk_usage(ctx: &Ctx, fs: &Path, key: &str) -> Result<Usage> {
    let stop = || ctx.is_done();
    match disk_usage_until(fs, &stop) {
        Ok(du) => Ok(Usage {
            size: du.bytes as i64,
            inodes: du.inodes as i64,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(key)),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            Err(ctx.check().err().unwrap_or(Error::Cancelled))
        }
        Err(e) => Err(Error::io("usage walk", fs, e)),
    }
}

/// A directory waiting for Cleanup, with its size when the metadata knew it.
#[derive(Debug, Clone)]
struct Trash {
    dir: PathBuf,
    bytes: Option<u64>,
}

impl Trash {
    fn unmeasured(dir: PathBuf) -> Trash {
        Trash { dir, bytes: None }
    }
}

/// Refuses keys containerd could never have produced: empty, over [`MAX_KEY_BYTES`], or
/// holding a NUL byte.
fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(strata_core::invalid!("{what} must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(strata_core::invalid!(
            "{what} is {} bytes long; at most {MAX_KEY_BYTES} are accepted",
            key.len()
        ));
    }
    if key.contains('\0') {
        return Err(strata_core::invalid!("{what} {key:?} contains a NUL byte"));
    }
    Ok(())
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => {}
        Err(e) => return Err(Error::io("mkdir", path, e)),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod", path, e))
}
