//! Size limits of writable snapshots: which snapshots get one and how large. Pure.
//!
//! - The label [`MAX_SIZE_LABEL`] (containerd 2.4's name) carries a limit in decimal bytes.
//!   It applies to an active snapshot when it is prepared, and again whenever an Update
//!   changes it: set or changed, the new limit holds from then on (lowered below what the
//!   snapshot already holds, further writes fail and removing files frees room again);
//!   removed, the snapshot falls back to the backend's default. Labels are never inherited:
//!   a child does not get its parent's limit, as containerd's labels belong to one snapshot.
//! - A backend may have a default limit for writable snapshots that carry no label, but
//!   never for extraction snapshots, where containerd unpacks an image layer (their size is
//!   the layer's, chosen by the image, not by a container): those carry the
//!   `containerd.io/snapshot.ref` label, or a key with containerd's `extract-` segment.
//! - Views and committed snapshots are read-only: a limit would mean nothing, and the label
//!   is kept but has no effect.

use strata_core::snapshot::Labels;
use strata_core::{Kind, Result};

/// The label carrying a snapshot's size limit in decimal bytes.
pub const MAX_SIZE_LABEL: &str = "containerd.io/snapshot/max-size";

/// The label containerd's unpacker puts on the snapshot it extracts a layer into.
pub const SNAPSHOT_REF_LABEL: &str = "containerd.io/snapshot.ref";

/// Whether `key`/`labels` name a snapshot containerd extracts a layer into: labelled
/// [`SNAPSHOT_REF_LABEL`], or keyed `…extract-<n>…` (containerd's unpacker names them
/// `extract-<random>-<chain id>`, prefixed by `<namespace>/<n>/` on the way to a proxy).
pub fn is_extraction(key: &str, labels: &Labels) -> bool {
    labels.contains_key(SNAPSHOT_REF_LABEL)
        || key
            .split('/')
            .any(|segment| segment.starts_with("extract-"))
}

/// The limit, in bytes, a snapshot of `kind` keyed `key` with `labels` gets, given the
/// backend's `default` for writable snapshots; `None` for no limit. A malformed label
/// (anything but a positive decimal number of bytes) is `InvalidArgument`.
pub fn size_limit(
    kind: Kind,
    key: &str,
    labels: &Labels,
    default: Option<u64>,
) -> Result<Option<u64>> {
    let label = parse_label(labels)?;
    if kind != Kind::Active {
        return Ok(None);
    }
    Ok(match label {
        Some(bytes) => Some(bytes),
        None if is_extraction(key, labels) => None,
        None => default,
    })
}

/// The value of [`MAX_SIZE_LABEL`] in `labels`, checked.
pub fn parse_label(labels: &Labels) -> Result<Option<u64>> {
    let Some(value) = labels.get(MAX_SIZE_LABEL) else {
        return Ok(None);
    };
    match value.parse::<u64>() {
        Ok(bytes) if bytes > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(bytes)),
        _ => Err(strata_core::invalid!(
            "label {MAX_SIZE_LABEL}={value:?}: expected a positive number of bytes in decimal \
             digits, e.g. 10737418240 for 10 GiB"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Who gets which limit: the label wins, the default covers writable snapshots except
    /// extraction ones, read-only kinds get none.
    #[test]
    fn who_gets_a_limit() {
        let max = |v: &str| labels(&[(MAX_SIZE_LABEL, v)]);
        let d = Some(1000);
        // (kind, key, labels, default, limit wanted)
        type Case<'a> = (Kind, &'a str, Labels, Option<u64>, Option<u64>);
        let cases: Vec<Case> = vec![
            (Kind::Active, "c1", Labels::new(), None, None),
            (Kind::Active, "c1", Labels::new(), d, d),
            (Kind::Active, "c1", max("42"), d, Some(42)),
            (Kind::Active, "c1", max("42"), None, Some(42)),
            (Kind::View, "v", max("42"), d, None),
            (Kind::Committed, "c", max("42"), d, None),
            (
                Kind::Active,
                "k",
                labels(&[(SNAPSHOT_REF_LABEL, "sha256:abc")]),
                d,
                None,
            ),
            (
                Kind::Active,
                "default/7/extract-123456-sha256:abc",
                Labels::new(),
                d,
                None,
            ),
            (Kind::Active, "extract-1-sha256:abc", Labels::new(), d, None),
            // An explicit label holds even on an extraction snapshot.
            (Kind::Active, "ns/1/extract-1-x", max("42"), d, Some(42)),
            // "extract" elsewhere in a key is not containerd's segment.
            (Kind::Active, "my-extract-1", Labels::new(), d, d),
        ];
        for (kind, key, labels, default, want) in cases {
            assert_eq!(
                size_limit(kind, key, &labels, default).unwrap(),
                want,
                "{kind:?} {key} {labels:?} {default:?}"
            );
        }
    }

    /// Only positive decimal byte counts are limits.
    #[test]
    fn malformed_labels_are_refused() {
        for bad in [
            "",
            "0",
            "-1",
            "+5",
            "1G",
            "1e9",
            " 5",
            "18446744073709551616",
        ] {
            let l = labels(&[(MAX_SIZE_LABEL, bad)]);
            assert!(
                size_limit(Kind::Active, "k", &l, None).is_err(),
                "{bad:?} accepted"
            );
        }
        let l = labels(&[(MAX_SIZE_LABEL, "18446744073709551615")]);
        assert_eq!(parse_label(&l).unwrap(), Some(u64::MAX));
    }
}
