//! The intent log: the file in which a batch of metadata writes becomes durable.
//!
//! A preallocated, zero-filled file beside the store (`metadata.log` for `metadata.db`).
//! Each batch that changes something is one *entry*: its table-level changes (see
//! [`crate::change`]) behind a header with the store's id, the batch's sequence number, the
//! payload's length and a CRC-32C. An entry starts on a 4 KiB boundary, so appending one
//! never rewrites the bytes of an entry already acknowledged, and it is written with one
//! `pwrite` and made durable with one `fdatasync`: the blocks are allocated and the file's
//! size does not change, so the flush carries no file-system metadata. The `pwrite` is
//! direct (`O_DIRECT`, where the file system allows it): through the page cache, writing a
//! few bytes dirties the whole cached folio around them — up to hundreds of KiB on a
//! file system with large folios — and the flush then writes all of it.
//!
//! The database behind the log is written without flushes and made durable from time to
//! time by a *checkpoint* (see [`crate::checkpoint`]), which records the sequence number of
//! the last batch it holds; the log is then written from its start again. Entries left over
//! from earlier passes are never read back: reading stops at the first block that is not
//! the next entry expected (sequence number one more than the last, this store's id, a
//! valid CRC), which is also where a torn append ends.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{StoreError, crash};

use crate::handle::Source;

/// The size a new log is created with, unless `STRATA_META_LOG_BYTES` says otherwise (tests
/// use a small log to reach checkpoints and a full log often). An existing log keeps its
/// size. At about one block per batch, 4 MiB holds 1,024 batches.
pub(crate) const DEFAULT_LOG_BYTES: u64 = 4 << 20;

/// The environment variable that sizes a new log (bytes, rounded up to whole blocks).
pub const LOG_BYTES_ENV: &str = "STRATA_META_LOG_BYTES";

/// The unit entries are aligned to.
const BLOCK: u64 = 4096;
/// The smallest log: a few entries.
const MIN_LOG_BYTES: u64 = 16 * BLOCK;

/// "STLG", little-endian: the first word of every entry.
const MAGIC: u32 = u32::from_le_bytes(*b"STLG");
/// magic, crc, store id, sequence number, payload length, reserved.
const HEADER: usize = 4 + 4 + 8 + 8 + 4 + 4;

/// One entry read back from the log.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The batch's sequence number.
    pub seq: u64,
    /// Its encoded changes.
    pub payload: Vec<u8>,
}

/// Why an entry was not appended.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The entry does not fit in what is left of the log: a checkpoint must come first.
    Full,
    /// The log file could not be created, written or flushed. The entry may be partly on
    /// disk; it is stale once a checkpoint records its sequence number.
    Io(StoreError),
}

/// The intent log of one store: the file (opened, or created, on first use) and where the
/// next entry goes.
pub(crate) struct IntentLog {
    path: PathBuf,
    source: Source,
    file: Option<LogFile>,
    /// Offset of the next entry: the end of the entries not yet checkpointed.
    position: u64,
}

impl IntentLog {
    /// The log of the store at `db_path`; nothing is opened yet.
    pub(crate) fn new(db_path: &Path, source: Source) -> IntentLog {
        IntentLog {
            path: db_path.with_extension("log"),
            source,
            file: None,
            position: 0,
        }
    }

    /// The log's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of entries not yet checkpointed.
    pub(crate) fn used(&self) -> u64 {
        self.position
    }

    /// Whether the entries not yet checkpointed fill more than half the log: time for a
    /// checkpoint.
    pub(crate) fn half_full(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| self.position > f.len / 2)
    }

    /// Reads the entries of store `store_id` that follow batch `last` (`last + 1`, `last +
    /// 2`, … up to the first block that is not the next one), and places the next append
    /// after them. A missing log has none.
    pub(crate) fn read_after(
        &mut self,
        store_id: u64,
        last: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        self.position = 0;
        if self.file.is_none() {
            match LogFile::open(&self.path, &self.source) {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.io("opening", e)),
            }
        }
        let file = self.file.as_ref().expect("opened above");
        let read = |buf: &mut [u8], at: u64| {
            file.read_at(buf, at)
                .map_err(|e| io_error(&self.path, "reading", e))
        };
        let mut entries = Vec::new();
        let mut expected = last + 1;
        loop {
            if self.position + HEADER as u64 > file.len {
                break;
            }
            // The first block holds the header and, mostly, the whole entry.
            let room = file.len - self.position;
            let mut body = vec![0u8; BLOCK.min(room) as usize];
            read(&mut body, self.position)?;
            let header = body[..HEADER].try_into().expect("a header's bytes");
            let Some(len) = parse_header(header, store_id, expected, room) else {
                break;
            };
            if HEADER + len > body.len() {
                body.resize(HEADER + len, 0);
                read(&mut body, self.position)?;
            }
            body.truncate(HEADER + len);
            if crc32c(&body[8..]) != u32::from_le_bytes(body[4..8].try_into().expect("4 bytes")) {
                break;
            }
            body.drain(..HEADER);
            entries.push(Entry {
                seq: expected,
                payload: body,
            });
            self.position += blocks(HEADER + len);
            expected += 1;
        }
        Ok(entries)
    }

    /// Appends the entry of batch `seq` of store `store_id` and makes it durable: one
    /// `pwrite`, one `fdatasync`. Creates the log first if there is none.
    pub(crate) fn append(
        &mut self,
        store_id: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), AppendError> {
        if self.file.is_none() {
            let file = LogFile::create(&self.path, &self.source)
                .map_err(|e| AppendError::Io(self.io("creating", e)))?;
            self.file = Some(file);
            self.position = 0;
        }
        let file = self.file.as_ref().expect("created above");
        let size = blocks(HEADER + payload.len());
        if self.position + size > file.len {
            return Err(AppendError::Full);
        }
        let mut entry = Vec::with_capacity(size as usize);
        entry.extend_from_slice(&MAGIC.to_le_bytes());
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(&store_id.to_le_bytes());
        entry.extend_from_slice(&seq.to_le_bytes());
        entry.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        entry.extend_from_slice(&[0; 4]);
        entry.extend_from_slice(payload);
        let crc = crc32c(&entry[8..]);
        entry[4..8].copy_from_slice(&crc.to_le_bytes());
        file.write_blocks(&entry, self.position)
            .map_err(|e| AppendError::Io(io_error(&self.path, "appending to", e)))?;
        crash::point("log-after-write");
        file.sync()
            .map_err(|e| AppendError::Io(io_error(&self.path, "flushing", e)))?;
        self.position += size;
        Ok(())
    }

    /// Overwrites the header at the append position with zeros and flushes it: an entry
    /// whose append failed part-way is then certainly not read back. Best effort.
    pub(crate) fn erase_failed(&mut self) {
        if let Some(file) = &self.file
            && self.position + HEADER as u64 <= file.len
        {
            let done = file
                .write_blocks(&[0; HEADER], self.position)
                .and_then(|()| file.sync());
            if let Err(e) = done {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot erase a failed log entry");
            }
        }
    }

    /// Starts the log over after a checkpoint: every entry in it is in the database.
    pub(crate) fn rewind(&mut self) {
        self.position = 0;
    }

    fn io(&self, what: &str, e: std::io::Error) -> StoreError {
        io_error(&self.path, what, e)
    }
}

/// The payload length of the entry whose header is `header`, if it is the entry expected:
/// this store's, number `expected`, within the `room` bytes left.
fn parse_header(header: &[u8; HEADER], store_id: u64, expected: u64, room: u64) -> Option<usize> {
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let len = word(24) as usize;
    (word(0) == MAGIC
        && long(8) == store_id
        && long(16) == expected
        && blocks(HEADER + len) <= room)
        .then_some(len)
}

/// `n` bytes rounded up to whole blocks.
fn blocks(n: usize) -> u64 {
    (n as u64).div_ceil(BLOCK) * BLOCK
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io {
        context: format!("{what} the intent log {}", path.display()),
        source: Arc::new(e),
    }
}

/// The log's file, through the test's faults if any.
struct LogFile {
    /// Read, and written when the log is created.
    file: File,
    /// The same file opened for direct I/O, which entries are written through; `None` where
    /// the file system refuses `O_DIRECT`.
    direct: Option<File>,
    len: u64,
    #[cfg(feature = "testing")]
    faults: Option<crate::faults::Faults>,
}

impl LogFile {
    fn from_file(path: &Path, file: File, len: u64, source: &Source) -> LogFile {
        #[cfg(not(feature = "testing"))]
        let Source::File = source;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        if let Err(e) = &direct {
            tracing::debug!(path = %path.display(), error = %e, "intent log written through the page cache: no O_DIRECT here");
        }
        LogFile {
            file,
            direct: direct.ok(),
            len,
            #[cfg(feature = "testing")]
            faults: match source {
                Source::File => None,
                Source::Faulty(faults) => Some(faults.clone()),
            },
        }
    }

    fn open(path: &Path, source: &Source) -> std::io::Result<LogFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len() / BLOCK * BLOCK;
        Ok(LogFile::from_file(path, file, len, source))
    }

    /// Creates the log, zero-filled to its whole size and flushed, with its directory entry.
    fn create(path: &Path, source: &Source) -> std::io::Result<LogFile> {
        let len = std::env::var(LOG_BYTES_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_LOG_BYTES, |n| n.div_ceil(BLOCK) * BLOCK)
            .max(MIN_LOG_BYTES);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let log = LogFile::from_file(path, file, len, source);
        let zeros = vec![0u8; 256 << 10];
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(zeros.len() as u64) as usize;
            log.write_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        log.sync()?;
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        Ok(log)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        #[cfg(feature = "testing")]
        if let Some(faults) = &self.faults {
            faults.check_log(crate::faults::FileCall::Write)?;
        }
        self.file.write_all_at(data, offset)
    }

    /// Writes `data` at `offset` (a block boundary), zero-padded to whole blocks: directly
    /// from a block-aligned buffer where the file was opened for direct I/O.
    fn write_blocks(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        let Some(direct) = &self.direct else {
            return self.write_at(data, offset);
        };
        #[cfg(feature = "testing")]
        if let Some(faults) = &self.faults {
            faults.check_log(crate::faults::FileCall::Write)?;
        }
        let len = blocks(data.len()) as usize;
        let mut buffer = vec![0u8; len + BLOCK as usize];
        let start = buffer.as_ptr().align_offset(BLOCK as usize);
        let aligned = &mut buffer[start..start + len];
        aligned[..data.len()].copy_from_slice(data);
        direct.write_all_at(aligned, offset)
    }

    fn read_at(&self, out: &mut [u8], offset: u64) -> std::io::Result<()> {
        #[cfg(feature = "testing")]
        if let Some(faults) = &self.faults {
            faults.check_log(crate::faults::FileCall::Read)?;
        }
        self.file.read_exact_at(out, offset)
    }

    fn sync(&self) -> std::io::Result<()> {
        #[cfg(feature = "testing")]
        if let Some(faults) = &self.faults {
            faults.check_log(crate::faults::FileCall::SyncData)?;
        }
        self.file.sync_data()
    }
}

/// CRC-32C (Castagnoli), bitwise by table: an entry is a few KiB, checked once at append
/// and once at replay.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standard check value of CRC-32C.
    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    /// Entries read back in order; reading stops at the first one not expected (a stale
    /// entry of an earlier pass, another store's, a torn one), and a rewound log is read
    /// from its start.
    #[test]
    fn append_read_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("metadata.db");
        let mut log = IntentLog::new(&db, Source::File);
        assert!(log.read_after(7, 0).unwrap().is_empty(), "no log yet");
        for seq in 1..=3 {
            log.append(7, seq, format!("batch {seq}").as_bytes())
                .unwrap();
        }
        assert_eq!(log.used(), 3 * BLOCK);
        let mut again = IntentLog::new(&db, Source::File);
        let seqs: Vec<u64> = again
            .read_after(7, 0)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(again.read_after(7, 1).unwrap().len(), 0, "1 is not 2");
        assert_eq!(again.read_after(8, 0).unwrap().len(), 0, "another store's");
        // A checkpoint at 3, then a new pass: the stale entries 2 and 3 are not read.
        again.rewind();
        again.append(7, 4, &vec![9u8; 5000]).unwrap();
        let read = IntentLog::new(&db, Source::File).read_after(7, 3).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].payload, vec![9u8; 5000]);
        // A flipped byte in the payload ends the log there.
        let file = OpenOptions::new()
            .write(true)
            .open(db.with_extension("log"))
            .unwrap();
        file.write_all_at(b"X", HEADER as u64 + 10).unwrap();
        assert!(
            IntentLog::new(&db, Source::File)
                .read_after(7, 3)
                .unwrap()
                .is_empty()
        );
    }

    /// A full log refuses the entry and keeps what it had.
    #[test]
    fn full() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("metadata.db");
        let mut log = IntentLog::new(&db, Source::File);
        let big = vec![1u8; (DEFAULT_LOG_BYTES as usize) / 2];
        log.append(1, 1, &big).unwrap();
        assert!(matches!(log.append(1, 2, &big), Err(AppendError::Full)));
        assert_eq!(log.read_after(1, 0).unwrap().len(), 1);
    }
}
