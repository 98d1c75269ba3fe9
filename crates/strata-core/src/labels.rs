//! Label rules shared by every operation that takes labels: validation against containerd's
//! limits, and the field-mask semantics of `Update`.

use crate::snapshot::Labels;
use crate::{Error, Result};

/// containerd's limit on a label's key plus value (`labels.Validate`).
pub const MAX_LABEL_SIZE: usize = 4096;

/// The prefix of labels that containerd's metadata layer lets flow from a parent to its
/// children (`containerd.io/snapshot/…`).
pub const INHERITED_PREFIX: &str = "containerd.io/snapshot/";

/// The label a remote snapshotter is asked to resolve (`containerd.io/snapshot.ref`).
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// Checks every label against containerd's rules: a non-empty key, key plus value at most
/// [`MAX_LABEL_SIZE`] bytes, no NUL byte (which no filesystem path or protobuf consumer
/// downstream expects).
pub fn validate(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(crate::invalid!("label key must not be empty"));
        }
        if k.len() + v.len() > MAX_LABEL_SIZE {
            let shown: String = k.chars().take(64).collect();
            return Err(crate::invalid!(
                "label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {shown}"
            ));
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(crate::invalid!("label {k:?} contains a NUL byte"));
        }
    }
    Ok(())
}

/// Drops labels whose value is empty: containerd treats `key=` as "remove the label".
pub fn without_empty(mut labels: Labels) -> Labels {
    labels.retain(|_, v| !v.is_empty());
    labels
}

/// Applies an `Update` to the stored labels `current` following containerd's field-mask rules:
///
/// - no field paths: the labels are replaced by `requested` (immutable fields in the request
///   are ignored, as containerd's own snapshotters do and its conformance suite expects);
/// - `labels`: the labels are replaced by `requested`;
/// - `labels.<key>`: only that key is set from `requested`, or removed when it is absent there;
/// - any other path (`parent`, `name`, `kind`, …) is refused with `InvalidArgument`.
///
/// Empty values are removed in every case. Pure: the caller stores the result.
pub fn apply_update(
    name: &str,
    current: &Labels,
    requested: &Labels,
    fieldpaths: &[String],
) -> Result<Labels> {
    if fieldpaths.is_empty() {
        return Ok(without_empty(requested.clone()));
    }
    let mut updated = current.clone();
    for path in fieldpaths {
        if let Some(key) = path.strip_prefix("labels.") {
            match requested.get(key) {
                Some(v) if !v.is_empty() => {
                    updated.insert(key.to_owned(), v.clone());
                }
                _ => {
                    updated.remove(key);
                }
            }
        } else if path == "labels" {
            updated = requested.clone();
        } else {
            return Err(Error::InvalidArgument(format!(
                "cannot update {path:?} field on snapshot {name:?}: only labels are mutable"
            )));
        }
    }
    Ok(without_empty(updated))
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

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    /// The three masking forms of containerd's `checkUpdate` conformance test.
    #[test]
    fn masking_follows_containerd() {
        let current = labels(&[("l1", "v1"), ("l2", "v2"), ("l3", "v3"), ("root", "r")]);
        let requested = labels(&[("l1", "updated"), ("l4", "v4")]);
        let got = apply_update(
            "s",
            &current,
            &requested,
            &paths(&["labels.l1", "labels.l2"]),
        )
        .unwrap();
        assert_eq!(
            got,
            labels(&[("l1", "updated"), ("l3", "v3"), ("root", "r")])
        );

        let got = apply_update("s", &current, &requested, &paths(&["labels"])).unwrap();
        assert_eq!(got, requested);

        let got = apply_update("s", &current, &requested, &[]).unwrap();
        assert_eq!(got, requested);
    }

    /// An empty value removes a label, whichever form the update takes.
    #[test]
    fn empty_values_remove() {
        let current = labels(&[("a", "1"), ("b", "2")]);
        let requested = labels(&[("a", ""), ("c", "")]);
        assert_eq!(
            apply_update("s", &current, &requested, &paths(&["labels.a"])).unwrap(),
            labels(&[("b", "2")])
        );
        assert_eq!(
            apply_update("s", &current, &requested, &[]).unwrap(),
            labels(&[])
        );
    }

    /// Only labels are mutable: every other field path is an InvalidArgument.
    #[test]
    fn immutable_fields_are_refused() {
        for path in ["parent", "name", "kind", "created_at", "label", ""] {
            let err = apply_update("s", &Labels::new(), &Labels::new(), &paths(&[path]));
            assert!(
                matches!(err, Err(Error::InvalidArgument(_))),
                "{path}: {err:?}"
            );
        }
    }

    /// containerd's size limit counts key plus value.
    #[test]
    fn validate_limits() {
        assert!(validate(&labels(&[("k", &"v".repeat(4095))])).is_ok());
        assert!(validate(&labels(&[("k", &"v".repeat(4096))])).is_err());
        assert!(validate(&labels(&[("", "v")])).is_err());
        assert!(validate(&labels(&[("k", "a\0b")])).is_err());
    }
}
