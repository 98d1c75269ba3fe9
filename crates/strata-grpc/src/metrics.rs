//! Prometheus metrics: what the service records as it answers, what it computes when scraped,
//! and the tiny HTTP/1.1 responder that serves them (`strata serve --metrics-address`).
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `strata_build_info` | gauge (1) | `version` | the build |
//! | `strata_rpc_duration_seconds` | histogram | `op`, `backend` | every RPC that reached a backend |
//! | `strata_rpc_errors_total` | counter | `op`, `code` | every failed RPC, by gRPC code |
//! | `strata_snapshots` | gauge | `backend`, `kind` | a Walk at scrape time |
//! | `strata_snapshot_bytes`, `strata_snapshot_inodes` | gauge | `backend`, `kind` | see below |
//! | `strata_cleanup_runs_total` | counter | `backend` | successful Cleanups |
//! | `strata_cleanup_reclaimed_bytes_total`, `strata_cleanup_reclaimed_directories_total` | counter | `backend` | what they removed |
//!
//! Bytes and inodes of committed snapshots are the sum of the figures stored at Commit, read at
//! scrape time (cheap: no directory is walked). Those of active snapshots are *the last values
//! a Usage RPC computed* for each snapshot that is still active (containerd's CRI plugin asks
//! periodically for running containers): walking every writable layer at each scrape would
//! make scrapes as expensive as the largest container. An active snapshot nobody asked about
//! counts as zero; `strata_active_snapshots_measured` says how many were.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_core::{CleanupReport, Filter, Kind, Usage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use crate::server::Backends;

/// Upper bounds of the latency histogram's buckets, in seconds: from a cached Stat (tens of
/// microseconds) to a native Prepare copying a large parent (seconds).
const BUCKETS: [f64; 15] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most active snapshots whose last usage is remembered; beyond it new keys are not tracked
/// (scrapes prune keys that stopped being active, so only a daemon never scraped fills it).
const MAX_TRACKED_USAGE: usize = 65_536;

/// Largest request head the responder reads.
const MAX_REQUEST: usize = 8192;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The daemon's metrics: recorded by the service as requests complete, rendered on scrape.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(op, backend)` → latency histogram.
    rpc: Mutex<BTreeMap<(&'static str, String), Histogram>>,
    /// `(op, gRPC code)` → failures.
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// backend → Cleanup totals.
    cleanup: Mutex<BTreeMap<String, CleanupTotals>>,
    /// `(backend, key)` → the last usage a Usage RPC computed.
    usage: Mutex<HashMap<(String, String), Usage>>,
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
        let id = (backend.to_owned(), key.to_owned());
        if map.len() < MAX_TRACKED_USAGE || map.contains_key(&id) {
            map.insert(id, usage);
        }
    }

    /// The metrics in Prometheus' text format (version 0.0.4). Walks every backend's
    /// metadata, so it blocks: call it off the async runtime.
    pub fn render(&self, backends: &Backends) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "strata_build_info",
            "gauge",
            "Strata's version; always 1.",
        );
        let _ = writeln!(
            out,
            "strata_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );
        self.render_rpc(&mut out);
        self.render_snapshots(&mut out, backends);
        self.render_cleanup(&mut out, backends);
        out
    }

    fn render_rpc(&self, out: &mut String) {
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

    fn render_snapshots(&self, out: &mut String, backends: &Backends) {
        let mut counts = Vec::new();
        let mut active_keys = Vec::new();
        for backend in backends.all() {
            let name = backend.name().to_owned();
            let mut by_kind = [0u64; 3];
            let mut committed = Vec::new();
            let walked = backend.walk(&Filter::always(), &mut |info| {
                by_kind[kind_index(info.kind)] += 1;
                match info.kind {
                    Kind::Committed => committed.push(info.name),
                    Kind::Active => active_keys.push((name.clone(), info.name)),
                    Kind::View => {}
                }
                Ok(())
            });
            if let Err(e) = walked {
                tracing::warn!(backend = %name, error = %e, "metrics: walking snapshots failed");
                continue;
            }
            // A committed snapshot's usage is the figure stored at Commit: a read, no walk.
            let mut stored = Usage::default();
            for key in &committed {
                if let Ok(u) = backend.usage(key) {
                    stored.add(u);
                }
            }
            counts.push((name, by_kind, stored));
        }

        // Last measured usage and how many snapshots it covers, per backend; keys that are no
        // longer active (removed or committed since) are forgotten.
        let active: BTreeMap<String, (Usage, u64)> = {
            let mut map = self.usage.lock().expect("metrics lock");
            let mut keep = HashMap::with_capacity(active_keys.len());
            for id in active_keys {
                if let Some(u) = map.remove(&id) {
                    keep.insert(id, u);
                }
            }
            *map = keep;
            let mut per_backend: BTreeMap<String, (Usage, u64)> = BTreeMap::new();
            for ((backend, _), u) in map.iter() {
                let entry = per_backend.entry(backend.clone()).or_default();
                entry.0.add(*u);
                entry.1 += 1;
            }
            per_backend
        };

        family(
            out,
            "strata_snapshots",
            "gauge",
            "Snapshots in the metadata, by backend and kind.",
        );
        for (backend, by_kind, _) in &counts {
            for kind in [Kind::Active, Kind::Committed, Kind::View] {
                let _ = writeln!(
                    out,
                    "strata_snapshots{{backend=\"{}\",kind=\"{kind}\"}} {}",
                    escape(backend),
                    by_kind[kind_index(kind)]
                );
            }
        }
        for (metric, help, pick) in [
            (
                "strata_snapshot_bytes",
                "Bytes used by snapshots: committed ones as measured at Commit, active ones as \
                 last measured by a Usage RPC.",
                (|u: &Usage| u.size) as fn(&Usage) -> i64,
            ),
            (
                "strata_snapshot_inodes",
                "Inodes used by snapshots: committed ones as measured at Commit, active ones as \
                 last measured by a Usage RPC.",
                |u: &Usage| u.inodes,
            ),
        ] {
            family(out, metric, "gauge", help);
            for (backend, _, stored) in &counts {
                let live = active.get(backend).map(|a| a.0).unwrap_or_default();
                let b = escape(backend);
                let _ = writeln!(
                    out,
                    "{metric}{{backend=\"{b}\",kind=\"committed\"}} {}",
                    pick(stored)
                );
                let _ = writeln!(
                    out,
                    "{metric}{{backend=\"{b}\",kind=\"active\"}} {}",
                    pick(&live)
                );
            }
        }
        family(
            out,
            "strata_active_snapshots_measured",
            "gauge",
            "Active snapshots whose usage a Usage RPC has measured (the others count as zero \
             in strata_snapshot_bytes).",
        );
        for (backend, _, _) in &counts {
            let n = active.get(backend).map(|a| a.1).unwrap_or(0);
            let _ = writeln!(
                out,
                "strata_active_snapshots_measured{{backend=\"{}\"}} {n}",
                escape(backend)
            );
        }
    }

    fn render_cleanup(&self, out: &mut String, backends: &Backends) {
        let cleanup = self.cleanup.lock().expect("metrics lock");
        let totals: Vec<(String, CleanupTotals)> = backends
            .all()
            .iter()
            .map(|b| {
                let name = b.name().to_owned();
                let t = cleanup.get(&name).copied().unwrap_or_default();
                (name, t)
            })
            .collect();
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
            for (backend, t) in &totals {
                let _ = writeln!(
                    out,
                    "{metric}{{backend=\"{}\"}} {}",
                    escape(backend),
                    pick(t)
                );
            }
        }
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Active => 0,
        Kind::Committed => 1,
        Kind::View => 2,
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The gRPC code's name as gRPC's own tooling spells it in metrics (`NotFound`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves: one request per
/// connection, answered and closed. Anything else gets 404 (or 405 for other methods).
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    backends: Arc<Backends>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, typically: back off rather than spin.
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, backends) = (Arc::clone(&metrics), Arc::clone(&backends));
        tokio::spawn(async move {
            if let Err(e) = answer(stream, metrics, backends).await {
                tracing::debug!(error = %e, "metrics: connection failed");
            }
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: Arc<Metrics>,
    backends: Arc<Backends>,
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let mut parts = head.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = tokio::task::spawn_blocking(move || metrics.render(&backends))
                .await
                .map_err(std::io::Error::other)?;
            ("200 OK", text)
        }
        ("GET" | "HEAD", "/") => ("200 OK", "Strata metrics: /metrics\n".to_owned()),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found; try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET\n".to_owned()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head and returns its first line.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_REQUEST {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Label values cannot break out of their quotes.
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
