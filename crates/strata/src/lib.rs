//! The `strata` binary's library: configuration, the daemon, the client subcommands and the
//! offline tools. `main.rs` only parses arguments and calls in here, so tests can drive the
//! same code.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod fsck;
pub mod progress;
pub mod settings;
