//! A request's context: its deadline and its cancellation, passed explicitly.
//!
//! containerd passes a `ctx` to every snapshotter call; Strata does the same. The gRPC
//! adapter builds one [`Ctx`] per request (the client's `grpc-timeout` as the deadline, and a
//! [`Canceller`] fired when the client goes away); every [`crate::Snapshotter`] method takes
//! it as its first argument and hands it down to the metadata store, which checks it right
//! before an operation joins a write batch. Internal callers (start-up recovery, metrics,
//! `fsck`) use [`Ctx::background`], which never ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The deadline and cancellation of one request. Cloning is cheap (an `Arc` at most), and
/// every clone sees the same cancellation.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    deadline: Option<Instant>,
    cancelled: Option<Arc<AtomicBool>>,
}

/// Fires the cancellation of the [`Ctx`] it was made with.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    /// Cancels the context (and every clone of it). Idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Ctx {
    /// A context that is never cancelled and has no deadline, for work no client waits on.
    pub fn background() -> Ctx {
        Ctx::default()
    }

    /// A context that ends when the returned [`Canceller`] fires.
    pub fn with_cancel() -> (Ctx, Canceller) {
        let flag = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            deadline: None,
            cancelled: Some(Arc::clone(&flag)),
        };
        (ctx, Canceller(flag))
    }

    /// This context, ending at `deadline` at the latest.
    pub fn with_deadline(mut self, deadline: Instant) -> Ctx {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self
    }

    /// This context, ending `timeout` from now at the latest.
    pub fn with_timeout(self, timeout: Duration) -> Ctx {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.with_deadline(deadline),
            None => self,
        }
    }

    /// When the request's caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the request was cancelled or its deadline passed.
    pub fn is_done(&self) -> bool {
        self.check().is_err()
    }

    /// `Err(Cancelled)` once the request was cancelled, `Err(DeadlineExceeded)` once its
    /// deadline passed; `Ok` while its caller still waits.
    pub fn check(&self) -> Result<()> {
        if self
            .cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Acquire))
        {
            return Err(Error::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The background context never ends; a cancelled one is seen by every clone.
    #[test]
    fn cancellation_reaches_clones() {
        assert!(Ctx::background().check().is_ok());
        let (ctx, cancel) = Ctx::with_cancel();
        let clone = ctx.clone();
        assert!(clone.check().is_ok());
        cancel.cancel();
        assert!(matches!(clone.check(), Err(Error::Cancelled)));
        assert!(ctx.is_done());
    }

    /// A passed deadline ends the context; the earlier of two deadlines wins.
    #[test]
    fn deadlines() {
        let now = Instant::now();
        let past = Ctx::background().with_deadline(now);
        assert!(matches!(past.check(), Err(Error::DeadlineExceeded)));
        let later = now + Duration::from_secs(3600);
        let ctx = Ctx::background()
            .with_deadline(later)
            .with_deadline(now + Duration::from_secs(60));
        assert_eq!(ctx.deadline(), Some(now + Duration::from_secs(60)));
        assert!(ctx.check().is_ok());
        assert!(
            Ctx::background()
                .with_timeout(Duration::MAX)
                .check()
                .is_ok()
        );
    }
}
