//! The decompression half of an apply, on its own thread: it reads the layer's content,
//! hashes it (the compressed digest the descriptor names) and decompresses it, while the
//! caller's thread parses the tar stream and writes files. On two cores this overlaps the
//! two costliest steps; a bounded channel keeps memory flat.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::digest::{Digest, HashingReader};
use crate::error::LayerError;
use crate::media::Compression;

/// Size of the chunks handed between the threads.
const CHUNK: usize = 256 << 10;
/// Chunks in flight: 4 MiB of decompressed data at most.
const DEPTH: usize = 16;

/// The uncompressed stream of a layer, produced by a decompressing thread.
pub(crate) struct Decompressed {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    worker: Option<JoinHandle<Result<(Digest, u64), LayerError>>>,
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
        let worker = std::thread::Builder::new()
            .name("layer-decompress".into())
            .spawn(move || produce(source, compression, tx))
            .map_err(|e| LayerError::io("spawn decompression thread", "", e))?;
        Ok(Decompressed {
            rx,
            current: Vec::new(),
            pos: 0,
            worker: Some(worker),
        })
    }

    /// Reads what is left (trailing data after the tar's end counts towards the digests, as
    /// in containerd's applier) and returns the compressed digest and size.
    pub(crate) fn finish(mut self) -> Result<(Digest, u64), LayerError> {
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

    fn join(&mut self) -> Result<(Digest, u64), LayerError> {
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
                    self.current = chunk;
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
) -> Result<(Digest, u64), LayerError> {
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
    {
        let mut decoder = compression.decoder(&mut hashed).map_err(classify)?;
        loop {
            let mut chunk = vec![0u8; CHUNK];
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
            if tx.send(chunk).is_err() {
                // The applier stopped reading (it failed or was cancelled).
                return Err(LayerError::Cancelled);
            }
        }
    }
    hashed.finish().map_err(classify)
}
