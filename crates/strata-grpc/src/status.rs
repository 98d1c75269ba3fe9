//! The one place where domain errors become gRPC statuses (and where codes get their names).
//! containerd turns these codes back into `errdefs` errors, and its garbage collector and
//! unpacker branch on them.

use strata_core::Error;
use strata_layer::LayerError;
use tonic::{Code, Status};

/// The gRPC status for a domain error.
pub fn to_status(error: &Error) -> Status {
    let code = match error {
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        // containerd's snapshots service answers an unknown snapshotter the same way.
        Error::InvalidArgument(_) | Error::Filter(_) | Error::UnknownSnapshotter(_) => {
            Code::InvalidArgument
        }
        Error::Cancelled => Code::Cancelled,
        Error::DeadlineExceeded => Code::DeadlineExceeded,
        Error::Closed => Code::Unavailable,
        // A full disk or quota is the caller's to fix (free space), not a bug: containerd's
        // own snapshotters answer it the same way.
        Error::Io { .. } | Error::Store(_) if error.is_out_of_space() => Code::ResourceExhausted,
        Error::Io { .. } | Error::Store(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

/// The gRPC code's name as gRPC's own tooling spells it (`NotFound`), in metrics and in the
/// command line's error messages.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The gRPC status for a failed layer apply or export. The layer's own faults are
/// `InvalidArgument` (a corrupt, hostile or mislabelled layer: retrying cannot help); a
/// format feature Strata's applier lacks is `Unimplemented`, on which containerd's diff
/// service tries its next differ; a full disk or quota is `ResourceExhausted`.
pub fn layer_status(error: &LayerError, layer: &str) -> Status {
    let code = match error {
        LayerError::Corrupt { .. }
        | LayerError::Hostile { .. }
        | LayerError::DigestMismatch { .. } => Code::InvalidArgument,
        LayerError::Unsupported { .. } => Code::Unimplemented,
        LayerError::Cancelled => Code::Cancelled,
        LayerError::Source(_) => Code::Unavailable,
        e if e.is_out_of_space() => Code::ResourceExhausted,
        LayerError::Io { .. } => Code::Internal,
    };
    Status::new(code, format!("layer {layer}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::StoreError;

    /// Each contract error keeps its gRPC code: containerd's GC depends on them.
    #[test]
    fn contract_codes() {
        let cases = [
            (Error::not_found("k"), Code::NotFound),
            (Error::UnknownSnapshotter("x".into()), Code::InvalidArgument),
            (
                Error::AlreadyExists { key: "k".into() },
                Code::AlreadyExists,
            ),
            (
                Error::FailedPrecondition("p".into()),
                Code::FailedPrecondition,
            ),
            (Error::InvalidArgument("i".into()), Code::InvalidArgument),
            (Error::Closed, Code::Unavailable),
            (Error::Cancelled, Code::Cancelled),
            (Error::DeadlineExceeded, Code::DeadlineExceeded),
            (
                Error::io("mkdir", "/x", std::io::Error::from_raw_os_error(28)),
                Code::ResourceExhausted,
            ),
            (
                Error::io("write", "/x", std::io::Error::from_raw_os_error(122)),
                Code::ResourceExhausted,
            ),
            (
                Error::Store(StoreError::Io {
                    context: "committing metadata".into(),
                    source: std::sync::Arc::new(std::io::Error::from_raw_os_error(28)),
                }),
                Code::ResourceExhausted,
            ),
            (Error::Store(StoreError::RolledBack), Code::Internal),
            (
                Error::io("mkdir", "/x", std::io::Error::from_raw_os_error(5)),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(to_status(&error).code(), code, "{error}");
        }
    }
}
