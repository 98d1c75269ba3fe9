//! What a scrape computes: every backend's census (one read transaction each, no directory
//! walked) merged with what the service recorded, in Prometheus' text format.

use std::fmt::Write as _;

use strata_core::{Census, Ctx, Kind, Usage};

use super::registry::{Measured, Metrics};
use super::text::{escape, family};
use crate::backends::Backends;

/// One backend's figures at scrape time.
struct Figures {
    backend: String,
    census: Census,
    active: Measured,
}

/// The metrics in Prometheus' text format (version 0.0.4). Reads every backend's metadata,
/// so it blocks: call it off the async runtime.
pub fn render(metrics: &Metrics, backends: &Backends) -> String {
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
    metrics.render_rpc(&mut out);
    metrics.render_layers(&mut out);
    metrics.render_external(&mut out);
    let figures: Vec<Figures> = backends
        .all()
        .iter()
        .filter_map(|backend| {
            let name = backend.name();
            match backend.census(&Ctx::background()) {
                Ok(census) => Some(Figures {
                    backend: name.to_owned(),
                    active: metrics.active_usage(name, &census.active),
                    census,
                }),
                Err(e) => {
                    tracing::warn!(backend = name, error = %e, "metrics: reading the snapshots failed");
                    None
                }
            }
        })
        .collect();
    render_snapshots(&mut out, &figures);
    metrics.render_cleanup(&mut out, backends.all().iter().map(|b| b.name()));
    out
}

fn render_snapshots(out: &mut String, figures: &[Figures]) {
    family(
        out,
        "strata_snapshots",
        "gauge",
        "Snapshots in the metadata, by backend and kind.",
    );
    for f in figures {
        let b = escape(&f.backend);
        for (kind, n) in [
            (Kind::Active, f.census.active.len() as u64),
            (Kind::Committed, f.census.committed),
            (Kind::View, f.census.views),
        ] {
            let _ = writeln!(
                out,
                "strata_snapshots{{backend=\"{b}\",kind=\"{kind}\"}} {n}"
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
        for f in figures {
            let b = escape(&f.backend);
            let _ = writeln!(
                out,
                "{metric}{{backend=\"{b}\",kind=\"committed\"}} {}",
                pick(&f.census.committed_usage)
            );
            let _ = writeln!(
                out,
                "{metric}{{backend=\"{b}\",kind=\"active\"}} {}",
                pick(&f.active.usage)
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
    for f in figures {
        let _ = writeln!(
            out,
            "strata_active_snapshots_measured{{backend=\"{}\"}} {}",
            escape(&f.backend),
            f.active.snapshots
        );
    }
}
