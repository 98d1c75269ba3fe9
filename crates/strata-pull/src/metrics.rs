//! Counters of the pull path, read by the daemon's metrics endpoint and logs.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the pull path did since start-up.
#[derive(Debug, Default)]
pub struct PullMetrics {
    /// Layers pulled and committed straight into snapshots.
    pub layers: AtomicU64,
    /// Compressed bytes fetched from registries for those layers.
    pub bytes_fetched: AtomicU64,
    /// Uncompressed bytes applied.
    pub bytes_applied: AtomicU64,
    /// Microseconds spent fetching and applying layers (summed over layers).
    pub micros: AtomicU64,
    /// Prepares that fell back to containerd's own pull.
    pub fallbacks: AtomicU64,
}

impl PullMetrics {
    /// Adds one pulled layer.
    pub fn layer(&self, fetched: u64, applied: u64, micros: u64) {
        self.layers.fetch_add(1, Ordering::Relaxed);
        self.bytes_fetched.fetch_add(fetched, Ordering::Relaxed);
        self.bytes_applied.fetch_add(applied, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one fallback.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as `(name, help, value)` rows, for a Prometheus text exposition.
    pub fn rows(&self) -> Vec<(&'static str, &'static str, f64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            (
                "strata_pull_layers_total",
                "Layers pulled straight into snapshots.",
                get(&self.layers),
            ),
            (
                "strata_pull_fetched_bytes_total",
                "Compressed layer bytes fetched from registries.",
                get(&self.bytes_fetched),
            ),
            (
                "strata_pull_applied_bytes_total",
                "Uncompressed layer bytes applied.",
                get(&self.bytes_applied),
            ),
            (
                "strata_pull_seconds_total",
                "Seconds spent fetching and applying layers.",
                get(&self.micros) / 1e6,
            ),
            (
                "strata_pull_fallbacks_total",
                "Prepares that fell back to containerd's own pull.",
                get(&self.fallbacks),
            ),
        ]
    }
}
