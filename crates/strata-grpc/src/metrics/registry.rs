//! What the service records as it answers: RPC latencies, failures by code, Cleanup totals,
//! and the last usage a Usage RPC measured for each active snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use strata_core::{CleanupReport, Usage};
use tonic::Code;

use super::layers::LayerTotals;
use super::text::{escape, family};
use crate::status::code_name;

/// Upper bounds of the latency histogram's buckets, in seconds: from a cached Stat (tens of
/// microseconds) to a native Prepare copying a large parent (seconds).
const BUCKETS: [f64; 15] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most active snapshots whose last usage is remembered; beyond it new keys are not tracked
/// (scrapes prune keys that stopped being active, so only a daemon never scraped fills it).
const MAX_TRACKED_USAGE: usize = 65_536;

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct CleanupTotals {
    runs: u64,
    directories: u64,
    bytes: u64,
}

/// The last measured usage of a backend's active snapshots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Measured {
    /// Their sum.
    pub(super) usage: Usage,
    /// How many snapshots it covers.
    pub(super) snapshots: u64,
}

/// The daemon's metrics: recorded by the service as requests complete, rendered on scrape
/// (by the `scrape` module, which also reads the backends).
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(op, backend)` → latency histogram.
    rpc: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    /// `(op, gRPC code)` → failures.
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// backend → Cleanup totals.
    cleanup: Mutex<BTreeMap<String, CleanupTotals>>,
    /// backend → key → the last usage a Usage RPC computed.
    usage: Mutex<HashMap<String, HashMap<String, Usage>>>,
    /// `apply`/`diff` → the diff service's totals.
    layers: Mutex<BTreeMap<&'static str, LayerTotals>>,
    /// Counters kept by other parts of the daemon (the pull path), read at each scrape.
    external: Mutex<Vec<External>>,
}

/// Counter rows: `(name, help, value)`, one counter family each.
pub type CounterRows = Vec<(&'static str, &'static str, f64)>;

/// A source of counters kept outside this crate.
struct External(Box<dyn Fn() -> CounterRows + Send + Sync>);

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("External(..)")
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records one RPC answered by `backend` in `elapsed`, failed with `code` if any.
    pub fn observe(&self, op: &'static str, backend: &str, elapsed: Duration, code: Option<Code>) {
        {
            let mut rpc = self.rpc.lock().expect("metrics lock");
            match rpc.get_mut(&(op, backend.to_owned())) {
                Some(h) => h.observe(elapsed.as_secs_f64()),
                None => {
                    let mut h = Histogram::default();
                    h.observe(elapsed.as_secs_f64());
                    rpc.insert((op, backend.to_owned()), h);
                }
            }
        }
        if let Some(code) = code {
            self.failed(op, code);
        }
    }

    /// Records one RPC that failed with `code`, whether or not it reached a backend (an
    /// unknown `snapshotter` fails before).
    pub fn failed(&self, op: &'static str, code: Code) {
        *self
            .errors
            .lock()
            .expect("metrics lock")
            .entry((op, code_name(code)))
            .or_default() += 1;
    }

    /// Records one layer operation of the diff service (`apply` or `diff`): its outcome
    /// (`None` for success, else the gRPC code), and for a success the bytes of the blob and
    /// of the tar stream, and how long it took.
    pub fn layer_done(
        &self,
        op: &'static str,
        code: Option<Code>,
        blob_bytes: u64,
        tar_bytes: u64,
        elapsed: Duration,
    ) {
        let mut layers = self.layers.lock().expect("metrics lock");
        let totals = layers.entry(op).or_default();
        *totals
            .calls
            .entry(code.map_or("ok", code_name))
            .or_default() += 1;
        if code.is_none() {
            totals.blob_bytes += blob_bytes;
            totals.tar_bytes += tar_bytes;
            totals.seconds += super::layers::seconds(elapsed);
        }
    }

    /// Writes the diff service's layer counters.
    /// Adds counters kept elsewhere (the pull path's), read by `rows` at each scrape.
    pub fn add_counters(&self, rows: impl Fn() -> CounterRows + Send + Sync + 'static) {
        self.external
            .lock()
            .expect("metrics lock")
            .push(External(Box::new(rows)));
    }

    /// Writes the counters added with [`Metrics::add_counters`].
    pub(super) fn render_external(&self, out: &mut String) {
        for source in self.external.lock().expect("metrics lock").iter() {
            for (name, help, value) in (source.0)() {
                family(out, name, "counter", help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }

    pub(super) fn render_layers(&self, out: &mut String) {
        super::layers::render(out, &self.layers.lock().expect("metrics lock"));
    }

    /// Records a successful Cleanup of `backend`.
    pub fn cleanup_done(&self, backend: &str, report: &CleanupReport) {
        let mut cleanup = self.cleanup.lock().expect("metrics lock");
        let totals = cleanup.entry(backend.to_owned()).or_default();
        totals.runs += 1;
        totals.directories += report.directories;
        totals.bytes += report.bytes;
    }

    /// Remembers the usage a Usage RPC computed for `key`, the figure scrapes report for it
    /// while it stays active.
    pub fn usage_measured(&self, backend: &str, key: &str, usage: Usage) {
        let mut map = self.usage.lock().expect("metrics lock");
        let tracked: usize = map.values().map(HashMap::len).sum();
        let keys = map.entry(backend.to_owned()).or_default();
        if tracked < MAX_TRACKED_USAGE || keys.contains_key(key) {
            keys.insert(key.to_owned(), usage);
        }
    }

    /// The last measured usage of `backend`'s snapshots that are still active, given the keys
    /// of all its active snapshots; the others (removed or committed since) are forgotten.
    pub(super) fn active_usage(&self, backend: &str, active: &[String]) -> Measured {
        let mut map = self.usage.lock().expect("metrics lock");
        let Some(known) = map.get_mut(backend) else {
            return Measured::default();
        };
        let mut keep = HashMap::with_capacity(known.len().min(active.len()));
        for key in active {
            if let Some((key, usage)) = known.remove_entry(key.as_str()) {
                keep.insert(key, usage);
            }
        }
        *known = keep;
        let mut measured = Measured::default();
        for usage in known.values() {
            measured.usage.add(*usage);
            measured.snapshots += 1;
        }
        measured
    }

    /// Writes the RPC latency histograms and error counters.
    pub(super) fn render_rpc(&self, out: &mut String) {
        family(
            out,
            "strata_rpc_duration_seconds",
            "histogram",
            "Time to answer a snapshots RPC, by operation and backend.",
        );
        for ((op, backend), h) in self.rpc.lock().expect("metrics lock").iter() {
            let labels = format!("op=\"{op}\",backend=\"{}\"", escape(backend));
            let mut cumulative = 0;
            for (i, count) in h.buckets.iter().enumerate() {
                cumulative += count;
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "strata_rpc_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "strata_rpc_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "strata_rpc_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        family(
            out,
            "strata_rpc_errors_total",
            "counter",
            "Snapshots RPCs that failed, by operation and gRPC code.",
        );
        for ((op, code), n) in self.errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "strata_rpc_errors_total{{op=\"{op}\",code=\"{code}\"}} {n}"
            );
        }
    }

    /// Writes the Cleanup counters of each of `backends` (zero for one never cleaned up).
    pub(super) fn render_cleanup<'a>(
        &self,
        out: &mut String,
        backends: impl Iterator<Item = &'a str> + Clone,
    ) {
        let cleanup = self.cleanup.lock().expect("metrics lock");
        for (metric, help, pick) in [
            (
                "strata_cleanup_runs_total",
                "Cleanup calls that completed.",
                (|t: &CleanupTotals| t.runs) as fn(&CleanupTotals) -> u64,
            ),
            (
                "strata_cleanup_reclaimed_directories_total",
                "Snapshot directories removed by Cleanup.",
                |t: &CleanupTotals| t.directories,
            ),
            (
                "strata_cleanup_reclaimed_bytes_total",
                "Bytes those directories held.",
                |t: &CleanupTotals| t.bytes,
            ),
        ] {
            family(out, metric, "counter", help);
            for backend in backends.clone() {
                let totals = cleanup.get(backend).copied().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{metric}{{backend=\"{}\"}} {}",
                    escape(backend),
                    pick(&totals)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters added from elsewhere are read at each render, one family per row.
    #[test]
    fn external_counters() {
        let m = Metrics::new();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
        let seen = std::sync::Arc::clone(&n);
        m.add_counters(move || {
            vec![(
                "strata_pull_layers_total",
                "Layers.",
                seen.load(std::sync::atomic::Ordering::Relaxed) as f64,
            )]
        });
        let mut out = String::new();
        m.render_external(&mut out);
        assert!(
            out.contains("# TYPE strata_pull_layers_total counter\n"),
            "{out}"
        );
        assert!(out.contains("\nstrata_pull_layers_total 3\n"), "{out}");
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        m.render_external(&mut out);
        assert!(out.contains("\nstrata_pull_layers_total 5\n"), "{out}");
    }

    /// Layer operations count by outcome; only successes add bytes and seconds.
    #[test]
    fn layer_totals() {
        let m = Metrics::new();
        m.layer_done("apply", None, 100, 300, Duration::from_millis(500));
        m.layer_done(
            "apply",
            Some(Code::InvalidArgument),
            7,
            7,
            Duration::from_secs(9),
        );
        m.layer_done("diff", None, 10, 30, Duration::from_millis(250));
        let mut out = String::new();
        m.render_layers(&mut out);
        for line in [
            "strata_layer_operations_total{op=\"apply\",outcome=\"ok\"} 1\n",
            "strata_layer_operations_total{op=\"apply\",outcome=\"InvalidArgument\"} 1\n",
            "strata_layer_bytes_total{op=\"apply\",form=\"blob\"} 100\n",
            "strata_layer_bytes_total{op=\"apply\",form=\"tar\"} 300\n",
            "strata_layer_seconds_total{op=\"apply\"} 0.5\n",
            "strata_layer_seconds_total{op=\"diff\"} 0.25\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }

    /// Buckets are cumulative in the output and `+Inf` equals the count.
    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::new();
        m.observe("stat", "overlay", Duration::from_micros(50), None);
        m.observe("stat", "overlay", Duration::from_millis(3), None);
        m.observe(
            "stat",
            "overlay",
            Duration::from_secs(60),
            Some(Code::NotFound),
        );
        let mut out = String::new();
        m.render_rpc(&mut out);
        assert!(out.contains(
            "strata_rpc_duration_seconds_bucket{op=\"stat\",backend=\"overlay\",le=\"0.0001\"} 1\n"
        ));
        assert!(out.contains(
            "strata_rpc_duration_seconds_bucket{op=\"stat\",backend=\"overlay\",le=\"0.005\"} 2\n"
        ));
        assert!(out.contains(
            "strata_rpc_duration_seconds_bucket{op=\"stat\",backend=\"overlay\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            out.contains("strata_rpc_duration_seconds_count{op=\"stat\",backend=\"overlay\"} 3\n")
        );
        assert!(out.contains("strata_rpc_errors_total{op=\"stat\",code=\"NotFound\"} 1\n"));
    }

    /// Remembered usage covers only the keys still active, per backend; the rest is forgotten.
    #[test]
    fn active_usage_forgets_what_is_no_longer_active() {
        let m = Metrics::new();
        let u = |size| Usage { size, inodes: 1 };
        m.usage_measured("overlay", "a", u(10));
        m.usage_measured("overlay", "b", u(20));
        m.usage_measured("native", "a", u(40));
        let active = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            m.active_usage("overlay", &active(&["a", "b", "c"])),
            Measured {
                usage: Usage {
                    size: 30,
                    inodes: 2
                },
                snapshots: 2
            }
        );
        assert_eq!(m.active_usage("overlay", &active(&["b"])).usage.size, 20);
        assert_eq!(
            m.active_usage("overlay", &active(&["a", "b"])).snapshots,
            1,
            "a was forgotten"
        );
        assert_eq!(m.active_usage("native", &active(&["a"])).usage.size, 40);
        assert_eq!(
            m.active_usage("btrfs", &active(&["a"])),
            Measured::default()
        );
    }
}
