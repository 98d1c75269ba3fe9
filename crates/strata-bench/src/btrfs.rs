//! `strata-bench btrfs`: on one loop btrfs, side by side, Strata's btrfs backend, Strata's
//! overlay backend and (when `strata-anchor-btrfs` was built: `bench/anchor/build.sh
//! --btrfs`) containerd 1.6's own btrfs snapshotter, all over containerd's snapshots gRPC
//! API: Prepare/View/Commit/Remove p50, a 128-layer chain, and the Usage of an active
//! snapshot holding 100 and 10,000 files.
//!
//! The filesystem runs with simple quotas on (Strata's btrfs Usage reads its qgroup; the
//! other two servers walk files whatever the quota state, and pay the same accounting
//! overhead on writes). Every row is measured in `rounds` rounds, the servers' order rotating
//! each round; a row's figure is the median of the per-round p50s, with the smallest and
//! largest per-round p50 beside it. After each round, the benchmark wakes btrfs's cleaner
//! thread (`btrfs filesystem sync`) and waits until it has dropped the subvolumes that round
//! deleted (`btrfs subvolume sync`), so that this work does not land in the next measurement.
//! `--rows` picks rows by name.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use strata_core::Mount;

use crate::Result;
use crate::env::Env;
use crate::ops::{Target, labels, write_tree};
use crate::report::fmt_dur;
use crate::server::{Binaries, Kind, Server};

/// What to run.
pub struct BtrfsConfig {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// The cgo build of the anchor with containerd's btrfs snapshotter, if present.
    pub anchor_btrfs: Option<PathBuf>,
    /// Disk size.
    pub disk_size: u64,
    /// Rounds.
    pub rounds: usize,
    /// Timed operations per round of each light row.
    pub ops: usize,
    /// Only the rows whose lower-cased name contains one of these (all when empty).
    pub rows: Vec<String>,
}

/// One row: per server, the median over rounds of each round's p50, and the spread.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Per server: (name, median p50 µs, min p50 µs, max p50 µs).
    pub servers: Vec<(String, f64, f64, f64)>,
}

struct Candidate {
    name: &'static str,
    target: Target,
}

/// Runs the comparison and prints the table.
pub async fn run(env: &Env, cfg: &BtrfsConfig) -> Result<Vec<Row>> {
    let disk = env.make_disk_fs("btrfs", cfg.disk_size, "btrfs")?;
    strata_sys::btrfs::enable_quota(&disk.mountpoint, true)
        .map_err(|e| format!("enabling simple quotas on the bench disk: {e}"))?;
    let config = env.dir.join("strata-config.toml");
    std::fs::write(
        &config,
        "# strata-bench btrfs: every setting at its default\n",
    )?;
    let strata = |backend: &str| Binaries {
        strata: cfg.strata.clone(),
        anchor: PathBuf::new(),
        baseline: None,
        strata_config: Some(config.clone()),
        backend: backend.to_owned(),
    };
    let mut candidates = vec![
        Candidate {
            name: "strata-btrfs",
            target: Target::new(
                Server::start_at(
                    env,
                    Kind::Strata,
                    &strata("btrfs"),
                    disk.clone(),
                    "strata-btrfs",
                )?,
                1,
            )
            .await?,
        },
        Candidate {
            name: "strata-overlay",
            target: Target::new(
                Server::start_at(
                    env,
                    Kind::Strata,
                    &strata("overlay"),
                    disk.clone(),
                    "strata-overlay",
                )?,
                1,
            )
            .await?,
        },
    ];
    if let Some(anchor) = &cfg.anchor_btrfs {
        let bins = Binaries {
            strata: PathBuf::new(),
            anchor: anchor.clone(),
            baseline: None,
            strata_config: None,
            backend: "btrfs".into(),
        };
        candidates.push(Candidate {
            name: "containerd-btrfs",
            target: Target::new(
                Server::start_at(
                    env,
                    Kind::Containerd,
                    &bins,
                    disk.clone(),
                    "containerd-btrfs",
                )?,
                1,
            )
            .await?,
        });
    }
    let rows: [(&str, Op); 7] = [
        ("Prepare (on a 1-layer parent)", Op::Prepare),
        ("View (of a 1-layer parent)", Op::View),
        ("Commit (one 4 KiB file)", Op::Commit),
        ("Remove (an active snapshot)", Op::Remove),
        (
            "128-layer chain: Prepare+write+Commit x128 (total)",
            Op::Chain,
        ),
        ("Usage, active snapshot of 100 files", Op::Usage(100)),
        ("Usage, active snapshot of 10,000 files", Op::Usage(10_000)),
    ];
    let mut out = Vec::new();
    for (name, op) in rows {
        let lower = name.to_lowercase();
        if !cfg.rows.is_empty() && !cfg.rows.iter().any(|r| lower.contains(r.as_str())) {
            continue;
        }
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); candidates.len()];
        for round in 0..cfg.rounds {
            for k in 0..candidates.len() {
                let i = (k + round) % candidates.len();
                let c = &candidates[i];
                c.target.server.check_alive(env)?;
                let p50 = measure(&c.target, op, cfg.ops)
                    .await
                    .map_err(|e| format!("{} {name}: {e}", c.name))?;
                per[i].push(p50);
            }
        }
        let servers = candidates
            .iter()
            .zip(per)
            .map(|(c, mut v)| {
                v.sort_by(f64::total_cmp);
                (c.name.to_owned(), v[v.len() / 2], v[0], v[v.len() - 1])
            })
            .collect();
        let row = Row {
            name: name.to_owned(),
            servers,
        };
        print_row(&row);
        out.push(row);
    }
    for c in &candidates {
        c.target.server.stop(env)?;
    }
    Ok(out)
}

fn print_row(row: &Row) {
    let cells: Vec<String> = row
        .servers
        .iter()
        .map(|(n, p50, lo, hi)| {
            format!("{n} {} ({}–{})", fmt_dur(*p50), fmt_dur(*lo), fmt_dur(*hi))
        })
        .collect();
    println!("{:<52} {}", row.name, cells.join("   "));
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Prepare,
    View,
    Commit,
    Remove,
    Chain,
    Usage(usize),
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// One round of `op` on `t`: the p50 of its timed operations, µs. Everything it creates is
/// removed (and cleaned up) before it returns.
async fn measure(t: &Target, op: Op, ops: usize) -> Result<f64> {
    let c = t.conn(0);
    let id = t.fresh_ids(1_000_000);
    let key = |n: usize| format!("default/{id}/k{n}");
    // A committed parent with a few files.
    let parent = format!("default/{id}/parent");
    let m = c.prepare(&key(usize::MAX), "", labels(&[])).await?;
    write_tree(writable(t, &m)?, 20).await?;
    c.commit(&parent, &key(usize::MAX), labels(&[]), None)
        .await?;
    t.sync()?;
    let mut samples = Vec::new();
    let mut cleanup = Vec::new();
    match op {
        Op::Prepare | Op::View => {
            for n in 0..ops {
                let start = Instant::now();
                if matches!(op, Op::Prepare) {
                    c.prepare(&key(n), &parent, labels(&[])).await?;
                } else {
                    c.view(&key(n), &parent, labels(&[])).await?;
                }
                samples.push(start.elapsed());
                cleanup.push(key(n));
            }
        }
        Op::Commit => {
            for n in 0..ops {
                let m = c.prepare(&key(n), &parent, labels(&[])).await?;
                std::fs::write(writable(t, &m)?.join("file"), [7u8; 4096])?;
                let name = format!("{}-c", key(n));
                let start = Instant::now();
                c.commit(&name, &key(n), labels(&[]), None).await?;
                samples.push(start.elapsed());
                cleanup.push(name);
            }
        }
        Op::Remove => {
            for n in 0..ops {
                c.prepare(&key(n), &parent, labels(&[])).await?;
            }
            t.sync()?;
            for n in 0..ops {
                let start = Instant::now();
                c.remove(&key(n)).await?;
                samples.push(start.elapsed());
            }
        }
        Op::Chain => {
            let start = Instant::now();
            let mut below = parent.clone();
            for n in 0..128 {
                let m = c.prepare(&key(n), &below, labels(&[])).await?;
                std::fs::write(writable(t, &m)?.join(format!("layer{n}")), b"x")?;
                let name = format!("{}-c", key(n));
                c.commit(&name, &key(n), labels(&[]), None).await?;
                cleanup.push(name.clone());
                below = name;
            }
            samples.push(start.elapsed());
        }
        Op::Usage(files) => {
            let m = c.prepare(&key(0), &parent, labels(&[])).await?;
            write_tree(writable(t, &m)?, files).await?;
            // Flushed: qgroup figures are those of the last committed transaction.
            t.sync()?;
            let size = c.usage(&key(0)).await?.size;
            if size < (files as i64) * 512 {
                return Err(format!("Usage says {size} bytes for {files} files").into());
            }
            for _ in 0..ops.min(50) {
                let start = Instant::now();
                c.usage(&key(0)).await?;
                samples.push(start.elapsed());
            }
            cleanup.push(key(0));
        }
    }
    for k in cleanup.into_iter().rev() {
        c.remove(&k).await?;
    }
    c.remove(&parent).await?;
    // containerd 1.6's btrfs snapshotter has no Cleanup (Unimplemented): it deletes at
    // Remove.
    let _ = c.cleanup().await;
    // Deleted subvolumes are dropped by a kernel thread afterwards; wait for it, or its work
    // lands in whichever server's measurement comes next. `btrfs filesystem sync`
    // (BTRFS_IOC_SYNC) commits the transaction and wakes that thread; a plain syncfs does
    // not, and the drop then waits for the next periodic commit (up to 30 s per round).
    for args in [["filesystem", "sync"], ["subvolume", "sync"]] {
        let _ = std::process::Command::new("btrfs")
            .args(args)
            .arg(t.server.disk_root())
            .output();
    }
    Ok(p50(samples))
}

/// The directory to write an active snapshot's content into: the bind source, the overlay
/// upperdir, or for containerd's btrfs snapshotter (a `btrfs` mount with `subvolid=`), the
/// subvolume under its root's `active/` with that id.
fn writable(t: &Target, mounts: &[Mount]) -> Result<PathBuf> {
    let m = mounts.first().ok_or("no mounts")?;
    if m.kind != "btrfs" {
        return crate::ops::writable_dir(mounts);
    }
    let id: u64 = m
        .options
        .iter()
        .find_map(|o| o.strip_prefix("subvolid="))
        .ok_or("a btrfs mount without subvolid")?
        .parse()?;
    let active = t.server.disk_root().join("containerd-btrfs").join("active");
    for entry in std::fs::read_dir(&active)? {
        let path = entry?.path();
        if strata_sys::btrfs::subvolume_id(&path).ok() == Some(id) {
            return Ok(path);
        }
    }
    Err(format!("no subvolume {id} under {}", active.display()).into())
}
