//! Layer work of the diff service: Apply and Diff calls by outcome, the bytes they moved and
//! the seconds they took.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::text::family;

/// Totals of one layer operation (`apply` or `diff`).
#[derive(Debug, Default, Clone)]
pub(super) struct LayerTotals {
    /// Calls by outcome: `ok` or the gRPC code's name.
    pub(super) calls: BTreeMap<&'static str, u64>,
    /// Bytes of blobs read (Apply) or written (Diff), as stored (compressed).
    pub(super) blob_bytes: u64,
    /// Bytes of the uncompressed tar streams.
    pub(super) tar_bytes: u64,
    /// Seconds spent in successful calls.
    pub(super) seconds: f64,
}

/// Writes the layer families for `totals` (by operation).
pub(super) fn render(out: &mut String, totals: &BTreeMap<&'static str, LayerTotals>) {
    family(
        out,
        "strata_layer_operations_total",
        "counter",
        "Diff service calls (apply, diff) by outcome: ok or the gRPC code.",
    );
    for (op, t) in totals {
        for (outcome, n) in &t.calls {
            let _ = writeln!(
                out,
                "strata_layer_operations_total{{op=\"{op}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    family(
        out,
        "strata_layer_bytes_total",
        "counter",
        "Bytes of layers applied or produced: the stored blobs (compressed) and their tar streams.",
    );
    for (op, t) in totals {
        let _ = writeln!(
            out,
            "strata_layer_bytes_total{{op=\"{op}\",form=\"blob\"}} {}",
            t.blob_bytes
        );
        let _ = writeln!(
            out,
            "strata_layer_bytes_total{{op=\"{op}\",form=\"tar\"}} {}",
            t.tar_bytes
        );
    }
    family(
        out,
        "strata_layer_seconds_total",
        "counter",
        "Seconds spent applying or producing layers (successful calls).",
    );
    for (op, t) in totals {
        let _ = writeln!(
            out,
            "strata_layer_seconds_total{{op=\"{op}\"}} {}",
            t.seconds
        );
    }
}

/// The seconds of `elapsed`, for the totals.
pub(super) fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}
