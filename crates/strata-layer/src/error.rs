//! What can go wrong with a layer, with the entry and the step it happened at.

use std::io;

/// Result of layer work.
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

/// A failed apply or export. Each variant says whose fault it is: the layer's
/// ([`LayerError::Corrupt`], [`LayerError::Hostile`], [`LayerError::DigestMismatch`]), a
/// layer feature this applier does not take ([`LayerError::Unsupported`]), or the local
/// filesystem's ([`LayerError::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The compressed stream or the tar structure is damaged or truncated.
    #[error("layer is corrupt{}: {source}", at_entry(.entry))]
    Corrupt {
        /// The entry being read, when known.
        entry: Option<String>,
        /// What the decoder reported.
        source: io::Error,
    },
    /// An entry tries something no layer may do (escape the snapshot, a malformed
    /// whiteout, a header larger than the limits).
    #[error("layer entry {entry:?} refused: {reason}")]
    Hostile {
        /// The entry's name as the layer gives it.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The layer uses a format feature this applier does not handle; containerd's own
    /// applier can take over.
    #[error("layer entry {entry:?} uses {feature}, which Strata's applier does not support")]
    Unsupported {
        /// The entry's name.
        entry: String,
        /// The feature, e.g. `GNU sparse files`.
        feature: String,
    },
    /// The content does not have the digest its descriptor promised.
    #[error("layer digest mismatch: expected {expected}, read {actual}")]
    DigestMismatch {
        /// The descriptor's digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// Reading the layer's content failed.
    #[error("reading layer content: {0}")]
    Source(#[source] io::Error),
    /// A filesystem call failed while writing or reading an entry.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// The system call or step, e.g. `mkdir` or `write`.
        op: &'static str,
        /// The entry's path inside the snapshot.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The caller gave up (client gone or deadline passed).
    #[error("layer work cancelled")]
    Cancelled,
}

fn at_entry(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|e| format!(" at entry {e:?}"))
        .unwrap_or_default()
}

impl LayerError {
    /// An I/O failure of `op` on the entry `path`.
    pub fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> LayerError {
        LayerError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether the failure is the disk (or a quota) running out of space.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, LayerError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}
