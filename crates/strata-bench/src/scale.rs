//! The scale curve: latencies of the operations whose cost could grow with the number of
//! snapshots, measured with 1,000, 10,000 and 100,000 snapshots present.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::Result;
use crate::ops::{
    Done, GROUP_LABEL, Measured, Plan, Target, active_key, drive, labels, run_all, splitmix64,
};
use crate::report::{Ratio, ScaleMemory, ScaleRow, summarize};

/// Knobs of the scale curve.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Population sizes, ascending.
    pub sizes: Vec<usize>,
    /// Rounds per size (alternating which server goes first).
    pub rounds: usize,
    /// Prepares (and Removes) per round.
    pub ops: usize,
    /// Concurrent clients while populating.
    pub populate_clients: usize,
}

/// The operations of the curve, in the order they run at each size.
const OPS: [&str; 6] = [
    "Prepare",
    "Stat",
    "Remove",
    "Cleanup (nothing to do)",
    "List (all)",
    "List (filter, 1%)",
];

/// One in this many population snapshots matches the filter.
const FILTER_EVERY: u64 = 100;

fn population_labels(id: u64) -> std::collections::BTreeMap<String, String> {
    let group = if id.is_multiple_of(FILTER_EVERY) {
        "one-pct"
    } else {
        "rest"
    };
    labels(&[(GROUP_LABEL, group)])
}

/// Runs the curve on both targets (`targets[0]` Strata, `targets[1]` containerd).
pub async fn run(
    targets: &[Target; 2],
    cfg: &ScaleConfig,
) -> Result<(Vec<ScaleRow>, Vec<ScaleMemory>)> {
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    let mut have = 0usize;
    for &size in &cfg.sizes {
        let secs = populate(targets, have, size, cfg.populate_clients).await?;
        have = size;
        for t in targets {
            t.sync()?;
        }
        let t0 = Instant::now();
        let mut acc: [[Measured; 2]; OPS.len()] = Default::default();
        for round in 0..cfg.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let ms = measure(&targets[i], size, cfg.ops)
                    .await
                    .map_err(|e| format!("scale {size} on {}: {e}", targets[i].kind().name()))?;
                for (op, m) in ms.into_iter().enumerate() {
                    acc[op][i].merge(m);
                }
            }
        }
        for (op, [s, c]) in OPS.iter().zip(acc) {
            let (s, c) = (summarize(&s), summarize(&c));
            let ratio = Ratio::of(&s, &c);
            rows.push(ScaleRow {
                snapshots: size,
                op: (*op).to_owned(),
                strata: s,
                containerd: c,
                ratio,
            });
        }
        let (s, c) = (targets[0].server.stats(), targets[1].server.stats());
        memory.push(ScaleMemory {
            snapshots: size,
            strata_rss_kib: s.rss_kib,
            containerd_rss_kib: c.rss_kib,
            strata_hwm_kib: s.hwm_kib,
            containerd_hwm_kib: c.hwm_kib,
            strata_populate_s: secs[0],
            containerd_populate_s: secs[1],
        });
        eprintln!(
            "scale: measured at {size} snapshots in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok((rows, memory))
}

/// Grows both populations from `from` to `to` snapshots concurrently, printing progress every
/// 5 s; returns each server's time.
async fn populate(
    targets: &[Target; 2],
    from: usize,
    to: usize,
    clients: usize,
) -> Result<[f64; 2]> {
    if to <= from {
        return Ok([0.0; 2]);
    }
    let n = to - from;
    let progress = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let finished: [OnceLock<f64>; 2] = [OnceLock::new(), OnceLock::new()];
    let finished = &finished;
    let start = Instant::now();
    let one = |i: usize| {
        let t = &targets[i];
        let p = Arc::clone(&progress[i]);
        async move {
            run_all(t, clients, n, Some(p), move |c, k| {
                let id = (from + k + 1) as u64;
                async move {
                    c.prepare(&active_key(id), "", population_labels(id))
                        .await
                        .done()
                }
            })
            .await?;
            let secs = start.elapsed().as_secs_f64();
            let _ = finished[i].set(secs);
            Ok::<f64, crate::Error>(secs)
        }
    };
    eprintln!(
        "scale: populating {from} -> {to} snapshots ({clients} clients per server, both servers at once)"
    );
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let el = start.elapsed().as_secs_f64();
            let line: Vec<String> = targets
                .iter()
                .zip(&progress)
                .zip(finished)
                .map(|((t, p), f)| {
                    let d = p.load(Ordering::Relaxed);
                    match f.get() {
                        Some(secs) => format!("{} {to}/{to} done in {secs:.1} s", t.kind().name()),
                        None => format!(
                            "{} {}/{} ({:.0}/s)",
                            t.kind().name(),
                            from + d,
                            to,
                            d as f64 / el
                        ),
                    }
                })
                .collect();
            eprintln!("scale:   {:>5.0} s  {}", el, line.join("  |  "));
        }
    };
    let both = async { tokio::join!(one(0), one(1)) };
    let (a, b) = tokio::select! {
        r = both => r,
        () = ticker => unreachable!("the ticker never ends"),
    };
    let secs = [a?, b?];
    eprintln!(
        "scale: populated {to}: strata {:.1} s ({:.0}/s), containerd {:.1} s ({:.0}/s)",
        secs[0],
        n as f64 / secs[0],
        secs[1],
        n as f64 / secs[1]
    );
    Ok(secs)
}

/// One round at `size` snapshots on `t`, in the order of [`OPS`].
async fn measure(t: &Target, size: usize, ops: usize) -> Result<Vec<Measured>> {
    let mut out = Vec::with_capacity(OPS.len());
    let base = t.fresh_ids(ops as u64);
    t.sync()?;
    out.push(
        drive(t, 1, Plan::exactly(ops), move |c, i| async move {
            c.prepare(
                &active_key(base + i as u64),
                "",
                labels(&[(GROUP_LABEL, "new")]),
            )
            .await
            .done()
        })
        .await?,
    );
    out.push(
        drive(
            t,
            1,
            Plan::budget(ops * 3, 3, Duration::from_secs(3)),
            move |c, i| async move {
                let mut x = i as u64 ^ size as u64;
                let id = 1 + splitmix64(&mut x) % size as u64;
                c.stat(&active_key(id)).await.done()
            },
        )
        .await?,
    );
    out.push(
        drive(t, 1, Plan::exactly(ops), move |c, i| async move {
            c.remove(&active_key(base + i as u64)).await.done()
        })
        .await?,
    );
    // Reclaim what the Removes left, so that the timed Cleanups have nothing to do.
    t.conn(0).cleanup().await?;
    t.sync()?;
    let budget = Plan::budget(10, 3, Duration::from_secs(10));
    out.push(drive(t, 1, budget, |c, _| async move { c.cleanup().await.done() }).await?);
    for filtered in [false, true] {
        let (filters, expect) = if filtered {
            (
                vec![format!("labels.\"{GROUP_LABEL}\"==one-pct")],
                size / FILTER_EVERY as usize,
            )
        } else {
            (Vec::new(), size)
        };
        out.push(
            drive(t, 1, budget, move |c, _| {
                let filters = filters.clone();
                async move {
                    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
                    let got = c.list(&filters).await?.len();
                    if got != expect {
                        return Err(
                            format!("List returned {got} snapshots, expected {expect}").into()
                        );
                    }
                    Ok(())
                }
            })
            .await?,
        );
    }
    Ok(out)
}
