//! Opening the database and running transactions: consistent reads, and group-committed
//! durable writes.
//!
//! A batch becomes durable as one entry of the intent log (one `pwrite` of a few KiB and one
//! `fdatasync` of a preallocated file: see [`crate::log`]); the database then commits it
//! without a flush of its own. When the log is half full a background thread checkpoints
//! the database (one durable commit, see [`crate::checkpoint`]) and the log starts over; so
//! does a batch the log has no room for, which commits durably itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableTable};
use strata_core::{Ctx, Error, Result, StoreError, crash};

use crate::checkpoint::{new_store_id, number_batch, without_flush};
use crate::errors::{StoreContext, from_redb, into_store_error};
use crate::handle::{Db, Handle, Source, needs_reopen};
use crate::log::{AppendError, IntentLog};
use crate::tables::{
    CHILDREN, IDS, LABELS, LAST_BATCH_KEY, META, SCHEMA_VERSION_KEY, SNAPSHOTS, STORE_ID_KEY,
};
use crate::tx::{Ids, ReadTx, WriteTx};

/// Version of the table layout this build writes. Bumped on any incompatible change; a
/// store written by a newer version is refused rather than misread.
pub const SCHEMA_VERSION: u64 = 1;

/// Most operations applied in one group commit; bounds the latency a batch adds.
const MAX_BATCH: usize = 256;

/// Called after the batch's commit with `None` on success or why it did not commit.
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One queued write: given the batch's transaction (or the reason there is none), runs the
/// operation and returns how to answer its caller once the batch is durable, and the I/O
/// error the operation met, if any (which then answers the whole batch).
type Job = Box<
    dyn FnOnce(
            std::result::Result<&mut WriteTx<'_>, &StoreError>,
        ) -> (Completion, Option<StoreError>)
        + Send,
>;

/// The metadata store of one backend.
pub struct Store {
    db: Arc<Handle>,
    checkpointer: Checkpointer,
    path: PathBuf,
    writes: Mutex<Writes>,
    /// The snapshot ids handed out (by [`Store::reserve_id`] and in batches).
    ids: Ids,
    /// Signalled when a batch is durable and when leadership is free.
    batch_done: Condvar,
    closed: AtomicBool,
}

/// Writes waiting for a group commit, and who is committing.
#[derive(Default)]
struct Writes {
    queue: Vec<Job>,
    /// Whether some caller is committing a batch right now.
    leader: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if absent) the store at `path`. A store that cannot be read, or that
    /// a newer Strata wrote, is an error naming the file and what to do; never an empty start.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_from(path, Source::File)
    }

    /// Opens the store at `path` through a backend that fails the metadata file's system
    /// calls `faults` names, for tests of what a failing disk does.
    #[cfg(feature = "testing")]
    pub fn open_with_faults(path: &Path, faults: crate::faults::Faults) -> Result<Store> {
        Store::open_from(path, Source::Faulty(faults))
    }

    fn open_from(path: &Path, source: Source) -> Result<Store> {
        let handle = Handle::open(path, source)?;
        let (_, db) = handle.current()?;
        if !Store::initialised(&db, path)? {
            match &*db {
                Db::Writable(database) => Store::initialise(database, path)?,
                Db::ReadOnly { why, .. } => return Err(Error::Store(why.clone())),
            }
        }

        drop(db);
        let db = Arc::new(handle);
        Ok(Store {
            checkpointer: Checkpointer::spawn(Arc::clone(&db)),
            db,
            path: path.to_owned(),
            writes: Mutex::default(),
            ids: Ids::default(),
            batch_done: Condvar::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Whether the store already has its tables and this build's schema version: then
    /// opening it writes nothing (a clean start or an offline `fsck` leave the file as is).
    fn initialised(db: &Db, path: &Path) -> Result<bool> {
        let txn = db.begin_read().store("starting read transaction")?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(Error::Store(from_redb("opening meta table", e))),
        };
        match meta
            .get(SCHEMA_VERSION_KEY)
            .store("reading schema version")?
            .map(|v| v.value())
        {
            Some(SCHEMA_VERSION) => Ok(true),
            Some(v) => Err(newer_schema(path, v)),
            None => Ok(false),
        }
    }

    /// Creates the tables and records the schema version.
    fn initialise(db: &Database, path: &Path) -> Result<()> {
        let txn = db.begin_write().store("starting initial transaction")?;
        {
            txn.open_table(SNAPSHOTS)
                .store("creating snapshots table")?;
            txn.open_table(IDS).store("creating ids table")?;
            txn.open_multimap_table(CHILDREN)
                .store("creating parents index")?;
            txn.open_multimap_table(LABELS)
                .store("creating labels index")?;
            let mut meta = txn.open_table(META).store("creating meta table")?;
            let version = meta
                .get(SCHEMA_VERSION_KEY)
                .store("reading schema version")?
                .map(|v| v.value());
            match version {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .store("writing schema version")?;
                    meta.insert(STORE_ID_KEY, new_store_id())
                        .store("writing store id")?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(v) => return Err(newer_schema(path, v)),
            }
        }
        txn.commit().store("committing initial transaction")?;
        Ok(())
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction: a consistent snapshot of the store that concurrent
    /// writes do not disturb. Fails with `ctx`'s error, reading nothing, once `ctx` has ended.
    pub fn read<T>(&self, ctx: &Ctx, f: impl FnOnce(&ReadTx) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        ctx.check()?;
        let (generation, db) = self.db.current()?;
        let txn = db.begin_read().store("starting read transaction");
        // A reopen waits for every holder of the database; a read transaction needs none.
        drop(db);
        let result = txn.and_then(|txn| f(&ReadTx::new(txn)));
        if let Err(Error::Store(e @ StoreError::Unusable { .. })) = &result {
            tracing::warn!(error = %e, "metadata read failed after an I/O error; reopening the store");
            self.db.reopen(generation);
        }
        result
    }

    /// An id for a snapshot about to be created, reserved now: no other snapshot of this
    /// store has or will get it, so the snapshot's directory can be built under its final
    /// name before the record exists ([`WriteTx::plan_create_as`]). An id reserved but never
    /// recorded is simply skipped; a directory left under it is found at the next start
    /// (whose recovery raises the next id above it).
    pub fn reserve_id(&self, ctx: &Ctx) -> Result<u64> {
        // The stored next id is read once: past the first id, the allocator is above it.
        let stored = if self.ids.seeded() {
            1
        } else {
            self.read(ctx, |tx| tx.next_id())?
        };
        Ok(self.ids.take(stored))
    }

    /// Runs `f` in a write transaction and returns once its effect is durable.
    ///
    /// Group commit, leader/follower style: the caller queues `f`; if nobody is committing,
    /// it becomes the leader and commits everything queued at that moment in one
    /// transaction (one fsync), on its own thread; otherwise it waits, and either finds its
    /// write committed by the current leader or becomes the next one. A lone writer thus
    /// commits with no thread hand-off at all, and concurrent writers share fsyncs.
    ///
    /// `f` may share its transaction with other callers' operations, so it must either fail
    /// before its first write or not fail at all: [`WriteTx`]'s methods check before they
    /// write, and callers do their own fallible work (like renaming a directory into place)
    /// between a method's check and its write. Should an operation fail after writing, the
    /// whole batch is rolled back and every caller in it told so.
    ///
    /// `ctx` is checked right before `f` runs in its batch: an operation whose request was
    /// cancelled, or whose deadline passed, while it waited fails with that error and writes
    /// nothing. No caller has to remember to check.
    pub fn write<T: Send + 'static>(
        &self,
        ctx: &Ctx,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply_tx, reply_rx) = mpsc::sync_channel::<Result<T>>(1);
        let ctx = ctx.clone();
        let job: Job = Box::new(move |tx| {
            let result: Result<T> = match tx {
                Ok(tx) => ctx.check().and_then(|()| {
                    tx.begin_operation();
                    let result = f(tx);
                    if let Err(e) = &result
                        && tx.wrote()
                    {
                        tracing::error!(error = %e, "metadata operation failed after writing; aborting its batch");
                        tx.poison();
                    }
                    result
                }),
                Err(reason) => Err(Error::Store(reason.clone())),
            };
            let io_error = match &result {
                Err(Error::Store(e)) if needs_reopen(e) => Some(e.clone()),
                _ => None,
            };
            let complete: Completion = Box::new(move |commit_error: Option<&StoreError>| {
                let result = match (result, commit_error) {
                    (Ok(_), Some(e)) => Err(Error::Store(e.clone())),
                    // The batch's I/O error, named with the store's file, answers for all.
                    (Err(Error::Store(own)), Some(e)) if needs_reopen(&own) => {
                        Err(Error::Store(e.clone()))
                    }
                    (r, _) => r,
                };
                let _ = reply_tx.send(result);
            });
            (complete, io_error)
        });
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut writes = self.writes.lock().expect("writes lock poisoned");
        writes.queue.push(job);
        loop {
            match reply_rx.try_recv() {
                Ok(result) => return result,
                // The batch that carried this write panicked before answering it.
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(Error::Store(StoreError::BatchFailed));
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if writes.leader {
                writes = self.batch_done.wait(writes).expect("writes lock poisoned");
                continue;
            }
            writes.leader = true;
            let take = writes.queue.len().min(MAX_BATCH);
            let batch: Vec<Job> = writes.queue.drain(..take).collect();
            drop(writes);
            let leadership = Leadership(self);
            self.commit_batch(batch);
            std::mem::forget(leadership);
            writes = self.writes.lock().expect("writes lock poisoned");
            writes.leader = false;
            self.batch_done.notify_all();
        }
    }

    /// Commits `batch` and answers its callers; reopens the database when an I/O error left
    /// it unusable, so that the next batch can commit once the disk has room again. Runs
    /// while this caller leads, so no other batch uses the database meanwhile.
    fn commit_batch(&self, mut batch: Vec<Job>) {
        let mut retried = false;
        loop {
            let (generation, db) = match self.writable() {
                Ok(writable) => writable,
                Err(reason) => {
                    for job in batch {
                        job(Err(&reason)).0(None);
                    }
                    return;
                }
            };
            let Db::Writable(database) = &*db else {
                unreachable!("writable() returns a writable database");
            };
            let mut outcome = match run_batch(database, &self.path, self.db.log(), batch, &self.ids)
            {
                Ok(outcome) => outcome,
                Err((untouched, reason)) => {
                    drop(db);
                    // The database latched an I/O error outside any batch (a failed
                    // checkpoint): reopen it and try once more.
                    if needs_reopen(&reason) && !retried {
                        self.db.reopen(generation);
                        retried = true;
                        batch = untouched;
                        continue;
                    }
                    for job in untouched {
                        job(Err(&reason)).0(None);
                    }
                    return;
                }
            };
            drop(db);
            if outcome.reopen || outcome.error.as_ref().is_some_and(needs_reopen) {
                self.db.reopen(generation);
                if let Some(stamp) = outcome.stamp
                    && self.landed(stamp)
                {
                    outcome.error = None;
                }
            }
            for complete in outcome.completions {
                complete(outcome.error.as_ref());
            }
            if outcome.checkpoint_due {
                self.checkpointer.request();
            }
            return;
        }
    }

    /// The database, open for writing: one open read-only (on a full disk) is reopened
    /// first, since space may be back; if it still cannot be, why.
    fn writable(&self) -> std::result::Result<(u64, Arc<Db>), StoreError> {
        let current = self.db.current().and_then(|(generation, db)| match &*db {
            Db::Writable(_) => Ok((generation, db)),
            Db::ReadOnly { .. } => {
                drop(db);
                self.db.reopen(generation);
                self.db.current()
            }
        });
        match current {
            Ok((generation, db)) => match &*db {
                Db::Writable(_) => Ok((generation, db)),
                Db::ReadOnly { why, .. } => Err(why.clone()),
            },
            Err(e) => Err(into_store_error(e, "opening the metadata store")),
        }
    }

    /// After a commit that failed with an I/O error (the database since reopened): whether
    /// the batch numbered `stamp` reached the file anyway. A failed `fdatasync` comes after
    /// the header was written, so the reopened file may hold the batch; answering its callers
    /// with an error would then be a lie (the engine would discard a directory the record
    /// names). If it is there, one more commit (its own fdatasync) makes it durable, and the
    /// batch counts as committed; if that fails too, it does not.
    fn landed(&self, stamp: u64) -> bool {
        let Ok((generation, db)) = self.db.current() else {
            return false;
        };
        let Db::Writable(database) = &*db else {
            return false;
        };
        let confirm = || -> std::result::Result<bool, StoreError> {
            let txn = database
                .begin_write()
                .map_err(|e| from_redb("starting write transaction", e))?;
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| from_redb("opening meta table", e))?;
                let found = meta
                    .get(LAST_BATCH_KEY)
                    .map_err(|e| from_redb("reading the last batch", e))?
                    .map(|v| v.value());
                if found != Some(stamp) {
                    return Ok(false);
                }
                meta.insert(LAST_BATCH_KEY, stamp)
                    .map_err(|e| from_redb("recording the last batch", e))?;
            }
            // Durable: so is everything the reopened database replayed from the log.
            let mut log = self.db.log().lock().expect("intent log lock poisoned");
            txn.commit()
                .map_err(|e| from_redb("committing metadata", e))?;
            log.rewind();
            Ok(true)
        };
        match confirm() {
            Ok(landed) => {
                if landed {
                    tracing::warn!(path = %self.path.display(), "a commit whose fsync failed had reached the file; now durable, its operations succeed");
                }
                landed
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot tell whether a failed commit reached the file");
                drop(db);
                if needs_reopen(&e) {
                    self.db.reopen(generation);
                }
                false
            }
        }
    }

    /// Refuses further operations (writes already queued still complete). Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Gives up leadership if a batch panics, so the other writers are not left waiting forever
/// (their own writes then fail, as the panicking batch did).
struct Leadership<'a>(&'a Store);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if let Ok(mut writes) = self.0.writes.lock() {
            writes.leader = false;
        }
        self.0.batch_done.notify_all();
    }
}

fn newer_schema(path: &Path, version: u64) -> Error {
    Error::Store(StoreError::NewerSchema {
        path: path.to_owned(),
        found: version,
        supported: SCHEMA_VERSION,
    })
}

/// A committed (or failed) batch, its callers not yet answered.
struct Outcome {
    completions: Vec<Completion>,
    /// Why the batch did not commit.
    error: Option<StoreError>,
    /// The batch's number in the `meta` table, if it was committed durably (not through the
    /// log), for [`Store::landed`].
    stamp: Option<u64>,
    /// The batch is durable in the log, but the database failed to commit it: reopened, it
    /// replays the log and so holds the batch.
    reopen: bool,
    /// The log is more than half full: the checkpointer is to be asked for a checkpoint.
    checkpoint_due: bool,
}

impl Outcome {
    /// A batch whose callers are told `error` (`None`: committed), with nothing more to do.
    fn answered(completions: Vec<Completion>, error: Option<StoreError>) -> Outcome {
        Outcome {
            completions,
            error,
            stamp: None,
            reopen: false,
            checkpoint_due: false,
        }
    }
}

/// Runs `batch` in one transaction and commits it: through the log (one entry, one flush,
/// then a commit without a flush) or, when the log has no room or cannot be written, with a
/// durable commit of its own (which is a checkpoint). The callers are answered by the caller
/// (after a reopen, if an I/O error left the database unusable). A batch that cannot even
/// begin its transaction is handed back untouched, with why.
fn run_batch(
    db: &Database,
    path: &Path,
    log: &Mutex<IntentLog>,
    batch: Vec<Job>,
    ids: &Ids,
) -> std::result::Result<Outcome, (Vec<Job>, StoreError)> {
    // What the callers are told when the file failed: what ran out (or broke), and where.
    let at_file = |e: StoreError| match e {
        StoreError::Io { context, source } => StoreError::Io {
            context: format!("{context} in {}", path.display()),
            source,
        },
        other => other,
    };
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return Err((batch, at_file(from_redb("starting write transaction", e)))),
    };
    let mut completions = Vec::with_capacity(batch.len());
    let mut io_error = None;
    let mut changes = Vec::new();
    let poisoned = match WriteTx::open(&txn, ids) {
        Ok(mut tx) => {
            for job in batch {
                let (complete, error) = job(Ok(&mut tx));
                completions.push(complete);
                io_error = io_error.or(error);
            }
            changes = tx.take_changes();
            tx.poisoned()
        }
        Err(e) => {
            let reason = into_store_error(e, "opening the tables");
            for job in batch {
                let (complete, error) = job(Err(&reason));
                completions.push(complete);
                io_error = io_error.or(error);
            }
            false
        }
    };
    if poisoned || changes.is_empty() {
        // Nothing to commit: every operation failed its checks (or one failed after writing,
        // and the batch is rolled back). An operation's I/O error answers for all, as the
        // commit it would have refused.
        let aborted = txn
            .abort()
            .map_err(|e| from_redb("rolling back metadata", e));
        let error = match (poisoned, io_error, aborted) {
            (_, Some(io), _) => Some(at_file(io)),
            (_, None, Err(e)) => Some(at_file(e)),
            (true, None, Ok(())) => Some(StoreError::RolledBack),
            (false, None, Ok(())) => None,
        };
        return Ok(Outcome::answered(completions, error));
    }
    let (seq, store_id) = match number_batch(&txn, 1) {
        Ok(numbered) => numbered,
        Err(e) => {
            let _ = txn.abort();
            let error = at_file(io_error.unwrap_or(e));
            return Ok(Outcome::answered(completions, Some(error)));
        }
    };
    crash::point("meta-before-commit");
    let mut log = log.lock().expect("intent log lock poisoned");
    let appended = match store_id {
        Some(store_id) => log.append(store_id, seq, &changes),
        None => Err(AppendError::Full),
    };
    if appended.is_ok() {
        crash::point("log-after-flush");
        let committed = without_flush(&mut txn).and_then(|()| {
            txn.commit()
                .map_err(|e| from_redb("committing metadata", e))
        });
        crash::point("meta-after-commit");
        if let Err(e) = &committed {
            tracing::warn!(path = %path.display(), error = %e, "a batch durable in the intent log did not commit in the database; reopening it to replay the log");
        }
        return Ok(Outcome {
            reopen: committed.is_err(),
            checkpoint_due: log.half_full(),
            ..Outcome::answered(completions, None)
        });
    }
    // The durable path: this commit makes every batch before it durable too, so the log
    // starts over once it succeeds.
    let log_failed = match appended {
        Err(AppendError::Io(e)) => {
            tracing::warn!(error = %e, "intent log not written; committing the batch durably instead");
            true
        }
        _ => false,
    };
    let committed = (|| {
        if store_id.is_none() {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| from_redb("opening meta table", e))?;
            meta.insert(STORE_ID_KEY, new_store_id())
                .map_err(|e| from_redb("writing store id", e))?;
        }
        txn.commit()
            .map_err(|e| from_redb("committing metadata", e))
    })();
    crash::point("meta-after-commit");
    let error = match committed {
        Ok(()) => {
            log.rewind();
            None
        }
        Err(e) => {
            if log_failed {
                log.erase_failed();
            }
            // An operation's I/O error (a full disk met while a table grew) explains the
            // refused commit that follows it, for every caller in the batch.
            Some(at_file(match io_error {
                Some(io) if !matches!(e, StoreError::Io { .. }) => io,
                _ => e,
            }))
        }
    };
    Ok(Outcome {
        stamp: Some(seq),
        checkpoint_due: log.half_full(),
        ..Outcome::answered(completions, error)
    })
}

/// The thread that checkpoints the database when the log is half full, off the writers'
/// path (it waits for the batch committing at that moment, and the next batch waits for
/// it).
struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What the checkpointer is asked to do.
#[derive(Default)]
struct Signal {
    requested: bool,
    stop: bool,
}

/// How long the checkpointer waits after a failed checkpoint (a full disk) before it tries
/// again, however often it is asked.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(5);

impl Checkpointer {
    fn spawn(db: Arc<Handle>) -> Checkpointer {
        let signal = Arc::new((Mutex::new(Signal::default()), Condvar::new()));
        let shared = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("strata-checkpoint".to_owned())
            .spawn(move || {
                let (lock, wake) = &*shared;
                let mut signal = lock.lock().expect("checkpoint signal poisoned");
                loop {
                    while !signal.requested && !signal.stop {
                        signal = wake.wait(signal).expect("checkpoint signal poisoned");
                    }
                    if signal.stop {
                        return;
                    }
                    signal.requested = false;
                    drop(signal);
                    let failed = match db.checkpoint() {
                        Ok(_) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "metadata checkpoint failed; the intent log keeps the writes");
                            true
                        }
                    };
                    signal = lock.lock().expect("checkpoint signal poisoned");
                    if failed && !signal.stop {
                        signal = wake
                            .wait_timeout(signal, CHECKPOINT_RETRY)
                            .expect("checkpoint signal poisoned")
                            .0;
                    }
                }
            })
            .expect("spawning the checkpoint thread");
        Checkpointer {
            signal,
            thread: Some(thread),
        }
    }

    /// Asks for a checkpoint (one, however many ask before it starts).
    fn request(&self) {
        let (lock, wake) = &*self.signal;
        lock.lock().expect("checkpoint signal poisoned").requested = true;
        wake.notify_one();
    }

    /// Stops the thread, after the checkpoint it is running, if any. Idempotent.
    fn stop(&mut self) {
        let (lock, wake) = &*self.signal;
        if let Ok(mut signal) = lock.lock() {
            signal.stop = true;
        }
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    /// Stops the checkpointer and checkpoints once more, so that the next open has no log
    /// to replay. (Skipping this, as a crash does, loses nothing.)
    fn drop(&mut self) {
        self.checkpointer.stop();
        if let Err(e) = self.db.checkpoint() {
            tracing::warn!(path = %self.path.display(), error = %e, "final metadata checkpoint failed; the intent log keeps the writes");
        }
    }
}
