//! The database side of the intent log: replaying it when the database is opened, and
//! checkpointing — one durable commit that makes everything the log holds durable in the
//! database, after which the log starts over.
//!
//! The database's durable state always holds exactly the batches up to the number its
//! `meta` table records as the last batch (`last_batch`): every commit writes that number,
//! and a durable commit also makes every non-durable commit before it durable. Replay
//! therefore applies the log's entries after that number, all in one transaction; a crash
//! before that transaction is durable leaves the database as it was, and the next open
//! replays the same entries again.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::SystemTime;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use strata_core::{Error, StoreError, crash};

use crate::change::{self, Change};
use crate::errors::from_redb;
use crate::log::IntentLog;
use crate::tables::{LAST_BATCH_KEY, META, STORE_ID_KEY};
use crate::tx::Tables;

/// A fresh, random id for a store: its log entries carry it, so that a log left beside a
/// different database (one moved aside and recreated, say) is never replayed into it.
pub(crate) fn new_store_id() -> u64 {
    RandomState::new()
        .hash_one((SystemTime::now(), std::process::id()))
        .max(1)
}

/// The store's id and last batch as `meta` holds them, read through `get`.
fn ids_of(
    get: impl Fn(&str) -> Result<Option<u64>, StoreError>,
) -> Result<(Option<u64>, u64), StoreError> {
    Ok((get(STORE_ID_KEY)?, get(LAST_BATCH_KEY)?.unwrap_or(0)))
}

/// The store's id (if it has one yet) and the number of its last batch, in `txn`.
pub(crate) fn store_ids(txn: &redb::WriteTransaction) -> Result<(Option<u64>, u64), StoreError> {
    let meta = txn
        .open_table(META)
        .map_err(|e| from_redb("opening meta table", e))?;
    ids_of(|key| {
        Ok(meta
            .get(key)
            .map_err(|e| from_redb("reading meta table", e))?
            .map(|v| v.value()))
    })
}

/// Applies the entries of `log` that follow the database's last batch, in one transaction:
/// durable if `durable` (the log then starts over), else only in memory (a database open
/// for reading only). Returns how many entries were applied.
pub(crate) fn replay(
    db: &Database,
    log: &mut IntentLog,
    durable: bool,
) -> Result<usize, StoreError> {
    let read = db
        .begin_read()
        .map_err(|e| from_redb("starting read transaction", e))?;
    let meta = match read.open_table(META) {
        Ok(meta) => meta,
        // A store not initialised yet has no log to replay.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(from_redb("opening meta table", e)),
    };
    let (store_id, last) = ids_of(|key| {
        Ok(meta
            .get(key)
            .map_err(|e| from_redb("reading meta table", e))?
            .map(|v| v.value()))
    })?;
    drop(meta);
    drop(read);
    // A store that has not used the log yet (it gets its id with its first durable commit).
    let Some(store_id) = store_id else {
        return Ok(0);
    };
    let entries = log.read_after(store_id, last)?;
    let Some(newest) = entries.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mut txn = db
        .begin_write()
        .map_err(|e| from_redb("starting write transaction", e))?;
    if !durable {
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Bug {
                context: "replaying the intent log".to_owned(),
                detail: e.to_string(),
            })?;
    }
    {
        let mut tables = Tables::open(&txn).map_err(store_error)?;
        for (i, entry) in entries.iter().enumerate() {
            for change in change::decode(&entry.payload, entry.seq)? {
                tables.apply(change).map_err(store_error)?;
            }
            if i == 0 {
                crash::point("replay-mid");
            }
        }
        tables
            .apply(Change::PutMeta {
                name: LAST_BATCH_KEY,
                value: newest,
            })
            .map_err(store_error)?;
    }
    crash::point("replay-before-commit");
    txn.commit()
        .map_err(|e| from_redb("committing the replayed intent log", e))?;
    if durable {
        log.rewind();
    }
    tracing::info!(
        log = %log.path().display(),
        entries = entries.len(),
        last = newest,
        "intent log replayed"
    );
    Ok(entries.len())
}

/// Makes everything the log holds durable in `db` with one durable commit, then starts the
/// log over. Returns whether there was anything to checkpoint. Runs between batches: it
/// holds the database's one write transaction, and the log, throughout.
pub(crate) fn checkpoint(db: &Database, log: &Mutex<IntentLog>) -> Result<bool, StoreError> {
    let txn = db
        .begin_write()
        .map_err(|e| from_redb("starting write transaction", e))?;
    let mut log = log.lock().expect("intent log lock poisoned");
    if log.used() == 0 {
        txn.abort()
            .map_err(|e| from_redb("ending an empty checkpoint", e))?;
        return Ok(false);
    }
    {
        // A commit that changes nothing may write nothing: record the last batch again.
        let mut meta = txn
            .open_table(META)
            .map_err(|e| from_redb("opening meta table", e))?;
        let last = meta
            .get(LAST_BATCH_KEY)
            .map_err(|e| from_redb("reading the last batch", e))?
            .map_or(0, |v| v.value());
        meta.insert(LAST_BATCH_KEY, last)
            .map_err(|e| from_redb("recording the checkpoint", e))?;
    }
    crash::point("checkpoint-before-commit");
    txn.commit()
        .map_err(|e| from_redb("committing a checkpoint", e))?;
    crash::point("checkpoint-after-commit");
    log.rewind();
    Ok(true)
}

/// The store error inside `e` (the tables only fail with those).
fn store_error(e: Error) -> StoreError {
    match e {
        Error::Store(e) => e,
        other => StoreError::Bug {
            context: "replaying the intent log".to_owned(),
            detail: other.to_string(),
        },
    }
}
