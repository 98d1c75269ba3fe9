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
    /// Bytes the server caused to be written to storage (`/proc/<pid>/io` `write_bytes`) per
    /// operation, KiB.
    pub write_kib_per_op: f64,
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
        write_kib_per_op: if n > 0 {
            m.write_bytes as f64 / 1024.0 / n as f64
        } else {
            0.0
        },
    }
}

/// The median of a figure over the pairs, with the smallest and largest.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Median over the pairs (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (NaNs dropped; all NaN if nothing is left).
    pub fn of(v: &[f64]) -> Spread {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `0.72 (0.61–0.80)`.
    pub fn show(&self) -> String {
        format!(
            "{} ({}–{})",
            fmt_ratio(self.median),
            fmt_ratio(self.min),
            fmt_ratio(self.max)
        )
    }
}

/// Strata ÷ containerd within each pair (one measurement of each server, back to back, in
/// alternating order), summarized over the pairs: what noise moves, both servers together.
#[derive(Debug, Clone, Serialize)]
pub struct PairRatios {
    /// How many pairs.
    pub pairs: usize,
    /// p50 latency ratio per pair.
    pub p50: Spread,
    /// Throughput ratio per pair.
    pub ops_per_s: Spread,
    /// Server CPU per operation, ratio per pair.
    pub cpu_us_per_op: Spread,
}

impl PairRatios {
    /// From each pair's (Strata, containerd) summaries.
    pub fn of(pairs: &[(Summary, Summary)]) -> PairRatios {
        let each = |f: &dyn Fn(&Summary) -> f64| -> Spread {
            Spread::of(
                &pairs
                    .iter()
                    .map(|(s, c)| ratio(f(s), f(c)))
                    .collect::<Vec<_>>(),
            )
        };
        PairRatios {
            pairs: pairs.len(),
            p50: each(&|s| s.p50_us),
            ops_per_s: each(&|s| s.ops_per_s),
            cpu_us_per_op: each(&|s| s.cpu_us_per_op),
        }
    }
}

/// One server's deterministic figures per operation, from a traced measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PerOp {
    /// Operations traced.
    pub ops: usize,
    /// System calls per operation (every thread).
    pub syscalls: f64,
    /// Flushes (fsync, fdatasync, syncfs, sync_file_range, msync) per operation.
    pub flushes: f64,
    /// KiB the server caused to be written to storage per operation.
    pub write_kib: f64,
    /// The most frequent system calls, per operation.
    pub top: Vec<(String, f64)>,
}

impl PerOp {
    /// From a traced measurement; `None` if it was not traced.
    pub fn of(m: &Measured) -> Option<PerOp> {
        let t = m.trace.as_ref()?;
        let n = m.samples.len().max(1) as f64;
        Some(PerOp {
            ops: m.samples.len(),
            syscalls: t.total as f64 / n,
            flushes: t.flushes as f64 / n,
            write_kib: m.write_bytes as f64 / 1024.0 / n,
            top: t
                .by_name
                .iter()
                .take(8)
                .map(|(k, c)| (k.clone(), *c as f64 / n))
                .collect(),
        })
    }
}

/// Both servers' traced figures for one row.
#[derive(Debug, Clone, Serialize)]
pub struct Traced {
    /// Strata's.
    pub strata: PerOp,
    /// containerd's.
    pub containerd: PerOp,
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
    /// Strata / containerd, of the samples pooled over every pair.
    pub ratio: Ratio,
    /// Strata / containerd within each pair: median and spread.
    pub pairs: PairRatios,
    /// System calls, flushes and bytes written per operation, if the row was traced.
    pub traced: Option<Traced>,
}

impl RowResult {
    /// A row from both servers' pooled summaries and each pair's.
    pub fn new(
        id: &str,
        title: &str,
        clients: usize,
        note: &str,
        (strata, containerd): (Summary, Summary),
        pairs: &[(Summary, Summary)],
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
            pairs: PairRatios::of(pairs),
            traced: None,
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
/// `theirs` names the second server (`containerd`, or `baseline` for another Strata build).
pub fn main_table(rows: &[RowResult], theirs: &str) -> String {
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
    let pairs = rows.first().map_or(0, |r| r.pairs.pairs);
    let _ = writeln!(
        out,
        "{:<34} {:>2} | {:^35} | {:^35} | {:^37}",
        "",
        "",
        "Strata",
        theirs,
        format!("Strata / {theirs}, {pairs} pairs")
    );
    let _ = writeln!(
        out,
        "{:<34} {:>2} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>18} {:>18}",
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
        "p50 (min–max)",
        "ops/s (min–max)"
    );
    let _ = writeln!(out, "{}", "-".repeat(34 + 3 + 3 + 35 + 3 + 35 + 3 + 37));
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
            "{:<34} {:>2} | {} | {} | {:>18} {:>18}",
            format!("{}{}", r.title, mark),
            r.clients,
            side(&r.strata),
            side(&r.containerd),
            r.pairs.p50.show(),
            r.pairs.ops_per_s.show()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "cl: concurrent clients (each its own connection). p50/p99: client-side latency over every pair's samples."
    );
    let _ = writeln!(
        out,
        "ops/s: all clients together. cpu/op: server CPU (utime+stime) per operation. Ratios: Strata / {theirs}"
    );
    let _ = writeln!(
        out,
        "within each pair (the servers back to back, the order alternating), median (smallest–largest);"
    );
    let _ = writeln!(
        out,
        "below 1 = Strata faster in p50, above 1 = Strata faster in ops/s."
    );
    for (i, n) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {n}", i + 1);
    }
    out
}

/// The deterministic per-operation table: flushes, system calls and bytes written (traced
/// measurements) and CPU per operation (the untraced, timed ones).
/// `theirs` names the second server, as in [`main_table`].
pub fn per_op_table(rows: &[RowResult], theirs: &str) -> String {
    let mut out = String::new();
    let traced: Vec<(&RowResult, &Traced)> = rows
        .iter()
        .filter_map(|r| r.traced.as_ref().map(|t| (r, t)))
        .collect();
    let Some((_, first)) = traced.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "per operation, 1 client ({} operations traced per server with strace -f -c; bytes: /proc/<pid>/io write_bytes)",
        first.strata.ops
    );
    let _ = writeln!(
        out,
        "{:<24} | {:^31} | {:^31} | {:^38}",
        "",
        "Strata",
        theirs,
        format!("Strata / {theirs}")
    );
    let _ = writeln!(
        out,
        "{:<24} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>6} {:>16}",
        "operation",
        "flushes",
        "sysc",
        "KiB wr",
        "cpu µs",
        "flushes",
        "sysc",
        "KiB wr",
        "cpu µs",
        "flush",
        "sysc",
        "KiB",
        "cpu (min–max)"
    );
    let _ = writeln!(out, "{}", "-".repeat(24 + 3 + 31 + 3 + 31 + 3 + 38));
    for (r, t) in traced {
        let side = |p: &PerOp, s: &Summary| {
            format!(
                "{:>7.2} {:>7.1} {:>7.1} {:>7.0}",
                p.flushes, p.syscalls, p.write_kib, s.cpu_us_per_op
            )
        };
        let _ = writeln!(
            out,
            "{:<24} | {} | {} | {:>6} {:>6} {:>6} {:>16}",
            r.title,
            side(&t.strata, &r.strata),
            side(&t.containerd, &r.containerd),
            fmt_ratio(ratio(t.strata.flushes, t.containerd.flushes)),
            fmt_ratio(ratio(t.strata.syscalls, t.containerd.syscalls)),
            fmt_ratio(ratio(t.strata.write_kib, t.containerd.write_kib)),
            r.pairs.cpu_us_per_op.show()
        );
    }
    let _ = writeln!(
        out,
        "flushes: fsync, fdatasync, syncfs, sync_file_range, msync. sysc: every system call, all threads."
    );
    let _ = writeln!(
        out,
        "cpu µs: untraced, over every pair (utime+stime, 10 ms ticks); its ratio is the median over pairs."
    );
    for (r, t) in rows
        .iter()
        .filter_map(|r| r.traced.as_ref().map(|t| (r, t)))
    {
        let top = |p: &PerOp| {
            p.top
                .iter()
                .map(|(k, n)| format!("{k} {n:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  {} — Strata: {}", r.title, top(&t.strata));
        let _ = writeln!(out, "  {} — {theirs}: {}", r.title, top(&t.containerd));
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
/// `theirs` names the second server, as in [`main_table`].
pub fn totals_table(strata: &ServerTotals, containerd: &ServerTotals, theirs: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:>12} {:>8}",
        "server totals", "Strata", theirs, "ratio"
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
