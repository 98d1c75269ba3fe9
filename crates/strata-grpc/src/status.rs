//! The one place where domain errors become gRPC statuses. containerd turns these codes back
//! into `errdefs` errors, and its garbage collector and unpacker branch on them.

use strata_core::Error;
use tonic::{Code, Status};

/// The gRPC status for a domain error.
pub fn to_status(error: &Error) -> Status {
    let code = match error {
        Error::NotFound { .. } | Error::UnknownSnapshotter(_) => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::InvalidArgument(_) | Error::Filter(_) => Code::InvalidArgument,
        Error::Cancelled => Code::Cancelled,
        Error::Closed => Code::Unavailable,
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => Code::ResourceExhausted,
        Error::Io { .. } | Error::Store(_) => Code::Internal,
    };
    Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each contract error keeps its gRPC code: containerd's GC depends on them.
    #[test]
    fn contract_codes() {
        let cases = [
            (Error::not_found("k"), Code::NotFound),
            (Error::UnknownSnapshotter("x".into()), Code::NotFound),
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
            (
                Error::io("mkdir", "/x", std::io::Error::from_raw_os_error(28)),
                Code::ResourceExhausted,
            ),
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
