//! Read and write transactions over the tables, with containerd's `storage` semantics:
//! which checks an operation makes, in which order, and which error each failure returns.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use redb::{
    MultimapTable, ReadOnlyMultimapTable, ReadOnlyTable, ReadTransaction, ReadableMultimapTable,
    ReadableTable, Table, WriteTransaction,
};
use strata_core::labels;
use strata_core::snapshot::Labels;
use strata_core::{Error, Filter, Info, InfoRef, Kind, Result, Usage};

use crate::change::Change;
use crate::codec::{Link, Record};
use crate::errors::{StoreContext, corrupted};
use crate::tables::{CHILDREN, IDS, LABELS, META, NEXT_ID_KEY, SNAPSHOTS, label_entry};

/// What a backend needs to build a snapshot's mounts: its id, kind and the ids of its
/// ancestors, nearest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot's numeric id.
    pub id: u64,
    /// Its kind.
    pub kind: Kind,
    /// Ids of the parent, grandparent, … (nearest first, as overlay's `lowerdir` wants).
    pub parent_ids: Vec<u64>,
}

/// A validated, not yet applied creation: the output of [`WriteTx::plan_create`]. Its id is
/// the one the snapshot will get, so the backend can put the directory in place before
/// [`WriteTx::create`] records it.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    /// The id the snapshot will have.
    pub id: u64,
    /// Its kind (Active or View).
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// Its parent's key, empty for none.
    pub parent: String,
    /// Ancestor ids, nearest first.
    pub parent_ids: Vec<u64>,
}

/// Any table of snapshot records: the read-only one of a read transaction or the writable
/// one of a write transaction.
trait Snapshots: ReadableTable<&'static str, &'static [u8]> {}
impl<T: ReadableTable<&'static str, &'static [u8]>> Snapshots for T {}

/// Any multimap of key → keys (the parents and labels indexes).
trait Index: ReadableMultimapTable<&'static str, &'static str> {}
impl<T: ReadableMultimapTable<&'static str, &'static str>> Index for T {}

fn get_record(t: &impl Snapshots, key: &str) -> Result<Option<Record>> {
    match t.get(key).store("reading snapshot record")? {
        Some(v) => Record::decode(key, v.value()).map(Some),
        None => Ok(None),
    }
}

/// `key`'s id, kind and parent, without its labels: what walks and checks need.
fn get_link(t: &impl Snapshots, key: &str) -> Result<Option<Link>> {
    match t.get(key).store("reading snapshot record")? {
        Some(v) => Link::decode(key, v.value()).map(Some),
        None => Ok(None),
    }
}

fn must_get(t: &impl Snapshots, key: &str) -> Result<Record> {
    get_record(t, key)?.ok_or_else(|| Error::not_found(key))
}

/// Ids of the ancestors of `key`, whose parent is `parent`, nearest first.
fn parent_ids(t: &impl Snapshots, key: &str, parent: &str) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let mut parent = parent.to_owned();
    let mut child = key.to_owned();
    while !parent.is_empty() {
        let p = get_link(t, &parent)?.ok_or_else(|| {
            corrupted(
                format!("snapshot {child:?}"),
                format!("its parent {parent:?} has no record"),
            )
        })?;
        ids.push(p.id);
        child = std::mem::replace(&mut parent, p.parent);
    }
    Ok(ids)
}

fn has_children(t: &impl Index, key: &str) -> Result<bool> {
    Ok(!t.get(key).store("reading parents index")?.is_empty())
}

fn walk(
    snapshots: &impl Snapshots,
    labels_index: &impl Index,
    filter: &Filter,
    f: &mut dyn FnMut(Info) -> Result<()>,
) -> Result<()> {
    // A filter in which every alternative requires some `labels.k==v` can be answered from
    // the labels index: cost in proportion to the matches, not to the store.
    if let Some(required) = filter.required_label_equalities() {
        let mut keys = BTreeSet::new();
        for (k, v) in required {
            for key in labels_index
                .get(label_entry(&k, &v).as_str())
                .store("reading labels index")?
            {
                keys.insert(key.store("reading labels index")?.value().to_owned());
            }
        }
        for key in keys {
            if let Some(record) = get_record(snapshots, &key)? {
                let info = record.into_info(&key);
                if filter.matches(&info) {
                    f(info)?;
                }
            }
        }
        return Ok(());
    }
    for entry in snapshots.range::<&str>(..).store("iterating snapshots")? {
        let (k, v) = entry.store("iterating snapshots")?;
        let key = k.value();
        let info = Record::decode(key, v.value())?.into_info(key);
        if filter.matches(&info) {
            f(info)?;
        }
    }
    Ok(())
}

/// containerd's `storage.CreateSnapshot` checks: `NotFound` for a missing parent,
/// `InvalidArgument` for a parent that is not committed, `AlreadyExists` for a taken key.
/// Returns the parent's link, if any.
fn check_create(t: &impl Snapshots, kind: Kind, key: &str, parent: &str) -> Result<Option<Link>> {
    if kind == Kind::Committed {
        return Err(strata_core::invalid!(
            "only active or view snapshots can be created"
        ));
    }
    let mut link = None;
    if !parent.is_empty() {
        let p = get_link(t, parent)?.ok_or_else(|| Error::parent_not_found(parent, key))?;
        if p.kind != Kind::Committed {
            return Err(strata_core::invalid!(
                "parent {parent:?} is not a committed snapshot (it is {})",
                p.kind
            ));
        }
        link = Some(p);
    }
    if t.get(key).store("reading snapshot record")?.is_some() {
        return Err(Error::AlreadyExists {
            key: key.to_owned(),
        });
    }
    Ok(link)
}

/// [`check_create`], then the plan with the parent's ancestry walked.
fn plan_create(
    t: &impl Snapshots,
    kind: Kind,
    key: &str,
    parent: &str,
    id: u64,
) -> Result<CreatePlan> {
    let mut parent_ids = Vec::new();
    if let Some(p) = check_create(t, kind, key, parent)? {
        parent_ids.push(p.id);
        parent_ids.extend(self::parent_ids(t, parent, &p.parent)?);
    }
    Ok(CreatePlan {
        id,
        kind,
        key: key.to_owned(),
        parent: parent.to_owned(),
        parent_ids,
    })
}

/// containerd's `storage.CommitActive` checks, in its order: `AlreadyExists` for a taken
/// name, `NotFound` for a missing key, `FailedPrecondition` for a key that is not active;
/// then the rebase rules for `parent`. Returns the active record and the parent the
/// committed snapshot will have.
fn check_commit(
    t: &impl Snapshots,
    key: &str,
    name: &str,
    parent: Option<&str>,
    expected_id: Option<u64>,
) -> Result<(Record, String)> {
    if t.get(name).store("reading snapshot record")?.is_some() {
        return Err(Error::AlreadyExists {
            key: name.to_owned(),
        });
    }
    let record = must_get(t, key)?;
    if record.kind != Kind::Active {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {key:?} is not active (it is {}); only active snapshots can be committed",
            record.kind
        )));
    }
    if expected_id.is_some_and(|id| id != record.id) {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {key:?} was replaced while it was being committed"
        )));
    }
    let new_parent = match parent.filter(|p| !p.is_empty()) {
        None => record.parent.clone(),
        Some(p) if p == record.parent => record.parent.clone(),
        Some(p) if record.parent.is_empty() => {
            let pr = get_link(t, p)?.ok_or_else(|| Error::parent_not_found(p, key))?;
            if pr.kind != Kind::Committed {
                return Err(strata_core::invalid!(
                    "parent {p:?} is not a committed snapshot"
                ));
            }
            p.to_owned()
        }
        Some(p) => {
            return Err(strata_core::invalid!(
                "commit of {key:?} names parent {p:?} but the snapshot was prepared on {:?}",
                record.parent
            ));
        }
    };
    Ok((record, new_parent))
}

fn collect_ids(t: &impl ReadableTable<u64, &'static str>) -> Result<HashSet<u64>> {
    let mut ids = HashSet::new();
    for entry in t.range::<u64>(..).store("iterating ids")? {
        ids.insert(entry.store("iterating ids")?.0.value());
    }
    Ok(ids)
}

/// A consistent, read-only view of the store.
pub struct ReadTx {
    txn: ReadTransaction,
    // Opened on first use: a Stat touches one table of five, and opening a table is a
    // lookup of its own.
    meta: OnceCell<ReadOnlyTable<&'static str, u64>>,
    snapshots: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    ids: OnceCell<ReadOnlyTable<u64, &'static str>>,
    children: OnceCell<ReadOnlyMultimapTable<&'static str, &'static str>>,
    labels: OnceCell<ReadOnlyMultimapTable<&'static str, &'static str>>,
}

/// The table in `cell`, opening it with `open` the first time.
fn lazy<T>(cell: &OnceCell<T>, open: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(table) = cell.get() {
        return Ok(table);
    }
    let table = open()?;
    Ok(cell.get_or_init(|| table))
}

impl ReadTx {
    pub(crate) fn new(txn: ReadTransaction) -> ReadTx {
        ReadTx {
            txn,
            meta: OnceCell::new(),
            snapshots: OnceCell::new(),
            ids: OnceCell::new(),
            children: OnceCell::new(),
            labels: OnceCell::new(),
        }
    }

    fn snapshots(&self) -> Result<&ReadOnlyTable<&'static str, &'static [u8]>> {
        lazy(&self.snapshots, || {
            self.txn
                .open_table(SNAPSHOTS)
                .store("opening snapshots table")
        })
    }

    fn ids_table(&self) -> Result<&ReadOnlyTable<u64, &'static str>> {
        lazy(&self.ids, || {
            self.txn.open_table(IDS).store("opening ids table")
        })
    }

    fn meta(&self) -> Result<&ReadOnlyTable<&'static str, u64>> {
        lazy(&self.meta, || {
            self.txn.open_table(META).store("opening meta table")
        })
    }

    fn children(&self) -> Result<&ReadOnlyMultimapTable<&'static str, &'static str>> {
        lazy(&self.children, || {
            self.txn
                .open_multimap_table(CHILDREN)
                .store("opening parents index")
        })
    }

    fn labels(&self) -> Result<&ReadOnlyMultimapTable<&'static str, &'static str>> {
        lazy(&self.labels, || {
            self.txn
                .open_multimap_table(LABELS)
                .store("opening labels index")
        })
    }

    /// The record of `key`, or `NotFound`.
    pub fn get(&self, key: &str) -> Result<Record> {
        must_get(self.snapshots()?, key)
    }

    /// The info of `key`, or `NotFound`.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.get(key)?.into_info(key))
    }

    /// The id, kind and ancestor ids of `key`, or `NotFound`.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        let t = self.snapshots()?;
        let link = get_link(t, key)?.ok_or_else(|| Error::not_found(key))?;
        Ok(Snapshot {
            id: link.id,
            kind: link.kind,
            parent_ids: parent_ids(t, key, &link.parent)?,
        })
    }

    /// Whether some snapshot has `key` as its parent.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        has_children(self.children()?, key)
    }

    /// Calls `f` for every snapshot matching `filter`, in key order.
    pub fn walk(&self, filter: &Filter, f: &mut dyn FnMut(Info) -> Result<()>) -> Result<()> {
        walk(self.snapshots()?, self.labels()?, filter, f)
    }

    /// Calls `f` for every snapshot, in key order, with its info borrowed from the stored
    /// record (no [`Info`] built): what a full List encodes.
    pub fn walk_refs(&self, f: &mut dyn FnMut(&InfoRef<'_>) -> Result<()>) -> Result<()> {
        for entry in self
            .snapshots()?
            .range::<&str>(..)
            .store("iterating snapshots")?
        {
            let (k, v) = entry.store("iterating snapshots")?;
            crate::codec::with_info_ref(k.value(), v.value(), |info| f(info))?;
        }
        Ok(())
    }

    /// Every id the store knows.
    pub fn ids(&self) -> Result<HashSet<u64>> {
        collect_ids(self.ids_table()?)
    }

    /// The key of the snapshot with numeric id `id`, if there is one.
    pub fn key_of(&self, id: u64) -> Result<Option<String>> {
        Ok(self
            .ids_table()?
            .get(id)
            .store("reading ids")?
            .map(|k| k.value().to_owned()))
    }

    /// The id the next created snapshot will get.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self
            .meta()?
            .get(NEXT_ID_KEY)
            .store("reading next id")?
            .map(|v| v.value())
            .unwrap_or(1))
    }

    /// The checks of [`WriteTx::plan_create`], ahead of the write (the id is not assigned).
    pub fn plan_create(&self, kind: Kind, key: &str, parent: &str) -> Result<CreatePlan> {
        plan_create(self.snapshots()?, kind, key, parent, 0)
    }

    /// The checks of [`WriteTx::commit`], ahead of the write.
    pub fn check_commit(
        &self,
        key: &str,
        name: &str,
        parent: Option<&str>,
    ) -> Result<(Record, String)> {
        check_commit(self.snapshots()?, key, name, parent, None)
    }

    /// Calls `f` with every (key, record) pair, in key order.
    pub fn for_each(&self, f: &mut dyn FnMut(&str, Record) -> Result<()>) -> Result<()> {
        for entry in self
            .snapshots()?
            .range::<&str>(..)
            .store("iterating snapshots")?
        {
            let (k, v) = entry.store("iterating snapshots")?;
            f(k.value(), Record::decode(k.value(), v.value())?)?;
        }
        Ok(())
    }
}

/// The write side of one group-committed transaction. Every method checks first and writes
/// last, so an operation that fails has changed nothing: that is what lets several
/// operations share one transaction (see [`crate::Store::write`]).
pub struct WriteTx<'t> {
    /// Read through freely; written only through [`WriteTx::write`].
    tables: Tables<'t>,
    /// Whether the current operation wrote: set by [`WriteTx::write`], cleared by the store
    /// before each operation.
    wrote: bool,
    /// Set when an operation failed after writing: the batch must not commit.
    poisoned: bool,
    /// The store's ids, so that an id assigned in a batch that was rolled back is never
    /// assigned again (its directory may still exist).
    ids: &'t Ids,
}

/// Hands out snapshot ids: each at most once in this process, and none below the stored
/// next id (which covers every recorded id, and every directory found at start-up).
#[derive(Debug, Default)]
pub(crate) struct Ids {
    /// Lowest id not yet handed out by this process.
    floor: AtomicU64,
    /// Whether an id was taken: the floor is then above the stored next id for good, since
    /// only this store's own writes raise that, with ids taken here or through
    /// [`Ids::raise`].
    seeded: AtomicBool,
}

impl Ids {
    /// Whether [`Ids::take`] no longer needs the stored next id.
    pub(crate) fn seeded(&self) -> bool {
        self.seeded.load(Ordering::Acquire)
    }

    /// Makes sure no id below `min` is handed out.
    fn raise(&self, min: u64) {
        self.floor.fetch_max(min, Ordering::AcqRel);
    }

    /// An id no earlier call returned, and at least `stored`.
    pub(crate) fn take(&self, stored: u64) -> u64 {
        self.seeded.store(true, Ordering::Release);
        let mut floor = self.floor.load(Ordering::Acquire);
        loop {
            let id = stored.max(floor).max(1);
            match self.floor.compare_exchange_weak(
                floor,
                id + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return id,
                Err(now) => floor = now,
            }
        }
    }
}

/// The open tables of a write transaction, and the changes made to them so far (encoded
/// for the intent log).
pub(crate) struct Tables<'t> {
    snapshots: Table<'t, &'static str, &'static [u8]>,
    ids: Table<'t, u64, &'static str>,
    children: MultimapTable<'t, &'static str, &'static str>,
    labels: MultimapTable<'t, &'static str, &'static str>,
    meta: Table<'t, &'static str, u64>,
    changes: Vec<u8>,
}

impl<'t> WriteTx<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction, ids: &'t Ids) -> Result<WriteTx<'t>> {
        Ok(WriteTx {
            tables: Tables::open(txn)?,
            wrote: false,
            poisoned: false,
            ids,
        })
    }

    /// The tables, for writing: the one way to change them, so that an operation that
    /// fails after its first write is always known (and its batch rolled back).
    fn write(&mut self) -> &mut Tables<'t> {
        self.wrote = true;
        &mut self.tables
    }

    /// Starts the next operation of the batch: nothing written yet.
    pub(crate) fn begin_operation(&mut self) {
        self.wrote = false;
    }

    /// Whether the current operation has written.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote
    }

    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    pub(crate) fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Takes the encoded changes of the batch so far (see [`crate::change`]); empty if
    /// nothing changed.
    pub(crate) fn take_changes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tables.changes)
    }

    /// The record of `key`, or `NotFound`.
    pub fn get(&self, key: &str) -> Result<Record> {
        must_get(&self.tables.snapshots, key)
    }

    /// Whether some snapshot has `key` as its parent.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        has_children(&self.tables.children, key)
    }

    /// The stored next id.
    fn next_id(&self) -> Result<u64> {
        Ok(self
            .tables
            .meta
            .get(NEXT_ID_KEY)
            .store("reading next id")?
            .map(|v| v.value())
            .unwrap_or(1))
    }

    /// Checks that an Active or View snapshot `key` can be created on `parent` and assigns
    /// it a fresh id, without writing anything (errors as containerd's
    /// `storage.CreateSnapshot`: `NotFound` for a missing parent, `InvalidArgument` for a
    /// parent that is not committed, `AlreadyExists` for a taken key).
    pub fn plan_create(&self, kind: Kind, key: &str, parent: &str) -> Result<CreatePlan> {
        let plan = plan_create(&self.tables.snapshots, kind, key, parent, 0)?;
        Ok(CreatePlan {
            id: self.ids.take(self.next_id()?),
            ..plan
        })
    }

    /// [`WriteTx::plan_create`] for a snapshot whose id was reserved beforehand
    /// ([`crate::Store::reserve_id`]) and whose ancestors, `parent_ids` (nearest first),
    /// were read before the batch ([`ReadTx::plan_create`]), e.g. to build its directory
    /// under its final name. Only the parent is checked again: committed snapshots never
    /// change, so if `parent` is still the snapshot whose id heads `parent_ids`, so is the
    /// rest of the chain; if it was removed and made again meanwhile, `FailedPrecondition`.
    pub fn plan_create_as(
        &self,
        id: u64,
        kind: Kind,
        key: &str,
        parent: &str,
        parent_ids: Vec<u64>,
    ) -> Result<CreatePlan> {
        let found = check_create(&self.tables.snapshots, kind, key, parent)?.map(|p| p.id);
        if found != parent_ids.first().copied() {
            return Err(Error::FailedPrecondition(format!(
                "parent {parent:?} of {key:?} was replaced while the snapshot was built; retry"
            )));
        }
        Ok(CreatePlan {
            id,
            kind,
            key: key.to_owned(),
            parent: parent.to_owned(),
            parent_ids,
        })
    }

    /// Raises the next id to at least `min` (so ids already used on disk are never reused).
    pub fn reserve_ids_below(&mut self, min: u64) -> Result<()> {
        self.ids.raise(min);
        if self.next_id()? < min {
            self.write().apply(Change::PutMeta {
                name: NEXT_ID_KEY,
                value: min,
            })?;
        }
        Ok(())
    }

    /// Records the snapshot planned by [`WriteTx::plan_create`] with `labels`, created and
    /// updated now.
    pub fn create(&mut self, plan: CreatePlan, labels: Labels) -> Result<Snapshot> {
        labels::validate(&labels)?;
        let stored_next = self.next_id()?;
        let now = SystemTime::now();
        let record = Record {
            id: plan.id,
            kind: plan.kind,
            parent: plan.parent,
            labels: labels::without_empty(labels),
            created: now,
            updated: now,
            usage: None,
        };
        let tables = self.write();
        tables.put(&plan.key, &record)?;
        tables.apply(Change::PutId {
            id: plan.id,
            key: &plan.key,
        })?;
        if !record.parent.is_empty() {
            tables.apply(Change::PutChild {
                parent: &record.parent,
                key: &plan.key,
            })?;
        }
        // Ids reserved ahead may be recorded out of order: the next id only grows.
        let next = stored_next.max(plan.id + 1);
        tables.apply(Change::PutMeta {
            name: NEXT_ID_KEY,
            value: next,
        })?;
        Ok(Snapshot {
            id: plan.id,
            kind: plan.kind,
            parent_ids: plan.parent_ids,
        })
    }

    /// Commits the active snapshot `key` as `name` (errors as containerd's
    /// `storage.CommitActive`: `AlreadyExists` for a taken name, `NotFound` for a missing key,
    /// `FailedPrecondition` for a key that is not active; `parent`, containerd 2.2's rebase,
    /// must equal the snapshot's parent or, if it had none, name a committed snapshot, else
    /// `InvalidArgument`; `expected_id` guards against `key` having been replaced since the
    /// caller measured its usage): the record moves to `name`, keeps its id, becomes Committed with
    /// `labels` (replacing the active one's), `usage`, and created = updated = now.
    pub fn commit(
        &mut self,
        key: &str,
        name: &str,
        labels: Labels,
        parent: Option<&str>,
        usage: Usage,
        expected_id: Option<u64>,
    ) -> Result<u64> {
        labels::validate(&labels)?;
        let (old, new_parent) =
            check_commit(&self.tables.snapshots, key, name, parent, expected_id)?;
        let now = SystemTime::now();
        let record = Record {
            id: old.id,
            kind: Kind::Committed,
            parent: new_parent,
            labels: labels::without_empty(labels),
            created: now,
            updated: now,
            usage: Some(usage),
        };
        let tables = self.write();
        tables.delete(key, &old)?;
        tables.put(name, &record)?;
        tables.apply(Change::PutId {
            id: record.id,
            key: name,
        })?;
        if !record.parent.is_empty() {
            tables.apply(Change::PutChild {
                parent: &record.parent,
                key: name,
            })?;
        }
        Ok(record.id)
    }

    /// Removes snapshot `key` and returns its record. `NotFound` if absent,
    /// `FailedPrecondition` if it has children.
    pub fn remove(&mut self, key: &str) -> Result<Record> {
        let record = self.get(key)?;
        if self.has_children(key)? {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {key:?}: it has children"
            )));
        }
        self.write().drop_record(key, &record)?;
        Ok(record)
    }

    /// Applies an Update of labels (containerd's field-mask rules) and returns the new info.
    pub fn update(&mut self, key: &str, requested: &Labels, fieldpaths: &[String]) -> Result<Info> {
        let mut record = self.get(key)?;
        let labels = labels::apply_update(key, &record.labels, requested, fieldpaths)?;
        labels::validate(&labels)?;
        let tables = self.write();
        tables.unindex_labels(key, &record)?;
        record.labels = labels;
        record.updated = SystemTime::now();
        tables.put(key, &record)?;
        Ok(record.info(key))
    }

    /// Replaces the usage recorded for snapshot `key` (`NotFound` if absent): `strata fsck
    /// --repair` sets a committed snapshot's figure to what a fresh walk of its directory
    /// found. Nothing else about the record changes.
    pub fn set_usage(&mut self, key: &str, usage: Usage) -> Result<()> {
        let mut record = self.get(key)?;
        record.usage = Some(usage);
        self.write().apply(Change::PutRecord {
            key,
            record: &record.encode(),
        })?;
        Ok(())
    }

    /// Removes snapshot `key`'s record and its id, labels and parents-index entries
    /// *without* the children check of [`WriteTx::remove`], and returns the record: its
    /// children are left pointing at a parent that no longer exists. Nothing in Strata does
    /// this; tests (with the `testing` feature) damage a store the way a bug or a bad restore
    /// would, to check that `strata fsck` finds it.
    #[cfg(feature = "testing")]
    pub fn remove_unchecked(&mut self, key: &str) -> Result<Record> {
        let record = self.get(key)?;
        self.write().drop_record(key, &record)?;
        Ok(record)
    }
}

impl<'t> Tables<'t> {
    /// Opens the tables of `txn`, no change made yet.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        Ok(Tables {
            snapshots: txn.open_table(SNAPSHOTS).store("opening snapshots table")?,
            ids: txn.open_table(IDS).store("opening ids table")?,
            children: txn
                .open_multimap_table(CHILDREN)
                .store("opening parents index")?,
            labels: txn
                .open_multimap_table(LABELS)
                .store("opening labels index")?,
            meta: txn.open_table(META).store("opening meta table")?,
            changes: Vec::new(),
        })
    }

    /// Makes `change`, and records it for the intent log: the one way the tables are
    /// written, by operations and by replay alike.
    pub(crate) fn apply(&mut self, change: Change<'_>) -> Result<()> {
        change.encode(&mut self.changes);
        match change {
            Change::PutRecord { key, record } => {
                self.snapshots
                    .insert(key, record)
                    .store("writing snapshot record")?;
            }
            Change::DeleteRecord { key } => {
                self.snapshots
                    .remove(key)
                    .store("deleting snapshot record")?;
            }
            Change::PutId { id, key } => {
                self.ids.insert(id, key).store("writing ids")?;
            }
            Change::DeleteId { id } => {
                self.ids.remove(id).store("writing ids")?;
            }
            Change::PutChild { parent, key } => {
                self.children
                    .insert(parent, key)
                    .store("writing parents index")?;
            }
            Change::DeleteChild { parent, key } => {
                self.children
                    .remove(parent, key)
                    .store("writing parents index")?;
            }
            Change::PutLabel { entry, key } => {
                self.labels
                    .insert(entry, key)
                    .store("writing labels index")?;
            }
            Change::DeleteLabel { entry, key } => {
                self.labels
                    .remove(entry, key)
                    .store("writing labels index")?;
            }
            Change::PutMeta { name, value } => {
                self.meta.insert(name, value).store("writing meta")?;
            }
        }
        Ok(())
    }

    /// Writes a record and its labels-index entries.
    fn put(&mut self, key: &str, record: &Record) -> Result<()> {
        self.apply(Change::PutRecord {
            key,
            record: &record.encode(),
        })?;
        for (k, v) in &record.labels {
            self.apply(Change::PutLabel {
                entry: &label_entry(k, v),
                key,
            })?;
        }
        Ok(())
    }

    /// Deletes a record with its labels-index and parents-index entries.
    fn delete(&mut self, key: &str, record: &Record) -> Result<()> {
        self.apply(Change::DeleteRecord { key })?;
        self.unindex_labels(key, record)?;
        if !record.parent.is_empty() {
            self.apply(Change::DeleteChild {
                parent: &record.parent,
                key,
            })?;
        }
        Ok(())
    }

    /// Deletes a record, its indexes' entries and its id.
    fn drop_record(&mut self, key: &str, record: &Record) -> Result<()> {
        self.delete(key, record)?;
        self.apply(Change::DeleteId { id: record.id })
    }

    fn unindex_labels(&mut self, key: &str, record: &Record) -> Result<()> {
        for (k, v) in &record.labels {
            self.apply(Change::DeleteLabel {
                entry: &label_entry(k, v),
                key,
            })?;
        }
        Ok(())
    }
}
