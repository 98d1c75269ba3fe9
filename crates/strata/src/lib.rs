//! The `strata` binary's library: configuration and the daemon. `main.rs` only parses
//! arguments and calls in here, so tests can drive the same code.
#![forbid(unsafe_code)]

pub mod config;
pub mod daemon;
