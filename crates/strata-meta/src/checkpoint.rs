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
use strata_core::{StoreError, crash};

use crate::change::{self, Change};
use crate::errors::{from_redb, into_store_error};
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

/// The value of `key` in the `meta` table `meta`.
fn meta_value(
    meta: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(meta
        .get(key)
        .map_err(|e| from_redb("reading meta table", e))?
        .map(|v| v.value()))
}

/// Advances the number of the last batch in `txn` by `step` (0 rewrites it, so that a
/// commit changing nothing else still writes) and returns the new number, with the store's
/// id if it has one yet.
pub(crate) fn number_batch(
    txn: &redb::WriteTransaction,
    step: u64,
) -> Result<(u64, Option<u64>), StoreError> {
    let mut meta = txn
        .open_table(META)
        .map_err(|e| from_redb("opening meta table", e))?;
    let seq = meta_value(&meta, LAST_BATCH_KEY)?.unwrap_or(0) + step;
    meta.insert(LAST_BATCH_KEY, seq)
        .map_err(|e| from_redb("recording the batch number", e))?;
    Ok((seq, meta_value(&meta, STORE_ID_KEY)?))
}

/// Makes `txn` commit without a flush (the intent log, or nothing, makes it durable).
pub(crate) fn without_flush(txn: &mut redb::WriteTransaction) -> Result<(), StoreError> {
    txn.set_durability(Durability::None)
        .map_err(|e| StoreError::Bug {
            context: "committing metadata without a flush".to_owned(),
            detail: e.to_string(),
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
    let store_id = meta_value(&meta, STORE_ID_KEY)?;
    let last = meta_value(&meta, LAST_BATCH_KEY)?.unwrap_or(0);
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
        without_flush(&mut txn)?;
    }
    {
        let mut tables =
            Tables::open(&txn).map_err(|e| into_store_error(e, "replaying the intent log"))?;
        for (i, entry) in entries.iter().enumerate() {
            for change in change::decode(&entry.payload, entry.seq)? {
                tables
                    .apply(change)
                    .map_err(|e| into_store_error(e, "replaying the intent log"))?;
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
            .map_err(|e| into_store_error(e, "replaying the intent log"))?;
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
    number_batch(&txn, 0)?;
    crash::point("checkpoint-before-commit");
    txn.commit()
        .map_err(|e| from_redb("committing a checkpoint", e))?;
    crash::point("checkpoint-after-commit");
    log.rewind();
    Ok(true)
}
