//! A metadata file whose system calls fail on request (feature `testing`): the seam through
//! which tests make the disk under the store full or failing, deterministically, as redb's
//! own tests do with their countdown backend.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// ENOSPC: what a full disk answers.
const ENOSPC: i32 = 28;
/// EIO: what a failing disk answers.
const EIO: i32 = 5;

/// A system call on the metadata file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileCall {
    /// `pwrite`: pages and the header.
    Write,
    /// `ftruncate`: the file growing (or shrinking).
    SetLen,
    /// `fdatasync`: a commit becoming durable.
    SyncData,
    /// `pread`: a page not in the cache.
    Read,
}

impl FileCall {
    /// Every call, in a fixed order.
    pub const ALL: [FileCall; 4] = [
        FileCall::Write,
        FileCall::SetLen,
        FileCall::SyncData,
        FileCall::Read,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Which calls on the metadata file fail, shared between a test and the store's backend (and
/// the backends of the store's reopened databases).
#[derive(Clone, Default)]
pub struct Faults {
    plan: Arc<Mutex<Plan>>,
}

#[derive(Default)]
struct Plan {
    /// Calls made, per [`FileCall`].
    calls: [u64; 4],
    /// Calls failed on purpose.
    injected: u64,
    /// Fail the call of this kind whose count reaches `.1`, with errno `.2`.
    nth: Option<(FileCall, u64, i32)>,
    /// The disk is full: writes past this offset fail with ENOSPC (the blocks below it are
    /// allocated already, as a real full disk still lets a file be overwritten in place).
    full_from: Option<u64>,
    /// Every write to the intent log fails with EIO.
    log_broken: bool,
}

impl Plan {
    /// Fills the disk of a copy-on-write filesystem (btrfs): every write fails, even one
    /// over existing data, which needs a new block there.
    const ALL_WRITES: u64 = 0;
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.plan.lock().expect("faults");
        f.debug_struct("Faults")
            .field("calls", &plan.calls)
            .field("injected", &plan.injected)
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// How many calls of this kind the store made so far (failed ones included).
    pub fn calls(&self, call: FileCall) -> u64 {
        self.plan.lock().expect("faults").calls[call.index()]
    }

    /// How many calls failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.plan.lock().expect("faults").injected
    }

    /// Fails the `n`th call of kind `call` from now on (1 is the next one) with `errno`,
    /// once. Replaces an earlier `fail_nth` that has not fired yet.
    pub fn fail_nth(&self, call: FileCall, n: u64, errno: i32) {
        assert!(n >= 1, "calls are counted from 1");
        let mut plan = self.plan.lock().expect("faults");
        let at = plan.calls[call.index()] + n;
        plan.nth = Some((call, at, errno));
    }

    /// Whether the failure asked for with [`Faults::fail_nth`] is still to come.
    pub fn pending(&self) -> bool {
        self.plan.lock().expect("faults").nth.is_some()
    }

    /// Fills the disk: from now on a write to the metadata file past its current end fails
    /// with ENOSPC (growing the file with `ftruncate` still works, as it does on a real
    /// disk: it only makes a hole).
    pub fn fill(&self, path: &Path) {
        let len = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
            .len();
        self.plan.lock().expect("faults").full_from = Some(len);
    }

    /// Fills the disk as a copy-on-write filesystem (btrfs) is full: every write to the
    /// metadata file fails with ENOSPC, an overwrite too.
    pub fn fill_copy_on_write(&self) {
        self.plan.lock().expect("faults").full_from = Some(Plan::ALL_WRITES);
    }

    /// Breaks the intent log: every write to it fails with EIO from now on, so every batch
    /// takes the durable path through the database file.
    pub fn break_log(&self) {
        self.plan.lock().expect("faults").log_broken = true;
    }

    /// Frees the disk again, mends the log, and cancels a pending [`Faults::fail_nth`].
    pub fn clear(&self) {
        let mut plan = self.plan.lock().expect("faults");
        plan.full_from = None;
        plan.nth = None;
        plan.log_broken = false;
    }

    /// Counts the call and says whether (and how) it must fail.
    fn check(&self, call: FileCall, write: Option<(u64, usize)>) -> std::io::Result<()> {
        let mut plan = self.plan.lock().expect("faults");
        plan.calls[call.index()] += 1;
        let count = plan.calls[call.index()];
        let errno = match (plan.nth, plan.full_from, write) {
            (Some((c, n, errno)), _, _) if c == call && n == count => {
                plan.nth = None;
                Some(errno)
            }
            (_, Some(limit), Some((offset, len))) if offset + len as u64 > limit => Some(ENOSPC),
            _ => None,
        };
        match errno {
            Some(errno) => {
                plan.injected += 1;
                Err(std::io::Error::from_raw_os_error(errno))
            }
            None => Ok(()),
        }
    }

    /// Counts a call on the intent log and says whether it must fail: as planned by
    /// [`Faults::fail_nth`], or, for a write on a full copy-on-write disk, ENOSPC. The log's
    /// blocks are allocated when it is created, so a disk filled by [`Faults::fill`] still
    /// lets it be overwritten in place.
    pub(crate) fn check_log(&self, call: FileCall) -> std::io::Result<()> {
        let (copy_on_write_full, broken) = {
            let plan = self.plan.lock().expect("faults");
            (plan.full_from == Some(Plan::ALL_WRITES), plan.log_broken)
        };
        if broken && call == FileCall::Write {
            return Err(std::io::Error::from_raw_os_error(EIO));
        }
        let write = (call == FileCall::Write && copy_on_write_full).then_some((0, 1));
        self.check(call, write)
    }

    /// A backend on the file at `path` (created if absent) that fails as planned.
    pub(crate) fn backend(&self, path: &Path) -> std::io::Result<FaultyBackend> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = FileBackend::new(file).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(FaultyBackend {
            inner,
            faults: self.clone(),
        })
    }
}

/// redb's file backend, failing the calls its [`Faults`] say.
#[derive(Debug)]
pub(crate) struct FaultyBackend {
    inner: FileBackend,
    faults: Faults,
}

type BackendResult<T> = std::result::Result<T, std::io::Error>;
type LockResult<T> = std::result::Result<T, redb::BackendError>;

impl StorageBackend for FaultyBackend {
    fn len(&self) -> BackendResult<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> BackendResult<()> {
        self.faults.check(FileCall::Read, None)?;
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> BackendResult<()> {
        self.faults.check(FileCall::SetLen, None)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> BackendResult<()> {
        self.faults.check(FileCall::SyncData, None)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> BackendResult<()> {
        self.faults
            .check(FileCall::Write, Some((offset, data.len())))?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> BackendResult<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.query_lock_range(start, end)
    }
}
