//! The store's redb handle, and reopening it after an I/O error.
//!
//! redb latches the first failed write, `set_len` or fsync of its file: from then on every
//! operation of that `Database` fails ("Previous I/O error occurred. Please close and re-open
//! the database"), reads of pages not in its cache included, because after a failed fsync the
//! file's state in memory can no longer be trusted (redb#299). A full disk must not need a
//! daemon restart, so the store closes the failed handle and opens the file again: redb then
//! recovers it from its last durable commit, as after a crash, and writes work again as soon
//! as the disk has room.
//!
//! Opening for writing writes the file's header, which a full copy-on-write filesystem
//! (btrfs) refuses: the store then opens the file for reading only (over a
//! [`MemoryOverlay`], since the file may need a recovery that redb's own read-only open
//! refuses), so that reads keep answering, and refuses writes with that error until an open
//! for writing succeeds (each write tries).
//!
//! Every open replays the intent log into the database before anyone uses it (see
//! [`crate::checkpoint`]), so a reopened database holds every batch acknowledged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{Database, DatabaseError, ReadTransaction, ReadableDatabase};
use strata_core::{Error, Result, StoreError};

use crate::checkpoint::{checkpoint, replay};
use crate::errors::{from_redb, into_store_error};
use crate::log::IntentLog;
use crate::overlay::MemoryOverlay;

/// redb's page cache. 100,000 snapshots take about 40 MiB of store; the hot part (the
/// records of live snapshots and the indexes' upper levels) fits well within this, and the
/// bound keeps the daemon's memory flat as the store grows.
const CACHE_BYTES: usize = 32 << 20;

/// How long a reopen waits for the threads that hold the failed handle (each only while it
/// begins a read transaction, or the leader while it commits a batch) to let go of it.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// The open database of one store, replaced by a fresh one after an I/O error.
pub(crate) struct Handle {
    path: PathBuf,
    source: Source,
    slot: Mutex<Slot>,
    /// The store's intent log. Locked while an entry is appended and its batch committed,
    /// while the database is checkpointed, and while it is replayed; always after the
    /// database's write transaction (or the slot) is held, never before.
    log: Mutex<IntentLog>,
}

/// The current database and how many times it was reopened. `db` is `None` only after a
/// reopen failed (the disk may still be full or failing): the next caller tries again.
struct Slot {
    generation: u64,
    db: Option<Arc<Db>>,
}

/// An open database.
pub(crate) enum Db {
    /// Open for reading and writing.
    Writable(Database),
    /// Open for reading only, because opening it for writing failed for want of space:
    /// writes are answered with `why` until a reopen for writing succeeds. Opened over a
    /// [`MemoryOverlay`], so that nothing it does reaches the file.
    ReadOnly {
        /// The database.
        db: Database,
        /// Why it could not be opened for writing.
        why: StoreError,
    },
}

impl Db {
    /// Begins a read transaction.
    pub(crate) fn begin_read(
        &self,
    ) -> std::result::Result<ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly { db, .. } => db.begin_read(),
        }
    }
}

/// What the database's file is read and written through.
#[derive(Clone)]
pub(crate) enum Source {
    /// The file itself.
    File,
    /// The file, through a backend that fails the calls a test asks it to.
    #[cfg(feature = "testing")]
    Faulty(crate::faults::Faults),
}

impl Handle {
    /// Opens the database at `path`: an error naming the file and what to do if it cannot be.
    pub(crate) fn open(path: &Path, source: Source) -> Result<Handle> {
        let log = Mutex::new(IntentLog::new(path, source.clone()));
        let db = open_database(path, &source, &log)?;
        Ok(Handle {
            path: path.to_owned(),
            source,
            slot: Mutex::new(Slot {
                generation: 0,
                db: Some(Arc::new(db)),
            }),
            log,
        })
    }

    /// The store's intent log.
    pub(crate) fn log(&self) -> &Mutex<IntentLog> {
        &self.log
    }

    /// Checkpoints the database (see [`checkpoint`]); reopens it if that failed with an
    /// I/O error. Returns whether there was anything to checkpoint.
    pub(crate) fn checkpoint(&self) -> std::result::Result<bool, StoreError> {
        let (generation, db) = self
            .current()
            .map_err(|e| into_store_error(e, "checkpointing the metadata store"))?;
        let Db::Writable(database) = &*db else {
            return Ok(false);
        };
        let result = checkpoint(database, &self.log);
        drop(db);
        if let Err(e) = &result
            && needs_reopen(e)
        {
            self.reopen(generation);
        }
        result
    }

    /// The current database and its generation (to name it in [`Handle::reopen`]). Opens
    /// it first if the last reopen failed. Hold the database only briefly — to begin a
    /// transaction, or for one batch — since a reopen waits for every holder to let go.
    pub(crate) fn current(&self) -> Result<(u64, Arc<Db>)> {
        let mut slot = self.slot.lock().expect("database slot poisoned");
        if slot.db.is_none() {
            let db = open_database(&self.path, &self.source, &self.log)?;
            tracing::info!(path = %self.path.display(), "metadata store reopened");
            slot.db = Some(Arc::new(db));
        }
        let db = Arc::clone(slot.db.as_ref().expect("just opened"));
        Ok((slot.generation, db))
    }

    /// Closes the database of `generation`, which an I/O error left unusable (or which is
    /// open read-only), and opens the file again. Does nothing if that database was already
    /// replaced. Read transactions
    /// still open on the old database fail from then on (they were failing already for any
    /// page not in its cache). The caller must not hold the old database.
    pub(crate) fn reopen(&self, generation: u64) {
        let mut slot = self.slot.lock().expect("database slot poisoned");
        if slot.generation != generation {
            return;
        }
        let Some(mut failed) = slot.db.take() else {
            return;
        };
        // The file is locked while the old handle lives: wait for the threads that hold it to
        // let go (they hold it for microseconds, or for the one batch they commit).
        let start = Instant::now();
        let failed = loop {
            match Arc::try_unwrap(failed) {
                Ok(db) => break db,
                Err(shared) if start.elapsed() < DRAIN_WAIT => {
                    failed = shared;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(shared) => {
                    tracing::error!(path = %self.path.display(), "metadata store still in use; not reopened");
                    slot.db = Some(shared);
                    return;
                }
            }
        };
        // redb writes nothing when it closes a handle with a latched error: the file stays
        // as its last durable commit left it.
        drop(failed);
        slot.generation += 1;
        match open_database(&self.path, &self.source, &self.log) {
            Ok(db) => {
                tracing::warn!(path = %self.path.display(), "metadata store reopened");
                slot.db = Some(Arc::new(db));
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "metadata store cannot be reopened yet; retrying at the next operation");
            }
        }
    }
}

/// Opens (creating if absent) the database at `path` through `source`, and replays `log`
/// into it; for reading only if the disk is too full to open it for writing (or to make the
/// replay durable).
fn open_database(path: &Path, source: &Source, log: &Mutex<IntentLog>) -> Result<Db> {
    let mut log = log.lock().expect("intent log lock poisoned");
    let opened = open_writable(path, source).and_then(|db| {
        replay(&db, &mut log, true)
            .map(|_| db)
            .map_err(Error::Store)
    });
    match opened {
        Ok(db) => Ok(Db::Writable(db)),
        Err(Error::Store(why)) if is_out_of_space(&why) => match open_in_memory(path, source)
            .map_err(|e| Error::Store(from_redb("opening for reading", e)))
            .and_then(|db| {
                replay(&db, &mut log, false)
                    .map(|_| db)
                    .map_err(Error::Store)
            }) {
            Ok(db) => {
                tracing::warn!(path = %path.display(), error = %why, "metadata store open for reading only: the disk is full");
                let why = match why {
                    StoreError::Io { source, .. } => StoreError::Io {
                        context: format!(
                            "opening {} for writing (open for reading only meanwhile)",
                            path.display()
                        ),
                        source,
                    },
                    other => other,
                };
                Ok(Db::ReadOnly { db, why })
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "metadata store cannot be opened even for reading");
                Err(Error::Store(why))
            }
        },
        Err(e) => Err(e),
    }
}

/// Opens the database at `path` with every write kept in memory (see [`MemoryOverlay`]):
/// redb recovers a file that needs it without writing to the disk.
fn open_in_memory(path: &Path, source: &Source) -> std::result::Result<Database, DatabaseError> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let file = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    };
    match source {
        Source::File => {
            let backend = FileBackend::new(file()?)?;
            builder.create_with_backend(MemoryOverlay::new(backend)?)
        }
        #[cfg(feature = "testing")]
        Source::Faulty(faults) => {
            builder.create_with_backend(MemoryOverlay::new(faults.backend(path)?)?)
        }
    }
}

fn is_out_of_space(e: &StoreError) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    matches!(e.io_kind(), Some(StorageFull | QuotaExceeded))
}

/// Opens (creating if absent) the database at `path` through `source`, for writing.
fn open_writable(path: &Path, source: &Source) -> Result<Database> {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    let opened = match source {
        Source::File => builder.create(path),
        #[cfg(feature = "testing")]
        Source::Faulty(faults) => faults
            .backend(path)
            .map_err(DatabaseError::from)
            .and_then(|backend| builder.create_with_backend(backend)),
    };
    opened.map_err(|e| {
        Error::Store(match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                path: path.to_owned(),
            },
            other => match from_redb(
                &format!("metadata store {} cannot be opened", path.display()),
                other,
            ) {
                StoreError::Corrupted { context, detail } => StoreError::Corrupted {
                    context,
                    detail: format!(
                        "{detail}. If the file is damaged, stop Strata, move it aside and \
                         restore it from a backup; `strata fsck` reports what the snapshot \
                         directories then hold"
                    ),
                },
                e => e,
            },
        })
    })
}

/// Whether `error` means the database latched an I/O error and must be reopened.
pub(crate) fn needs_reopen(error: &StoreError) -> bool {
    matches!(error, StoreError::Io { .. } | StoreError::Unusable { .. })
}
