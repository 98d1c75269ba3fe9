//! Prometheus metrics: what the service records as it answers ([`Metrics`]), what a scrape
//! computes from the backends ([`render`]), and the HTTP endpoint that serves them
//! ([`serve_http`], for `strata serve --metrics-address`).
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `strata_build_info` | gauge (1) | `version` | the build |
//! | `strata_rpc_duration_seconds` | histogram | `op`, `backend` | every RPC that reached a backend |
//! | `strata_rpc_errors_total` | counter | `op`, `code` | every failed RPC, by gRPC code |
//! | `strata_snapshots` | gauge | `backend`, `kind` | a census at scrape time |
//! | `strata_snapshot_bytes`, `strata_snapshot_inodes` | gauge | `backend`, `kind` | see below |
//! | `strata_active_snapshots_measured` | gauge | `backend` | see below |
//! | `strata_layer_operations_total` | counter | `op` (`apply`, `diff`), `outcome` | diff service calls, `ok` or the gRPC code |
//! | `strata_layer_bytes_total` | counter | `op`, `form` (`blob`, `tar`) | bytes of layers applied or produced |
//! | `strata_layer_seconds_total` | counter | `op` | time in successful diff service calls |
//! | `strata_pull_layers_total`, `strata_pull_fetched_bytes_total`, `strata_pull_applied_bytes_total`, `strata_pull_seconds_total`, `strata_pull_fallbacks_total` | counter | — | the pull path (`strata-pull`), when `[pull]` is on |
//! | `strata_cleanup_runs_total` | counter | `backend` | successful Cleanups |
//! | `strata_cleanup_reclaimed_bytes_total`, `strata_cleanup_reclaimed_directories_total` | counter | `backend` | what they removed |
//!
//! Bytes and inodes of committed snapshots are the sum of the figures stored at Commit, read at
//! scrape time in the same read transaction that counts the snapshots (cheap: no directory is
//! walked). Those of active snapshots are *the last values a Usage RPC computed* for each
//! snapshot that is still active (containerd's CRI plugin asks periodically for running
//! containers): walking every writable layer at each scrape would make scrapes as expensive as
//! the largest container. An active snapshot nobody asked about counts as zero;
//! `strata_active_snapshots_measured` says how many were.

mod http;
mod layers;
mod registry;
mod scrape;
mod text;

pub use http::serve_http;
pub use registry::{CounterRows, Metrics};
pub use scrape::render;
