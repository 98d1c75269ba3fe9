//! `strata-bench`: Strata against containerd's own snapshotter, over the same gRPC API.
//!
//! - `strata-bench [run]`: the default table — every operation containerd waits on, at 1
//!   and 8 concurrent clients, p50/p99 latency, ops/s and the Strata/containerd ratio, plus
//!   each server's CPU seconds and peak memory, and the filesystem floor;
//! - `strata-bench scale`: the same operations' latency with 1,000, 10,000 and 100,000
//!   snapshots present, and each server's memory;
//! - `strata-bench floor`: what a durable write and a Prepare's directory work cost on the
//!   disk the servers run on.
//!
//! Both servers (`strata serve` and `strata-anchor`, containerd's overlay or native
//! snapshotter behind containerd's snapshots service) are started by the benchmark, each on
//! a fresh journaled ext4 on its own loop device, and everything is torn down however the run
//! ends. It must run as root. See `bench/README.md`.

mod bench;
mod btrfs;
mod env;
mod floor;
mod ops;
mod probe;
mod report;
mod scale;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::env::Env;
use crate::ops::Target;
use crate::report::ServerTotals;
use crate::server::{Binaries, Kind, Server};

/// The error type of the whole benchmark: a message is all it needs.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Strata against containerd's own snapshotter (containerd 1.6), both served over
/// containerd's snapshots gRPC API, each on a fresh ext4 loop disk. Must run as root.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// The default table (what `strata-bench` without a subcommand runs).
    Run(RunArgs),
    /// Latency and memory with 1,000 / 10,000 / 100,000 snapshots present.
    Scale(ScaleArgs),
    /// The filesystem floor: durable 4 KiB write, mkdir x2 + rename.
    Floor(FloorArgs),
    /// On one loop btrfs: Strata btrfs vs Strata overlay vs containerd's btrfs snapshotter.
    Btrfs(BtrfsArgs),
    /// Lists the row ids of the default table (for --rows).
    Rows,
}

#[derive(Args, Clone)]
struct Common {
    /// The strata binary [default: `strata` next to this binary]
    #[arg(long)]
    strata: Option<PathBuf>,
    /// The anchor binary (bench/anchor/build.sh builds it)
    #[arg(long, default_value = "/var/tmp/strata-bench/strata-anchor")]
    anchor: PathBuf,
    /// Measure against another Strata build instead of containerd: its `strata` binary
    /// serves in containerd's place, with the same (empty) configuration. To tell whether a
    /// change to Strata helps, with the same alternating pairs the containerd comparison uses.
    #[arg(long, value_name = "STRATA")]
    baseline: Option<PathBuf>,
    /// Backend of both servers: overlay or native
    #[arg(long, default_value = "overlay", value_parser = ["overlay", "native"])]
    backend: String,
    /// Strata's configuration file [default: an empty one, i.e. every setting at its default]
    #[arg(long)]
    strata_config: Option<PathBuf>,
    /// Where the disk images, mounts, sockets and logs go
    #[arg(long, default_value = "/var/tmp/strata-bench")]
    work_dir: PathBuf,
    /// Size of each server's (sparse) disk image
    #[arg(long, default_value = "8G", value_parser = env::parse_size)]
    disk_size: u64,
    /// Pairs (rounds): every row is measured this many times on each server, the two back
    /// to back, alternating which goes first; ratios are the median over the pairs
    #[arg(long, visible_alias = "pairs", default_value_t = 5)]
    rounds: usize,
    /// Also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Operations per round of a light row with 1 client (8-client rows run twice as many)
    #[arg(long, default_value_t = 250)]
    ops: usize,
    /// Samples per round of the Commit of a 10,000-file layer
    #[arg(long, default_value_t = 3)]
    heavy_iters: usize,
    /// Only the rows whose id contains one of these (comma-separated; see `strata-bench rows`)
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
    /// A quick smoke run: --ops 30 --heavy-iters 1 --rounds 2 (overrides those)
    #[arg(long)]
    quick: bool,
    /// Skip the floor measurements after the table
    #[arg(long)]
    no_floor: bool,
    /// Operations of the traced (strace -f -c) measurement of each 1-client write, Stat,
    /// Mounts and List row, per server: system calls, flushes and bytes written per
    /// operation (0: none)
    #[arg(long, default_value_t = 100)]
    trace_ops: usize,
}

#[derive(Args, Clone)]
struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    /// Population sizes (comma-separated, ascending)
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Prepares and Removes per round at each size
    #[arg(long, default_value_t = 100)]
    ops: usize,
    /// Concurrent clients per server while populating
    #[arg(long, default_value_t = 16)]
    populate_clients: usize,
}

#[derive(Args, Clone)]
struct BtrfsArgs {
    /// The strata binary [default: `strata` next to this binary]
    #[arg(long)]
    strata: Option<PathBuf>,
    /// containerd's btrfs snapshotter behind the anchor (`bench/anchor/build.sh --btrfs`
    /// builds it); skipped, with a note, when the file does not exist
    #[arg(long, default_value = "/var/tmp/strata-bench/strata-anchor-btrfs")]
    anchor_btrfs: PathBuf,
    /// Where the disk image, mounts, sockets and logs go
    #[arg(long, default_value = "/var/tmp/strata-bench")]
    work_dir: PathBuf,
    /// Size of the (sparse) btrfs image all servers share
    #[arg(long, default_value = "16G", value_parser = env::parse_size)]
    disk_size: u64,
    /// Rounds (each server once per round, the order rotating)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Timed operations per round of a light row
    #[arg(long, default_value_t = 100)]
    ops: usize,
    /// Only the rows whose name contains one of these (comma-separated, case-insensitive:
    /// e.g. `commit,prepare`)
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
    /// Also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct FloorArgs {
    /// Where the disk image and its mount go
    #[arg(long, default_value = "/var/tmp/strata-bench")]
    work_dir: PathBuf,
    /// Size of the (sparse) disk image
    #[arg(long, default_value = "8G", value_parser = env::parse_size)]
    disk_size: u64,
    /// Samples of each operation
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Also write the results as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Run(cli.run));
    let work_dir = match &command {
        Cmd::Rows => {
            for id in bench::row_ids() {
                println!("{id}");
            }
            return ExitCode::SUCCESS;
        }
        Cmd::Run(a) => a.common.work_dir.clone(),
        Cmd::Scale(a) => a.common.work_dir.clone(),
        Cmd::Floor(a) => a.work_dir.clone(),
        Cmd::Btrfs(a) => a.work_dir.clone(),
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("strata-bench: must run as root (it makes loop devices, filesystems and mounts)");
        return ExitCode::from(2);
    }
    let env = match Env::new(&work_dir) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("strata-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Declared before the runtime, so dropped after it: its Drop tears everything down even
    // when unwinding from a panic.
    let mut guard = Teardown {
        env: &env,
        keep_logs: true,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = dispatch(&env, command) => r,
            s = interrupted() => Err(format!("interrupted by {s}; tearing down").into()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(30));
    match result {
        Ok(()) => {
            guard.keep_logs = false;
            drop(guard);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-bench: {e}");
            drop(guard);
            ExitCode::FAILURE
        }
    }
}

struct Teardown<'a> {
    env: &'a Env,
    keep_logs: bool,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        self.env.teardown(self.keep_logs);
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP, with the signal's name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn dispatch(env: &Env, command: Cmd) -> Result<()> {
    match command {
        Cmd::Run(a) => run(env, a).await,
        Cmd::Scale(a) => scale(env, a).await,
        Cmd::Floor(a) => floor(env, a).await,
        Cmd::Btrfs(a) => btrfs_cmd(env, a).await,
        Cmd::Rows => Ok(()),
    }
}

async fn btrfs_cmd(env: &Env, a: BtrfsArgs) -> Result<()> {
    let strata = match a.strata {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("strata"))
            .ok_or("cannot locate this binary's directory")?,
    };
    if !strata.is_file() {
        return Err(format!("the strata binary {} does not exist", strata.display()).into());
    }
    let anchor_btrfs = a.anchor_btrfs.is_file().then_some(a.anchor_btrfs.clone());
    if anchor_btrfs.is_none() {
        println!(
            "note: {} absent: containerd's btrfs snapshotter is not measured (bench/anchor/build.sh --btrfs builds it; it needs cgo, gcc and libbtrfs-dev)",
            a.anchor_btrfs.display()
        );
    }
    println!(
        "strata-bench btrfs: one loop btrfs ({} GiB sparse, simple quotas on), {} rounds, {} ops per light row; p50 = median of per-round p50s (min–max)",
        a.disk_size >> 30,
        a.rounds,
        a.ops
    );
    let rows = btrfs::run(
        env,
        &btrfs::BtrfsConfig {
            strata,
            anchor_btrfs,
            disk_size: a.disk_size,
            rounds: a.rounds.max(1),
            ops: a.ops.max(1),
            rows: a.rows.iter().map(|r| r.to_lowercase()).collect(),
        },
    )
    .await?;
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

/// Facts about the machine and the run, printed and written to JSON.
#[derive(Serialize)]
struct Meta {
    command: String,
    started: String,
    kernel: String,
    cpus: usize,
    loadavg_start: String,
    loadavg_end: String,
    backend: String,
    rounds: usize,
    strata_bin: String,
    anchor_bin: String,
    anchor: String,
    disk: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn meta(command: &str, common: &Common, bins: &Binaries) -> Meta {
    Meta {
        command: command.to_owned(),
        started: ops::rfc3339(std::time::SystemTime::now()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
        backend: common.backend.clone(),
        rounds: common.rounds,
        strata_bin: bins.strata.display().to_string(),
        anchor_bin: bins.anchor.display().to_string(),
        anchor: match &bins.baseline {
            Some(b) => format!("the Strata build {}", b.display()),
            None => "containerd 1.6 snapshotter via contrib/snapshotservice (overlay: AsynchronousRemove, as containerd's default plugin config)".to_owned(),
        },
        disk: format!(
            "fresh ext4 (journaled) on a loop device, {} GiB sparse image, one per server",
            common.disk_size >> 30
        ),
    }
}

fn print_meta(m: &Meta) {
    println!(
        "strata-bench {}: backend {}, {} rounds, kernel {}, {} CPUs, load {} (start) / {} (end)",
        m.command, m.backend, m.rounds, m.kernel, m.cpus, m.loadavg_start, m.loadavg_end
    );
    println!(
        "  {} = {}",
        if m.anchor.starts_with("the Strata build") {
            "baseline"
        } else {
            "containerd"
        },
        m.anchor
    );
    println!("  disks: {}", m.disk);
}

fn binaries(common: &Common) -> Result<Binaries> {
    let strata = match &common.strata {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("strata"))
            .ok_or("cannot locate this binary's directory")?,
    };
    let (other, other_path, other_hint) = match &common.baseline {
        Some(b) => ("baseline", b, "pass an existing strata binary"),
        None => (
            "anchor",
            &common.anchor,
            "bench/anchor/build.sh, or pass --anchor",
        ),
    };
    for (what, p, hint) in [
        (
            "strata",
            &strata,
            "cargo build --release -p strata, or pass --strata",
        ),
        (other, other_path, other_hint),
    ] {
        if !p.is_file() {
            return Err(
                format!("the {what} binary {} does not exist ({hint})", p.display()).into(),
            );
        }
    }
    Ok(Binaries {
        strata,
        anchor: common.anchor.clone(),
        baseline: common.baseline.clone(),
        strata_config: common.strata_config.clone(),
        backend: common.backend.clone(),
    })
}

/// Makes both disks, starts both servers and connects `connections` clients to each.
async fn start_both(env: &Env, common: &Common, connections: usize) -> Result<[Target; 2]> {
    let bins = binaries(common)?;
    let t0 = Instant::now();
    let mut servers = Vec::new();
    for kind in [Kind::Strata, Kind::Containerd] {
        let disk = env.make_disk(kind.name(), common.disk_size)?;
        servers.push(Server::start(env, kind, &bins, disk)?);
    }
    let containerd = servers.pop().ok_or("no server")?;
    let strata = servers.pop().ok_or("no server")?;
    let targets = [
        Target::new(strata, connections).await?,
        Target::new(containerd, connections).await?,
    ];
    eprintln!(
        "strata-bench: disks made and both servers up in {:.1} s (work dir {})",
        t0.elapsed().as_secs_f64(),
        env.dir.display()
    );
    Ok(targets)
}

fn stop_both(env: &Env, targets: &[Target; 2]) -> Result<()> {
    for t in targets {
        t.server.stop(env)?;
    }
    Ok(())
}

fn write_json(path: Option<&Path>, value: &impl Serialize) -> Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("strata-bench: wrote {}", path.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct RunReport {
    meta: Meta,
    rows: Vec<report::RowResult>,
    servers: std::collections::BTreeMap<&'static str, ServerTotals>,
    floor: Vec<report::FloorRow>,
    durations_s: std::collections::BTreeMap<&'static str, f64>,
}

async fn run(env: &Env, mut a: RunArgs) -> Result<()> {
    if a.quick {
        a.ops = 30;
        a.heavy_iters = 1;
        a.common.rounds = 2;
        a.trace_ops = a.trace_ops.min(20);
    }
    let bins = binaries(&a.common)?;
    let mut meta = meta("run", &a.common, &bins);
    let mut durations = std::collections::BTreeMap::new();
    let t0 = Instant::now();
    let targets = start_both(env, &a.common, 8).await?;
    durations.insert("setup", t0.elapsed().as_secs_f64());
    let base = [targets[0].server.stats(), targets[1].server.stats()];
    let cfg = bench::RunConfig {
        rounds: a.common.rounds.max(1),
        ops: a.ops.max(8),
        heavy_iters: a.heavy_iters.max(1),
        select: a.rows.clone(),
        trace_ops: a.trace_ops,
    };
    let t1 = Instant::now();
    let rows = bench::run(env, &targets, &cfg).await?;
    durations.insert("table", t1.elapsed().as_secs_f64());
    let mut servers = std::collections::BTreeMap::new();
    for (t, b) in targets.iter().zip(base) {
        let s = t.server.stats();
        servers.insert(
            t.kind().name(),
            ServerTotals {
                cpu_s: (s.cpu - b.cpu).total(),
                cpu_sys_s: (s.cpu - b.cpu).sys,
                vm_hwm_kib: s.hwm_kib,
                vm_rss_kib: s.rss_kib,
            },
        );
    }
    stop_both(env, &targets)?;
    let mut floor_rows = Vec::new();
    if !a.no_floor {
        let t2 = Instant::now();
        let disk = env.make_disk("floor", a.common.disk_size)?;
        floor_rows = floor::measure(&disk.mountpoint, 200).await?;
        durations.insert("floor", t2.elapsed().as_secs_f64());
    }
    durations.insert("total", t0.elapsed().as_secs_f64());
    meta.loadavg_end = loadavg();

    println!();
    print_meta(&meta);
    println!();
    let theirs = if a.common.baseline.is_some() {
        "baseline"
    } else {
        "containerd"
    };
    print!("{}", report::main_table(&rows, theirs));
    if let Some(chain) = rows.iter().find(|r| r.id.starts_with("chain-")) {
        let per_chain =
            |s: &report::Summary| fmt_secs(s.mean_us * bench::CHAIN_LAYERS as f64 / 1e6);
        println!(
            "chain of {} layers, whole chain (mean): Strata {}, {theirs} {}",
            bench::CHAIN_LAYERS,
            per_chain(&chain.strata),
            per_chain(&chain.containerd)
        );
    }
    let per_op = report::per_op_table(&rows, theirs);
    if !per_op.is_empty() {
        println!();
        print!("{per_op}");
    }
    println!();
    print!(
        "{}",
        report::totals_table(&servers["strata"], &servers["containerd"], theirs)
    );
    if !floor_rows.is_empty() {
        println!();
        print!("{}", report::floor_table(&floor_rows));
    }
    println!();
    println!(
        "time: setup {:.0} s, table {:.0} s, floor {:.0} s, total {:.0} s",
        durations["setup"],
        durations["table"],
        durations.get("floor").copied().unwrap_or(0.0),
        durations["total"]
    );
    write_json(
        a.common.json.as_deref(),
        &RunReport {
            meta,
            rows,
            servers,
            floor: floor_rows,
            durations_s: durations,
        },
    )
}

fn fmt_secs(s: f64) -> String {
    format!("{s:.2} s")
}

#[derive(Serialize)]
struct ScaleReport {
    meta: Meta,
    sizes: Vec<usize>,
    rows: Vec<report::ScaleRow>,
    memory: Vec<report::ScaleMemory>,
    durations_s: f64,
}

async fn scale(env: &Env, a: ScaleArgs) -> Result<()> {
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    sizes.retain(|&s| s > 0);
    if sizes.is_empty() {
        return Err("--sizes: no size given".into());
    }
    let bins = binaries(&a.common)?;
    let mut meta = meta("scale", &a.common, &bins);
    let t0 = Instant::now();
    let targets = start_both(env, &a.common, a.populate_clients.max(1)).await?;
    let cfg = scale::ScaleConfig {
        sizes: sizes.clone(),
        rounds: a.common.rounds.max(1),
        ops: a.ops.max(3),
        populate_clients: a.populate_clients.max(1),
    };
    let (rows, memory) = scale::run(&targets, &cfg).await?;
    stop_both(env, &targets)?;
    meta.loadavg_end = loadavg();
    println!();
    print_meta(&meta);
    println!();
    print!("{}", report::scale_table(&rows, &memory));
    let secs = t0.elapsed().as_secs_f64();
    println!();
    println!("time: {secs:.0} s");
    write_json(
        a.common.json.as_deref(),
        &ScaleReport {
            meta,
            sizes,
            rows,
            memory,
            durations_s: secs,
        },
    )
}

#[derive(Serialize)]
struct FloorReport {
    kernel: String,
    disk: String,
    rows: Vec<report::FloorRow>,
}

async fn floor(env: &Env, a: FloorArgs) -> Result<()> {
    let disk = env.make_disk("floor", a.disk_size)?;
    let rows = floor::measure(&disk.mountpoint, a.samples).await?;
    println!();
    print!("{}", report::floor_table(&rows));
    write_json(
        a.json.as_deref(),
        &FloorReport {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            disk: format!(
                "fresh ext4 (journaled) on a loop device, {} GiB sparse image",
                a.disk_size >> 30
            ),
            rows,
        },
    )
}
