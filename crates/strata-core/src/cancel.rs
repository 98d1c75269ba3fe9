//! Cancellation of a request's blocking work.
//!
//! The gRPC layer gives each request a [`Cancel`] that fires when the client goes away or the
//! request's deadline passes, and runs the snapshotter call inside [`Cancel::run`]. Long walks
//! poll [`is_cancelled`]; operations check [`check`] (or a captured [`current`] token) right
//! before their metadata write, so a request whose caller has given up changes nothing.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

/// A flag shared between a request's handler and its blocking work.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, unfired token.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Fires the token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the token fired.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` once the token fired.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Runs `f` with this token as the thread's current one.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        struct Restore(Option<Cancel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(previous);
        f()
    }
}

/// The current thread's token, if its work runs for a request.
pub fn current() -> Option<Cancel> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Whether the current thread's request was cancelled.
pub fn is_cancelled() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

/// `Err(Cancelled)` if the current thread's request was cancelled.
pub fn check() -> Result<()> {
    if is_cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token is visible inside `run` only, and firing it is seen by `check`.
    #[test]
    fn scoped_token() {
        assert!(check().is_ok());
        let token = Cancel::new();
        token.run(|| {
            assert!(check().is_ok());
            token.cancel();
            assert!(matches!(check(), Err(Error::Cancelled)));
        });
        assert!(check().is_ok(), "restored after run");
        assert!(current().is_none());
    }
}
