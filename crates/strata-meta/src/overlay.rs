//! A storage backend that keeps every write in memory and never changes the file under it:
//! how a store is opened for reading on a disk too full for redb to open it for writing.
//!
//! redb's read-only open refuses a file that needs recovery, which is exactly the file a
//! commit that met a full disk leaves behind (redb closes a failed database without writing).
//! Opened for writing over this overlay, redb recovers the file in memory as it would on
//! disk, and the store reads through it; the store never begins a write transaction on it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Mutex;

use redb::{BackendError, StorageBackend};

const BLOCK: u64 = 4096;

/// `inner`, with writes kept in memory.
pub(crate) struct MemoryOverlay<B> {
    inner: B,
    state: Mutex<State>,
}

struct State {
    /// Blocks written, by index: they shadow the file.
    blocks: BTreeMap<u64, Box<[u8]>>,
    /// The length redb sees.
    len: u64,
    /// Below this offset, blocks not written read from the file; above it, zeros (the file
    /// was truncated there, then perhaps grown again).
    file_until: u64,
}

impl<B: StorageBackend> MemoryOverlay<B> {
    /// An overlay over `inner`, as long as it is.
    pub(crate) fn new(inner: B) -> std::io::Result<MemoryOverlay<B>> {
        let len = inner.len()?;
        Ok(MemoryOverlay {
            inner,
            state: Mutex::new(State {
                blocks: BTreeMap::new(),
                len,
                file_until: len,
            }),
        })
    }

    /// Reads `out.len()` bytes at `offset` from the file, zeros past `file_until`.
    fn read_file(&self, file_until: u64, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let end = offset + out.len() as u64;
        let from_file = file_until.clamp(offset, end) - offset;
        let (head, tail) = out.split_at_mut(from_file as usize);
        if !head.is_empty() {
            self.inner.read(offset, head)?;
        }
        tail.fill(0);
        Ok(())
    }
}

impl<B: StorageBackend> fmt::Debug for MemoryOverlay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryOverlay")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: StorageBackend> StorageBackend for MemoryOverlay<B> {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().expect("overlay").len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let state = self.state.lock().expect("overlay");
        if offset + out.len() as u64 > state.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the store",
            ));
        }
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - done);
            let piece = &mut out[done..done + n];
            match state.blocks.get(&index) {
                Some(block) => piece.copy_from_slice(&block[within..within + n]),
                None => self.read_file(state.file_until, at, piece)?,
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("overlay");
        if len < state.len {
            state.file_until = state.file_until.min(len);
            let first_gone = len.div_ceil(BLOCK);
            state.blocks.split_off(&first_gone);
            if let Some(block) = state.blocks.get_mut(&(len / BLOCK)) {
                block[(len % BLOCK) as usize..].fill(0);
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("overlay");
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !state.blocks.contains_key(&index) {
                let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
                self.read_file(state.file_until, index * BLOCK, &mut block)?;
                state.blocks.insert(index, block);
            }
            let block = state.blocks.get_mut(&index).expect("just inserted");
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        state.len = state.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
