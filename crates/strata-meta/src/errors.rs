//! redb's errors as [`StoreError`]s: the I/O kind, damage and misuse kept apart, so the gRPC
//! adapter can tell a full disk from a bug and a caller can tell a retry from a restore.

use std::sync::Arc;

use strata_core::{Error, Result, StoreError};

/// Turns any redb error into the [`StoreError`] it means, with what the store was doing.
pub(crate) fn from_redb(context: &str, error: impl Into<redb::Error>) -> StoreError {
    let context = context.to_owned();
    match error.into() {
        // redb's word for a file that is not a store ("magic number mismatch"): damage, not
        // a failing disk.
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupted {
                context,
                detail: source.to_string(),
            }
        }
        redb::Error::Io(source) => StoreError::Io {
            context,
            source: Arc::new(source),
        },
        redb::Error::Corrupted(detail) => StoreError::Corrupted { context, detail },
        redb::Error::UpgradeRequired(version) => StoreError::Corrupted {
            context,
            detail: format!("the file uses redb format {version}, which this build cannot read"),
        },
        // The database a reopen closed under a read transaction: as unusable as before.
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => StoreError::Unusable { context },
        other => StoreError::Bug {
            context,
            detail: other.to_string(),
        },
    }
}

/// The store error inside `e`; any other error (which only a bug in Strata explains here)
/// as [`StoreError::Bug`], saying what the store was doing.
pub(crate) fn into_store_error(e: Error, context: &str) -> StoreError {
    match e {
        Error::Store(e) => e,
        other => StoreError::Bug {
            context: context.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Extension to turn redb's many error types into [`Error::Store`] with context.
pub(crate) trait StoreContext<T> {
    fn store(self, what: &str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> StoreContext<T> for std::result::Result<T, E> {
    fn store(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::Store(from_redb(what, e)))
    }
}

/// A record or index entry that cannot be what the store's own rules allow.
pub(crate) fn corrupted(context: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Store(StoreError::Corrupted {
        context: context.into(),
        detail: detail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The I/O kind under a redb error survives the conversion: a full disk stays a full disk.
    #[test]
    fn io_kind_survives() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = from_redb("committing", redb::StorageError::Io(full));
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull));
        assert!(Error::Store(e).is_out_of_space());
        let damaged = from_redb("reading", redb::StorageError::Corrupted("bad page".into()));
        assert!(
            matches!(damaged, StoreError::Corrupted { .. }),
            "{damaged:?}"
        );
        assert_eq!(damaged.to_string(), "reading: bad page");
        let gone = from_redb("reading", redb::StorageError::PreviousIo);
        assert!(matches!(gone, StoreError::Unusable { .. }), "{gone:?}");
    }
}
