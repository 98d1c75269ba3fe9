//! Why a backend could not be opened: start-up failures, in their own type rather than in
//! the request errors a running snapshotter answers with.

use std::path::PathBuf;

use strata_core::StoreError;

/// Why a driver or an [`Engine`](crate::Engine) could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A filesystem step failed (creating the root, probing it, removing a leftover).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `mkdir`.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metadata store cannot be opened or read (in use, damaged, newer schema, …).
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    /// The overlay backend's root is on a filesystem without `d_type`.
    #[error(
        "{} does not support d_type; overlayfs needs it. If the backing filesystem is xfs, \
         reformat it with ftype=1",
        path.display()
    )]
    NoDType {
        /// The backend's root.
        path: PathBuf,
    },
    /// The btrfs backend's root is not on btrfs.
    #[error(
        "the btrfs backend needs its root on a btrfs filesystem, and {} is on {filesystem}: \
         mount a btrfs filesystem there (or at a parent of it), or use the overlay or native \
         backend",
        path.display()
    )]
    NotBtrfs {
        /// The backend's root.
        path: PathBuf,
        /// The filesystem it is on.
        filesystem: String,
    },
    /// A default size limit is configured but btrfs quotas are off.
    #[error(
        "a default size limit needs btrfs quotas, which are off on {}: set `quota = \"simple\"` \
         or `quota = \"qgroups\"` in the [btrfs] configuration, or run `btrfs quota enable {}`",
        path.display(),
        path.display()
    )]
    QuotasOff {
        /// The backend's root.
        path: PathBuf,
    },
    /// Start-up recovery failed in some other way.
    #[error("start-up recovery: {0}")]
    Recovery(strata_core::Error),
}

impl OpenError {
    /// Wraps an I/O error with the step and the path it concerned.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> OpenError {
        OpenError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<strata_core::Error> for OpenError {
    /// Keeps I/O and store failures in their own variants; anything else is a recovery step
    /// that failed.
    fn from(e: strata_core::Error) -> OpenError {
        match e {
            strata_core::Error::Io { op, path, source } => OpenError::Io { op, path, source },
            strata_core::Error::Store(e) => OpenError::Store(e),
            other => OpenError::Recovery(other),
        }
    }
}
