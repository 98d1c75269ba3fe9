//! Deterministic crash and pause points: test-only seams, compiled in only with the
//! `crash-points` feature (the `strata` crate's tests turn it on; a release build has neither
//! the checks nor the points' names).
//!
//! When the environment variable `STRATA_CRASH_AT` names a point, the process aborts (as a
//! `kill -9` would end it: no destructors, no flushing) the first time execution reaches that
//! point. When `STRATA_PAUSE_AT` names a point, execution waits there for as long as the file
//! named by `STRATA_PAUSE_FILE` exists, so a test can hold an operation mid-way and check
//! what the rest of the daemon does meanwhile. Without the feature both functions are empty
//! and inlined away.

/// The environment variable naming the crash point.
pub const ENV: &str = "STRATA_CRASH_AT";
/// The environment variable naming the pause point.
pub const PAUSE_ENV: &str = "STRATA_PAUSE_AT";
/// The environment variable naming the file whose existence holds a pause.
pub const PAUSE_FILE_ENV: &str = "STRATA_PAUSE_FILE";

#[cfg(feature = "crash-points")]
pub use armed::{pause, point};
#[cfg(feature = "crash-points")]
pub use faults::{clear_faults, fail_nth, fault, fault_pending};

/// Succeeds: fault points are compiled out (no `crash-points` feature).
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn fault(_point: &str) -> std::io::Result<()> {
    Ok(())
}

/// Does nothing: crash points are compiled out (no `crash-points` feature).
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_point: &str) {}

/// Does nothing: pause points are compiled out (no `crash-points` feature).
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn pause(_point: &str) {}

#[cfg(feature = "crash-points")]
mod armed {
    use std::sync::OnceLock;

    use super::{ENV, PAUSE_ENV, PAUSE_FILE_ENV};

    fn armed() -> Option<&'static str> {
        static POINT: OnceLock<Option<String>> = OnceLock::new();
        POINT
            .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
            .as_deref()
    }

    fn pause_armed() -> Option<&'static (String, std::path::PathBuf)> {
        static PAUSE: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
        PAUSE
            .get_or_init(|| {
                let point = std::env::var(PAUSE_ENV).ok().filter(|s| !s.is_empty())?;
                let file = std::env::var_os(PAUSE_FILE_ENV)?;
                Some((point, file.into()))
            })
            .as_ref()
    }

    /// Waits while `STRATA_PAUSE_FILE` exists if `STRATA_PAUSE_AT` equals `point` — the first
    /// time only, so the test can run the same operation freely while the first one is held.
    pub fn pause(point: &str) {
        static USED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if let Some((armed, file)) = pause_armed()
            && armed == point
            && !USED.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            eprintln!(
                "strata: pause point {point:?} reached, waiting for {} to go",
                file.display()
            );
            while file.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Aborts the process if `STRATA_CRASH_AT` equals `point`.
    pub fn point(point: &str) {
        if armed() == Some(point) {
            eprintln!("strata: crash point {point:?} reached, aborting");
            std::process::abort();
        }
    }
}

/// Fault points: the seam through which an in-process test fails a filesystem call of an
/// operation (`mkdir`, `rename`, a Cleanup's removal …) with the error it chooses, the `n`th
/// time that call is reached, to check that each (operation, call) pair fails cleanly. The
/// plan is process-wide; tests that use it run one per process (nextest's way).
#[cfg(feature = "crash-points")]
mod faults {
    use std::sync::Mutex;

    struct Plan {
        point: String,
        /// Calls of `point` still to pass before the one that fails.
        remaining: u32,
        errno: i32,
    }

    static PLAN: Mutex<Option<Plan>> = Mutex::new(None);

    /// Arms `point`: its `nth` call from now (1 is the next) fails with `errno`, once.
    pub fn fail_nth(point: &str, nth: u32, errno: i32) {
        assert!(nth >= 1, "calls are counted from 1");
        *PLAN.lock().expect("fault plan") = Some(Plan {
            point: point.to_owned(),
            remaining: nth - 1,
            errno,
        });
    }

    /// Whether the armed failure is still to come (the operation made fewer calls).
    pub fn fault_pending() -> bool {
        PLAN.lock().expect("fault plan").is_some()
    }

    /// Disarms.
    pub fn clear_faults() {
        *PLAN.lock().expect("fault plan") = None;
    }

    /// Fails if this call of `point` is the armed one.
    pub fn fault(point: &str) -> std::io::Result<()> {
        let mut plan = PLAN.lock().expect("fault plan");
        match plan.as_mut() {
            Some(p) if p.point == point && p.remaining == 0 => {
                let errno = p.errno;
                *plan = None;
                Err(std::io::Error::from_raw_os_error(errno))
            }
            Some(p) if p.point == point => {
                p.remaining -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
