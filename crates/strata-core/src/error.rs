//! The one error type of the snapshotter contract.
//!
//! Each variant corresponds to exactly one gRPC code (the mapping lives in `strata-grpc`), and
//! containerd's garbage collector and unpacker branch on those codes, so which variant an
//! operation returns is part of its contract.

use std::path::PathBuf;

use crate::filter::FilterError;

/// Result of every snapshotter operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the terms of containerd's `errdefs`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named snapshot (or its parent) does not exist. gRPC `NotFound`.
    #[error("snapshot {key:?} not found{context}")]
    NotFound {
        /// The key that was looked up.
        key: String,
        /// Extra words on the role of the key, e.g. ` (parent of "a")`.
        context: String,
    },
    /// A snapshot with this key already exists. gRPC `AlreadyExists`.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key that was taken.
        key: String,
    },
    /// The request is well-formed but the snapshot is in the wrong state for it (committing a
    /// view, removing a parent). gRPC `FailedPrecondition`.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request itself is malformed (bad key, bad label, immutable field). gRPC
    /// `InvalidArgument`.
    #[error("{0}")]
    InvalidArgument(String),
    /// A List filter could not be parsed. gRPC `InvalidArgument`.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    /// The request names a snapshotter this daemon does not serve. gRPC `NotFound`, as
    /// containerd's own snapshots service answers.
    #[error("snapshotter {0:?} not loaded")]
    UnknownSnapshotter(String),
    /// The metadata store failed. gRPC `Internal`.
    #[error("metadata store: {0}")]
    Store(String),
    /// A filesystem operation failed. gRPC `Internal` (or `ResourceExhausted` for ENOSPC).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `mkdir` or `rename`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The client cancelled the request; nothing was changed. gRPC `Cancelled`.
    #[error("request cancelled by the client")]
    Cancelled,
    /// The request's deadline passed before it could change anything. gRPC
    /// `DeadlineExceeded`.
    #[error("request deadline exceeded")]
    DeadlineExceeded,
    /// The daemon is shutting down or the backend was closed. gRPC `Unavailable`.
    #[error("snapshotter is closed")]
    Closed,
}

impl Error {
    /// A `NotFound` for `key` with no further context.
    pub fn not_found(key: impl Into<String>) -> Self {
        Error::NotFound {
            key: key.into(),
            context: String::new(),
        }
    }

    /// A `NotFound` for the parent `parent` of snapshot `child`.
    pub fn parent_not_found(parent: impl Into<String>, child: &str) -> Self {
        Error::NotFound {
            key: parent.into(),
            context: format!(" (parent of {child:?})"),
        }
    }

    /// Wraps an I/O error with the operation and the path it concerned.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for returning an [`Error::InvalidArgument`].
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::Error::InvalidArgument(format!($($arg)*)) };
}
