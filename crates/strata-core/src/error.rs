//! The one error type of the snapshotter contract.
//!
//! Each variant corresponds to one gRPC code (the mapping lives in `strata-grpc`; an I/O
//! error, in the filesystem or under the store, maps by its kind), and containerd's garbage
//! collector and unpacker branch on those codes, so which variant an operation returns is part
//! of its contract.

use std::path::PathBuf;
use std::sync::Arc;

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
    /// The request names a snapshotter this daemon does not serve. gRPC `InvalidArgument`,
    /// as containerd's own snapshots service answers.
    #[error("snapshotter not loaded: {0}")]
    UnknownSnapshotter(String),
    /// The metadata store failed. gRPC `Internal`, or `ResourceExhausted` when its disk is
    /// full or over quota.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// A filesystem operation failed. gRPC `Internal`, or `ResourceExhausted` when the disk
    /// is full or over quota.
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

/// How the metadata store failed, keeping what a caller can act on: the I/O error's kind and
/// errno, damage, another process holding the store, a newer schema, a rolled-back batch.
/// Cloneable, because one failed commit answers every operation in its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An I/O error under the store (a full disk, an exceeded quota, EIO).
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, e.g. `committing metadata`.
        context: String,
        /// The OS error, kind and errno intact.
        source: Arc<std::io::Error>,
    },
    /// The file is not a store, or part of it (a page, a record) is damaged.
    #[error("{context}: {detail}")]
    Corrupted {
        /// What was being read, e.g. `record of snapshot "a"`.
        context: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Another process has the store open.
    #[error("metadata store {} is already open by another process", path.display())]
    AlreadyOpen {
        /// The store's file.
        path: PathBuf,
    },
    /// A newer Strata wrote the store, in a layout this one cannot read.
    #[error(
        "metadata store {} has schema version {found}, this Strata reads version {supported}: \
         run the Strata release that wrote it",
        path.display()
    )]
    NewerSchema {
        /// The store's file.
        path: PathBuf,
        /// The version the file records.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The operation itself was sound, but another operation in its group commit failed after
    /// writing, so the whole batch was rolled back. Retrying is safe.
    #[error("the transaction was rolled back because an operation in it failed part-way")]
    RolledBack,
    /// The group commit carrying this write panicked before answering it.
    #[error("the batch carrying this write failed")]
    BatchFailed,
    /// An earlier I/O error left the store unusable until it is reopened (redb's rule); the
    /// store reopens it at once, so a retry can succeed.
    #[error(
        "{context}: an earlier I/O error left the metadata store unusable; it is being reopened, retry"
    )]
    Unusable {
        /// What the store was doing.
        context: String,
    },
    /// The store refused an operation in a way only a bug in Strata explains (a table opened
    /// with the wrong types, a value too large for a page).
    #[error("{context}: {detail}")]
    Bug {
        /// What the store was doing.
        context: String,
        /// What it said.
        detail: String,
    },
}

impl StoreError {
    /// The kind of the I/O error under this one, if an I/O error caused it.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            StoreError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
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

    /// Whether the disk (or the caller's quota on it) is full: an I/O error of kind
    /// `StorageFull` (ENOSPC) or `QuotaExceeded` (EDQUOT), in the filesystem or under the
    /// metadata store.
    pub fn is_out_of_space(&self) -> bool {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        let kind = match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Store(e) => e.io_kind(),
            _ => None,
        };
        matches!(kind, Some(StorageFull | QuotaExceeded))
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
