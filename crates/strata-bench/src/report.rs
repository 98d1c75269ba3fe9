//! Summaries (percentiles, rates, ratios), the printed tables and the JSON report.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::ops::Measured;

/// One server's numbers for one row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// How many operations were timed (all rounds).
    pub samples: usize,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th-percentile latency (nearest rank), µs.
    pub p99_us: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Slowest operation, µs.
    pub max_us: f64,
    /// Operations per second over the measurement's wall-clock time (all clients together).
    pub ops_per_s: f64,
    /// Server CPU time (utime + stime) per operation, µs; clock-tick resolution, so only
    /// meaningful summed over many operations.
    pub cpu_us_per_op: f64,
    /// The system-time part of `cpu_us_per_op` (the kernel, on the server's behalf).
    pub cpu_sys_us_per_op: f64,
}

/// The nearest-rank `q`-quantile of sorted `v`, in µs.
fn quantile(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e6
}

/// Summarizes one server's measurements of a row.
pub fn summarize(m: &Measured) -> Summary {
    let mut v = m.samples.clone();
    v.sort_unstable();
    let n = v.len();
    let total: f64 = v.iter().map(Duration::as_secs_f64).sum();
    Summary {
        samples: n,
        p50_us: quantile(&v, 0.50),
        p99_us: quantile(&v, 0.99),
        mean_us: if n > 0 { total / n as f64 * 1e6 } else { 0.0 },
        max_us: v.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        ops_per_s: if m.wall.is_zero() {
            0.0
        } else {
            n as f64 / m.wall.as_secs_f64()
        },
        cpu_us_per_op: if n > 0 {
            m.cpu.total() / n as f64 * 1e6
        } else {
            0.0
        },
        cpu_sys_us_per_op: if n > 0 {
            m.cpu.sys / n as f64 * 1e6
        } else {
            0.0
        },
    }
}

/// Strata's number divided by containerd's, per column. Below 1 is better for Strata in the
/// latency columns, above 1 in `ops_per_s`.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// p50 latency ratio.
    pub p50: f64,
    /// p99 latency ratio.
    pub p99: f64,
    /// Throughput ratio.
    pub ops_per_s: f64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

impl Ratio {
    /// Strata's summary `s` over containerd's `c`.
    pub fn of(s: &Summary, c: &Summary) -> Ratio {
        Ratio {
            p50: ratio(s.p50_us, c.p50_us),
            p99: ratio(s.p99_us, c.p99_us),
            ops_per_s: ratio(s.ops_per_s, c.ops_per_s),
        }
    }
}

/// One row of the default table.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// Stable id, e.g. `prepare/8` (operation / clients).
    pub id: String,
    /// What the row measures.
    pub title: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Anything the reader must know (empty if nothing).
    pub note: String,
    /// Strata's numbers.
    pub strata: Summary,
    /// containerd's numbers.
    pub containerd: Summary,
    /// Strata / containerd.
    pub ratio: Ratio,
}

impl RowResult {
    /// A row from both servers' summaries.
    pub fn new(
        id: &str,
        title: &str,
        clients: usize,
        note: &str,
        strata: Summary,
        containerd: Summary,
    ) -> RowResult {
        let ratio = Ratio::of(&strata, &containerd);
        RowResult {
            id: id.to_owned(),
            title: title.to_owned(),
            clients,
            note: note.to_owned(),
            strata,
            containerd,
            ratio,
        }
    }
}

/// A latency in µs, with a unit that keeps 3 significant digits.
pub fn fmt_dur(us: f64) -> String {
    if us.is_nan() {
        "-".into()
    } else if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 10_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else if us < 100_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// A rate with 3 significant digits (at least).
pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_nan() {
        "-".into()
    } else {
        format!("{r:.2}")
    }
}

/// The side-by-side table of the default benchmark.
pub fn main_table(rows: &[RowResult]) -> String {
    let mut out = String::new();
    let side = |s: &Summary| {
        format!(
            "{:>8} {:>8} {:>8} {:>8}",
            fmt_dur(s.p50_us),
            fmt_dur(s.p99_us),
            fmt_rate(s.ops_per_s),
            fmt_dur(s.cpu_us_per_op)
        )
    };
    let _ = writeln!(
        out,
        "{:<34} {:>2} | {:^35} | {:^35} | {:^20}",
        "", "", "Strata", "containerd", "Strata / containerd"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>2} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6}",
        "row",
        "cl",
        "p50",
        "p99",
        "ops/s",
        "cpu/op",
        "p50",
        "p99",
        "ops/s",
        "cpu/op",
        "p50",
        "p99",
        "ops/s"
    );
    let _ = writeln!(out, "{}", "-".repeat(34 + 3 + 3 + 35 + 3 + 35 + 3 + 20));
    let mut notes = Vec::new();
    for r in rows {
        let mark = if r.note.is_empty() {
            String::new()
        } else {
            notes.push(r.note.clone());
            format!(" [{}]", notes.len())
        };
        let _ = writeln!(
            out,
            "{:<34} {:>2} | {} | {} | {:>6} {:>6} {:>6}",
            format!("{}{}", r.title, mark),
            r.clients,
            side(&r.strata),
            side(&r.containerd),
            fmt_ratio(r.ratio.p50),
            fmt_ratio(r.ratio.p99),
            fmt_ratio(r.ratio.ops_per_s)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "cl: concurrent clients (each its own connection). p50/p99: client-side latency. ops/s: all clients together."
    );
    let _ = writeln!(
        out,
        "cpu/op: server CPU (utime+stime) per operation. Ratios: below 1 = Strata faster (p50, p99); above 1 = Strata faster (ops/s)."
    );
    for (i, n) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {n}", i + 1);
    }
    out
}

/// Per-server totals over a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTotals {
    /// Server CPU seconds (utime + stime) from the start to the end of the table.
    pub cpu_s: f64,
    /// The system-time part of `cpu_s`.
    pub cpu_sys_s: f64,
    /// Peak resident memory (`VmHWM`), KiB.
    pub vm_hwm_kib: u64,
    /// Resident memory at the end (`VmRSS`), KiB.
    pub vm_rss_kib: u64,
}

/// The per-server totals table.
pub fn totals_table(strata: &ServerTotals, containerd: &ServerTotals) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:>12} {:>8}",
        "server totals", "Strata", "containerd", "ratio"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>12.2} {:>12.2} {:>8}",
        "CPU seconds over the run",
        strata.cpu_s,
        containerd.cpu_s,
        fmt_ratio(ratio(strata.cpu_s, containerd.cpu_s))
    );
    let _ = writeln!(
        out,
        "{:<34} {:>12.2} {:>12.2} {:>8}",
        "  of which system time",
        strata.cpu_sys_s,
        containerd.cpu_sys_s,
        fmt_ratio(ratio(strata.cpu_sys_s, containerd.cpu_sys_s))
    );
    let _ = writeln!(
        out,
        "{:<34} {:>12.1} {:>12.1} {:>8}",
        "peak memory (VmHWM), MiB",
        strata.vm_hwm_kib as f64 / 1024.0,
        containerd.vm_hwm_kib as f64 / 1024.0,
        fmt_ratio(ratio(
            strata.vm_hwm_kib as f64,
            containerd.vm_hwm_kib as f64
        ))
    );
    out
}

/// One row of the scale curve.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    /// Snapshots present.
    pub snapshots: usize,
    /// Operation id.
    pub op: String,
    /// Strata's numbers.
    pub strata: Summary,
    /// containerd's numbers.
    pub containerd: Summary,
    /// Strata / containerd.
    pub ratio: Ratio,
}

/// Memory of both servers at one population size.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleMemory {
    /// Snapshots present.
    pub snapshots: usize,
    /// Strata's `VmRSS`, KiB, after the measurements at this size.
    pub strata_rss_kib: u64,
    /// containerd's `VmRSS`, KiB.
    pub containerd_rss_kib: u64,
    /// Strata's `VmHWM`, KiB.
    pub strata_hwm_kib: u64,
    /// containerd's `VmHWM`, KiB.
    pub containerd_hwm_kib: u64,
    /// Seconds Strata took to get to this size from the previous one.
    pub strata_populate_s: f64,
    /// Seconds containerd took.
    pub containerd_populate_s: f64,
}

/// The scale-curve table.
pub fn scale_table(rows: &[ScaleRow], memory: &[ScaleMemory]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>9} {:<24} | {:^17} | {:^17} | {:^13}",
        "", "", "Strata", "containerd", "S / C"
    );
    let _ = writeln!(
        out,
        "{:>9} {:<24} | {:>8} {:>8} | {:>8} {:>8} | {:>6} {:>6}",
        "snapshots", "operation", "p50", "p99", "p50", "p99", "p50", "p99"
    );
    let _ = writeln!(out, "{}", "-".repeat(90));
    let mut last = 0;
    for r in rows {
        if last != 0 && last != r.snapshots {
            let _ = writeln!(out);
        }
        last = r.snapshots;
        let _ = writeln!(
            out,
            "{:>9} {:<24} | {:>8} {:>8} | {:>8} {:>8} | {:>6} {:>6}",
            r.snapshots,
            r.op,
            fmt_dur(r.strata.p50_us),
            fmt_dur(r.strata.p99_us),
            fmt_dur(r.containerd.p50_us),
            fmt_dur(r.containerd.p99_us),
            fmt_ratio(r.ratio.p50),
            fmt_ratio(r.ratio.p99)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:>9} | {:^25} | {:^17} | {:^21}",
        "", "RSS now/peak, MiB", "RSS S / C", "populating, s"
    );
    let _ = writeln!(
        out,
        "{:>9} | {:>12} {:>12} | {:>8} {:>8} | {:>10} {:>10}",
        "snapshots", "Strata", "containerd", "now", "peak", "Strata", "containerd"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for m in memory {
        let _ = writeln!(
            out,
            "{:>9} | {:>12} {:>12} | {:>8} {:>8} | {:>10.1} {:>10.1}",
            m.snapshots,
            format!("{:.1}/{:.1}", mib(m.strata_rss_kib), mib(m.strata_hwm_kib)),
            format!(
                "{:.1}/{:.1}",
                mib(m.containerd_rss_kib),
                mib(m.containerd_hwm_kib)
            ),
            fmt_ratio(ratio(m.strata_rss_kib as f64, m.containerd_rss_kib as f64)),
            fmt_ratio(ratio(m.strata_hwm_kib as f64, m.containerd_hwm_kib as f64)),
            m.strata_populate_s,
            m.containerd_populate_s
        );
    }
    let _ = writeln!(
        out,
        "S / C = Strata / containerd (below 1: Strata faster or smaller). 1 client. The snapshots are"
    );
    let _ = writeln!(
        out,
        "actives with 2 labels; Cleanup runs with nothing to reclaim; populating: time to grow from the"
    );
    let _ = writeln!(
        out,
        "previous size (both servers at once, concurrent clients)."
    );
    out
}

/// One floor measurement.
#[derive(Debug, Clone, Serialize)]
pub struct FloorRow {
    /// What was measured.
    pub op: String,
    /// Its numbers (`ops_per_s` is 1/mean; no CPU column).
    pub summary: Summary,
}

/// The floor table.
pub fn floor_table(rows: &[FloorRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<52} {:>8} {:>8} {:>8}",
        "filesystem floor (fresh ext4 on a loop device)", "p50", "p99", "mean"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<52} {:>8} {:>8} {:>8}",
            r.op,
            fmt_dur(r.summary.p50_us),
            fmt_dur(r.summary.p99_us),
            fmt_dur(r.summary.mean_us)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v[..1], 0.99), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_dur(812.4), "812µs");
        assert_eq!(fmt_dur(1234.0), "1.23ms");
        assert_eq!(fmt_dur(12_345.0), "12.3ms");
        assert_eq!(fmt_dur(2_500_000.0), "2.50s");
    }
}
