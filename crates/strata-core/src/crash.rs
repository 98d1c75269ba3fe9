//! Deterministic crash points for crash-consistency tests.
//!
//! When the environment variable `STRATA_CRASH_AT` names a point, the process aborts (as a
//! `kill -9` would end it: no destructors, no flushing) the first time execution reaches that
//! point. In production the variable is unset and each check is one relaxed atomic load.

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "STRATA_CRASH_AT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// Aborts the process if `STRATA_CRASH_AT` equals `point`.
pub fn point(point: &str) {
    if armed() == Some(point) {
        eprintln!("strata: crash point {point:?} reached, aborting");
        std::process::abort();
    }
}
