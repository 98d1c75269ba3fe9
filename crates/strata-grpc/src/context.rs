//! A request's [`Ctx`], built from what the gRPC request carries.
//!
//! The deadline is the client's `grpc-timeout` (which tonic also enforces by dropping the
//! handler); the cancellation fires when the handler's future is dropped before the work
//! finished — the client went away or the deadline passed — so blocking work that is still
//! running sees it and changes nothing more.

use std::time::{Duration, Instant};

use strata_core::{Canceller, Ctx};
use tonic::metadata::MetadataMap;

/// The metadata key of the client's timeout (gRPC over HTTP/2).
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The deadline a request's `grpc-timeout` sets, counted from `now`; `None` if it carries
/// none (or one that does not parse, which tonic ignores as well).
pub(crate) fn deadline(metadata: &MetadataMap, now: Instant) -> Option<Instant> {
    let value = metadata.get(GRPC_TIMEOUT)?.to_str().ok()?;
    now.checked_add(parse_timeout(value)?)
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request's context with the guard that cancels it if the request is abandoned.
pub(crate) fn request_context(deadline: Option<Instant>, op: &'static str) -> (Ctx, CancelOnDrop) {
    let (ctx, canceller) = Ctx::with_cancel();
    let ctx = match deadline {
        Some(d) => ctx.with_deadline(d),
        None => ctx,
    };
    let guard = CancelOnDrop {
        canceller,
        op,
        finished: false,
    };
    (ctx, guard)
}

/// Cancels its context when dropped before [`CancelOnDrop::finish`] (tonic drops the
/// handler's future when the client cancels or the deadline passes).
pub(crate) struct CancelOnDrop {
    canceller: Canceller,
    op: &'static str,
    finished: bool,
}

impl CancelOnDrop {
    /// The work is done: dropping the guard no longer cancels anything.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.canceller.cancel();
            tracing::debug!(
                op = self.op,
                "request abandoned by the client or its deadline; cancelling"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit of the gRPC spec parses; malformed values are ignored, as tonic does.
    #[test]
    fn grpc_timeouts() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("300m", Some(Duration::from_millis(300))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("", None),
            ("m", None),
            ("123456789m", None),
            ("10x", None),
            ("-1S", None),
            ("1.5S", None),
            ("5é", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_timeout(value), want, "{value:?}");
        }
    }

    /// The deadline counts from when the request arrived; without a header there is none.
    #[test]
    fn deadline_from_metadata() {
        let now = Instant::now();
        let mut metadata = MetadataMap::new();
        assert_eq!(deadline(&metadata, now), None);
        metadata.insert(GRPC_TIMEOUT, "250m".parse().unwrap());
        assert_eq!(
            deadline(&metadata, now),
            Some(now + Duration::from_millis(250))
        );
    }

    /// Dropping an unfinished guard cancels the context; a finished one does not.
    #[test]
    fn guard_cancels_abandoned_requests() {
        let (ctx, guard) = request_context(None, "test");
        guard.finish();
        assert!(ctx.check().is_ok());
        let (ctx, guard) = request_context(None, "test");
        drop(guard);
        assert!(matches!(ctx.check(), Err(strata_core::Error::Cancelled)));
    }
}
