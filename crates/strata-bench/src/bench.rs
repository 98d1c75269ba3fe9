//! The default benchmark: one row per operation containerd waits on, each measured against
//! both servers in alternating rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use strata_core::snapshot::Labels;

use crate::Result;
use crate::env::Env;
use crate::ops::{
    Done, GROUP_LABEL, Measured, Plan, Target, active_key, committed_key, drive, labels,
    remove_all, run_all, writable_dir, write_tree,
};
use crate::report::{PerOp, RowResult, Traced, fmt_dur, summarize};

/// Snapshots in the full-List row.
pub const LIST_SMALL: usize = 3_000;
/// Snapshots in the filtered-List row.
pub const LIST_LARGE: usize = 10_000;
/// One in this many listed snapshots matches the filter of the filtered-List row.
pub const RARE_EVERY: u64 = 1_000;
/// Files in the layers of the Usage and large-Commit rows.
pub const LAYER_FILES: usize = 10_000;
/// Layers in the chain row.
pub const CHAIN_LAYERS: usize = 128;
/// Actives the Stat and Mounts rows spread their requests over.
const STAT_POOL: usize = 64;
/// Fixed ids of the Usage rows' snapshots.
const USAGE_ACTIVE_ID: u64 = 900_000_001;
const USAGE_COMMITTED_ID: u64 = 900_000_002;

/// Knobs of the default benchmark.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Rounds; each round measures every row on both servers, alternating which goes first.
    pub rounds: usize,
    /// Operations per round of a light row with 1 client (8 clients do twice as many).
    pub ops: usize,
    /// Samples per round of the Commit of a 10,000-file layer.
    pub heavy_iters: usize,
    /// Only rows whose id contains one of these (all rows if empty).
    pub select: Vec<String>,
    /// Operations of the traced measurement of each 1-client write, Stat and Mounts row, per
    /// server (0: no tracing).
    pub trace_ops: usize,
}

mod rows;

use rows::{Op, Phase, ROWS, RowDef};

/// The ids and titles of every row, for `--help`-style listings.
pub fn row_ids() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.id).collect()
}

fn selected(cfg: &RunConfig, r: &RowDef) -> bool {
    cfg.select.is_empty() || cfg.select.iter().any(|s| r.id.contains(s.as_str()))
}

/// Runs every selected row on both targets (`targets[0]` Strata, `targets[1]` containerd),
/// printing a progress line per row on stderr.
pub async fn run(env: &Env, targets: &[Target; 2], cfg: &RunConfig) -> Result<Vec<RowResult>> {
    let rows: Vec<&RowDef> = ROWS.iter().filter(|r| selected(cfg, r)).collect();
    if rows.is_empty() {
        return Err(format!(
            "no row matches {:?}; rows: {}",
            cfg.select,
            row_ids().join(" ")
        )
        .into());
    }
    let mut results = Vec::new();
    let mut populated = 0usize;
    let mut usage_ready = false;
    let total = rows.len();
    for (n, r) in rows.iter().enumerate() {
        // Bring both servers to the state this row's phase needs.
        let want = match r.phase {
            Phase::ListSmall => LIST_SMALL,
            Phase::ListLarge => LIST_LARGE,
            _ => 0,
        };
        if populated != want {
            let t0 = Instant::now();
            let (a, b) = tokio::join!(
                set_population(&targets[0], populated, want),
                set_population(&targets[1], populated, want)
            );
            a?;
            b?;
            eprintln!(
                "  (population {populated} -> {want} snapshots on both servers: {:.1} s)",
                t0.elapsed().as_secs_f64()
            );
            populated = want;
        }
        if (r.phase == Phase::Usage) != usage_ready {
            let t0 = Instant::now();
            let (a, b) = if usage_ready {
                tokio::join!(usage_teardown(&targets[0]), usage_teardown(&targets[1]))
            } else {
                tokio::join!(usage_setup(&targets[0]), usage_setup(&targets[1]))
            };
            a?;
            b?;
            usage_ready = !usage_ready;
            eprintln!(
                "  (usage fixtures {}: {:.1} s)",
                if usage_ready { "written" } else { "removed" },
                t0.elapsed().as_secs_f64()
            );
        }

        let t0 = Instant::now();
        let mut acc = [Measured::default(), Measured::default()];
        let mut pairs = Vec::with_capacity(cfg.rounds);
        for round in 0..cfg.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut pair = [Measured::default(), Measured::default()];
            for i in order {
                pair[i] = measure(env, &targets[i], r, cfg)
                    .await
                    .map_err(|e| format!("{} on {}: {e}", r.id, targets[i].kind().name()))?;
                targets[i].server.check_alive(env)?;
                // Leave no writeback of this server's teardown to slow the other one down.
                targets[i].sync()?;
            }
            pairs.push((summarize(&pair[0]), summarize(&pair[1])));
            let [s, c] = pair;
            acc[0].merge(s);
            acc[1].merge(c);
        }
        let [s, c] = acc;
        let mut result = RowResult::new(
            r.id,
            r.title,
            r.clients,
            r.note,
            (summarize(&s), summarize(&c)),
            &pairs,
        );
        if cfg.trace_ops > 0 && traced(r) {
            let once = RunConfig {
                ops: cfg.trace_ops,
                ..cfg.clone()
            };
            let mut per_op = Vec::with_capacity(2);
            for t in targets {
                t.set_trace(Some(
                    env.dir.join(format!("strace-{}.txt", t.kind().name())),
                ));
                let m = measure(env, t, r, &once).await;
                t.set_trace(None);
                let m = m.map_err(|e| format!("{} traced on {}: {e}", r.id, t.kind().name()))?;
                t.server.check_alive(env)?;
                t.sync()?;
                per_op.push(PerOp::of(&m).ok_or("a traced measurement has no trace")?);
            }
            let containerd = per_op.pop().ok_or("no trace")?;
            let strata = per_op.pop().ok_or("no trace")?;
            result.traced = Some(Traced { strata, containerd });
        }
        eprintln!(
            "[{}/{}] {:<18} strata p50 {:>8}  containerd p50 {:>8}  ratio {:>6.2}  ({:.1} s)",
            n + 1,
            total,
            r.id,
            fmt_dur(result.strata.p50_us),
            fmt_dur(result.containerd.p50_us),
            result.ratio.p50,
            t0.elapsed().as_secs_f64()
        );
        results.push(result);
    }
    if populated > 0 {
        let (a, b) = tokio::join!(
            set_population(&targets[0], populated, 0),
            set_population(&targets[1], populated, 0)
        );
        a?;
        b?;
    }
    if usage_ready {
        let (a, b) = tokio::join!(usage_teardown(&targets[0]), usage_teardown(&targets[1]));
        a?;
        b?;
    }
    Ok(results)
}

/// Whether row `r` gets a traced measurement: the 1-client rows of one cheap operation each.
fn traced(r: &RowDef) -> bool {
    r.clients == 1
        && matches!(
            r.op,
            Op::Prepare
                | Op::PrepareParent
                | Op::View
                | Op::Commit
                | Op::Remove
                | Op::Stat
                | Op::Mounts
                | Op::ListSmall
        )
}

/// Labels of population snapshot `id`: one in [`RARE_EVERY`] is `rare`.
fn population_labels(id: u64) -> std::collections::BTreeMap<String, String> {
    let group = if id % RARE_EVERY == RARE_EVERY / 2 {
        "rare"
    } else {
        "common"
    };
    labels(&[(GROUP_LABEL, group)])
}

/// Grows or shrinks the list population (actives with ids `1..=n`) from `from` to `to`.
async fn set_population(t: &Target, from: usize, to: usize) -> Result<()> {
    if to > from {
        let n = to - from;
        run_all(t, 8, n, None, move |c, i| {
            let id = (from + i + 1) as u64;
            async move {
                c.prepare(&active_key(id), "", population_labels(id))
                    .await
                    .done()
            }
        })
        .await
    } else {
        remove_all(t, (to + 1..=from).map(|id| active_key(id as u64)).collect()).await
    }
}

async fn usage_setup(t: &Target) -> Result<()> {
    let c = t.conn(0);
    let mounts = c
        .prepare(&active_key(USAGE_ACTIVE_ID), "", labels(&[]))
        .await?;
    write_tree(writable_dir(&mounts)?, LAYER_FILES).await?;
    let key = active_key(USAGE_COMMITTED_ID);
    let mounts = c.prepare(&key, "", labels(&[])).await?;
    write_tree(writable_dir(&mounts)?, LAYER_FILES).await?;
    t.sync()?;
    c.commit(
        &committed_key(USAGE_COMMITTED_ID),
        &key,
        Labels::new(),
        None,
    )
    .await?;
    t.sync()
}

async fn usage_teardown(t: &Target) -> Result<()> {
    remove_all(
        t,
        vec![
            active_key(USAGE_ACTIVE_ID),
            committed_key(USAGE_COMMITTED_ID),
        ],
    )
    .await
}

/// A small file, as a tiny layer holds.
fn write_small_file(dir: &Path) -> Result<()> {
    std::fs::write(dir.join("etc-hostname"), [b'h'; 4096])?;
    Ok(())
}

/// The plan of a cheap read-only row: at least `n` operations, then on for up to 1 s (at
/// most `10 n`), so that fast rows still run long enough to be stable.
fn read_plan(n: usize) -> Plan {
    Plan {
        max_ops: n * 10,
        min_ops: n,
        budget: Some(Duration::from_secs(1)),
    }
}

/// One measurement of row `r` on `t`: its own setup, the timed part, its own teardown.
async fn measure(env: &Env, t: &Target, r: &RowDef, cfg: &RunConfig) -> Result<Measured> {
    let n = if r.clients > 1 { cfg.ops * 2 } else { cfg.ops };
    let c = r.clients;
    match r.op {
        Op::Prepare => {
            let base = t.fresh_ids(n as u64);
            t.sync()?;
            let m = drive(t, c, Plan::exactly(n), move |conn, i| async move {
                conn.prepare(&active_key(base + i as u64), "", labels(&[]))
                    .await
                    .done()
            })
            .await?;
            remove_all(t, (0..n).map(|i| active_key(base + i as u64)).collect()).await?;
            Ok(m)
        }
        Op::PrepareParent | Op::View => {
            let base = t.fresh_ids(n as u64 + 1);
            let parent = committed_key(base);
            let conn = t.conn(0);
            conn.prepare(&active_key(base), "", labels(&[])).await?;
            conn.commit(&parent, &active_key(base), Labels::new(), None)
                .await?;
            t.sync()?;
            let view = r.op == Op::View;
            let p = parent.clone();
            let m = drive(t, c, Plan::exactly(n), move |conn, i| {
                let key = active_key(base + 1 + i as u64);
                let parent = p.clone();
                async move {
                    if view {
                        conn.view(&key, &parent, labels(&[])).await.done()
                    } else {
                        conn.prepare(&key, &parent, labels(&[])).await.done()
                    }
                }
            })
            .await?;
            remove_all(t, (0..n).map(|i| active_key(base + 1 + i as u64)).collect()).await?;
            remove_all(t, vec![parent]).await?;
            Ok(m)
        }
        Op::Commit => {
            let base = t.fresh_ids(n as u64);
            run_all(t, 8, n, None, move |conn, i| async move {
                let mounts = conn
                    .prepare(&active_key(base + i as u64), "", labels(&[]))
                    .await?;
                write_small_file(&writable_dir(&mounts)?)
            })
            .await?;
            t.sync()?;
            let m = drive(t, c, Plan::exactly(n), move |conn, i| async move {
                let id = base + i as u64;
                conn.commit(&committed_key(id), &active_key(id), Labels::new(), None)
                    .await
                    .done()
            })
            .await?;
            remove_all(t, (0..n).map(|i| committed_key(base + i as u64)).collect()).await?;
            Ok(m)
        }
        Op::Remove => {
            let base = t.fresh_ids(n as u64);
            run_all(t, 8, n, None, move |conn, i| async move {
                conn.prepare(&active_key(base + i as u64), "", labels(&[]))
                    .await
                    .done()
            })
            .await?;
            t.sync()?;
            let m = drive(t, c, Plan::exactly(n), move |conn, i| async move {
                conn.remove(&active_key(base + i as u64)).await.done()
            })
            .await?;
            t.conn(0).cleanup().await?;
            Ok(m)
        }
        Op::Stat | Op::Mounts => {
            let base = t.fresh_ids(STAT_POOL as u64 + 1);
            let parent = committed_key(base);
            let conn = t.conn(0);
            conn.prepare(&active_key(base), "", labels(&[])).await?;
            conn.commit(&parent, &active_key(base), Labels::new(), None)
                .await?;
            let p = parent.clone();
            run_all(t, 8, STAT_POOL, None, move |conn, i| {
                let parent = p.clone();
                async move {
                    conn.prepare(&active_key(base + 1 + i as u64), &parent, labels(&[]))
                        .await
                        .done()
                }
            })
            .await?;
            t.sync()?;
            let stat = r.op == Op::Stat;
            let m = drive(t, c, read_plan(n), move |conn, i| async move {
                let key = active_key(base + 1 + (i % STAT_POOL) as u64);
                if stat {
                    conn.stat(&key).await.done()
                } else {
                    let mounts = conn.mounts(&key).await?;
                    if mounts.is_empty() {
                        return Err("Mounts answered no mounts".into());
                    }
                    Ok(())
                }
            })
            .await?;
            remove_all(
                t,
                (0..STAT_POOL)
                    .map(|i| active_key(base + 1 + i as u64))
                    .collect(),
            )
            .await?;
            remove_all(t, vec![parent]).await?;
            Ok(m)
        }
        Op::ListSmall | Op::ListFilter => {
            let (filters, expect) = if r.op == Op::ListSmall {
                (Vec::new(), LIST_SMALL)
            } else {
                (
                    vec![format!("labels.\"{GROUP_LABEL}\"==rare")],
                    LIST_LARGE / RARE_EVERY as usize,
                )
            };
            let plan = Plan::budget(n / 4, 3, Duration::from_secs(5));
            drive(t, c, plan, move |conn, _| {
                let filters = filters.clone();
                async move {
                    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
                    let got = conn.list(&filters).await?.len();
                    if got != expect {
                        return Err(
                            format!("List returned {got} snapshots, expected {expect}").into()
                        );
                    }
                    Ok(())
                }
            })
            .await
        }
        Op::UsageActive | Op::UsageCommitted => {
            let (key, plan) = if r.op == Op::UsageActive {
                (
                    active_key(USAGE_ACTIVE_ID),
                    Plan::budget(n / 4, 3, Duration::from_secs(5)),
                )
            } else {
                (committed_key(USAGE_COMMITTED_ID), read_plan(n))
            };
            drive(t, c, plan, move |conn, _| {
                let key = key.clone();
                async move {
                    let inodes = conn.usage(&key).await?.inodes;
                    if inodes < LAYER_FILES as i64 {
                        return Err(format!(
                            "Usage counted {inodes} inodes, expected at least {LAYER_FILES}"
                        )
                        .into());
                    }
                    Ok(())
                }
            })
            .await
        }
        Op::CommitLarge => {
            let mut m = Measured::default();
            let conn = t.conn(0);
            for _ in 0..cfg.heavy_iters {
                let id = t.fresh_ids(1);
                let mounts = conn.prepare(&active_key(id), "", labels(&[])).await?;
                write_tree(writable_dir(&mounts)?, LAYER_FILES).await?;
                t.sync()?;
                let cpu0 = t.cpu();
                let t0 = Instant::now();
                conn.commit(&committed_key(id), &active_key(id), Labels::new(), None)
                    .await?;
                m.push(t0.elapsed(), t.cpu() - cpu0);
                remove_all(t, vec![committed_key(id)]).await?;
            }
            Ok(m)
        }
        Op::Chain => chain(env, t).await,
    }
}

/// One chain of [`CHAIN_LAYERS`] layers, each sample one layer: Prepare on the previous
/// layer, mount what Prepare returned, write a 4 KiB file, unmount, Commit.
async fn chain(env: &Env, t: &Target) -> Result<Measured> {
    let base = t.fresh_ids(CHAIN_LAYERS as u64);
    let target = env.dir.join(format!("target-{}", t.kind().name()));
    std::fs::create_dir_all(&target)?;
    let conn = t.conn(0);
    let mut m = Measured::default();
    let mut parent = String::new();
    let mut committed = Vec::with_capacity(CHAIN_LAYERS);
    t.sync()?;
    let result: Result<()> = async {
        for layer in 0..CHAIN_LAYERS {
            let id = base + layer as u64;
            let cpu0 = t.cpu();
            let t0 = Instant::now();
            let mounts = conn.prepare(&active_key(id), &parent, labels(&[])).await?;
            if mounts.len() != 1 {
                return Err(format!("layer {layer}: expected one mount, got {mounts:?}").into());
            }
            let mnt = &mounts[0];
            env.add_mount(&target);
            if let Err(e) = strata_sys::mount::mount(&mnt.kind, &mnt.source, &mnt.options, &target)
            {
                env.remove_mount(&target);
                return Err(format!("layer {layer}: mounting {mnt:?}: {e}").into());
            }
            let written = std::fs::write(target.join(format!("layer-{layer}")), [b'l'; 4096]);
            strata_sys::mount::unmount(&target, false)
                .map_err(|e| format!("layer {layer}: unmounting: {e}"))?;
            env.remove_mount(&target);
            written.map_err(|e| format!("layer {layer}: writing through the mount: {e}"))?;
            conn.commit(&committed_key(id), &active_key(id), Labels::new(), None)
                .await?;
            m.push(t0.elapsed(), t.cpu() - cpu0);
            parent = committed_key(id);
            committed.push(parent.clone());
        }
        Ok(())
    }
    .await;
    // Children before parents.
    for key in committed.iter().rev() {
        conn.remove(key).await?;
    }
    if committed.len() < CHAIN_LAYERS {
        // The layer that failed may have been prepared.
        let _ = conn
            .remove(&active_key(base + committed.len() as u64))
            .await;
    }
    conn.cleanup().await?;
    result.map(|()| m)
}
