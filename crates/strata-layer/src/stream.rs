//! The decompression half of an apply, on its own thread: it reads the layer's content,
//! hashes it (the compressed digest the descriptor names), decompresses it and hashes what
//! it produced (the diffID), while the caller's thread parses the tar stream and writes
//! files. On two cores this overlaps the CPU-bound steps with the system calls; a bounded
//! channel keeps memory flat, and chunks go back to the producer to be refilled rather than
//! allocated and zeroed again.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::digest::{Digest, Hasher, HashingReader};
use crate::error::LayerError;
use crate::media::Compression;

/// Size of the chunks handed between the threads.
const CHUNK: usize = 256 << 10;
/// Chunks in flight: 4 MiB of decompressed data at most.
const DEPTH: usize = 16;

/// What the decompressing thread measured once the stream is read to its end.
pub(crate) struct Digests {
    /// Digest of the content as read: the blob's digest.
    pub(crate) compressed: Digest,
    /// Bytes of content read.
    pub(crate) compressed_size: u64,
    /// Digest of the uncompressed stream, trailing data included: the layer's diffID.
    pub(crate) diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub(crate) size: u64,
}

/// The uncompressed stream of a layer, produced by a decompressing thread.
pub(crate) struct Decompressed {
    rx: Receiver<Vec<u8>>,
    /// Read chunks handed back to the producer for reuse.
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    worker: Option<JoinHandle<Result<Digests, LayerError>>>,
}

/// Remembers the first error of the content source, to tell a failing source from a corrupt
/// stream when the decoder reports either as an I/O error.
struct SourceErrors<R> {
    inner: R,
    first: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for SourceErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            let mut slot = self.first.lock().expect("source error slot");
            if slot.is_none() {
                *slot = Some(io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl Decompressed {
    /// Starts decompressing `source` on a new thread.
    pub(crate) fn start(
        source: Box<dyn Read + Send>,
        compression: Compression,
    ) -> Result<Decompressed, LayerError> {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(DEPTH + 2);
        let worker = std::thread::Builder::new()
            .name("layer-decompress".into())
            .spawn(move || produce(source, compression, tx, recycled))
            .map_err(|e| LayerError::io("spawn decompression thread", "", e))?;
        Ok(Decompressed {
            rx,
            recycle,
            current: Vec::new(),
            pos: 0,
            worker: Some(worker),
        })
    }

    /// Reads what is left (trailing data after the tar's end counts towards the digests, as
    /// in containerd's applier) and returns the digests.
    pub(crate) fn finish(mut self) -> Result<Digests, LayerError> {
        let drained = io::copy(&mut self, &mut io::sink());
        let outcome = self.join();
        let result = outcome?;
        drained.map_err(|e| LayerError::Corrupt {
            entry: None,
            source: e,
        })?;
        Ok(result)
    }

    /// The decompressing thread's own error, which explains why the stream ended early.
    pub(crate) fn failure(mut self) -> Option<LayerError> {
        // Unblock the producer if it is waiting on a full channel.
        drop(std::mem::replace(&mut self.rx, sync_channel(1).1));
        // A producer that stopped only because the reader went away has nothing to add.
        self.join()
            .err()
            .filter(|e| !matches!(e, LayerError::Cancelled))
    }

    fn join(&mut self) -> Result<Digests, LayerError> {
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(LayerError::io(
                "decompress",
                "",
                io::Error::other("decompression thread panicked"),
            )),
            None => Err(LayerError::Cancelled),
        }
    }
}

impl Read for Decompressed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    // A full return channel (or a finished producer) just drops it.
                    let _ = self.recycle.try_send(used);
                    self.pos = 0;
                }
                // The producer finished: either the end of the stream or its failure,
                // which `failure` reports.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn produce(
    source: Box<dyn Read + Send>,
    compression: Compression,
    tx: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
) -> Result<Digests, LayerError> {
    let first = Arc::new(Mutex::new(None));
    let mut hashed = HashingReader::new(SourceErrors {
        inner: source,
        first: Arc::clone(&first),
    });
    let classify = |e: io::Error| match first.lock().expect("source error slot").take() {
        Some(source) => LayerError::Source(source),
        None => LayerError::Corrupt {
            entry: None,
            source: e,
        },
    };
    let mut diff_id = Hasher::default();
    let mut size = 0u64;
    {
        let mut decoder = compression.decoder(&mut hashed).map_err(classify)?;
        loop {
            let mut chunk = recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            // Zeroes only what the last use did not fill.
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            while filled < CHUNK {
                match decoder.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(classify(e)),
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            diff_id.update(&chunk);
            size += filled as u64;
            if tx.send(chunk).is_err() {
                // The applier stopped reading (it failed or was cancelled).
                return Err(LayerError::Cancelled);
            }
        }
    }
    let (compressed, compressed_size) = hashed.finish().map_err(classify)?;
    Ok(Digests {
        compressed,
        compressed_size,
        diff_id: diff_id.finish(),
        size,
    })
}
